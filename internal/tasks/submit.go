package tasks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
)

// Limits on submissions.
const (
	MaxAttemptsMax = 1000
	// MaxDelay bounds "delay" and how far ahead "scheduled_at" may be.
	MaxDelay = 365 * 24 * time.Hour
	MaxTags  = 32
	// MaxTagLength is River's limit.
	MaxTagLength = 255
	// BatchMax is the most tasks one batch may hold.
	BatchMax = 10_000
	// IdempotencyKeyMaxLength bounds the Idempotency-Key header.
	IdempotencyKeyMaxLength = 255
)

// Sentinel errors callers branch on.
var (
	// ErrIdempotencyMismatch: the Idempotency-Key was used before with a
	// different request body.
	ErrIdempotencyMismatch = errors.New("idempotency key was used with a different request")
)

// errKeyTaken says that an insert found its idempotency key taken: a
// batch's transaction is rolled back, a single submission's task is
// removed from its group (submitter).
var errKeyTaken = errors.New("idempotency key taken")

// StateError is returned when a task's state does not allow an operation.
type StateError struct {
	Op    string
	State string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s a task that is %s", e.Op, e.State)
}

// TaskParams is one task as submitted: the public client's TaskRequest,
// the body of POST /v1/tasks and an item of POST /v1/batches.
type TaskParams = client.TaskRequest

// BatchParams is a batch as submitted, the body of POST /v1/batches: its
// tasks, and the task to insert once they are all final (Then, optional).
type BatchParams = client.BatchRequest

// Rules are what a submission is checked against: the kinds a process
// knows and the cluster's configured queues (Config.Queues);
// `taskd config check` makes them from the configuration file alone, so
// that schedules are checked as their tasks' submissions would be, without
// a database.
type Rules struct {
	Kinds *kinds.Registry
	// Queues are the cluster's configured queues, in the order errors
	// list them.
	Queues []string
}

// Check validates p as Submit does; field paths start with prefix.
func (r Rules) Check(p *TaskParams, prefix string) []FieldError {
	_, errs := r.prepare(p, prefix, time.Now(), false)
	return errs
}

func (r Rules) hasQueue(queue string) bool { return slices.Contains(r.Queues, queue) }

// prepare validates p against s's rules (Rules.prepare).
func (s *Service) prepare(p *TaskParams, prefix string, now time.Time) (river.InsertManyParams, []FieldError) {
	return s.rules.prepare(p, prefix, now, false)
}

// prepareTask is prepare; with callback set, p is a batch callback being
// inserted by whichever process decided it, and its queue is not checked
// again: that was done at submit, by the process that accepted the batch,
// whose configuration may have differed.
func (s *Service) prepareTask(p *TaskParams, prefix string, now time.Time, callback bool) (river.InsertManyParams, []FieldError) {
	return s.rules.prepare(p, prefix, now, callback)
}

// prepare validates p and turns it into River insert params. Field paths in
// errors start with prefix. Messages quote client input clipped
// (strictjson.Clip), so that a megabyte-long name does not come back whole
// in the response or go into logs. callback: see Service.prepareTask.
func (r Rules) prepare(p *TaskParams, prefix string, now time.Time, callback bool) (river.InsertManyParams, []FieldError) {
	fe := &kinds.Errors{Prefix: prefix}
	var kind kinds.Kind
	switch {
	case p.Kind == nil || *p.Kind == "":
		fe.Add("kind", "is required; known kinds: %s", strings.Join(r.Kinds.Names(), ", "))
	default:
		var ok bool
		if kind, ok = r.Kinds.Lookup(*p.Kind); !ok {
			fe.Add("kind", "unknown kind %q; known kinds: %s", strictjson.Clip(*p.Kind), strings.Join(r.Kinds.Names(), ", "))
		}
	}
	var args river.JobArgs
	if kind.Decode != nil {
		afe := &kinds.Errors{Prefix: kinds.JoinPath(prefix, "args")}
		args = kind.Decode(p.Args, afe)
		fe.List = append(fe.List, afe.List...)
	}
	opts := &river.InsertOpts{Queue: kind.Queue, MaxAttempts: cmp.Or(kind.MaxAttempts, jobs.MaxAttemptsDefault), Priority: 1}
	if p.Queue != nil && kind.Run == kinds.RunExternal {
		// External workers claim by kind, on any queue: no process needs
		// workers for it.
		opts.Queue = *p.Queue
		if !validQueueName(*p.Queue) {
			fe.Add("queue", "%q is not a queue name: up to 64 lowercase letters and digits, separated by single underscores or hyphens", strictjson.Clip(*p.Queue))
		}
	} else if p.Queue != nil {
		opts.Queue = *p.Queue
		if !callback && !r.hasQueue(*p.Queue) {
			fe.Add("queue", "unknown queue %q; configured queues: %s", strictjson.Clip(*p.Queue), strings.Join(r.Queues, ", "))
		}
	} else if !callback && kind.Name != "" && kind.Run != kinds.RunExternal && !r.hasQueue(kind.Queue) {
		fe.Add("queue", "kind %q runs on queue %q, which is not configured; configured queues: %s",
			kind.Name, kind.Queue, strings.Join(r.Queues, ", "))
	}
	if p.Priority != nil {
		if *p.Priority < 1 || *p.Priority > 4 {
			fe.Add("priority", "must be between 1 and 4")
		}
		opts.Priority = *p.Priority
	}
	if p.MaxAttempts != nil {
		if *p.MaxAttempts < 1 || *p.MaxAttempts > MaxAttemptsMax {
			fe.Add("max_attempts", "must be between 1 and %d", MaxAttemptsMax)
		}
		opts.MaxAttempts = *p.MaxAttempts
	}
	switch {
	case p.ScheduledAt != nil && p.Delay != nil:
		fe.Add("delay", "cannot be given together with scheduled_at")
	case p.ScheduledAt != nil:
		t, err := time.Parse(time.RFC3339Nano, *p.ScheduledAt)
		switch {
		case err != nil:
			fe.Add("scheduled_at", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		case t.After(now.Add(MaxDelay)):
			fe.Add("scheduled_at", "must be less than %s ahead", MaxDelay)
		case t.After(now):
			opts.ScheduledAt = t
		}
		// A time in the past runs the task at once: River would mark any
		// explicit ScheduledAt "scheduled" and leave it to its scheduler,
		// which runs every few seconds.
	case p.Delay != nil:
		d, err := time.ParseDuration(*p.Delay)
		switch {
		case err != nil:
			fe.Add("delay", "must be a duration such as \"90s\" or \"1h30m\"")
		case d < 0 || d > MaxDelay:
			fe.Add("delay", "must be between 0s and %s", MaxDelay)
		case d > 0:
			opts.ScheduledAt = now.Add(d)
		}
	}
	if len(p.Tags) > MaxTags {
		fe.Add("tags", "must have at most %d tags", MaxTags)
	}
	for i, tag := range p.Tags {
		if msg := checkTag(tag); msg != "" {
			fe.Add("tags["+strconv.Itoa(i)+"]", "%s", msg)
		}
	}
	opts.Tags = p.Tags
	own := ownPolicy(p, kind, fe)
	if len(fe.List) > 0 {
		return river.InsertManyParams{}, fe.List
	}
	if own != (jobs.OwnPolicy{}) {
		opts.Metadata, _ = json.Marshal(own) // strings and numbers: cannot fail
	}
	return river.InsertManyParams{Args: args, InsertOpts: opts}, nil
}

// ownPolicy checks the task's own backoff and timeout, adding problems to
// fe, and returns what is kept of them in the task's metadata: only what
// the task sets (jobs.OwnPolicy says why).
func ownPolicy(p *TaskParams, kind kinds.Kind, fe *kinds.Errors) jobs.OwnPolicy {
	var own jobs.OwnPolicy
	if p.Backoff != nil {
		o, problems := backoff.Read(*p.Backoff, kind.BackoffPolicy())
		for _, pr := range problems {
			fe.Add("backoff."+pr.Field, "%s", pr.Message)
		}
		if len(problems) == 0 && !o.IsZero() {
			w := o.Wire()
			own.Backoff = &w
		}
	}
	if p.Timeout != nil {
		lo, hi, what := kinds.TimeoutRange(kind.Run)
		d, err := time.ParseDuration(*p.Timeout)
		switch {
		case err != nil:
			fe.Add("timeout", "must be a duration such as \"30s\" or \"10m\"")
		case d < lo || d > hi:
			fe.Add("timeout", "must be between %s and %s %s", backoff.FormatDuration(lo), backoff.FormatDuration(hi), what)
		default:
			own.Timeout = backoff.FormatDuration(d)
		}
	}
	return own
}

// checkTag applies River's rules for tags, returning a message or "".
func checkTag(tag string) string {
	if len(tag) > MaxTagLength {
		return fmt.Sprintf("must be at most %d characters", MaxTagLength)
	}
	if len(tag) < 3 {
		return "must be at least 3 characters"
	}
	for i, r := range tag {
		word := r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		inner := i > 0 && i < len(tag)-utf8.RuneLen(r)
		if !word && !(r == '-' && inner) {
			return "must consist of letters, digits and underscores, with hyphens only inside (River's tag format)"
		}
	}
	return ""
}

// Submission is the outcome of Submit or SubmitBatch.
type Submission struct {
	// Created is false when an Idempotency-Key matched an earlier request.
	Created bool
	// TaskID is set by Submit, BatchID and TaskIDs (when Created) by
	// SubmitBatch.
	TaskID int64
	// Task is the inserted task, set by Submit when Created.
	Task    *store.Task
	BatchID int64
	TaskIDs []int64
}

// RequestHash returns the hash under which an Idempotency-Key remembers a
// request body: that of its canonical JSON, so formatting and key order do
// not matter.
func RequestHash(body []byte) ([]byte, error) {
	canon, err := strictjson.Canonical(body)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canon)
	return sum[:], nil
}

// Idempotency is an Idempotency-Key with the hash of its request.
type Idempotency struct {
	Key  string
	Hash []byte
}

// Submit validates and inserts one task. With idem set, a repeated request
// returns the first task (Created false), and a different request under the
// same key fails with ErrIdempotencyMismatch.
func (s *Service) Submit(ctx context.Context, p *TaskParams, idem *Idempotency) (*Submission, error) {
	params, errs := s.prepare(p, "", time.Now())
	if errs != nil {
		return nil, &ValidationError{Errors: errs}
	}
	if err := checkSubmitQueues(ctx, []river.InsertManyParams{params}, func(int) string { return "" }, nil); err != nil {
		return nil, err
	}
	// The task joins the next group of single submissions (submitter).
	for try := 0; ; try++ {
		job, err := s.submits.submit(ctx, params, idem)
		if err == nil {
			s.inserted(params)
			return &Submission{Created: true, TaskID: job.ID, Task: taskFromJobRow(job)}, nil
		}
		if !errors.Is(err, errKeyTaken) {
			return nil, err
		}
		k, err := s.takenKey(ctx, idem, true)
		if errors.Is(err, store.ErrNotFound) && try < 3 {
			continue // its task was deleted in between; the key is free again
		}
		if err != nil {
			return nil, err
		}
		return &Submission{TaskID: k.TaskID}, nil
	}
}

// SubmitBatch validates every task, and the callback b.Then if any, then
// inserts the tasks and the batch in one transaction, or nothing when
// anything is invalid. Errors name "tasks[i].field" and "then.field". The
// callback is validated now and again when it is inserted, once every
// task of the batch is final (see thenRunner); its delay counts from then.
func (s *Service) SubmitBatch(ctx context.Context, b *BatchParams, idem *Idempotency) (*Submission, error) {
	ps := b.Tasks
	var errs []FieldError
	if len(ps) == 0 || len(ps) > BatchMax {
		errs = append(errs, FieldError{Field: "tasks", Message: fmt.Sprintf("must hold between 1 and %d tasks", BatchMax)})
		ps = nil // the items of an oversized batch are not looked at
	}
	now := time.Now()
	params := make([]river.InsertManyParams, len(ps))
	for i := range ps {
		// Paths are made relative to the item and prefixed only when
		// there are problems: a prefix per valid item would cost
		// allocations for nothing.
		p, ferrs := s.prepare(&ps[i], "", now)
		for _, fe := range ferrs {
			errs = append(errs, FieldError{Field: kinds.JoinPath("tasks["+strconv.Itoa(i)+"]", fe.Field), Message: fe.Message})
		}
		params[i] = p
	}
	var thenParams *river.InsertManyParams
	if b.Then != nil {
		tp, ferrs := s.prepare(b.Then, "then", now)
		errs = append(errs, ferrs...)
		thenParams = &tp
	}
	if errs != nil {
		return nil, &ValidationError{Errors: errs}
	}
	// A tenant's batch may not mix in other queues, its callback's included.
	if err := checkSubmitQueues(ctx, params, func(i int) string { return "tasks[" + strconv.Itoa(i) + "]." }, thenParams); err != nil {
		return nil, err
	}
	var then json.RawMessage
	if b.Then != nil {
		var err error
		if then, err = json.Marshal(b.Then); err != nil {
			return nil, fmt.Errorf("encoding the batch callback: %w", err)
		}
	}
	var sub *Submission
	err := s.insert(ctx, idem, func(tx pgx.Tx) (store.IdempotencyKey, error) {
		batchID, err := s.store.BatchNextIDTx(ctx, tx)
		if err != nil {
			return store.IdempotencyKey{}, err
		}
		// Every task carries its batch, for pushes and claims.
		batchMeta := []byte(`{"batch_id":` + strconv.FormatInt(batchID, 10) + `}`)
		for i := range params {
			params[i].InsertOpts.Metadata = withBatch(params[i].InsertOpts.Metadata, batchMeta)
		}
		// InsertManyTx returns the rows in submission order (River's
		// InsertManyFast uses COPY and returns no IDs).
		res, err := s.river.InsertManyTx(ctx, tx, params)
		if err != nil {
			return store.IdempotencyKey{}, fmt.Errorf("inserting batch: %w", err)
		}
		if err := s.notifyClaims(ctx, tx, params); err != nil {
			return store.IdempotencyKey{}, err
		}
		ids := make([]int64, len(res))
		for i, r := range res {
			ids[i] = r.Job.ID
		}
		batch, err := s.store.BatchInsertTx(ctx, tx, batchID, ids, then)
		if err != nil {
			return store.IdempotencyKey{}, err
		}
		sub = &Submission{Created: true, BatchID: batch.ID, TaskIDs: ids}
		return store.IdempotencyKey{BatchID: batch.ID}, nil
	}, func(k *store.IdempotencyKey) {
		sub = &Submission{BatchID: k.BatchID}
	})
	if err == nil && sub.Created {
		s.inserted(params...)
	}
	return sub, err
}

// withBatch adds the batch's metadata ({"batch_id": N}) to a task's own,
// if any.
func withBatch(own, batch []byte) []byte {
	if len(own) == 0 {
		return batch // shared by the batch's tasks; River only reads it
	}
	m := map[string]json.RawMessage{}
	// Both are objects taskd just marshalled.
	_ = json.Unmarshal(own, &m)
	_ = json.Unmarshal(batch, &m)
	out, _ := json.Marshal(m)
	return out
}

// insert runs insertFn, which inserts a batch, in a transaction together
// with the idempotency key, if any. When the key exists already, the
// transaction is rolled back and existing is called with the stored key
// instead. (Single submissions store their keys through the submitter.)
func (s *Service) insert(ctx context.Context, idem *Idempotency, insertFn func(pgx.Tx) (store.IdempotencyKey, error), existing func(*store.IdempotencyKey)) error {
	for try := 0; ; try++ {
		err := s.store.WithTx(ctx, func(tx pgx.Tx) error {
			k, err := insertFn(tx)
			if err != nil || idem == nil {
				return err
			}
			k.Key, k.RequestHash = idem.Key, idem.Hash
			ok, err := s.store.IdempotencyKeyInsertTx(ctx, tx, k)
			if err != nil {
				return err
			}
			if !ok {
				return errKeyTaken
			}
			return nil
		})
		if !errors.Is(err, errKeyTaken) {
			return err
		}
		k, err := s.takenKey(ctx, idem, false)
		if errors.Is(err, store.ErrNotFound) && try < 3 {
			continue // its task was deleted in between; the key is free again
		}
		if err != nil {
			return err
		}
		existing(k)
		return nil
	}
}

// takenKey returns the stored key idem found taken, if it was taken by
// the same request (for a task, or else a batch, as forTask says), or
// ErrIdempotencyMismatch; store.ErrNotFound when it is gone again (its
// task or batch deleted since).
func (s *Service) takenKey(ctx context.Context, idem *Idempotency, forTask bool) (*store.IdempotencyKey, error) {
	k, err := s.store.IdempotencyKey(ctx, idem.Key)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(k.RequestHash, idem.Hash) || forTask != (k.TaskID != 0) {
		return nil, ErrIdempotencyMismatch
	}
	return k, nil
}

// Cancel cancels a task. A task not yet running is cancelled at once; a
// running one is asked to stop and stays running until its worker returns.
// Finished tasks give a *StateError; a task of another queue than a
// tenant's, store.ErrNotFound.
func (s *Service) Cancel(ctx context.Context, id int64) error {
	if err := s.CheckTask(ctx, id); err != nil {
		return err
	}
	return s.cancel(ctx, id)
}

// cancel is Cancel without the tenant's check.
func (s *Service) cancel(ctx context.Context, id int64) error {
	cancelled := false
	err := s.store.WithTx(ctx, func(tx pgx.Tx) error {
		cancelled = false
		state, err := s.store.TaskLockStateTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if store.IsFinal(state) {
			return &StateError{Op: "cancel", State: state}
		}
		job, err := s.river.JobCancelTx(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("cancelling task %d: %w", id, interpretRiverError(err))
		}
		if job.State == rivertype.JobStateCancelled {
			// Not running: final now, so its waiters can go.
			cancelled = true
			return s.store.NotifyFinishedTx(ctx, tx, []int64{id})
		}
		return nil
	})
	if err == nil && cancelled {
		s.then.finished([]int64{id})
	}
	return err
}

// Retry makes a retryable, completed, cancelled or discarded task available
// to run again now. Tasks waiting or running give a *StateError; a task of
// another queue than a tenant's, store.ErrNotFound.
func (s *Service) Retry(ctx context.Context, id int64) error {
	if err := s.CheckTask(ctx, id); err != nil {
		return err
	}
	return s.store.WithTx(ctx, func(tx pgx.Tx) error {
		state, err := s.store.TaskLockStateTx(ctx, tx, id)
		if err != nil {
			return err
		}
		switch state {
		case store.StateRetryable, store.StateCompleted, store.StateCancelled, store.StateDiscarded:
		default:
			return &StateError{Op: "retry", State: state}
		}
		if _, err := s.river.JobRetryTx(ctx, tx, id); err != nil {
			return fmt.Errorf("retrying task %d: %w", id, interpretRiverError(err))
		}
		return s.store.TaskClearResultTx(ctx, tx, id)
	})
}

func interpretRiverError(err error) error {
	if errors.Is(err, rivertype.ErrNotFound) {
		return store.ErrNotFound
	}
	return err
}

// taskFromJobRow maps a freshly inserted job to a store.Task, saving a read.
func taskFromJobRow(j *rivertype.JobRow) *store.Task {
	t := &store.Task{
		ID:          j.ID,
		Kind:        j.Kind,
		Queue:       j.Queue,
		State:       string(j.State),
		Args:        json.RawMessage(j.EncodedArgs),
		Priority:    j.Priority,
		Attempt:     j.Attempt,
		MaxAttempts: j.MaxAttempts,
		Tags:        j.Tags,
		CreatedAt:   j.CreatedAt,
		ScheduledAt: j.ScheduledAt,
		StartedAt:   j.AttemptedAt,
		FinishedAt:  j.FinalizedAt,
		Errors:      []store.TaskError{},
		Attempts:    []store.Attempt{},
	}
	// What store.Task.Policy holds: the task's own policy alone.
	if own := jobs.ParseOwnPolicy(j.Metadata); own != (jobs.OwnPolicy{}) {
		t.Policy, _ = json.Marshal(own)
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	return t
}

var validQueueName = kinds.QueueNameOK

// notifyClaims announces inserted tasks of external kinds to waiting
// claims, on commit. River announces inserts too, but at most once per
// queue per fetch cooldown and client, so that under a stream of
// submissions a second waiting claim would sleep until the periodic
// recheck; claims wait on this, River's fetchers are only woken once more.
func (s *Service) notifyClaims(ctx context.Context, tx pgx.Tx, params []river.InsertManyParams) error {
	var queues []string
	for _, p := range params {
		if k, ok := s.jobs.Kinds().Lookup(p.Args.Kind()); ok && k.Run == kinds.RunExternal && !slices.Contains(queues, p.InsertOpts.Queue) {
			queues = append(queues, p.InsertOpts.Queue)
		}
	}
	if len(queues) == 0 {
		return nil
	}
	return s.store.NotifyQueuesTx(ctx, tx, queues)
}

// CancelBatch cancels every task of batch id that is not final yet (as
// Cancel does each) and returns the batch as it is afterwards. A batch a
// tenant may not see (BatchVisible) is store.ErrNotFound.
func (s *Service) CancelBatch(ctx context.Context, id int64) (*store.Batch, error) {
	b, err := s.store.Batch(ctx, id)
	if err != nil {
		return nil, err
	}
	if !BatchVisible(ctx, b) {
		return nil, fmt.Errorf("batch %d: %w", id, store.ErrNotFound)
	}
	for _, t := range b.Tasks {
		if store.IsFinal(t.State) {
			continue
		}
		var serr *StateError
		if err := s.cancel(ctx, t.ID); err != nil && !errors.As(err, &serr) && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return s.store.Batch(ctx, id)
}
