package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

const (
	// orphanReleaseGrace is how long after its worker returned a task
	// still counts as this process's: River's completer saves the outcome
	// in the background, and while the database is away it retries for
	// up to about 35 s (three tries of up to 10 s, with pauses) before it
	// gives up, leaving the task running in the database.
	orphanReleaseGrace = time.Minute
	// orphanBatch bounds the candidates one sweep looks at.
	orphanBatch = 1000
)

// heldSet is the tasks this process works, from the moment River hands one
// to its worker until orphanReleaseGrace after the worker returned. A
// running task whose last attempt is this process's but which is not in
// the set is an orphan (see rescueOrphans).
type heldSet struct {
	mu sync.Mutex
	// ids maps a task to when its worker returned; zero while it works.
	ids map[int64]time.Time
}

func newHeldSet() *heldSet { return &heldSet{ids: map[int64]time.Time{}} }

func (h *heldSet) hold(id int64) {
	h.mu.Lock()
	h.ids[id] = time.Time{}
	h.mu.Unlock()
}

func (h *heldSet) release(id int64) {
	h.mu.Lock()
	h.ids[id] = time.Now()
	h.mu.Unlock()
}

// orphans returns those of ids this process does not hold, and forgets
// tasks released longer than grace ago.
func (h *heldSet) orphans(ids []int64, grace time.Duration) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, at := range h.ids {
		if !at.IsZero() && time.Since(at) > grace {
			delete(h.ids, id)
		}
	}
	var out []int64
	for _, id := range ids {
		if _, ok := h.ids[id]; !ok {
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
	m.held.hold(job.ID)
	defer m.held.release(job.ID)
	return doInner(ctx)
}

// rescueOrphans makes the orphans of this live process available again:
// running tasks whose last attempt it was handed at least RescueAfter ago
// and which it does not hold. A fetch is an UPDATE ... RETURNING; when the
// connection is lost after the server committed it but before its answer
// arrived (a PostgreSQL restart, a terminated backend), River's producer
// sees an error and never runs the tasks, and the heartbeat rescue never
// takes them back from a process that heartbeats, so they would wait for
// River's own rescuer, an hour past the longest timeout. A completion that
// River gave up saving leaves the same; it is rescued orphanReleaseGrace
// after its worker returned.
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
	if len(rescued) == 0 {
		return
	}
	c.logger.Warn("rescued tasks this process was handed but does not run (a fetch or a completion lost with its connection)",
		slog.Int("count", len(rescued)), slog.Int64("first_id", rescued[0].TaskID))
	var finished []int64
	for _, r := range rescued {
		if store.IsFinal(r.State) {
			finished = append(finished, r.TaskID)
		}
	}
	if len(finished) > 0 {
		_ = c.store.NotifyFinished(ctx, finished)
		c.finished(finished)
	}
}
