package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/limits"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
)

// Limits of claims and leases.
const (
	ClaimMaxTasks = 100
	// ClaimListMax bounds a claim's kinds and queues.
	ClaimListMax = 100
	ClaimWaitMax = 60 * time.Second
	// ClaimWaitDefault is how long a claim waits when it does not say.
	ClaimWaitDefault = 30 * time.Second
	LeaseMin         = 5 * time.Second
	LeaseMax         = time.Hour
	// LeaseDefault is the lease of a task whose claim, task and kind set
	// none.
	LeaseDefault = jobs.LeaseDefault
	// WorkerNameMax bounds a claim's worker name, in characters.
	WorkerNameMax = 200
	// FailErrorMax bounds a failure's error, in bytes.
	FailErrorMax = 64 << 10
	// RetryAfterMax bounds a failure's retry_after.
	RetryAfterMax = time.Hour
	// DefaultWorkerName names the worker of a claim that gives none.
	DefaultWorkerName = "external"
)

// withEarlierDeadline gives ctx deadline dl as well; cancel, ctx's own,
// is called by the returned one.
func withEarlierDeadline(ctx context.Context, cancel context.CancelFunc, dl time.Time) (context.Context, context.CancelFunc) {
	dctx, dcancel := context.WithDeadline(ctx, dl)
	return dctx, func() { dcancel(); cancel() }
}

// claimQueryTimeout bounds one claim statement.
const claimQueryTimeout = 30 * time.Second

// retryableWithin is River's scheduler interval: a task retried sooner is
// made available with a future scheduled_at, as River's own executor does,
// instead of waiting for the scheduler to promote it.
const retryableWithin = 5 * time.Second

// Type aliases for the wire types of the pull API.
type (
	ClaimParams     = client.ClaimRequest
	CompleteParams  = client.CompleteRequest
	FailParams      = client.FailRequest
	HeartbeatParams = client.HeartbeatRequest
)

// LeaseError is returned when a lease token does not hold: it expired, a
// newer claim superseded it, or the task is no longer running. State is the
// task's current state.
type LeaseError struct {
	TaskID int64
	State  string
	Reason string
}

func (e *LeaseError) Error() string {
	return fmt.Sprintf("the lease on task %d does not hold: %s", e.TaskID, e.Reason)
}

// parseDuration adds a problem to fe unless raw is a duration in
// [lo, hi].
func parseDuration(fe *kinds.Errors, field string, raw *string, def, lo, hi time.Duration) time.Duration {
	if raw == nil {
		return def
	}
	d, err := time.ParseDuration(*raw)
	if err != nil || d < lo || d > hi {
		fe.Add(field, "must be a duration between %s and %s, such as \"30s\"", lo, hi)
		return def
	}
	return d
}

// ClaimWait is how long a claim of p may wait for tasks: its valid wait,
// or the default (an invalid one is refused by Claim anyway). The API adds
// it to the claim's database deadline.
func ClaimWait(p *ClaimParams) time.Duration {
	return parseDuration(&kinds.Errors{}, "wait", p.Wait, ClaimWaitDefault, 0, ClaimWaitMax)
}

// Claim hands up to p.Max available tasks of external kinds to the calling
// worker, each under a new lease, waiting up to p.Wait for some to arrive.
// It returns an empty list when none did; ctx ending (the client left)
// ends the wait at once.
func (s *Service) Claim(ctx context.Context, p *ClaimParams) ([]store.ClaimedTask, error) {
	fe := &kinds.Errors{}
	if len(p.Kinds) > ClaimListMax || len(p.Queues) > ClaimListMax {
		field := "kinds"
		if len(p.Queues) > ClaimListMax {
			field = "queues"
		}
		return nil, &ValidationError{Errors: []FieldError{{Field: field, Message: fmt.Sprintf("must hold at most %d names", ClaimListMax)}}}
	}
	var names []string
	var leaseDefaults []time.Duration
	for i, name := range p.Kinds {
		if slices.Contains(names, name) {
			continue
		}
		k, ok := s.jobs.Kinds().Lookup(name)
		switch {
		case !ok:
			fe.Add("kinds["+strconv.Itoa(i)+"]", "unknown kind %q", strictjson.Clip(name))
		case k.Run != kinds.RunExternal:
			fe.Add("kinds["+strconv.Itoa(i)+"]", "kind %q runs %s, not external: only kinds with run: external can be claimed", k.Name, runName(k.Run))
		default:
			names = append(names, k.Name)
			leaseDefaults = append(leaseDefaults, k.Timeout)
		}
	}
	if len(p.Kinds) == 0 {
		for _, k := range s.jobs.Kinds().All() {
			if k.Run == kinds.RunExternal {
				names = append(names, k.Name)
				leaseDefaults = append(leaseDefaults, k.Timeout)
			}
		}
		if len(names) == 0 {
			fe.Add("kinds", "no kind runs external here; declare one with run: external in the configuration file")
		}
	}
	for i, q := range p.Queues {
		if !validQueueName(q) {
			fe.Add("queues["+strconv.Itoa(i)+"]", "%q is not a queue name", strictjson.Clip(q))
		}
	}
	limit := 1
	if p.Max != nil {
		if *p.Max < 1 || *p.Max > ClaimMaxTasks {
			fe.Add("max", "must be between 1 and %d", ClaimMaxTasks)
		}
		limit = *p.Max
	}
	wait := parseDuration(fe, "wait", p.Wait, ClaimWaitDefault, 0, ClaimWaitMax)
	lease := parseDuration(fe, "lease", p.Lease, 0, LeaseMin, LeaseMax)
	worker := DefaultWorkerName
	if p.Worker != nil {
		switch w := *p.Worker; {
		case w == "" || utf8.RuneCountInString(w) > WorkerNameMax:
			fe.Add("worker", "must be between 1 and %d characters", WorkerNameMax)
		case strings.ContainsRune(w, 0):
			fe.Add("worker", "must not contain the NUL character")
		default:
			worker = w
		}
	}
	if fe.List != nil {
		return nil, &ValidationError{Errors: fe.List}
	}
	// Each task's lease is the claim's, else the task's own timeout (the
	// store reads it), else its kind's.
	secs := make([]float64, len(names))
	for i, d := range leaseDefaults {
		if d <= 0 {
			d = LeaseDefault
		}
		secs[i] = min(max(d, LeaseMin), LeaseMax).Seconds()
	}
	queues, err := claimQueues(ctx, p.Queues)
	if err != nil {
		return nil, err
	}
	c := store.Claim{Kinds: names, LeaseSecs: secs, Lease: lease, Queues: queues, Max: limit, Worker: worker}
	if len(c.Queues) == 0 {
		c.Queues = nil
	}

	deadline := time.Now().Add(wait)
	var w *waiter
	if wait > 0 {
		// Registered before the first try, so that a task inserted between
		// the try and the wait still wakes it.
		var ok bool
		if w, ok = s.claims.register(names, c.Queues); ok {
			defer s.claims.unregister(w)
		}
	}
	for {
		// Not cancelled with ctx: a claim cut off mid-statement may commit
		// all the same, unseen. If ctx ended meanwhile, the tasks go back.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimQueryTimeout)
		if dl, ok := ctx.Deadline(); ok {
			// The request's database deadline (the API's) bounds it too.
			qctx, cancel = withEarlierDeadline(qctx, cancel, dl)
		}
		tasks, err := s.store.LeaseClaim(qctx, c)
		if err != nil && errors.Is(qctx.Err(), context.DeadlineExceeded) && !errors.Is(err, store.ErrUnavailable) {
			// The statement's bound passed: the database kept quiet. Said
			// here for claimQueryTimeout, which ctx does not know of; when
			// the bound was ctx's deadline, the handler answers that.
			err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		cancel()
		if err == nil && len(tasks) > 0 {
			tasks, err = s.limitClaimed(ctx, tasks)
		}
		if err == nil && len(tasks) > 0 && ctx.Err() != nil {
			s.GiveBack(ctx, tasks)
			return nil, ctx.Err()
		}
		if err != nil || len(tasks) > 0 || w == nil {
			return tasks, err
		}
		left := time.Until(deadline)
		if left <= 0 || s.claims.isClosed() {
			return tasks, nil
		}
		timer := time.NewTimer(left)
		select {
		case <-w.wake:
			timer.Stop()
		case <-timer.C:
			return tasks, nil
		case <-ctx.Done():
			timer.Stop()
			return tasks, ctx.Err()
		}
	}
}

func runName(r kinds.Run) string {
	if r == kinds.RunGo {
		return "in taskd (go)"
	}
	return "over " + string(r)
}

// leaseRefused explains why the lease on task id did not hold: ErrNotFound
// when there is no such task, a *LeaseError otherwise.
func (s *Service) leaseRefused(ctx context.Context, id int64) error {
	st, err := s.store.LeaseState(ctx, id)
	if err != nil {
		return err
	}
	e := &LeaseError{TaskID: id, State: st.State}
	k, _ := s.jobs.Kinds().Lookup(st.Kind)
	switch {
	case k.Run != kinds.RunExternal:
		e.Reason = fmt.Sprintf("task %d is of kind %q, which is not claimed by external workers", id, st.Kind)
	case st.State != store.StateRunning:
		e.Reason = "the task is " + st.State
	case st.Leased:
		e.Reason = "the task was claimed again under a newer lease, or the token is wrong"
	default:
		e.Reason = "the lease expired"
	}
	return e
}

// checkLease adds a problem to fe unless a lease token is given.
func checkLease(fe *kinds.Errors, lease *string) {
	if lease == nil || *lease == "" {
		fe.Add("lease", "is required: the token the claim returned")
	}
}

// Complete completes task id with p.Result if p.Lease is its current
// lease, and returns the task.
func (s *Service) Complete(ctx context.Context, id int64, p *CompleteParams) (*store.Task, error) {
	fe := &kinds.Errors{}
	if checkLease(fe, p.Lease); fe.List != nil {
		return nil, &ValidationError{Errors: fe.List}
	}
	if err := s.CheckTask(ctx, id); err != nil {
		return nil, err
	}
	ok, err := s.completions.complete(ctx, store.Completion{ID: id, Token: *p.Lease, Result: p.Result})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.leaseRefused(ctx, id)
	}
	s.releaseLimits(id, *p.Lease)
	return s.store.Task(ctx, id)
}

// Fail ends the attempt of task id if p.Lease is its current lease: the
// task is retried by its policy (after p.RetryAfter instead, when given),
// discarded when p.Permanent or out of attempts, or cancelled when a
// cancellation was asked for. It returns the task.
func (s *Service) Fail(ctx context.Context, id int64, p *FailParams) (*store.Task, error) {
	fe := &kinds.Errors{}
	checkLease(fe, p.Lease)
	switch {
	case p.Error == nil || *p.Error == "":
		fe.Add("error", "is required: what went wrong")
	case len(*p.Error) > FailErrorMax:
		fe.Add("error", "must be at most %d bytes", FailErrorMax)
	case strings.ContainsRune(*p.Error, 0):
		fe.Add("error", "must not contain the NUL character")
	}
	var retryAfter *time.Duration
	if p.RetryAfter != nil {
		d := parseDuration(fe, "retry_after", p.RetryAfter, 0, 0, RetryAfterMax)
		retryAfter = &d
	}
	if fe.List != nil {
		return nil, &ValidationError{Errors: fe.List}
	}
	permanent := p.Permanent != nil && *p.Permanent
	interrupted := p.Interrupted != nil && *p.Interrupted
	if permanent && interrupted {
		return nil, &ValidationError{Errors: []FieldError{{Field: "interrupted", Message: "cannot be given together with permanent"}}}
	}
	if err := s.CheckTask(ctx, id); err != nil {
		return nil, err
	}
	refused, final := false, false
	err := s.store.WithTx(ctx, func(tx pgx.Tx) error {
		refused, final = false, false
		lt, err := s.store.LeaseLockTx(ctx, tx, id, *p.Lease)
		if errors.Is(err, store.ErrNotFound) {
			refused = true
			return nil
		}
		if err != nil {
			return err
		}
		f := store.LeaseFailure{ID: id, Outcome: store.OutcomeFailed, Error: *p.Error}
		switch {
		case permanent:
			f.State = store.StateDiscarded
			f.Error = "permanent: " + f.Error
		case interrupted && !lt.CancelRequested:
			f.State, f.Outcome, f.Interrupted, f.Wait = store.StateAvailable, store.OutcomeInterrupted, true, new(time.Duration(0))
		case lt.CancelRequested:
			f.State, f.Outcome = store.StateCancelled, store.OutcomeCancelled
		case lt.Attempt >= lt.MaxAttempts:
			f.State = store.StateDiscarded
		default:
			// The same policy and computation as River's retries of the
			// tasks taskd runs (jobs.RetryPolicy); the wait is counted on
			// the database's clock.
			now := time.Now()
			policy := s.jobs.Policy(lt.Kind, jobs.ParseOwnPolicy(lt.Policy))
			wait := backoff.NextRetryAt(policy.Backoff, lt.ErrorCount+1, now, rand.Float64()).Sub(now)
			if retryAfter != nil {
				wait = *retryAfter
			}
			f.Wait = &wait
			f.State = store.StateAvailable
			if wait > retryableWithin {
				f.State = store.StateRetryable
			}
		}
		if err := s.store.LeaseFailTx(ctx, tx, f); err != nil {
			return err
		}
		switch f.State {
		case store.StateAvailable:
			return s.store.NotifyQueuesTx(ctx, tx, []string{lt.Queue})
		case store.StateDiscarded, store.StateCancelled:
			final = true
			return s.store.NotifyFinishedTx(ctx, tx, []int64{id})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if final {
		s.then.finished([]int64{id})
	}
	if refused {
		return nil, s.leaseRefused(ctx, id)
	}
	s.releaseLimits(id, *p.Lease)
	return s.store.Task(ctx, id)
}

// releaseLimits gives back the slots the claim under lease took, if any,
// so that they go to the oldest waiting tasks now; a slot not given back
// (a lease that expired) stops counting once its task is no longer
// running.
func (s *Service) releaseLimits(id int64, lease string) {
	s.jobs.Limiter().Release(limits.Grant{TaskID: id, Token: limits.TokenOf(lease)})
}

// limitClaimed asks the cluster-wide limits for each claimed task of a
// limited kind or queue and returns those that may start; the others were
// put back to wait (their leases dropped, their attempts given back) and
// go to the claim that comes when a slot is handed to them.
func (s *Service) limitClaimed(ctx context.Context, claimed []store.ClaimedTask) ([]store.ClaimedTask, error) {
	lim := s.jobs.Limiter()
	var ask []limits.Task
	for _, t := range claimed {
		if lim.Applies(t.Kind, t.Queue) {
			ask = append(ask, limits.Task{ID: t.ID, Kind: t.Kind, Queue: t.Queue, Args: t.Args, Token: limits.TokenOf(t.Lease), Park: true})
		}
	}
	if len(ask) == 0 {
		return claimed, nil
	}
	ds, err := lim.AcquireMany(ctx, ask)
	if err != nil {
		s.GiveBack(ctx, claimed)
		return nil, err
	}
	refused := map[int64]bool{}
	for i, d := range ds {
		if !d.OK {
			refused[ask[i].ID] = true
		}
	}
	kept := claimed[:0:0]
	for _, t := range claimed {
		if !refused[t.ID] {
			kept = append(kept, t)
		}
	}
	return kept, nil
}

// GiveBack returns claimed tasks whose claim never reached its worker (it
// left while the claim ran, or its answer could not be written), as
// interrupted attempts, so that they are offered again at once rather than
// when their leases expire, and do not lose an attempt.
func (s *Service) GiveBack(ctx context.Context, claimed []store.ClaimedTask) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, t := range claimed {
		_, err := s.Fail(ctx, t.ID, &FailParams{Lease: &t.Lease, Error: new("the claim's answer did not reach its worker"), Interrupted: new(true)})
		if err != nil {
			s.logger.Warn("giving back an undelivered claim; the task waits for its lease to expire",
				slog.Int64("task_id", t.ID), slog.String("error", err.Error()))
		}
	}
}

// Heartbeat extends task id's lease by p.Extend from now (default: the
// lease's own length), up to jobs.LeaseLifeMax after the attempt started,
// and tells whether a cancellation was asked for.
func (s *Service) Heartbeat(ctx context.Context, id int64, p *HeartbeatParams) (*client.Heartbeat, error) {
	fe := &kinds.Errors{}
	checkLease(fe, p.Lease)
	var extend *time.Duration
	if p.Extend != nil {
		d := parseDuration(fe, "extend", p.Extend, 0, LeaseMin, LeaseMax)
		extend = &d
	}
	if fe.List != nil {
		return nil, &ValidationError{Errors: fe.List}
	}
	if err := s.CheckTask(ctx, id); err != nil {
		return nil, err
	}
	expires, cancel, err := s.store.LeaseHeartbeat(ctx, id, *p.Lease, extend, jobs.LeaseLifeMax)
	if errors.Is(err, store.ErrNotFound) {
		return nil, s.leaseRefused(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	return &client.Heartbeat{LeaseExpiresAt: expires, CancelRequested: cancel}, nil
}
