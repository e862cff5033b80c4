package http_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
	"github.com/taskd/taskd/internal/config"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
)

// TestDatabaseSilent cuts the server off from PostgreSQL with a blackhole
// (bytes vanish, no connection is closed, so no error ever comes): every
// request that needs the database is answered 503 unavailable with
// Retry-After once DatabaseTimeout has passed, rather than held until TCP
// gives up; once the link is back, the same requests succeed. Without the
// deadline they hang (this test's client gives up after 10 s).
func TestDatabaseSilent(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	var proxy *chaos.NetProxy
	file, err := config.Parse("taskd.yaml", []byte("kinds:\n  - name: pull\n    run: external\n"), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), file.Kinds...)...)
	if err != nil {
		t.Fatal(err)
	}
	b := setupWith(t, setupOpts{
		Kinds:      reg,
		ConfigFunc: func(c *taskdhttp.Config) { c.DatabaseTimeout = timeout },
		DatabaseURL: func(direct string) string {
			proxy = chaos.NewNetProxy(t, "http-db", chaos.Upstream(t, direct))
			return proxy.URL(t, direct)
		},
	})
	first := b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	requests := []struct{ method, path, body string }{
		{"POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`},
		{"POST", "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":3}}]}`},
		{"GET", "/v1/tasks/" + itoa(first.ID), ""},
		{"GET", "/v1/tasks/" + itoa(first.ID) + "?wait=1s", ""},
		{"GET", "/v1/tasks", ""},
		{"POST", "/v1/tasks/" + itoa(first.ID) + "/cancel", ""},
		// A claim's deadline is its wait past DatabaseTimeout.
		{"POST", "/v1/claims", `{"kinds":["pull"],"wait":"1s"}`},
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	send := func(method, path, body string) (int, http.Header, []byte, time.Duration) {
		t.Helper()
		req, err := http.NewRequest(method, b.server.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v (after %s)", method, path, err, time.Since(start).Round(time.Millisecond))
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, data, time.Since(start)
	}

	proxy.Blackhole(t)
	for _, rq := range requests {
		status, header, body, took := send(rq.method, rq.path, rq.body)
		var p struct{ Type string }
		_ = json.Unmarshal(body, &p)
		if status != http.StatusServiceUnavailable || p.Type != "urn:taskd:problem:unavailable" || header.Get("Retry-After") == "" {
			t.Errorf("%s %s with the database silent: want 503 unavailable with Retry-After, got %d %s %s", rq.method, rq.path, status, header, body)
		}
		t.Logf("%s %s: %d after %s", rq.method, rq.path, status, took.Round(time.Millisecond))
	}
	proxy.Heal(t)
	for _, rq := range requests {
		status, _, body, _ := send(rq.method, rq.path, rq.body)
		if status/100 != 2 {
			t.Errorf("%s %s after healing: want 2xx, got %d %s", rq.method, rq.path, status, body)
		}
	}
}
