package jobs

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/limits"
)

// limitRetryAfterError is how long a task waits when its limits could not
// be decided (the database is unreachable): a snooze, so no attempt is
// used.
const limitRetryAfterError = time.Second

// limitMiddleware asks the cluster-wide limits before a task of River's
// starts. It is outside the attempt middleware (only heldMiddleware is
// further out): a task refused a slot (or a rate start) was put back by the
// Limiter without an attempt, and returns before the attempt middleware
// records anything.
type limitMiddleware struct {
	river.MiddlewareDefaults
	limiter *limits.Limiter
	logger  *slog.Logger
	// refused holds the tasks refused and snoozed, until River reports the
	// snooze saved (settled).
	refused sync.Map // task ID → refusal
	// stored counts refusals, to sweep now and then the entries of events
	// River dropped.
	stored atomic.Int64
}

// refusal is an entry of limitMiddleware.refused.
type refusal struct {
	task limits.Task
	at   time.Time
}

// refusedForget is how long a refusal waits for River's snooze event; an
// entry older than that is of an event River dropped (its buffer was
// full), and the task's recheck covers it.
const refusedForget = time.Minute

// Work implements rivertype.WorkerMiddleware.
func (m *limitMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if !m.limiter.Applies(job.Kind, job.Queue) {
		return doInner(ctx)
	}
	t := limits.Task{ID: job.ID, Kind: job.Kind, Queue: job.Queue, Args: job.EncodedArgs}
	d, err := m.limiter.Acquire(ctx, t)
	if err != nil {
		m.logger.Warn("limits could not be decided; the task waits", slog.Int64("task_id", job.ID), slog.String("error", err.Error()))
		// River's snooze gives the attempt back.
		return river.JobSnooze(limitRetryAfterError)
	}
	if !d.OK {
		// River's snooze puts it back without using the attempt: a waiting
		// task is woken when a slot is handed to it, and asks again at
		// d.Until at the latest.
		m.refused.Store(job.ID, refusal{task: t, at: time.Now()})
		if m.stored.Add(1)%1000 == 0 {
			m.refused.Range(func(k, v any) bool {
				if time.Since(v.(refusal).at) > refusedForget {
					m.refused.Delete(k)
				}
				return true
			})
		}
		return river.JobSnooze(max(time.Until(d.Until), 0))
	}
	defer m.limiter.Release(d.Grant)
	return doInner(ctx)
}

// settled is told of River's snoozed jobs, once River saved them: those
// the limits refused are looked at again (limits.Limiter.Settle).
func (m *limitMiddleware) settled(id int64) {
	if r, ok := m.refused.LoadAndDelete(id); ok {
		m.limiter.Settle(r.(refusal).task)
	}
}
