package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// Claim asks for tasks of external kinds.
type Claim struct {
	// Kinds to claim, each with its default lease in LeaseSecs (same
	// index), for the tasks that set no timeout of their own.
	Kinds     []string
	LeaseSecs []float64
	// Lease is the claim's own lease for every task; 0: none.
	Lease time.Duration
	// Queues limits the claim to these queues; nil: any.
	Queues []string
	Max    int
	// Worker names the claimant in attempts and River's attempted_by.
	Worker string
}

// ClaimedTask is a task handed to an external worker under a lease.
type ClaimedTask struct {
	ID          int64
	Kind        string
	Queue       string
	Args        json.RawMessage
	Attempt     int
	MaxAttempts int
	BatchID     *int64
	// AfterBatch is the batch whose callback the task is; nil when none.
	AfterBatch *int64
	// Schedule is the schedule that enqueued the task; nil when none did.
	Schedule *string
	// Lease is the lease's token, which completes, fails and heartbeats it.
	Lease     string
	ExpiresAt time.Time
}

// LeaseClaim claims up to c.Max available tasks. It is not retried on a
// lost connection: a claim that committed unseen is given back by its
// lease's expiry.
func (s *Store) LeaseClaim(ctx context.Context, c Claim) ([]ClaimedTask, error) {
	p := dbsqlc.LeaseClaimParams{
		Kinds: c.Kinds, LeaseSecs: c.LeaseSecs, Queues: c.Queues, Max: int32(c.Max), Worker: c.Worker,
	}
	if c.Lease > 0 {
		p.ClaimLeaseSecs = new(c.Lease.Seconds())
	}
	rows, err := s.q.LeaseClaim(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", unavailable(err))
	}
	tasks := make([]ClaimedTask, len(rows))
	for i, r := range rows {
		tasks[i] = ClaimedTask{
			ID: r.ID, Kind: r.Kind, Queue: r.Queue, Args: r.Args, Attempt: int(r.Attempt),
			MaxAttempts: int(r.MaxAttempts), Lease: r.Token.String(), ExpiresAt: r.ExpiresAt,
		}
		if r.BatchID != 0 {
			tasks[i].BatchID = &r.BatchID
		}
		if r.AfterBatch != 0 {
			tasks[i].AfterBatch = &r.AfterBatch
		}
		if r.Schedule != "" {
			tasks[i].Schedule = &r.Schedule
		}
	}
	return tasks, nil
}

// LeaseClaimableKinds returns which of kinds have a task ready to claim.
func (s *Store) LeaseClaimableKinds(ctx context.Context, kinds []string) ([]string, error) {
	var out []string
	err := s.Retry(ctx, func() (err error) {
		out, err = s.q.LeaseClaimableKinds(ctx, kinds)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("checking for claimable tasks: %w", err)
	}
	return out, nil
}

// parseToken turns a lease token into its UUID; ok is false for anything
// that cannot be one, which then matches no lease.
func parseToken(token string) (u pgtype.UUID, ok bool) {
	if err := u.Scan(token); err != nil || !u.Valid {
		return u, false
	}
	return u, true
}

// Completion completes one leased task: its lease token and result (JSON;
// nil stores null).
type Completion struct {
	ID     int64
	Token  string
	Result json.RawMessage
}

// LeaseCompleteMany completes each task whose token is its current lease,
// with one statement, and says which it completed (done[i] for cs[i]); the
// others' leases did not hold (LeaseState says why). Tasks may not repeat.
func (s *Store) LeaseCompleteMany(ctx context.Context, cs []Completion) (done []bool, err error) {
	p := dbsqlc.LeaseCompleteManyParams{
		Ids: make([]int64, 0, len(cs)), Tokens: make([]pgtype.UUID, 0, len(cs)), Results: make([]string, 0, len(cs)),
	}
	for _, c := range cs {
		u, ok := parseToken(c.Token)
		if !ok {
			continue // matches no lease
		}
		result := c.Result
		if result == nil {
			result = json.RawMessage("null")
		}
		p.Ids, p.Tokens, p.Results = append(p.Ids, c.ID), append(p.Tokens, u), append(p.Results, string(result))
	}
	done = make([]bool, len(cs))
	if len(p.Ids) == 0 {
		return done, nil
	}
	ids, err := s.q.LeaseCompleteMany(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("completing %d tasks: %w", len(p.Ids), unavailable(err))
	}
	completed := make(map[int64]bool, len(ids))
	for _, id := range ids {
		completed[id] = true
	}
	for i, c := range cs {
		done[i] = completed[c.ID]
	}
	return done, nil
}

// LeasedTask is a leased task locked for a failure (LeaseLockTx).
type LeasedTask struct {
	Worker string
	// AttemptNumber numbers the attempt as task_attempts does.
	AttemptNumber int
	StartedAt     time.Time
	// Attempt is River's attempt counter, compared with MaxAttempts.
	Attempt         int
	MaxAttempts     int
	Queue           string
	Kind            string
	ErrorCount      int
	CancelRequested bool
	// Policy is the task's own retry policy, as Task.Policy.
	Policy json.RawMessage
}

// LeaseLockTx locks task id and its lease for the rest of tx if token is
// its current lease; ErrNotFound when it is not.
func (s *Store) LeaseLockTx(ctx context.Context, tx pgx.Tx, id int64, token string) (*LeasedTask, error) {
	u, ok := parseToken(token)
	if !ok {
		return nil, ErrNotFound
	}
	r, err := s.q.WithTx(tx).LeaseLock(ctx, dbsqlc.LeaseLockParams{ID: id, Token: u})
	if err != nil {
		return nil, fmt.Errorf("locking lease of task %d: %w", id, interpretError(err))
	}
	return &LeasedTask{
		Worker: r.Worker, AttemptNumber: int(r.AttemptNumber), StartedAt: r.StartedAt, Attempt: int(r.Attempt),
		MaxAttempts: int(r.MaxAttempts), Queue: r.Queue, Kind: r.Kind, ErrorCount: int(r.ErrorCount),
		CancelRequested: r.CancelRequested, Policy: json.RawMessage(r.Policy),
	}, nil
}

// LeaseFailure ends a locked lease with a failed attempt.
type LeaseFailure struct {
	ID int64
	// State is the task's next state: available, retryable, discarded or
	// cancelled.
	State string
	// Wait is, for an available or retryable task, how long from now (by
	// the database's clock) until it may run again; nil leaves its
	// scheduled_at as it is.
	Wait *time.Duration
	// Outcome is the attempt's outcome (OutcomeFailed, OutcomeCancelled,
	// OutcomeInterrupted).
	Outcome string
	Error   string
	// Interrupted gives the attempt back uncounted and without an error in
	// River's errors.
	Interrupted bool
}

// LeaseFailTx ends the lease locked by LeaseLockTx in tx.
func (s *Store) LeaseFailTx(ctx context.Context, tx pgx.Tx, f LeaseFailure) error {
	err := s.q.WithTx(tx).LeaseFail(ctx, dbsqlc.LeaseFailParams{
		ID: f.ID, State: f.State, Outcome: f.Outcome, Error: f.Error, Interrupted: f.Interrupted,
		WaitSecs: waitSecs(f.Wait),
	})
	if err != nil {
		return fmt.Errorf("failing task %d: %w", f.ID, err)
	}
	return nil
}

func waitSecs(d *time.Duration) *float64 {
	if d == nil {
		return nil
	}
	secs := d.Seconds()
	return &secs
}

// LeaseHeartbeat extends task id's lease if token is current: by extend
// from now (nil: by the lease's own length), never past maxLife after the
// attempt started. ErrNotFound when the lease does not hold.
func (s *Store) LeaseHeartbeat(ctx context.Context, id int64, token string, extend *time.Duration, maxLife time.Duration) (expires time.Time, cancelRequested bool, err error) {
	u, ok := parseToken(token)
	if !ok {
		return time.Time{}, false, ErrNotFound
	}
	p := dbsqlc.LeaseHeartbeatParams{ID: id, Token: u, MaxLifeSecs: maxLife.Seconds()}
	if extend != nil {
		secs := extend.Seconds()
		p.ExtendSecs = &secs
	}
	r, err := s.q.LeaseHeartbeat(ctx, p)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("heartbeating task %d: %w", id, unavailable(interpretError(err)))
	}
	return r.ExpiresAt, r.CancelRequested, nil
}

// LeaseState is why a lease token was refused.
type LeaseState struct {
	State string
	Kind  string
	// Leased says whether the task is under a live lease (another token's).
	Leased    bool
	ExpiresAt *time.Time
}

// LeaseState reads task id's state and lease.
func (s *Store) LeaseState(ctx context.Context, id int64) (*LeaseState, error) {
	var r dbsqlc.LeaseStateRow
	err := s.Retry(ctx, func() (err error) {
		r, err = s.q.LeaseState(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading task %d: %w", id, interpretError(err))
	}
	return &LeaseState{State: r.State, Kind: r.Kind, ExpiresAt: r.ExpiresAt, Leased: r.Leased}, nil
}

// ExpiredLease is a task whose lease ran out, with its new state.
type ExpiredLease struct {
	ID    int64
	State string
}

// LeaseExpire ends up to max leases that ran out (see the query).
func (s *Store) LeaseExpire(ctx context.Context, max int) ([]ExpiredLease, error) {
	rows, err := s.q.LeaseExpire(ctx, int32(max))
	if err != nil {
		return nil, fmt.Errorf("expiring leases: %w", unavailable(err))
	}
	out := make([]ExpiredLease, len(rows))
	for i, r := range rows {
		out[i] = ExpiredLease{ID: r.ID, State: r.State}
	}
	return out, nil
}

// NotifyQueuesTx wakes the fetchers and waiting claims of queues when tx
// commits, as River's insert notification does.
func (s *Store) NotifyQueuesTx(ctx context.Context, tx pgx.Tx, queues []string) error {
	if err := s.q.WithTx(tx).NotifyQueues(ctx, queues); err != nil {
		return fmt.Errorf("notifying queues: %w", err)
	}
	return nil
}
