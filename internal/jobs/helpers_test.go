package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/store/storetest"
)

type testBundle struct {
	pool   *pgxpool.Pool
	store  *store.Store
	client *Client
}

// setup returns a client on a fresh database. It is not started.
func setup(t *testing.T, mod func(*Config)) *testBundle {
	t.Helper()
	return setupPool(t, pgtest.NewPool(t, 0), mod)
}

// setupPool is setup on a database of the caller's, through pool.
func setupPool(t *testing.T, pool *pgxpool.Pool, mod func(*Config)) *testBundle {
	t.Helper()
	st := store.New(pool)
	cfg := Config{
		Store:             st,
		Logger:            testLogger(t),
		Queues:            map[string]int{"default": 10, builtin.QueueCPU: 1},
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		HeartbeatInterval: 200 * time.Millisecond,
		// Not 1 s: the watchdog stops a process's attempts at RescueAfter
		// minus half an interval without a heartbeat, and on a loaded CI
		// machine a beat may well take most of a second.
		RescueAfter: 2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{pool: pool, store: st, client: client}
}

func (b *testBundle) start(t *testing.T) {
	t.Helper()
	if err := b.client.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.client.Stop(ctx, 5*time.Second); err != nil {
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

// submit inserts a task of a registered kind straight through River (the
// submission path, validation included, is internal/tasks' and tested
// there) and fails the test on error.
func (b *testBundle) submit(t *testing.T, kind string, args any, mod func(*river.InsertOpts)) int64 {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := b.client.Kinds().Lookup(kind)
	if !ok {
		t.Fatalf("no kind %q", kind)
	}
	errs := &kinds.Errors{}
	jobArgs := k.Decode(raw, errs)
	if len(errs.List) > 0 {
		t.Fatalf("args of %s: %v", kind, errs.List)
	}
	opts := &river.InsertOpts{Queue: k.Queue, MaxAttempts: MaxAttemptsDefault}
	if mod != nil {
		mod(opts)
	}
	res, err := b.client.River().Insert(context.Background(), jobArgs, opts)
	if err != nil {
		t.Fatalf("inserting %s: %v", kind, err)
	}
	return res.Job.ID
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
