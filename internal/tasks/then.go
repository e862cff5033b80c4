package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// Batch callbacks ("then").
const (
	// ThenRecheckIntervalDefault bounds how long a batch callback waits when
	// the check after its batch's last task was lost (a process killed
	// between the task's final write and the check, River dropping
	// events when its subscription is full, a check that failed): every
	// process looks at the pending callbacks this often, with one query.
	ThenRecheckIntervalDefault = 2 * time.Second
	// thenCheckSpacing is the least time between two checks of one batch,
	// however many of its tasks finish meanwhile: a check reads every task
	// of the batch, and a 10,000-task batch must not be read once per
	// task.
	thenCheckSpacing = 50 * time.Millisecond
	// thenLookupSpacing is the least time between two lookups of the
	// batches of finished tasks (one query each): under a stream of
	// completions, one lookup covers all that finished meanwhile.
	thenLookupSpacing = 10 * time.Millisecond
	// thenRecheckMax bounds the batches one recheck looks at; the next
	// recheck goes on after the last of them.
	thenRecheckMax = 100
	// thenQueueMax bounds the finished tasks waiting for a lookup; beyond
	// it (the database is down, say), they are left to the recheck.
	thenQueueMax = 100_000
	// thenTimeout bounds one lookup or decision.
	thenTimeout = 30 * time.Second
)

// thenRunner inserts the callbacks of batches (POST /v1/batches "then"):
// one task per batch, exactly once, once every task of the batch is final.
//
// Whichever process sees a batch possibly done decides it with one
// transaction: BatchThenDecide marks the callback decided only while it
// is undecided and no task of the batch is unfinished, and the callback
// task is inserted in the same transaction. Two processes deciding at once
// are serialized by the batch's row lock, and the second finds the
// callback decided; a process that dies mid-way rolls back. The checks run
// (a) right after tasks of batches become final in this process (River's
// events through jobs.Config.FinishedFunc, cancels, the completions and
// failures of external workers, rescues and expired leases), batch by
// batch at most every thenCheckSpacing, and (b) every recheck interval for
// the pending callbacks of every batch, for the checks that were lost.
//
// Only callbacks of kinds this process knows are looked at: in a cluster
// whose processes know different kinds, a process that cannot build the
// callback's args leaves it to one that can (its recheck finds it).
type thenRunner struct {
	svc          *Service
	logger       *slog.Logger
	recheckEvery time.Duration

	mu sync.Mutex
	// queued are tasks that became final, whose batches are to be looked
	// up; queuedBatches are batches of such tasks, known already.
	queued        []int64
	queuedBatches []int64
	wake          chan struct{} // holds at most one pending wake-up
}

func newThenRunner(svc *Service, logger *slog.Logger, recheckEvery time.Duration) *thenRunner {
	return &thenRunner{svc: svc, logger: logger, recheckEvery: recheckEvery, wake: make(chan struct{}, 1)}
}

// finished queues ids, tasks that became final, for a check of their
// batches. It never blocks.
func (r *thenRunner) finished(ids []int64) {
	r.queue(&r.queued, ids)
}

// batchesFinished queues ids, the batches of tasks that became final, for
// a check. It never blocks.
func (r *thenRunner) batchesFinished(ids []int64) {
	r.queue(&r.queuedBatches, ids)
}

func (r *thenRunner) queue(q *[]int64, ids []int64) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	if len(*q)+len(ids) <= thenQueueMax {
		*q = append(*q, ids...)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *thenRunner) hasQueued() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queued) > 0 || len(r.queuedBatches) > 0
}

// take returns what is queued, each batch once.
func (r *thenRunner) take() (tasks, batches []int64) {
	r.mu.Lock()
	tasks, batches = r.queued, r.queuedBatches
	r.queued, r.queuedBatches = nil, nil
	r.mu.Unlock()
	slices.Sort(batches)
	return tasks, slices.Compact(batches)
}

// run checks batches until ctx ends, then once more for the tasks queued
// by then.
func (r *thenRunner) run(ctx context.Context) {
	kinds := r.svc.jobs.Kinds().Names()
	var (
		// due holds the batches to check, with when; last, when each was
		// checked, for those checked within thenCheckSpacing.
		due        = map[int64]time.Time{}
		last       = map[int64]time.Time{}
		lastLookup time.Time
		cursor     int64
	)
	check := func(id int64) {
		r.decide(ctx, id)
		last[id] = time.Now()
	}
	recheck := time.NewTicker(r.recheckEvery)
	defer recheck.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// At once, too: a process restarted after a crash finishes what it
	// left undecided.
	cursor = r.recheck(ctx, kinds, cursor, check)
	for {
		select {
		case <-ctx.Done():
			r.drain(context.WithoutCancel(ctx), kinds)
			return
		case <-r.wake:
		case <-timer.C:
		case <-recheck.C:
			cursor = r.recheck(ctx, kinds, cursor, check)
		}
		now := time.Now()
		var next time.Time
		if since := now.Sub(lastLookup); since < thenLookupSpacing && r.hasQueued() {
			next = now.Add(thenLookupSpacing - since)
		} else if tasks, batches := r.take(); len(tasks) > 0 || len(batches) > 0 {
			lastLookup = now
			for _, b := range r.lookup(ctx, tasks, batches, kinds) {
				if _, ok := due[b]; !ok {
					due[b] = last[b].Add(thenCheckSpacing)
				}
			}
		}
		for b, at := range due {
			if !at.After(now) {
				check(b)
				delete(due, b)
			} else if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		for b, at := range last {
			if time.Since(at) >= thenCheckSpacing {
				delete(last, b)
			}
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// lookup returns the batches whose callbacks are pending among those of
// the tasks and batches. On failure it logs and returns what it found:
// the recheck finds the rest.
func (r *thenRunner) lookup(ctx context.Context, tasks, batches []int64, kinds []string) []int64 {
	ctx, cancel := context.WithTimeout(ctx, thenTimeout)
	defer cancel()
	var found []int64
	if len(tasks) > 0 {
		ids, err := r.svc.store.BatchThenCandidates(ctx, tasks, kinds)
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("looking up the batches of finished tasks failed; their callbacks wait for the recheck",
				slog.Int("tasks", len(tasks)), slog.String("error", err.Error()))
		}
		found = ids
	}
	if len(batches) > 0 {
		ids, err := r.svc.store.BatchThenCandidatesByID(ctx, batches, kinds)
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("looking up the finished tasks' batches failed; their callbacks wait for the recheck",
				slog.Int("batches", len(batches)), slog.String("error", err.Error()))
		}
		found = append(found, ids...)
	}
	return found
}

// recheck decides the callbacks of up to thenRecheckMax pending batches
// after cursor that are done, and returns where the next recheck goes on.
func (r *thenRunner) recheck(ctx context.Context, kinds []string, cursor int64, check func(int64)) int64 {
	qctx, cancel := context.WithTimeout(ctx, thenTimeout)
	pending, err := r.svc.store.BatchThenPending(qctx, cursor, kinds, thenRecheckMax)
	cancel()
	if err != nil {
		// The next tick tries again; a database that is down is reported
		// by everything else.
		r.logger.Debug("rechecking batch callbacks failed", slog.String("error", err.Error()))
		return cursor
	}
	for _, p := range pending {
		if p.Done {
			check(p.BatchID)
		}
	}
	if len(pending) < thenRecheckMax {
		return 0
	}
	return pending[len(pending)-1].BatchID
}

// drain decides, at shutdown, the batches of the tasks queued so far,
// within thenTimeout, so that a graceful stop leaves nothing for the
// other processes' recheck.
func (r *thenRunner) drain(ctx context.Context, kinds []string) {
	tasks, batches := r.take()
	if len(tasks) == 0 && len(batches) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, thenTimeout)
	defer cancel()
	for _, b := range r.lookup(ctx, tasks, batches, kinds) {
		r.decide(ctx, b)
	}
}

// decide runs the guard for batch id and, when it finds the batch done
// with its callback undecided, inserts the callback in the same
// transaction.
func (r *thenRunner) decide(ctx context.Context, id int64) {
	ctx, cancel := context.WithTimeout(ctx, thenTimeout)
	defer cancel()
	var (
		taskID  int64
		invalid string
		params  river.InsertManyParams
	)
	err := r.svc.store.WithTx(ctx, func(tx pgx.Tx) error {
		taskID, invalid = 0, "" // WithTx may run this twice
		req, ok, err := r.svc.store.BatchThenDecideTx(ctx, tx, id)
		if err != nil || !ok {
			return err
		}
		params, taskID, invalid, err = r.svc.insertThenTx(ctx, tx, id, req)
		return err
	})
	if err == nil && taskID != 0 {
		r.svc.inserted(params)
	}
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.logger.Warn("deciding a batch callback failed; the recheck tries again",
				slog.Int64("batch_id", id), slog.String("error", err.Error()))
		}
	case invalid != "":
		// Logged once: the callback is decided now, and never looked at
		// again.
		r.logger.Warn("batch callback not inserted: its request no longer validates (see the batch's then_error)",
			slog.Int64("batch_id", id), slog.String("error", invalid))
	case taskID != 0:
		r.logger.Debug("batch callback inserted", slog.Int64("batch_id", id), slog.Int64("task_id", taskID))
	}
}

// insertThenTx validates the callback request of batch batchID, decided
// in tx, again, and inserts it with {"after_batch": batchID} in its
// metadata, recording its task ID. When the request no longer validates
// (the configuration changed since the batch was submitted), it records
// why instead and returns that as invalid.
func (s *Service) insertThenTx(ctx context.Context, tx pgx.Tx, batchID int64, req json.RawMessage) (inserted river.InsertManyParams, taskID int64, invalid string, err error) {
	var p TaskParams
	err = json.Unmarshal(req, &p)
	if string(p.Args) == "null" {
		p.Args = nil // stored for a request without args: decoded as at submit
	}
	if err != nil {
		invalid = "the stored request cannot be read: " + err.Error()
	} else if params, errs := s.prepareTask(&p, "then", time.Now(), true); errs != nil {
		invalid = (&ValidationError{Errors: errs}).Error()
	} else {
		params.InsertOpts.Metadata = []byte(`{"after_batch":` + strconv.FormatInt(batchID, 10) + `}`)
		res, err := s.river.InsertTx(ctx, tx, params.Args, params.InsertOpts)
		if err != nil {
			return params, 0, "", fmt.Errorf("inserting the callback of batch %d: %w", batchID, err)
		}
		if err := s.notifyClaims(ctx, tx, []river.InsertManyParams{params}); err != nil {
			return params, 0, "", err
		}
		return params, res.Job.ID, "", s.store.BatchThenSetTaskTx(ctx, tx, batchID, res.Job.ID)
	}
	return river.InsertManyParams{}, 0, invalid, s.store.BatchThenSetErrorTx(ctx, tx, batchID, invalid)
}
