package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

// ErrHeartbeatLost is the cause (context.Cause) of the context of an
// attempt that the process stopped because it could not heartbeat for so
// long that another process may soon rescue the task and run it again.
var ErrHeartbeatLost = errors.New("heartbeat lost")

// watchdog stops this process's attempts before another process may rescue
// their tasks. The rescue (store.RescueLost) re-runs the tasks of a process
// whose heartbeat is older than RescueAfter by the database's clock, but a
// process cut off from the database keeps working them: without the
// watchdog, two processes would run one task at once for as long as the cut
// lasts.
//
// Its reference point is the start, by this process's monotonic clock, of
// the last heartbeat that succeeded. The heartbeat's timestamp (PostgreSQL's
// now()) is taken after that start, so no other process may rescue before
// that start plus RescueAfter. The watchdog cancels every running attempt
// bound (RescueAfter minus half a HeartbeatInterval) after that start, and
// until a heartbeat succeeds again an attempt that starts does not run: it
// snoozes for a HeartbeatInterval, which gives River's attempt back (River
// v0.51.2 saves a snooze with attempt - 1), so that a long cut does not
// use up the attempts of the tasks River keeps fetching meanwhile. A timer
// set for the deadline, not the heartbeat call (which may hang), decides
// when.
//
// Every fetch whose completion may land after another process took the task
// over is remembered (stale) for the pilot (completionPilot) to check: the
// attempts cancelled, those snoozed while the heartbeat is lost, those that
// had returned before it was lost but whose completions River's completer
// still holds (heldSet.unsettled), and the fetches the orphan rescue took
// back (guardRescued).
type watchdog struct {
	bound time.Duration
	// snooze is how long an attempt that starts while the heartbeat is
	// lost waits before River offers its task again: a HeartbeatInterval.
	snooze time.Duration
	logger *slog.Logger
	// held is the process's fetches (nil in tests that need none): those
	// that returned but whose completions River has not saved are guarded
	// too when the heartbeat is lost.
	held *heldSet

	mu sync.Mutex
	// beatAt is the start of the last heartbeat that succeeded.
	beatAt time.Time
	// lost says attempts were cancelled and no heartbeat succeeded since.
	lost bool
	// running are the cancels of the attempts in progress.
	running map[*attemptCancel]struct{}
	// stale are the guarded fetches whose completion River has not
	// written yet, by task ID: the pilot (completionPilot) writes their
	// completions only if their fetch still owns the task. An entry is
	// never replaced by one of another fetch (guardLocked), but for a
	// rerun's own, which supersedes it.
	stale map[int64]*staleAttempt
	// beaten wakes run to set its timer from a new beatAt.
	beaten chan struct{}
}

// attemptCancel is an attempt in progress: its task, which fetch of it it
// is, and how to cancel it.
type attemptCancel struct {
	id          int64
	attempt     int
	attemptedAt *time.Time
	cancel      context.CancelCauseFunc
	// cancelled says the watchdog cancelled it already.
	cancelled bool
}

// staleAttempt is an attempt the watchdog cancelled, which another process
// may have rescued and run again since: River's attempt and attempted_at,
// which say which fetch of the task it was.
type staleAttempt struct {
	attempt     int
	attemptedAt *time.Time
	// rerun is this process's own later attempt of the task, while it runs
	// (nil otherwise): River writes its completion only after it returns,
	// so a completion meanwhile is the stale attempt's.
	rerun *attemptCancel
	// done is closed once the completion was written or dropped.
	done chan struct{}
	// rescued is when the orphan rescue took the fetch back (zero for the
	// watchdog's own entries). No completion of it may be queued at all,
	// so a rerun does not wait for one, and the entry is forgotten after
	// rescuedGuardFor.
	rescued time.Time
}

// sameFetch reports whether s is the fetch attempt, attemptedAt.
func (s *staleAttempt) sameFetch(attempt int, attemptedAt *time.Time) bool {
	if s.attempt != attempt {
		return false
	}
	if s.attemptedAt == nil || attemptedAt == nil {
		return s.attemptedAt == nil && attemptedAt == nil
	}
	return s.attemptedAt.Equal(*attemptedAt)
}

// rescuedGuardFor is how long the guard of a fetch the orphan rescue took
// back is kept: a completion of it would have had to wait in River's
// completer all that time, the database unreachable.
const rescuedGuardFor = time.Hour

// watchdogMargin is how much earlier than RescueAfter after the last good
// heartbeat's start the watchdog cancels attempts: half a heartbeat
// interval. It must be less than RescueAfter minus one HeartbeatInterval,
// the gap between two heartbeats that succeed on time (Validate's rule,
// RescueAfter >= 2*HeartbeatInterval, leaves half an interval of it); what
// it leaves before the earliest rescue is the time a cancelled attempt has
// to return before its task may run elsewhere (2.5 s by default).
func watchdogMargin(heartbeatInterval time.Duration) time.Duration {
	return heartbeatInterval / 2
}

func newWatchdog(rescueAfter, heartbeatInterval time.Duration, logger *slog.Logger) *watchdog {
	return &watchdog{
		bound:   rescueAfter - watchdogMargin(heartbeatInterval),
		snooze:  heartbeatInterval,
		logger:  logger,
		running: make(map[*attemptCancel]struct{}),
		stale:   make(map[int64]*staleAttempt),
		beaten:  make(chan struct{}, 1),
	}
}

// beat records a heartbeat that succeeded and had started at start.
func (w *watchdog) beat(start time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	silent := start.Sub(w.beatAt)
	if start.After(w.beatAt) {
		w.beatAt = start
	}
	if w.lost {
		w.lost = false
		w.logger.Info("heartbeats recovered; working tasks again", slog.Duration("silent", silent))
	}
	select {
	case w.beaten <- struct{}{}:
	default:
	}
}

// causeLocked returns the cause to cancel attempts with at now, or nil while
// the heartbeat is fresh enough.
func (w *watchdog) causeLocked(now time.Time) error {
	silent := now.Sub(w.beatAt)
	if silent <= w.bound {
		return nil
	}
	return fmt.Errorf("%w for %s: stopping so that another process may run the task again",
		ErrHeartbeatLost, silent.Round(time.Millisecond))
}

// overdue reports whether the heartbeat is older than the watchdog's bound:
// from then on other processes may rescue this one's running tasks (at
// RescueAfter, HeartbeatInterval/2 later).
func (w *watchdog) overdue() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.causeLocked(time.Now()) != nil
}

// check cancels the running attempts when the heartbeat is stale at now,
// and returns how long until it should check again.
func (w *watchdog) check(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	cause := w.causeLocked(now)
	if cause == nil {
		return w.beatAt.Add(w.bound).Sub(now) + time.Millisecond
	}
	for a := range w.running {
		w.cancelLocked(a, cause)
	}
	if !w.lost {
		w.lost = true
		w.logger.Warn("heartbeat lost; cancelling running tasks, which other processes will run again",
			slog.Int("count", len(w.running)), slog.Duration("silent", now.Sub(w.beatAt)))
		// Attempts that returned just before: River's completer may hold
		// their completions as long as the database is away, and another
		// process may run their tasks again meanwhile. (Later returns
		// were cancelled or snoozed, and are guarded already.)
		if w.held != nil {
			for _, f := range w.held.unsettled() {
				w.guardLocked(f.id, f.attempt, f.attemptedAt, nil)
			}
		}
	}
	// Attempts that start meanwhile snooze (Work), and the next heartbeat
	// that succeeds sets the timer again (run).
	return w.bound
}

// cancelLocked cancels a, unless it did already, and remembers it as stale
// until River wrote or dropped its completion.
func (w *watchdog) cancelLocked(a *attemptCancel, cause error) {
	if a.cancelled {
		return
	}
	a.cancelled = true
	a.cancel(cause)
	w.guardLocked(a.id, a.attempt, a.attemptedAt, a)
}

// guardLocked remembers the fetch attempt, attemptedAt of task id as
// stale, and returns its entry if it made a new one. An entry of another
// fetch of the task stays, its done still to be closed by the pilot, but
// for the one a (the fetch being cancelled) runs again after: a's own
// completion replaces that one in River's completer.
func (w *watchdog) guardLocked(id int64, attempt int, attemptedAt *time.Time, a *attemptCancel) *staleAttempt {
	if s := w.stale[id]; s != nil {
		if s.sameFetch(attempt, attemptedAt) || a == nil || s.rerun != a {
			return nil
		}
		close(s.done)
	}
	s := &staleAttempt{attempt: attempt, attemptedAt: attemptedAt, done: make(chan struct{})}
	w.stale[id] = s
	return s
}

// guardRescued remembers the fetches the orphan rescue took back at now,
// and forgets those it took back longer than rescuedGuardFor ago.
func (w *watchdog) guardRescued(rescued []store.RescuedTask, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, s := range w.stale {
		if !s.rescued.IsZero() && now.Sub(s.rescued) > rescuedGuardFor {
			delete(w.stale, id)
			close(s.done)
		}
	}
	for _, r := range rescued {
		if s := w.guardLocked(r.TaskID, r.Attempt, r.AttemptedAt, nil); s != nil {
			s.rescued = now
		}
	}
}

// staleView is a stale attempt as the pilot saw it when a batch of
// completions began.
type staleView struct {
	entry *staleAttempt
	staleAttempt
}

// staleAmong returns the stale attempts of the tasks ids, nil when there
// are none (the normal case, which costs a map lookup per task).
func (w *watchdog) staleAmong(ids []int64) map[int64]staleView {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.stale) == 0 {
		return nil
	}
	var found map[int64]staleView
	for _, id := range ids {
		if s := w.stale[id]; s != nil {
			if found == nil {
				found = make(map[int64]staleView)
			}
			found[id] = staleView{entry: s, staleAttempt: *s}
		}
	}
	return found
}

// forget drops the stale attempts whose completions were written or
// dropped, unless another attempt of their task was cancelled since.
func (w *watchdog) forget(done map[int64]staleView) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, s := range done {
		if w.stale[id] == s.entry {
			delete(w.stale, id)
			close(s.entry.done)
		}
	}
}

// run checks at each deadline until ctx is done. A heartbeat that
// succeeds sets the timer again: after a recovery, the new deadline may
// come before the one the timer was set for, since the heartbeat that
// succeeded may have started before the check that found the last stale.
func (w *watchdog) run(ctx context.Context) {
	t := time.NewTimer(w.check(time.Now()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.beaten:
		}
		t.Reset(w.check(time.Now()))
	}
}

// watchdogMiddleware gives every attempt a context that the watchdog can
// cancel. It runs outside the attempt middleware, so that the attempt's row
// calls it interrupted and says why; an attempt that starts while the
// heartbeat is lost snoozes before the attempt middleware, and so has no
// row, as a task the limits put back has none: River gives its attempt
// back.
type watchdogMiddleware struct {
	river.MiddlewareDefaults
	watchdog *watchdog
}

// Work implements rivertype.WorkerMiddleware.
func (m *watchdogMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	w := m.watchdog
	w.mu.Lock()
	if w.causeLocked(time.Now()) != nil {
		// A task fetched just before the database went away must not run
		// on either: another process may soon rescue it. River keeps
		// fetching meanwhile, so the attempt is given back (a snooze), not
		// used up; its snooze is guarded like any stale completion, lest
		// it land on a rescuer's run. An entry of an earlier fetch stays,
		// and then drops the snooze as well: the task is then this
		// process's orphan, which it takes back once it heartbeats again.
		w.guardLocked(job.ID, job.Attempt, job.AttemptedAt, nil)
		w.mu.Unlock()
		return river.JobSnooze(w.snooze)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a := &attemptCancel{id: job.ID, attempt: job.Attempt, attemptedAt: job.AttemptedAt, cancel: cancel}
	// This process runs the task again while the completion of an attempt
	// it cancelled before is still to be written (River keeps retrying
	// it); see waitStale.
	stale := w.stale[job.ID]
	if stale != nil {
		stale.rerun = a
	}
	w.running[a] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, a)
		if stale != nil && w.stale[job.ID] == stale {
			// The wait ended early; River writes this attempt's
			// completion next, and replaces the stale one with it if
			// that is still queued.
			delete(w.stale, job.ID)
			close(stale.done)
		}
		w.mu.Unlock()
	}()
	if stale != nil && stale.rescued.IsZero() {
		w.waitStale(ctx, job, stale)
	}
	return withLostCause(ctx, doInner(ctx))
}

// staleWaitMax bounds waitStale: about the longest River's completer spends
// on one batch before it requeues it (three tries of up to 10 s each, with
// 1, 2 and 4 s between them; internal/jobcompleter in River v0.51.2).
const staleWaitMax = 40 * time.Second

// waitStale holds up an attempt of a task whose earlier attempt, on this
// process, the watchdog cancelled and River has not yet written the
// completion of, until the pilot dropped that completion (it drops it
// while this attempt runs: staleView.owns), ctx ends or staleWaitMax
// passed. River's completer may be retrying the stale completion in a batch
// begun before this attempt started, so once this attempt returned, its
// own completion and the stale one could no longer be told apart; while it
// waits here, they can. The wait is short once the database answers
// (River's completer writes every 250 ms), and happens only in this case.
// Past staleWaitMax the attempt runs all the same, unguarded, so that a
// completion lost on the way (River gives up a batch only when its pool is
// closed) cannot hold up the task for good.
func (w *watchdog) waitStale(ctx context.Context, job *rivertype.JobRow, stale *staleAttempt) {
	t := time.NewTimer(staleWaitMax)
	defer t.Stop()
	select {
	case <-stale.done:
	case <-ctx.Done():
	case <-t.C:
		w.logger.Warn("the completion of an attempt cancelled when the heartbeat was lost is still not saved; running the task again all the same",
			slog.Int64("task_id", job.ID), slog.Int("attempt", stale.attempt), slog.Duration("waited", staleWaitMax))
	}
}

// withLostCause adds to err, the error of an attempt with context ctx, why
// the watchdog cancelled it, if it did.
func withLostCause(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if err == nil || !errors.Is(cause, ErrHeartbeatLost) || errors.Is(err, ErrHeartbeatLost) {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}
