package tasks

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/taskd/taskd/internal/store"
)

// broker wakes waiting claims when tasks they could take may have arrived.
// One listener connection per process serves every waiting claim, so that
// waiting costs the database nothing per claim; it starts with the first
// claim that waits.
type broker struct {
	store        *store.Store
	logger       *slog.Logger
	recheckEvery time.Duration // see Config.ClaimRecheckInterval

	mu      sync.Mutex
	waiters map[*waiter]struct{}
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// waiter is one waiting claim. wake holds at most one pending wake-up.
type waiter struct {
	kinds  []string
	queues []string // nil: any
	wake   chan struct{}
}

func newBroker(s *store.Store, logger *slog.Logger, recheckEvery time.Duration) *broker {
	return &broker{store: s, logger: logger, recheckEvery: recheckEvery, waiters: map[*waiter]struct{}{}, done: make(chan struct{})}
}

// register adds a waiter; the caller must unregister it. ok is false once
// the broker is closed.
func (b *broker) register(kinds, queues []string) (w *waiter, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false
	}
	if !b.started {
		b.started = true
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel = cancel
		go b.run(ctx)
	}
	w = &waiter{kinds: kinds, queues: queues, wake: make(chan struct{}, 1)}
	b.waiters[w] = struct{}{}
	return w, true
}

func (b *broker) unregister(w *waiter) {
	b.mu.Lock()
	delete(b.waiters, w)
	b.mu.Unlock()
}

// wakeIf wakes the waiters for which match is true.
func (b *broker) wakeIf(match func(*waiter) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.waiters {
		if match(w) {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (b *broker) wakeAll() { b.wakeIf(func(*waiter) bool { return true }) }

// run listens and rechecks until ctx ends.
func (b *broker) run(ctx context.Context) {
	defer close(b.done)
	go b.recheck(ctx)
	store.Relisten(ctx, b.logger, "claim listener",
		func(ctx context.Context) (store.Notifications[string], error) { return b.store.ListenInserts(ctx) },
		// Whatever was announced while not listening is looked for now.
		b.wakeAll,
		func(queue string) {
			b.wakeIf(func(w *waiter) bool { return w.queues == nil || slices.Contains(w.queues, queue) })
		})
}

// recheck wakes, once per recheckEvery, the waiters whose kinds have a
// claimable task, with one query for all of them.
func (b *broker) recheck(ctx context.Context) {
	t := time.NewTicker(b.recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		var kinds []string
		for w := range b.waiters {
			for _, k := range w.kinds {
				if !slices.Contains(kinds, k) {
					kinds = append(kinds, k)
				}
			}
		}
		b.mu.Unlock()
		if len(kinds) == 0 {
			continue
		}
		ready, err := b.store.LeaseClaimableKinds(ctx, kinds)
		if err != nil {
			continue // the next tick tries again; claims return at their deadline meanwhile
		}
		if len(ready) > 0 {
			b.wakeIf(func(w *waiter) bool {
				return slices.ContainsFunc(w.kinds, func(k string) bool { return slices.Contains(ready, k) })
			})
		}
	}
}

// close stops the listener and wakes every waiter, which then find the
// broker closed.
func (b *broker) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	started := b.started
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	b.wakeAll()
	if started {
		<-b.done
	}
}

// isClosed says whether close was called.
func (b *broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
