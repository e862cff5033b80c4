package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

const (
	attemptFlushInterval = 50 * time.Millisecond
	attemptBatchMax      = 1000
	attemptBuffer        = 10_000
)

// attemptRecorder writes finished attempts to task_attempts in batches, so
// that recording costs one statement per batch rather than one per task.
// Attempts still buffered when a process is killed are lost (the task
// itself is not: River completes jobs through its own batched completer).
type attemptRecorder struct {
	store  *store.Store
	logger *slog.Logger
	ch     chan store.Attempt
	done   chan struct{}
}

func newAttemptRecorder(s *store.Store, logger *slog.Logger) *attemptRecorder {
	return &attemptRecorder{
		store:  s,
		logger: logger,
		ch:     make(chan store.Attempt, attemptBuffer),
		done:   make(chan struct{}),
	}
}

// record queues an attempt. It blocks when the buffer is full, slowing
// workers down rather than dropping records.
func (r *attemptRecorder) record(a store.Attempt) {
	r.ch <- a
}

// run writes queued attempts until close is called, then writes the rest.
func (r *attemptRecorder) run() {
	defer close(r.done)
	ticker := time.NewTicker(attemptFlushInterval)
	defer ticker.Stop()
	batch := make([]store.Attempt, 0, attemptBatchMax)
	for {
		select {
		case a, ok := <-r.ch:
			if !ok {
				r.flush(batch)
				return
			}
			batch = append(batch, a)
			if len(batch) >= attemptBatchMax {
				r.flush(batch)
				batch = batch[:0]
			}
		case <-ticker.C:
			if len(batch) > 0 {
				r.flush(batch)
				batch = batch[:0]
			}
		}
	}
}

func (r *attemptRecorder) flush(batch []store.Attempt) {
	if len(batch) == 0 {
		return
	}
	// Not tied to the client's context: the final flush runs during
	// shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.store.AttemptInsertMany(ctx, batch); err != nil {
		r.logger.Error("recording attempts", slog.Int("count", len(batch)), slog.String("error", err.Error()))
	}
}

// close stops the recorder after writing what is queued. No record may
// follow.
func (r *attemptRecorder) close() {
	close(r.ch)
	<-r.done
}

// attemptMiddleware records every attempt's outcome. It is the outermost
// worker middleware, so that it sees the job's own context (River applies
// the job timeout further in) and panics before River recovers them.
type attemptMiddleware struct {
	river.MiddlewareDefaults
	clientID string
	recorder *attemptRecorder
}

// Work implements rivertype.WorkerMiddleware.
func (m *attemptMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) (err error) {
	start := time.Now()
	a := store.Attempt{TaskID: job.ID, Attempt: attemptNumber(job), Worker: m.clientID, StartedAt: start}
	if job.AttemptedAt != nil {
		a.StartedAt = *job.AttemptedAt
	}
	defer func() {
		if p := recover(); p != nil {
			m.finish(a, start, store.OutcomePanic, fmt.Sprint(p))
			panic(p) // River recovers it and records the error.
		}
	}()
	err = doInner(ctx)
	outcome := classify(ctx, err)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	m.finish(a, start, outcome, msg)
	return err
}

func (m *attemptMiddleware) finish(a store.Attempt, start time.Time, outcome, msg string) {
	now := time.Now()
	a.FinishedAt = &now
	a.Duration = now.Sub(start)
	a.Outcome = outcome
	a.Error = msg
	m.recorder.record(a)
}

// classify names the outcome of an attempt that returned err with job
// context ctx.
func classify(ctx context.Context, err error) string {
	var (
		snoozeErr *rivertype.JobSnoozeError
		cancelErr *rivertype.JobCancelError
	)
	switch {
	case err == nil:
		return store.OutcomeCompleted
	case errors.As(err, &snoozeErr):
		return store.OutcomeSnoozed
	case errors.As(err, &cancelErr), errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely):
		return store.OutcomeCancelled
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The job's own context ends early only when the task is cancelled
		// (above) or the client stops: River puts the job back to available.
		return store.OutcomeInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		return store.OutcomeTimeout
	}
	return store.OutcomeFailed
}
