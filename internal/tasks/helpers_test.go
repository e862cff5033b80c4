package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
)

type testBundle struct {
	pool  *pgxpool.Pool
	store *store.Store
	jobs  *jobs.Client
	tasks *Service
}

// setup returns a Service on a fresh database, its River client not
// started.
func setup(t *testing.T, mod func(*jobs.Config)) *testBundle {
	t.Helper()
	pool := pgtest.NewPool(t, 0)
	st := store.New(pool)
	cfg := jobs.Config{
		Store:             st,
		Logger:            testLogger(t),
		Queues:            map[string]int{"default": 10, builtin.QueueCPU: 1},
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		HeartbeatInterval: 200 * time.Millisecond,
		RescueAfter:       time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	jc, err := jobs.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, Jobs: jc})
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{pool: pool, store: st, jobs: jc, tasks: svc}
}

func (b *testBundle) start(t *testing.T) {
	t.Helper()
	if err := b.jobs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.jobs.Stop(ctx, 5*time.Second); err != nil {
			t.Errorf("stopping client: %v", err)
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

func ptr[T any](v T) *T { return &v }

// submit submits a task and fails the test on error.
func (b *testBundle) submit(t *testing.T, kind string, args any, mod func(*TaskParams)) int64 {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	p := TaskParams{Kind: &kind, Args: raw}
	if mod != nil {
		mod(&p)
	}
	sub, err := b.tasks.Submit(context.Background(), &p, nil)
	if err != nil {
		t.Fatalf("submit %s: %v", kind, err)
	}
	return sub.TaskID
}

// waitTask polls the task until cond holds, failing after timeout.
func (b *testBundle) waitTask(t *testing.T, id int64, timeout time.Duration, cond func(*store.Task) bool) *store.Task {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		task, err := b.store.Task(context.Background(), id)
		if err != nil {
			t.Fatalf("getting task %d: %v", id, err)
		}
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: condition not met within %s; last state %s, attempts %+v, errors %+v",
				id, timeout, task.State, task.Attempts, task.Errors)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func inState(state string) func(*store.Task) bool {
	return func(t *store.Task) bool { return t.State == state }
}

// finishedAttempts waits for n recorded attempts. An attempt's row is
// written before its task's state changes, but a test may also wait for
// attempts whose task state it does not look at.
func (b *testBundle) finishedAttempts(t *testing.T, id int64, n int) []store.Attempt {
	t.Helper()
	task := b.waitTask(t, id, 10*time.Second, func(task *store.Task) bool {
		stored := 0
		for _, a := range task.Attempts {
			if a.Outcome != store.OutcomeRunning {
				stored++
			}
		}
		return stored >= n
	})
	var out []store.Attempt
	for _, a := range task.Attempts {
		if a.Outcome != store.OutcomeRunning {
			out = append(out, a)
		}
	}
	return out
}

func outcomes(attempts []store.Attempt) []string {
	out := make([]string, len(attempts))
	for i, a := range attempts {
		out[i] = a.Outcome
	}
	return out
}

// compact removes the whitespace PostgreSQL's jsonb output adds.
func compact(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}
