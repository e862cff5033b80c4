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
// cancels any attempt that starts later at once, until a heartbeat succeeds
// again. A timer set for the deadline, not the heartbeat call (which may
// hang), decides when.
type watchdog struct {
	bound  time.Duration
	logger *slog.Logger

	mu sync.Mutex
	// beatAt is the start of the last heartbeat that succeeded.
	beatAt time.Time
	// lost says attempts were cancelled and no heartbeat succeeded since.
	lost bool
	// running are the cancels of the attempts in progress.
	running map[*attemptCancel]struct{}
	// beaten wakes run to set its timer from a new beatAt.
	beaten chan struct{}
}

type attemptCancel struct{ cancel context.CancelCauseFunc }

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
		logger:  logger,
		running: make(map[*attemptCancel]struct{}),
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

// check cancels the running attempts when the heartbeat is stale at now,
// and returns how long until it should check again.
func (w *watchdog) check(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	cause := w.causeLocked(now)
	if cause == nil {
		return w.beatAt.Add(w.bound).Sub(now) + time.Millisecond
	}
	if !w.lost {
		w.lost = true
		w.logger.Warn("heartbeat lost; cancelling running tasks, which other processes will run again",
			slog.Int("count", len(w.running)), slog.Duration("silent", now.Sub(w.beatAt)))
	}
	for a := range w.running {
		a.cancel(cause)
	}
	// Attempts that start meanwhile cancel themselves (Work), and the
	// next heartbeat that succeeds sets the timer again (run).
	return w.bound
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
// calls it interrupted and says why.
type watchdogMiddleware struct {
	river.MiddlewareDefaults
	watchdog *watchdog
}

// Work implements rivertype.WorkerMiddleware.
func (m *watchdogMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	w := m.watchdog
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a := &attemptCancel{cancel: cancel}
	w.mu.Lock()
	if cause := w.causeLocked(time.Now()); cause != nil {
		// A task fetched just before the database went away must not run
		// on either.
		cancel(cause)
	}
	w.running[a] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, a)
		w.mu.Unlock()
	}()
	return withLostCause(ctx, doInner(ctx))
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
