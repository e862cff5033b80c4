package jobs

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/push"
	"github.com/taskd/taskd/internal/store"
)

// pushKind is a declared kind that taskd pushes to u.
func pushKind(t *testing.T, name, u string, allow bool) kinds.Kind {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	target := &push.Target{URL: parsed, Timeout: 5 * time.Second}
	if allow {
		target.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	return kinds.Kind{
		Name: name, Queue: "default", Run: kinds.RunHTTP, Declared: true, Push: target,
		Decode: func(raw json.RawMessage, _ *kinds.Errors) river.JobArgs {
			return kinds.RawArgs{KindName: name, Raw: raw}
		},
	}
}

func setupPush(t *testing.T, ks ...kinds.Kind) *testBundle {
	t.Helper()
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), ks...)...)
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *Config) { c.Kinds = reg })
	b.start(t)
	return b
}

// TestPushOutcomes runs pushed tasks through River against a real local
// endpoint whose answer each task's args choose.
func TestPushOutcomes(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		var body struct {
			Args struct {
				Status     int    `json:"status"`
				RetryAfter string `json:"retry_after"`
			} `json:"args"`
			Attempt int `json:"attempt"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body.Args.RetryAfter != "" && body.Attempt == 1 {
			w.Header().Set("Retry-After", body.Args.RetryAfter)
		}
		w.WriteHeader(body.Args.Status)
		_, _ = io.WriteString(w, `{"attempt":`+r.Header.Get("Taskd-Attempt")+`}`)
	}))
	t.Cleanup(srv.Close)
	b := setupPush(t, pushKind(t, "hook", srv.URL, true))

	ok := b.submit(t, "hook", map[string]any{"status": 200}, nil)
	task := b.waitTask(t, ok, 20*time.Second, inState(store.StateCompleted))
	if compact(task.Result) != `{"attempt":1}` || task.Attempts[0].HTTPStatus != 200 {
		t.Fatalf("2xx: result %s, attempts %+v", task.Result, task.Attempts)
	}

	// A 4xx other than 408, 425 and 429 discards the task at once, through
	// River's own discard (the stored max_attempts is left alone).
	bad := b.submit(t, "hook", map[string]any{"status": 422}, nil)
	task = b.waitTask(t, bad, 20*time.Second, inState(store.StateDiscarded))
	if task.Attempt != 1 || task.MaxAttempts != MaxAttemptsDefault || task.Attempts[0].HTTPStatus != 422 ||
		!strings.HasPrefix(task.Attempts[0].Error, "HTTP 422") {
		t.Fatalf("422: attempt %d of %d, attempts %+v", task.Attempt, task.MaxAttempts, task.Attempts)
	}

	// 503 with Retry-After: the next attempt waits that long, not the
	// 1 s backoff.
	later := b.submit(t, "hook", map[string]any{"status": 503, "retry_after": "120"}, nil)
	task = b.waitTask(t, later, 20*time.Second, inState(store.StateRetryable))
	if wait := time.Until(task.ScheduledAt); wait < 100*time.Second || wait > 121*time.Second {
		t.Fatalf("503 with Retry-After 120: next attempt in %s", wait)
	}
	if task.Attempts[0].HTTPStatus != 503 || task.Attempts[0].Outcome != store.OutcomeFailed {
		t.Fatalf("503: attempts %+v", task.Attempts)
	}

	// A plain 500 is retried by the policy.
	failing := b.submit(t, "hook", map[string]any{"status": 500}, func(o *river.InsertOpts) { o.MaxAttempts = 2 })
	task = b.waitTask(t, failing, 20*time.Second, inState(store.StateDiscarded))
	if o := outcomes(b.finishedAttempts(t, failing, 2)); !slices.Equal(o, []string{"failed", "failed"}) {
		t.Fatalf("500 twice: outcomes %v", o)
	}
}

// TestPushRefusedAddress: without allow_private, loopback is refused at
// connect time and the endpoint never sees the request.
func TestPushRefusedAddress(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	b := setupPush(t, pushKind(t, "hook", srv.URL, false))
	id := b.submit(t, "hook", map[string]any{}, func(o *river.InsertOpts) { o.MaxAttempts = 1 })
	task := b.waitTask(t, id, 20*time.Second, inState(store.StateDiscarded))
	if e := task.Attempts[0].Error; !strings.Contains(e, "refused: loopback") || !strings.Contains(e, "allow_private") {
		t.Fatalf("attempt error %q, want the refusal and how to allow it", e)
	}
	if task.Attempts[0].HTTPStatus != 0 || hits.Load() != 0 {
		t.Fatalf("http_status %d, endpoint hits %d; want none", task.Attempts[0].HTTPStatus, hits.Load())
	}
}

// TestPushCancelAbortsRequest: cancelling a running pushed task aborts its
// request.
func TestPushCancelAbortsRequest(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	aborted := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http notices a closed connection (and ends r's context) only
		// once the body has been read.
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			aborted <- struct{}{}
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	b := setupPush(t, pushKind(t, "hook", srv.URL, true))
	id := b.submit(t, "hook", map[string]any{}, nil)
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the push never arrived")
	}
	if _, err := b.client.River().JobCancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-aborted:
	case <-time.After(20 * time.Second):
		t.Fatal("cancelling the task did not abort its request")
	}
	task := b.waitTask(t, id, 20*time.Second, inState(store.StateCancelled))
	if o := outcomes(b.finishedAttempts(t, id, 1)); !slices.Equal(o, []string{"cancelled"}) {
		t.Fatalf("outcomes %v (%+v)", o, task.Attempts)
	}
}

// TestPushTimeout: an endpoint slower than the kind's timeout gives a
// timeout attempt, retried like any failure.
func TestPushTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	k := pushKind(t, "slow", srv.URL, true)
	k.Push.Timeout = time.Second
	b := setupPush(t, k)
	id := b.submit(t, "slow", map[string]any{}, func(o *river.InsertOpts) { o.MaxAttempts = 1 })
	b.waitTask(t, id, 20*time.Second, inState(store.StateDiscarded))
	a := b.finishedAttempts(t, id, 1)
	if a[0].Outcome != store.OutcomeTimeout || !strings.Contains(a[0].Error, "timed out after 1s") {
		t.Fatalf("attempt %+v, want a timeout", a[0])
	}
}

// A task's own timeout replaces its kind's for its request.
func TestPushTaskTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	k := pushKind(t, "slow", srv.URL, true)
	k.Push.Timeout, k.Timeout = 20*time.Second, 20*time.Second
	b := setupPush(t, k)
	id := b.submit(t, "slow", map[string]any{}, func(o *river.InsertOpts) {
		o.MaxAttempts = 1
		o.Metadata = []byte(`{"timeout":"1s"}`)
	})
	b.waitTask(t, id, 15*time.Second, inState(store.StateDiscarded))
	a := b.finishedAttempts(t, id, 1)
	if a[0].Outcome != store.OutcomeTimeout || !strings.Contains(a[0].Error, "timed out after 1s (the task's timeout)") {
		t.Fatalf("attempt %+v, want a timeout after the task's 1s", a[0])
	}
}
