package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/push"
	"github.com/taskd/taskd/internal/store"
)

const (
	// attemptBatchMax bounds the attempts written by one statement.
	attemptBatchMax = 1000
	// attemptWriteFor bounds how long the recorder keeps retrying a write
	// that failed, and so how long the completion of its attempts can be
	// held up by it.
	attemptWriteFor = 5 * time.Second
	// attemptRetryMin and attemptRetryMax bound the pause between tries.
	attemptRetryMin = 10 * time.Millisecond
	attemptRetryMax = 500 * time.Millisecond
)

// attemptRecorder writes finished attempts to task_attempts, and River's
// completion of an attempt's task waits until its row is written
// (completionPilot calls awaitWritten before River's statement), so an
// attempt's row is always written before its task's state changes: a
// process killed in between leaves a running task whose finished attempt is
// already recorded, and the rescue (store.RescueLost) uses that row instead
// of adding a "lost" one for the same attempt.
//
// The worker itself does not wait: it returns as soon as its attempt is
// queued, and River's completer, which writes states in batches anyway,
// waits for the rows of its batch, usually written by then. A worker that
// waited for its row kept its goroutine, River's stuck-job watcher and its
// timer alive for a round trip more, which cost taskd's process more CPU
// than writing the row (docs/PERFORMANCE.md, "Round 2, third run").
//
// The recorder commits in groups. It takes the first queued attempt, adds
// whatever else is queued by then (without waiting for more), writes them
// all with one statement and releases the completions that wait for them;
// attempts that finish meanwhile form the next group. Under load groups grow
// by themselves, and an idle service waits for one round trip only.
type attemptRecorder struct {
	store  *store.Store
	logger *slog.Logger
	ch     chan attemptWrite
	done   chan struct{}
	// writeFor is attemptWriteFor; tests shorten it.
	writeFor time.Duration
	// stop is closed when the client stops hard; failed writes are then
	// given up rather than retried.
	stop     chan struct{}
	stopOnce sync.Once
	// suspect, when set, reports whether this process's heartbeat is too
	// old for its running tasks to be safe from a rescue (watchdog.overdue):
	// the attempts of a group written then are checked.
	suspect func() bool
	// pending counts the queued attempts not written yet, by task, for
	// unwritten and awaitWritten; settled is closed (and replaced) each
	// time a group is written or given up on, for awaitWritten to look
	// again. One channel a group, not one an attempt: an attempt's own
	// channel, and its task's slice of them, were allocations and map
	// work on every task.
	mu      sync.Mutex
	pending map[int64]int
	settled chan struct{}
}

// attemptWrite is a queued attempt. waited says a request waits for its
// task; lost reports whether the watchdog cancelled the attempt while it
// ran (see attemptMiddleware.finish).
type attemptWrite struct {
	attempt store.Attempt
	waited  bool
	lost    func() bool
}

func newAttemptRecorder(s *store.Store, logger *slog.Logger) *attemptRecorder {
	return &attemptRecorder{
		store:    s,
		logger:   logger,
		ch:       make(chan attemptWrite, attemptBatchMax),
		done:     make(chan struct{}),
		writeFor: attemptWriteFor,
		stop:     make(chan struct{}),
		pending:  make(map[int64]int),
		settled:  make(chan struct{}),
	}
}

// record queues an attempt for writing; River's completion of its task
// waits until it is written, or until the recorder gave up on it (it never
// fails the task over its attempt row). It blocks only while the queue is
// full.
func (r *attemptRecorder) record(a store.Attempt, waited bool, lost func() bool) {
	r.mu.Lock()
	r.pending[a.TaskID]++
	r.mu.Unlock()
	r.ch <- attemptWrite{attempt: a, waited: waited, lost: lost}
}

// unwritten returns those of the tasks ids that have queued attempts not
// written yet, or nil.
func (r *attemptRecorder) unwritten(ids []int64) map[int64]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	var out map[int64]bool
	for _, id := range ids {
		if r.pending[id] > 0 {
			if out == nil {
				out = make(map[int64]bool)
			}
			out[id] = true
		}
	}
	return out
}

// awaitWritten returns once no attempt of the tasks ids is queued unwritten
// (each written or given up on), or with ctx's error when it ends first.
// An attempt queued after the call is waited for too; River's completer,
// the caller, holds one completion per task, so none is queued meanwhile
// unless this process runs the task again.
func (r *attemptRecorder) awaitWritten(ctx context.Context, ids []int64) error {
	for {
		r.mu.Lock()
		waiting := false
		for _, id := range ids {
			if r.pending[id] > 0 {
				waiting = true
				break
			}
		}
		settled := r.settled
		r.mu.Unlock()
		if !waiting {
			return nil
		}
		select {
		case <-settled:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// settle forgets group's attempts, written or given up on, and wakes the
// waits for them.
func (r *attemptRecorder) settle(group []attemptWrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range group {
		id := w.attempt.TaskID
		if r.pending[id] <= 1 {
			delete(r.pending, id)
		} else {
			r.pending[id]--
		}
	}
	close(r.settled)
	r.settled = make(chan struct{})
}

// run writes queued attempts, a group at a time, until close is called.
func (r *attemptRecorder) run() {
	defer close(r.done)
	group := make([]attemptWrite, 0, attemptBatchMax)
	attempts := make([]store.Attempt, 0, attemptBatchMax)
	var waited []store.Attempt
	for w := range r.ch {
		group = append(group[:0], w)
	drain:
		for len(group) < attemptBatchMax {
			select {
			case w, ok := <-r.ch:
				if !ok {
					break drain
				}
				group = append(group, w)
			default:
				break drain
			}
		}
		attempts, waited = attempts[:0], waited[:0]
		checked := false
		for _, w := range group {
			attempts = append(attempts, w.attempt)
			checked = checked || (w.lost != nil && w.lost())
			if w.waited && w.attempt.Outcome == store.OutcomeCompleted {
				waited = append(waited, w.attempt)
			}
		}
		r.write(attempts, waited, checked)
		r.settle(group)
	}
}

// write stores attempts, retrying for up to writeFor when the
// database fails (a restart, a failover, a lost connection), then logs the
// loss once. River's completions of their tasks wait meanwhile.
//
// The first try is an unchecked COPY: the tasks exist, because this
// process still runs them and River deletes no running job. The group is
// written with the statement that drops attempts of missing tasks
// instead (task_attempts has no foreign key to keep them out) when that
// may not hold: checked (an attempt the watchdog has cancelled), a
// heartbeat too old as the group is written (another process may have
// rescued, run and deleted a task since), and every retry.
func (r *attemptRecorder) write(attempts, waited []store.Attempt, checked bool) {
	// Not tied to the client's context: the last writes run during
	// shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), r.writeFor)
	defer cancel()
	insert := r.store.AttemptInsertMany
	if checked || (r.suspect != nil && r.suspect()) {
		insert = r.store.AttemptInsertMissing
	}
	pause := attemptRetryMin
	for tries := 1; ; tries++ {
		err := insert(ctx, attempts)
		if err == nil {
			r.finishWaited(ctx, waited)
			return
		}
		// The failed write may have committed all the same (a connection
		// lost during the commit), so the retries skip stored attempts;
		// and by the time one gets through, a task may have been rescued,
		// run elsewhere and deleted.
		insert = r.store.AttemptInsertMissing
		select {
		case <-time.After(pause):
			pause = min(2*pause, attemptRetryMax)
			continue
		case <-ctx.Done():
		case <-r.stop:
		}
		r.logger.Error("recording attempts failed; their tasks go on without attempt rows",
			slog.Int("count", len(attempts)), slog.Int("tries", tries), slog.String("error", err.Error()))
		return
	}
}

// finishWaited writes the final state of the tasks of completed attempts
// that requests wait for, after their attempt rows (store.FinishWaited):
// River's batch completer writes a lightly loaded process's states only
// every 250 ms. When it fails, River's completer writes them a little
// later, as it does every task's. Tasks nobody waits for cost nothing here.
func (r *attemptRecorder) finishWaited(ctx context.Context, done []store.Attempt) {
	if len(done) == 0 {
		return
	}
	if err := r.store.FinishWaited(ctx, done); err != nil {
		r.logger.Warn("completing waited-for tasks early failed; River completes them", slog.Int("count", len(done)), slog.String("error", err.Error()))
	}
}

// abandonRetries makes the recorder give up on failed writes at once
// instead of retrying them, for a client that stops hard.
func (r *attemptRecorder) abandonRetries() {
	r.stopOnce.Do(func() { close(r.stop) })
}

// close stops the recorder after writing what is queued. No record may
// follow.
func (r *attemptRecorder) close() {
	close(r.ch)
	<-r.done
}

// attemptMiddleware records every attempt's outcome. It is the innermost
// of taskd's worker middleware, outside River's own handling of the job,
// so that it sees the job's own context (River applies the job timeout
// further in) and panics before River recovers them. Work
// returns (or panics on) once the attempt is queued; River saves the job's
// new state only after its row is written (see attemptRecorder).
type attemptMiddleware struct {
	river.MiddlewareDefaults
	clientID string
	recorder *attemptRecorder
	waited   *waitedSet
}

// Work implements rivertype.WorkerMiddleware.
func (m *attemptMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) (err error) {
	start := time.Now()
	a := store.Attempt{TaskID: job.ID, Attempt: attemptNumber(job), Worker: m.clientID, StartedAt: start}
	note := &attemptNote{}
	ctx = context.WithValue(ctx, attemptNoteKey{}, note)
	ctx, output := kinds.WithOutput(ctx)
	// River's attempted_at as read back from the database (microseconds),
	// so that the rescue can find this attempt's row by it.
	if job.AttemptedAt != nil {
		a.StartedAt = *job.AttemptedAt
	}
	defer func() {
		if p := recover(); p != nil {
			a.HTTPStatus = note.httpStatus
			// The stack of the panicking goroutine, for the attempt's row
			// (River keeps it too, in the error's trace).
			m.finish(ctx, job, a, start, store.OutcomePanic, fmt.Sprintf("%v\n\n%s", p, debug.Stack()))
			panic(p) // River recovers it and records the error.
		}
	}()
	err = doInner(ctx)
	outcome := classify(ctx, err)
	msg := ""
	if err != nil {
		msg = withLostCause(ctx, err).Error()
	}
	a.HTTPStatus = note.httpStatus
	if outcome == store.OutcomeCompleted {
		a.Output = output.JSON
	}
	m.finish(ctx, job, a, start, outcome, msg)
	return err
}

// attemptNote is what a worker tells the attempt middleware about its
// attempt beyond its error: the HTTP status of a pushed attempt.
type attemptNote struct {
	httpStatus int
}

type attemptNoteKey struct{}

// noteHTTPStatus records the status a pushed attempt's endpoint answered
// (0: none), for its attempt row. The worker runs on the middleware's
// goroutine, so no lock is needed.
func noteHTTPStatus(ctx context.Context, status int) {
	if n, ok := ctx.Value(attemptNoteKey{}).(*attemptNote); ok {
		n.httpStatus = status
	}
}

// finish records the attempt. Its task exists while it runs (River
// deletes no running job), so its row is written unchecked, unless the
// watchdog cancelled it (ctx's cause is ErrHeartbeatLost) or the
// heartbeat is overdue when the row is written (attemptRecorder.suspect):
// another process may then rescue, run and delete its task before the row
// gets through, and the row is written only if the task is still there.
func (m *attemptMiddleware) finish(ctx context.Context, job *rivertype.JobRow, a store.Attempt, start time.Time, outcome, msg string) {
	now := time.Now()
	a.FinishedAt = &now
	a.Duration = now.Sub(start)
	a.Outcome = outcome
	a.Error = msg
	m.recorder.record(a, m.waited.take(job), func() bool { return errors.Is(context.Cause(ctx), ErrHeartbeatLost) })
}

// Outcome names the outcome (store.Outcome*) of an attempt whose work
// returned err with job context ctx, as its attempt row does; the metrics
// use it so that their outcomes are the same.
func Outcome(ctx context.Context, err error) string { return classify(ctx, err) }

// classify names the outcome of an attempt that returned err with job
// context ctx.
func classify(ctx context.Context, err error) string {
	if err == nil {
		// Before the errors.As targets below, which escape: a success,
		// the common case, allocates nothing here.
		return store.OutcomeCompleted
	}
	var (
		snoozeErr *rivertype.JobSnoozeError
		cancelErr *rivertype.JobCancelError
	)
	switch {
	case errors.As(err, &snoozeErr):
		return store.OutcomeSnoozed
	case errors.As(err, &cancelErr), errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely):
		return store.OutcomeCancelled
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The job's own context ends early only when the task is cancelled
		// (above) or the client stops: River puts the job back to available.
		return store.OutcomeInterrupted
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, push.ErrTimeout):
		return store.OutcomeTimeout
	}
	return store.OutcomeFailed
}
