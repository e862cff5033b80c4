package tasks

import (
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
	"github.com/taskd/taskd/internal/store/storetest"
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
	return setupWith(t, mod, nil)
}

// setupWith is setup with the Service's Config adjusted by modTasks. The
// River client hands its finished tasks to the Service, as in taskd.
func setupWith(t *testing.T, mod func(*jobs.Config), modTasks func(*Config)) *testBundle {
	t.Helper()
	pool := pgtest.NewPool(t, 0)
	st := store.New(pool)
	var svc *Service
	cfg := jobs.Config{
		Store:             st,
		Logger:            testLogger(t),
		Queues:            map[string]int{"default": 10, builtin.QueueCPU: 1},
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		HeartbeatInterval: 200 * time.Millisecond,
		RescueAfter:       time.Second,
		FinishedFunc:      func(f jobs.Finished) { svc.TasksFinished(f) },
	}
	if mod != nil {
		mod(&cfg)
	}
	jc, err := jobs.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tcfg := Config{Store: st, Jobs: jc, Logger: testLogger(t)}
	if modTasks != nil {
		modTasks(&tcfg)
	}
	if svc, err = New(tcfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.submits.close() }) // its writers, whichever a test set
	return &testBundle{pool: pool, store: st, jobs: jc, tasks: svc}
}

// start starts the River client and the batch callbacks; both stop when
// the test ends, the callbacks last.
func (b *testBundle) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.tasks.RunBatchCallbacks(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
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
	return storetest.WaitTask(t, b.store, id, timeout, cond)
}

// finishedAttempts waits for n recorded attempts.
func (b *testBundle) finishedAttempts(t *testing.T, id int64, n int) []store.Attempt {
	t.Helper()
	return storetest.FinishedAttempts(t, b.store, id, n)
}

var (
	inState  = storetest.InState
	outcomes = storetest.Outcomes
	compact  = storetest.Compact
)
