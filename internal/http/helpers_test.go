package http_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

// Problem types the API answers with.
const (
	typeBlank       = "about:blank"
	typeValidation  = "urn:taskd:problem:validation"
	typeIdempotency = "urn:taskd:problem:idempotency-mismatch"
	typeState       = "urn:taskd:problem:state-conflict"
	typeSyntax      = "urn:taskd:problem:malformed-json"
	typeTooLarge    = "urn:taskd:problem:body-too-large"
)

// waitTimeout bounds every wait for a task to change: generous, since a
// "fail" task's retry waits out its backoff (about 1 s) and River's scheduler
// runs only every 5 s.
const waitTimeout = 20 * time.Second

// testBundle is what setup gives a test: a real database, the River client
// and the API served over HTTP.
type testBundle struct {
	pool    *pgxpool.Pool
	jobs    *jobs.Client
	handler http.Handler
	server  *httptest.Server
}

type setupOpts struct {
	// Start starts the River client so that tasks run.
	Start bool
	// ConfigFunc adjusts the API's Config before the server is made.
	ConfigFunc func(*taskdhttp.Config)
	// Kinds replaces the built-in kinds.
	Kinds *kinds.Registry
	// MaxConns bounds the database pool; 0: pgtest's default. Fuzz
	// targets keep it small, the PostgreSQL server being shared.
	MaxConns int32
	// DatabaseURL, if set, rewrites the test database's URL the server
	// connects to (a proxy in front of it that injects network faults).
	DatabaseURL func(direct string) string
}

// setup gives the test its own migrated database and an API server on it.
// Workers do not run.
func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, setupOpts{})
}

// setupRunning is setup with workers running.
func setupRunning(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, setupOpts{Start: true})
}

func setupWith(t testing.TB, opts setupOpts) *testBundle {
	t.Helper()
	ctx := context.Background()
	logger := newTestLogger(t) // first, so that its cleanup runs last

	var pool *pgxpool.Pool
	if opts.DatabaseURL == nil {
		pool = pgtest.NewPool(t, opts.MaxConns)
	} else {
		cfg, err := pgxpool.ParseConfig(opts.DatabaseURL(pgtest.NewDB(t)))
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = cmp.Or(opts.MaxConns, pgtest.PoolMaxConnsDefault)
		if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
	}

	st := store.New(pool)
	// As in taskd: the River client hands its finished tasks to the
	// service, which inserts the callbacks of batches.
	var svc *tasks.Service
	client, err := jobs.NewClient(jobs.Config{
		Store:             st,
		Logger:            logger,
		Queues:            map[string]int{"default": 10, "cpu": 1},
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		HeartbeatInterval: 200 * time.Millisecond,
		RescueAfter:       time.Second,
		FinishedFunc:      func(f jobs.Finished) { svc.TasksFinished(f) },
		Kinds:             opts.Kinds,
	})
	if err != nil {
		t.Fatalf("jobs.NewClient: %v", err)
	}
	if svc, err = tasks.New(tasks.Config{Store: st, Jobs: client, Logger: logger}); err != nil {
		t.Fatalf("tasks.New: %v", err)
	}
	if opts.Start {
		cbCtx, stopCallbacks := context.WithCancel(ctx)
		cbDone := make(chan struct{})
		go func() {
			defer close(cbDone)
			svc.RunBatchCallbacks(cbCtx)
		}()
		t.Cleanup(func() { // after the client's stop, registered below
			stopCallbacks()
			<-cbDone
		})
		if err := client.Start(ctx); err != nil {
			t.Fatalf("starting jobs client: %v", err)
		}
		t.Cleanup(func() {
			stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := client.Stop(stopCtx, 5*time.Second); err != nil {
				t.Errorf("stopping jobs client: %v", err)
			}
		})
	}

	// Every test runs through the metrics' middleware, as taskd does: it
	// must change no answer, and its labels must stay bounded (a route
	// pattern, never a raw path).
	var (
		badMu     sync.Mutex
		badLabels []string
	)
	t.Cleanup(func() { // after server.Close: no request runs any more
		badMu.Lock()
		defer badMu.Unlock()
		if len(badLabels) > 0 {
			t.Errorf("metrics labels not bounded: %v", badLabels)
		}
	})
	cfg := taskdhttp.Config{
		Store:  st,
		Jobs:   client,
		Tasks:  svc,
		Logger: logger,
		Ready:  func(ctx context.Context) error { return st.Ping(ctx) },
		ObserveFunc: func(route, method string, code int, _ time.Duration) {
			pattern := strings.HasPrefix(route, "/") && !strings.ContainsAny(strings.TrimPrefix(route, "/v1/"), "0123456789")
			known := slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"}, method)
			if (route != "unmatched" && !pattern) || !known || code < 100 || code > 599 {
				badMu.Lock()
				badLabels = append(badLabels, fmt.Sprintf("%s %s %d", method, route, code))
				badMu.Unlock()
			}
		},
	}
	if opts.ConfigFunc != nil {
		opts.ConfigFunc(&cfg)
	}
	handler, err := taskdhttp.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	server := httptest.NewServer(handler)
	t.Cleanup(server.Close)

	return &testBundle{pool: pool, jobs: client, handler: handler, server: server}
}

// testLogWriter sends log lines to t.Log until the test's cleanups are done,
// after which t.Log would panic.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// newTestLogger returns a logger writing warnings and errors to t.Log. Call it
// before registering other cleanups.
func newTestLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// response is a finished HTTP exchange.
type response struct {
	Method string
	Path   string
	Status int
	Header http.Header
	Body   []byte
	// Close is set when the server said it closes the connection.
	Close bool
}

func (r *response) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.Method, r.Path, r.Status, bytes.TrimSpace(r.Body))
}

// tryDo sends a request. headers are name, value pairs; a "Content-Type"
// pair replaces the default of sending none. It reports (but does not stop
// the test on) any 5xx answer, so it may run on any goroutine.
func (b *testBundle) tryDo(t testing.TB, method, path, body string, headers ...string) (*response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.server.URL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("making request %s %s: %w", method, path, err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := b.server.Client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("reading response of %s %s: %w", method, path, err)
	}
	r := &response{Method: method, Path: path, Status: res.StatusCode, Header: res.Header, Body: data, Close: res.Close}
	// Only /readyz may answer 5xx: 503 when not ready.
	if r.Status >= 500 && !(path == "/readyz" && r.Status == http.StatusServiceUnavailable) {
		t.Errorf("server error: %s", r)
	}
	return r, nil
}

// do is tryDo for the test's goroutine.
func (b *testBundle) do(t testing.TB, method, path, body string, headers ...string) *response {
	t.Helper()
	r, err := b.tryDo(t, method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *testBundle) get(t testing.TB, path string) *response {
	t.Helper()
	return b.do(t, http.MethodGet, path, "")
}

func (b *testBundle) post(t testing.TB, path, body string, headers ...string) *response {
	t.Helper()
	return b.do(t, http.MethodPost, path, body, headers...)
}

// decode decodes r's body strictly into v.
func decode(t testing.TB, r *response, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %T from %s: %v", v, r, err)
	}
}

// wantStatus fails the test unless r has the status.
func wantStatus(t testing.TB, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want status %d, got %s", status, r)
	}
}

// The API's wire types are the public client's: tests decode answers into
// what Go programs decode them into (strictly, so that a field the types
// do not know fails the test; the OpenAPI tests keep the document in step).
type (
	apiTaskError    = client.TaskError
	apiAttempt      = client.Attempt
	apiList         = client.TaskList
	apiBatchCreated = client.BatchCreated
	apiBatch        = client.Batch
)

// apiTask is a task as the API shows it, with helpers for tests.
type apiTask struct{ client.Task }

func (a apiTask) outcomes() []string {
	out := make([]string, len(a.Attempts))
	for i, at := range a.Attempts {
		out[i] = at.Outcome
	}
	return out
}

func (a apiTask) String() string {
	b, _ := json.Marshal(a)
	return string(b)
}

// apiProblem is a problem answer, with helpers for tests.
type apiProblem struct{ client.Problem }

func (p apiProblem) fields() []string {
	out := []string{}
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// wantProblem checks that r is an RFC 9457 problem with the status, type
// and exactly the field errors given (in order), and returns it.
func wantProblem(t testing.TB, r *response, status int, typ string, fields ...string) apiProblem {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want a problem with status %d, got %s", status, r)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s %s: want Content-Type application/problem+json, got %q", r.Method, r.Path, ct)
	}
	var p apiProblem
	decode(t, r, &p)
	if p.Status != r.Status {
		t.Errorf("%s %s: problem status %d differs from HTTP status %d", r.Method, r.Path, p.Status, r.Status)
	}
	if p.Type != typ {
		t.Errorf("%s %s: want problem type %q, got %q", r.Method, r.Path, typ, p.Type)
	}
	if p.Title == "" {
		t.Errorf("%s %s: problem has no title", r.Method, r.Path)
	}
	if fields == nil {
		fields = []string{}
	}
	if got := p.fields(); !reflect.DeepEqual(got, fields) {
		t.Errorf("%s %s: want error fields %q, got %q (%s)", r.Method, r.Path, fields, got, bytes.TrimSpace(r.Body))
	}
	for _, e := range p.Errors {
		if e.Message == "" {
			t.Errorf("%s %s: field error %q has no message", r.Method, r.Path, e.Field)
		}
	}
	return p
}

// createTask submits body and expects 201.
func (b *testBundle) createTask(t testing.TB, body string) apiTask {
	t.Helper()
	r := b.post(t, "/v1/tasks", body)
	wantStatus(t, r, http.StatusCreated)
	var task apiTask
	decode(t, r, &task)
	if want := "/v1/tasks/" + strconv.FormatInt(task.ID, 10); r.Header.Get("Location") != want {
		t.Errorf("want Location %q, got %q", want, r.Header.Get("Location"))
	}
	return task
}

func (b *testBundle) getTask(t testing.TB, id int64) apiTask {
	t.Helper()
	r := b.get(t, "/v1/tasks/"+strconv.FormatInt(id, 10))
	wantStatus(t, r, http.StatusOK)
	var task apiTask
	decode(t, r, &task)
	return task
}

// waitTask polls GET /v1/tasks/{id} until cond holds, failing the test at
// the deadline.
func (b *testBundle) waitTask(t testing.TB, id int64, what string, timeout time.Duration, cond func(apiTask) bool) apiTask {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		task := b.getTask(t, id)
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: gave up after %s waiting for %s; last seen: %s", id, timeout, what, task)
		}
		<-tick.C
	}
}

// waitState waits until task id is in state and, when that state is final,
// until the attempt that ended it is recorded (attempts are written in
// batches, shortly after the worker returns).
func (b *testBundle) waitState(t testing.TB, id int64, state string, timeout time.Duration) apiTask {
	t.Helper()
	return b.waitTask(t, id, "state "+state, timeout, func(task apiTask) bool {
		if task.State != state {
			return false
		}
		if !store.IsFinal(state) || task.StartedAt == nil {
			return true
		}
		return lastAttemptRecorded(task)
	})
}

// lastAttemptRecorded reports whether the task's latest attempt (the one
// that started at started_at) is among its recorded attempts.
func lastAttemptRecorded(task apiTask) bool {
	if len(task.Attempts) == 0 || task.StartedAt == nil {
		return false
	}
	last := task.Attempts[len(task.Attempts)-1]
	d := last.StartedAt.Sub(*task.StartedAt)
	return last.Outcome != "running" && d > -time.Millisecond && d < time.Millisecond
}

// waitBatch polls GET /v1/batches/{id} until done.
func (b *testBundle) waitBatch(t testing.TB, id int64, timeout time.Duration) apiBatch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r := b.get(t, "/v1/batches/"+strconv.FormatInt(id, 10))
		wantStatus(t, r, http.StatusOK)
		var batch apiBatch
		decode(t, r, &batch)
		if batch.Done {
			return batch
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %d not done after %s: %s", id, timeout, r)
		}
		<-tick.C
	}
}

// count returns the number of rows of a table.
func (b *testBundle) count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}

// wantJSON fails the test unless got and want are the same JSON value.
func wantJSON(t testing.TB, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: %q is not JSON: %v", what, got, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: want %s, got %s", what, want, got)
	}
}

// rawFields decodes a JSON object into its raw members.
func rawFields(t testing.TB, r *response) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decoding object from %s: %v", r, err)
	}
	return m
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

// newServer serves handler over HTTP for the rest of the test.
func newServer(t testing.TB, handler http.Handler) *httptest.Server {
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return s
}
