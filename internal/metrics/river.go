package metrics

import (
	"context"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// RiverPlugin returns the plugin (jobs.Config.Plugins) that counts the
// attempts of this process's River workers into taskd_attempts_total and
// taskd_attempt_duration_seconds, whether or not attempts are recorded
// (jobs.Config.DisableAttempts).
//
// It is River hooks for the attempt itself, and worker middleware only
// for what hooks cannot see. WorkBegin runs once every middleware let
// the work start, so a task that a limit put back without running it
// counts nothing; WorkEnd classifies the outcome as the attempt rows do
// (jobs.Outcome). River skips WorkEnd when the work panics, so the
// middleware, outermost, counts a panic of an attempt that began but
// never ended.
func (m *Metrics) RiverPlugin() rivertype.Plugin { return &attemptPlugin{m: m} }

type attemptPlugin struct {
	river.PluginDefaults
	m *Metrics
}

var (
	_ rivertype.HookWorkBegin    = (*attemptPlugin)(nil)
	_ rivertype.HookWorkEnd      = (*attemptPlugin)(nil)
	_ rivertype.WorkerMiddleware = (*attemptPlugin)(nil)
)

// attemptState is one attempt's, shared by the middleware and the hooks
// through the context (the hooks run on the middleware's goroutine).
type attemptState struct {
	start time.Time
	began bool
	ended bool
}

type attemptStateKey struct{}

func (p *attemptPlugin) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	st := &attemptState{}
	defer func() {
		if st.began && !st.ended {
			// Only a panic leaves WorkEnd out.
			p.m.observeAttempt(job.Kind, job.Queue, store.OutcomePanic, time.Since(st.start))
		}
	}()
	return doInner(context.WithValue(ctx, attemptStateKey{}, st))
}

func (p *attemptPlugin) WorkBegin(ctx context.Context, _ *rivertype.JobRow) error {
	if st, ok := ctx.Value(attemptStateKey{}).(*attemptState); ok {
		st.start, st.began = time.Now(), true
	}
	return nil
}

func (p *attemptPlugin) WorkEnd(ctx context.Context, job *rivertype.JobRow, err error) error {
	if st, ok := ctx.Value(attemptStateKey{}).(*attemptState); ok && st.began {
		st.ended = true
		p.m.observeAttempt(job.Kind, job.Queue, jobs.Outcome(ctx, err), time.Since(st.start))
	}
	return err
}
