package http_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	taskdhttp "github.com/taskd/taskd/internal/http"
)

// TestHealthServer: a worker's listener answers health and readiness as
// the API does, and /metrics only with a handler.
func TestHealthServer(t *testing.T) {
	t.Parallel()
	if _, err := taskdhttp.NewHealthServer(taskdhttp.HealthConfig{}); err == nil {
		t.Error("NewHealthServer without Ready: no error")
	}
	var notReady error
	ready := func(context.Context) error { return notReady }
	leader := func(context.Context) (bool, error) { return true, nil }
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "taskd_leader 1\n") })

	do := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	with, err := taskdhttp.NewHealthServer(taskdhttp.HealthConfig{Ready: ready, Leader: leader, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	without, err := taskdhttp.NewHealthServer(taskdhttp.HealthConfig{Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		h      http.Handler
		path   string
		status int
		body   string
	}{
		{"healthz", with, "/healthz", 200, `{"status":"ok"}`},
		{"readyz leader", with, "/readyz", 200, `{"status":"ready","leader":true}`},
		{"readyz not leader", without, "/readyz", 200, `{"status":"ready","leader":false}`},
		{"metrics", with, "/metrics", 200, "taskd_leader 1"},
		{"no metrics", without, "/metrics", 404, `"status":404`},
		{"no API", with, "/v1/tasks", 404, "a worker serves /healthz, /readyz and /metrics only"},
	} {
		if status, body := do(tc.h, tc.path); status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: GET %s = %d %s, want %d with %s", tc.name, tc.path, status, body, tc.status, tc.body)
		}
	}
	notReady = errors.New("database unreachable")
	if status, body := do(with, "/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: database unreachable") {
		t.Errorf("GET /readyz not ready = %d %s, want 503", status, body)
	}
}
