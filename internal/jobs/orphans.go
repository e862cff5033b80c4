package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

const (
	// orphanReleaseGrace is how long after its worker returned a task
	// still counts as this process's once River is stopped: River's
	// completer saves the outcome in the background and, while it runs,
	// retries a batch that failed for as long as it takes (it requeues
	// it), so while River runs a task counts as held until River saved
	// or dropped its completion (heldSet.settle), however long that takes.
	orphanReleaseGrace = time.Minute
	// orphanBatch bounds the candidates one sweep looks at.
	orphanBatch = 1000
)

// heldSet is this process's fetches of tasks, from the moment River hands
// one to its worker until River saved its outcome or dropped it (the pilot
// tells: settle). A running task whose last attempt is this process's but
// which has no fetch in the set is an orphan (see rescueOrphans).
//
// It is keyed by fetch, not by task alone: an attempt that ignores its
// cancellation may still be working when this process is handed the task
// again, and its return must not release the later fetch.
type heldSet struct {
	mu sync.Mutex
	// fetches maps a task to its fetches not yet settled.
	fetches map[int64][]*heldFetch
	// stoppedAt is when River stopped (zero while it runs): its completer
	// saves nothing after that, and released fetches older than
	// orphanReleaseGrace are forgotten.
	stoppedAt time.Time
}

// heldFetch is one fetch of a task: River's attempt and attempted_at, and
// when its worker returned (zero while it works).
type heldFetch struct {
	id          int64
	attempt     int
	attemptedAt *time.Time
	returned    time.Time
}

func newHeldSet() *heldSet { return &heldSet{fetches: map[int64][]*heldFetch{}} }

// hold adds the fetch job, whose worker starts.
func (h *heldSet) hold(job *rivertype.JobRow) *heldFetch {
	f := &heldFetch{id: job.ID, attempt: job.Attempt, attemptedAt: job.AttemptedAt}
	h.mu.Lock()
	h.fetches[job.ID] = append(h.fetches[job.ID], f)
	h.mu.Unlock()
	return f
}

// release marks f's worker returned: River queues its outcome next.
func (h *heldSet) release(f *heldFetch) {
	h.mu.Lock()
	f.returned = time.Now()
	h.mu.Unlock()
}

// settle forgets the returned fetches of the tasks ids, whose completions
// River saved or dropped (completionPilot, once a batch of them succeeded).
// River's completer holds one completion per task, the latest, so every
// returned fetch of a task is settled by it; a fetch still working is not.
func (h *heldSet) settle(ids []int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fetches) == 0 {
		return
	}
	for _, id := range ids {
		fs, ok := h.fetches[id]
		if !ok {
			continue
		}
		kept := fs[:0]
		for _, f := range fs {
			if f.returned.IsZero() {
				kept = append(kept, f)
			}
		}
		if len(kept) == 0 {
			delete(h.fetches, id)
		} else {
			h.fetches[id] = kept
		}
	}
}

// stopped tells the set that River stopped.
func (h *heldSet) stopped() {
	h.mu.Lock()
	h.stoppedAt = time.Now()
	h.mu.Unlock()
}

// unsettled returns the fetches whose worker returned but whose completion
// River has not yet saved or dropped.
func (h *heldSet) unsettled() []heldFetch {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []heldFetch
	for _, fs := range h.fetches {
		for _, f := range fs {
			if !f.returned.IsZero() {
				out = append(out, *f)
			}
		}
	}
	return out
}

// orphans returns those of ids this process holds no fetch of. Once River
// stopped, it first forgets fetches released longer than grace ago.
func (h *heldSet) orphans(ids []int64, grace time.Duration) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.stoppedAt.IsZero() {
		for id, fs := range h.fetches {
			kept := fs[:0]
			for _, f := range fs {
				if f.returned.IsZero() || time.Since(f.returned) <= grace {
					kept = append(kept, f)
				}
			}
			if len(kept) == 0 {
				delete(h.fetches, id)
			} else {
				h.fetches[id] = kept
			}
		}
	}
	var out []int64
	for _, id := range ids {
		if _, ok := h.fetches[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// heldMiddleware keeps the heldSet. It is the outermost worker middleware,
// so that a task counts as held for all the time River's worker has it.
type heldMiddleware struct {
	river.MiddlewareDefaults
	held *heldSet
}

// Work implements rivertype.WorkerMiddleware.
func (m *heldMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	growStack() // outermost of taskd's middleware: the stack is shallow here
	f := m.held.hold(job)
	defer m.held.release(f)
	return doInner(ctx)
}

// rescueOrphans makes the orphans of this live process available again:
// running tasks whose last attempt it was handed at least RescueAfter ago
// and which it does not hold. A fetch is an UPDATE ... RETURNING; when the
// connection is lost after the server committed it but before its answer
// arrived (a PostgreSQL restart, a terminated backend), River's producer
// sees an error and never runs the tasks, and the heartbeat rescue never
// takes them back from a process that heartbeats, so they would wait for
// River's own rescuer, an hour past the longest timeout.
//
// Each rescued fetch is guarded (watchdog.guardRescued): should a
// completion of it still be queued in River's completer, it must not land
// on a later fetch of the task, here or elsewhere.
func (c *Client) rescueOrphans(ctx context.Context) {
	ids, err := c.store.ProcessRunningStale(ctx, c.id, c.cfg.RescueAfter, orphanBatch)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Error("looking for orphaned tasks", slog.String("error", err.Error()))
		}
		return
	}
	orphans := c.held.orphans(ids, orphanReleaseGrace)
	if len(orphans) == 0 {
		return
	}
	rescued, err := c.store.RescueOrphans(ctx, c.id, orphans, c.cfg.RescueAfter)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Error("rescuing orphaned tasks", slog.String("error", err.Error()))
		}
		return
	}
	if c.watchdog != nil {
		c.watchdog.guardRescued(rescued, time.Now())
	}
	if len(rescued) == 0 {
		return
	}
	c.logger.Warn("rescued tasks this process was handed but does not run (a fetch lost with its connection)",
		slog.Int("count", len(rescued)), slog.Int64("first_id", rescued[0].TaskID))
	c.announceFinal(ctx, rescuedFinal(rescued))
}
