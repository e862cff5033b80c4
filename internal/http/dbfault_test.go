package http_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
)

// terminateBackends ends every connection to the test's database but the
// caller's, as an operator's pg_terminate_backend (or a failover) would,
// and returns how many it ended.
func (b *testBundle) terminateBackends(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatalf("connecting as admin: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, b.pool.Config().ConnConfig.Database).Scan(&n)
	if err != nil {
		t.Fatalf("terminating backends: %v", err)
	}
	return n
}

// TestConnectionsTerminated checks that requests right after every
// database connection was cut succeed on fresh ones: the probe got a 500
// from the first POST /v1/tasks after pg_terminate_backend.
func TestConnectionsTerminated(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	first := b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	b.waitState(t, first.ID, "completed", waitTimeout)

	requests := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`, http.StatusCreated},
		{"POST", "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":3}}]}`, http.StatusCreated},
		{"GET", "/v1/tasks/" + itoa(first.ID), "", http.StatusOK},
		{"GET", "/v1/tasks", "", http.StatusOK},
		{"GET", "/v1/batches/1", "", http.StatusOK},
		{"POST", "/v1/tasks/" + itoa(first.ID) + "/retry", "", http.StatusOK},
		{"POST", "/v1/tasks", `{"kind":"sleep","args":{"ms":60000}}`, http.StatusCreated},
		{"GET", "/v1/tasks/" + itoa(first.ID) + "?wait=1s", "", http.StatusOK},
		// River's own statements, run through the store's retry.
		{"GET", "/v1/queues", "", http.StatusOK},
		{"POST", "/v1/queues/default/pause", "", http.StatusOK},
		{"POST", "/v1/queues/default/resume", "", http.StatusOK},
	}
	for _, rq := range requests {
		if n := b.terminateBackends(t); n == 0 {
			t.Fatalf("no connection to terminate before %s %s; the test proves nothing", rq.method, rq.path)
		}
		// tryDo reports any 5xx as a test error.
		r := b.do(t, rq.method, rq.path, rq.body)
		if r.Status != rq.status {
			t.Errorf("%s %s after terminating every connection: want %d, got %s", rq.method, rq.path, rq.status, r)
		}
	}
	// Tasks still run: River reconnects too.
	last := b.createTask(t, `{"kind":"double","args":{"value":4}}`)
	b.waitState(t, last.ID, "completed", waitTimeout)
}

// TestRiverUIAfterConnectionsTerminated checks that the River UI survives
// cut connections too: its reads are run once more on a fresh pool, and a
// write first tries a connection (resetting the pool when it was cut).
func TestRiverUIAfterConnectionsTerminated(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, nil)
	b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	paths := []string{"/riverui/api/jobs?state=available", "/riverui/api/queues", "/riverui/api/jobs/1"}
	for _, path := range paths {
		wantStatus(t, b.get(t, path), http.StatusOK) // warms the pool
	}
	for _, path := range paths {
		if n := b.terminateBackends(t); n == 0 {
			t.Fatalf("no connection to terminate before GET %s; the test proves nothing", path)
		}
		wantStatus(t, b.get(t, path), http.StatusOK)
	}
	for range 3 {
		if n := b.terminateBackends(t); n == 0 {
			t.Fatal("no connection to terminate before a River UI write; the test proves nothing")
		}
		r := b.do(t, "PATCH", "/riverui/api/queues/default", `{"concurrency":null}`)
		if r.Status >= 500 {
			t.Errorf("River UI PATCH after terminating every connection: %s", r)
		}
	}
}

// TestDatabaseDown checks that with no database at all the API answers 503
// problem+json with Retry-After, not 500.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there, so every connect is refused.
	poolCfg, err := pgxpool.ParseConfig("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := store.New(pool)
	client, err := jobs.NewClient(jobs.Config{Store: st, Queues: map[string]int{"default": 1}})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := taskdhttp.NewServer(taskdhttp.Config{Store: st, Jobs: client, Logger: newTestLogger(t),
		Ready: func(ctx context.Context) error { return st.Ping(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{server: newServer(t, handler)}
	for _, rq := range []struct{ method, path, body string }{
		{"POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`},
		{"POST", "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":3}}]}`},
		{"GET", "/v1/tasks/1", ""},
		{"GET", "/v1/tasks", ""},
		{"GET", "/v1/batches/1", ""},
		{"POST", "/v1/tasks/1/cancel", ""},
		{"GET", "/v1/tasks/1?wait=1s", ""},
		{"GET", "/v1/queues", ""},
		{"POST", "/v1/queues/default/pause", ""},
	} {
		start := time.Now()
		r, err := b.tryDo(nopT{t}, rq.method, rq.path, rq.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the database down: want 503, got %s", rq.method, rq.path, r)
			continue
		}
		wantProblem(t, r, http.StatusServiceUnavailable, "urn:taskd:problem:unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: want Retry-After on a 503", rq.method, rq.path)
		}
		t.Logf("%s %s: 503 after %s", rq.method, rq.path, time.Since(start).Round(time.Millisecond))
	}
}

// nopT lets tryDo run without reporting the 5xx the test expects.
type nopT struct{ testing.TB }

func (nopT) Errorf(string, ...any) {}

// TestClientLeftIsNot500 checks that a request whose client went away
// while taskd worked on it (its timeout, a closed connection) is recorded
// as 499, not as the 500 of a bug: the fault suite's clients give up on
// requests during a database restart, and the 5xx alert must not page for
// them.
func TestClientLeftIsNot500(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var codes []int
	b := setupWith(t, setupOpts{ConfigFunc: func(cfg *taskdhttp.Config) {
		observe := cfg.ObserveFunc
		cfg.ObserveFunc = func(route, method string, code int, d time.Duration) {
			observe(route, method, code, d)
			mu.Lock()
			codes = append(codes, code)
			mu.Unlock()
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before taskd gets to the database
	for _, rq := range []struct{ method, path, body string }{
		{"POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`},
		{"POST", "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":3}}]}`},
		{"GET", "/v1/tasks", ""},
	} {
		mu.Lock()
		codes = nil
		mu.Unlock()
		req := httptest.NewRequestWithContext(ctx, rq.method, rq.path, strings.NewReader(rq.body))
		rec := httptest.NewRecorder()
		b.handler.ServeHTTP(rec, req)
		mu.Lock()
		got := slices.Clone(codes)
		mu.Unlock()
		if rec.Code != taskdhttp.StatusClientClosedRequest || !slices.Equal(got, []int{taskdhttp.StatusClientClosedRequest}) {
			t.Errorf("%s %s with the client gone: answered %d, observed %v; want %d", rq.method, rq.path, rec.Code, got,
				taskdhttp.StatusClientClosedRequest)
		}
	}
}
