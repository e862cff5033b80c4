package tasks

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskd/taskd/internal/store"
)

// Limits of waiting requests (?wait=).
const (
	// WaitMax is the longest a request may wait for tasks to finish.
	WaitMax = 60 * time.Second
	// FinishRecheckIntervalDefault bounds how long a lost announcement
	// (a process killed between a task's final write and its NOTIFY, a
	// notification sent while the listener reconnects, River dropping an
	// event) delays a waiter: one query for all of a process's waiters.
	FinishRecheckIntervalDefault = 2 * time.Second
)

// finishWaiters holds the requests waiting for tasks to reach a final
// state, and wakes them on the announcements of every process
// (store.NotifyFinished) through one listener connection, plus one
// recheck query for all of them now and then. Waiting thus costs the
// database nothing per waiter.
type finishWaiters struct {
	store        *store.Store
	logger       *slog.Logger
	recheckEvery time.Duration

	mu      sync.Mutex
	byID    map[int64]map[*finishWaiter]struct{}
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}

	// waiting counts the requests waiting now, for the taskd_waiters
	// gauge; it is read on every scrape, so it takes no lock.
	waiting atomic.Int64
}

// finishWaiter is one waiting request: the tasks it still waits for.
type finishWaiter struct {
	pending map[int64]bool // guarded by finishWaiters.mu
	wake    chan struct{}  // closed once pending is empty
}

func newFinishWaiters(s *store.Store, logger *slog.Logger, recheckEvery time.Duration) *finishWaiters {
	return &finishWaiters{store: s, logger: logger, recheckEvery: recheckEvery,
		byID: map[int64]map[*finishWaiter]struct{}{}, done: make(chan struct{})}
}

// wait returns once every task of ids is final (or gone), d has passed, or
// ctx ended (then with its error).
func (f *finishWaiters) wait(ctx context.Context, ids []int64, d time.Duration) error {
	if d <= 0 || len(ids) == 0 {
		return nil
	}
	w, ok := f.register(ids)
	if !ok {
		return nil // shutting down: answer with the state as it is
	}
	defer f.unregister(w)
	f.waiting.Add(1)
	defer f.waiting.Add(-1)
	// Registered first, so that a task finishing between this check and
	// the wait still wakes it.
	// Marked as waited for, so that the process running each writes its
	// final state at once (store.FinishWaited).
	finished, err := f.store.WaitMark(ctx, ids)
	if err != nil {
		return err
	}
	f.finished(finished)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-w.wake:
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (f *finishWaiters) register(ids []int64) (*finishWaiter, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	if !f.started {
		f.started = true
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel = cancel
		go f.run(ctx)
	}
	w := &finishWaiter{pending: make(map[int64]bool, len(ids)), wake: make(chan struct{})}
	for _, id := range ids {
		w.pending[id] = true
		if f.byID[id] == nil {
			f.byID[id] = map[*finishWaiter]struct{}{}
		}
		f.byID[id][w] = struct{}{}
	}
	return w, true
}

func (f *finishWaiters) unregister(w *finishWaiter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range w.pending {
		f.drop(id, w)
	}
}

// drop removes w from id's waiters; f.mu is held.
func (f *finishWaiters) drop(id int64, w *finishWaiter) {
	if ws := f.byID[id]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(f.byID, id)
		}
	}
}

// finished marks ids as final for their waiters, waking those that wait
// for nothing more.
func (f *finishWaiters) finished(ids []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		for w := range f.byID[id] {
			delete(w.pending, id)
			if len(w.pending) == 0 {
				close(w.wake)
			}
		}
		delete(f.byID, id)
	}
}

// run listens and rechecks until ctx ends.
func (f *finishWaiters) run(ctx context.Context) {
	defer close(f.done)
	recheckDone := make(chan struct{})
	go func() {
		defer close(recheckDone)
		f.recheck(ctx)
	}()
	defer func() { <-recheckDone }()
	store.Relisten(ctx, f.logger, "finish listener",
		func(ctx context.Context) (store.Notifications[[]int64], error) { return f.store.ListenFinished(ctx) },
		nil, f.finished)
}

// recheck looks, once per recheckEvery, for finished tasks among all that
// are waited for, with one query.
func (f *finishWaiters) recheck(ctx context.Context) {
	t := time.NewTicker(f.recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		ids := make([]int64, 0, len(f.byID))
		for id := range f.byID {
			ids = append(ids, id)
		}
		f.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		if finished, err := f.store.FinishedAmong(ctx, ids); err == nil {
			f.finished(finished)
		}
	}
}

// close stops the listener; waiting requests end at once with the state
// as it is.
func (f *finishWaiters) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	started := f.started
	if f.cancel != nil {
		f.cancel()
	}
	for id, ws := range f.byID {
		for w := range ws {
			if len(w.pending) > 0 {
				clear(w.pending)
				close(w.wake)
			}
		}
		delete(f.byID, id)
	}
	f.mu.Unlock()
	if started {
		<-f.done
	}
}
