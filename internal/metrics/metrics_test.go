package metrics_test

// The metrics are tested on a real `taskd serve` (internal/taskdtest) on
// its own database: what the process wires (River's plugin, the insert
// counter, the HTTP middleware, the refresh loop) is what is scraped.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

// scrape is one GET /metrics: its body and its families by name.
type scrape struct {
	body     []byte
	families map[string]*dto.MetricFamily
}

func getMetrics(t *testing.T, baseURL string) scrape {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want text/plain", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return scrape{body: body, families: families}
}

// value returns the value of the series name{labels} (a counter's,
// a gauge's, or a histogram's count), and whether it exists.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	f := s.families[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// v is value, 0 for a series not there yet (a counter not yet counted).
func (s scrape) v(name string, labels ...string) float64 {
	x, _ := s.value(name, labels...)
	return x
}

// waitMetric scrapes until cond holds of name{labels}, failing t after
// timeout.
func waitMetric(t *testing.T, baseURL string, timeout time.Duration, what string, cond func(v float64, ok bool) bool, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := getMetrics(t, baseURL).value(name, labels...)
		if cond(v, ok) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%v}: %v (present %v) after %s; want %s", name, labels, v, ok, timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func equals(want float64) func(float64, bool) bool {
	return func(v float64, ok bool) bool { return ok && v == want }
}

func submit(t *testing.T, c *client.Client, kind, args string, extra func(*client.TaskRequest)) *client.Task {
	t.Helper()
	req := client.TaskRequest{Kind: &kind, Args: json.RawMessage(args)}
	if extra != nil {
		extra(&req)
	}
	task, _, err := c.Submit(context.Background(), req, client.SubmitOptions{})
	if err != nil {
		t.Fatalf("submitting %s %s: %v", kind, args, err)
	}
	return task
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	p := taskdtest.Start(t, taskdtest.Options{
		DatabaseURL: pgtest.NewDB(t),
		Env:         []string{"TASKD_DB_MAX_CONNS=6"},
	})
	c, err := client.New(p.URL, client.Config{HTTPClient: &http.Client{Timeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("CountersMoveByWhatRan", func(t *testing.T) {
		before := getMetrics(t, p.URL)
		var ids []int64
		for i := range 3 {
			ids = append(ids, submit(t, c, "double", fmt.Sprintf(`{"value":%d}`, i), nil).ID)
		}
		ids = append(ids, submit(t, c, "fail", `{"times":1,"permanent":true}`, nil).ID)
		kind := "double"
		batch, _, err := c.SubmitBatch(context.Background(), []client.TaskRequest{
			{Kind: &kind, Args: json.RawMessage(`{"value":10}`)},
			{Kind: &kind, Args: json.RawMessage(`{"value":11}`)},
		}, client.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, batch.TaskIDs...)
		for _, id := range ids {
			task, err := c.Wait(context.Background(), id, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if task.State != "completed" && task.State != "discarded" {
				t.Fatalf("task %d is %s after 30s", id, task.State)
			}
		}
		// Not found: the route, not the path, and "unmatched" for no route.
		for _, path := range []string{"/v1/tasks/999999999", "/nope/12345"} {
			resp, err := http.Get(p.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET %s: %d, want 404", path, resp.StatusCode)
			}
		}
		after := getMetrics(t, p.URL)

		for _, tc := range []struct {
			name   string
			labels []string
			delta  float64
		}{
			{"taskd_tasks_inserted_total", []string{"kind", "double", "queue", "default"}, 5},
			{"taskd_tasks_inserted_total", []string{"kind", "fail", "queue", "default"}, 1},
			{"taskd_attempts_total", []string{"kind", "double", "queue", "default", "outcome", "completed"}, 5},
			{"taskd_attempts_total", []string{"kind", "fail", "queue", "default", "outcome", "failed"}, 1},
			{"taskd_attempts_total", []string{"kind", "fail", "queue", "default", "outcome", "completed"}, 0},
			{"taskd_attempt_duration_seconds", []string{"kind", "double", "queue", "default"}, 5},
			{"taskd_attempt_duration_seconds", []string{"kind", "fail", "queue", "default"}, 1},
			{"taskd_http_requests_total", []string{"route", "/v1/tasks", "method", "POST", "code", "201"}, 4},
			{"taskd_http_request_duration_seconds", []string{"route", "/v1/tasks", "method", "POST"}, 4},
			{"taskd_http_requests_total", []string{"route", "/v1/tasks/{id}", "method", "GET", "code", "200"}, 6},
			{"taskd_http_requests_total", []string{"route", "/v1/batches", "method", "POST", "code", "201"}, 1},
			{"taskd_http_requests_total", []string{"route", "/v1/tasks/{id}", "method", "GET", "code", "404"}, 1},
			{"taskd_http_requests_total", []string{"route", "unmatched", "method", "GET", "code", "404"}, 1},
		} {
			if got := after.v(tc.name, tc.labels...) - before.v(tc.name, tc.labels...); got != tc.delta {
				t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.delta)
			}
		}
		// In a label, where a raw path would be (a float value may hold
		// the digits too: 0.00024146999999999998).
		if bytes.Contains(after.body, []byte(`999999999"`)) || bytes.Contains(after.body, []byte("/nope")) {
			t.Errorf("a raw request path made it into the metrics:\n%s", after.body)
		}
		// The scrape before this one is counted too.
		if got := after.v("taskd_http_requests_total", "route", "/metrics", "method", "GET", "code", "200"); got < 1 {
			t.Errorf("GET /metrics not counted: %v", got)
		}
		if got := after.v("taskd_db_pool_max_conns"); got != 6 {
			t.Errorf("taskd_db_pool_max_conns = %v, want 6 (TASKD_DB_MAX_CONNS)", got)
		}
		if got := after.v("taskd_db_pool_acquires_total"); got <= before.v("taskd_db_pool_acquires_total") {
			t.Errorf("taskd_db_pool_acquires_total did not grow: %v -> %v", before.v("taskd_db_pool_acquires_total"), got)
		}
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
			if _, ok := after.value(name); !ok {
				t.Errorf("%s missing: the Go and process collectors are not registered", name)
			}
		}
	})

	t.Run("LeaderAndQueueGauges", func(t *testing.T) {
		// The only process is elected (the leadership is read every 5 s);
		// the queue gauges are read by a scrape that finds them 5 s old.
		waitMetric(t, p.URL, 30*time.Second, "1", equals(1), "taskd_leader")
		// Every configured queue has every state, even empty.
		waitMetric(t, p.URL, 15*time.Second, "present", func(_ float64, ok bool) bool { return ok },
			"taskd_queue_tasks", "queue", "cpu", "state", "available")
		delay := "1h"
		for range 2 {
			submit(t, c, "double", `{"value":1}`, func(r *client.TaskRequest) { r.Delay = &delay })
		}
		waitMetric(t, p.URL, 15*time.Second, "2", equals(2), "taskd_queue_tasks", "queue", "default", "state", "scheduled")
		waitMetric(t, p.URL, 15*time.Second, "0 (none ready)", equals(0), "taskd_queue_oldest_available_age_seconds", "queue", "default")
	})

	t.Run("Waiters", func(t *testing.T) {
		delay := "1h"
		task := submit(t, c, "double", `{"value":2}`, func(r *client.TaskRequest) { r.Delay = &delay })
		waitMetric(t, p.URL, 5*time.Second, "0", equals(0), "taskd_waiters")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = c.Wait(ctx, task.ID, 50*time.Second)
		}()
		waitMetric(t, p.URL, 10*time.Second, "1", equals(1), "taskd_waiters")
		cancel()
		<-done
		waitMetric(t, p.URL, 10*time.Second, "0 once the client left", equals(0), "taskd_waiters")
	})

	// docs/API.md: OpenMetrics when the scraper asks for it (Prometheus
	// does by default).
	t.Run("OpenMetricsWhenAsked", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, p.URL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !bytes.HasSuffix(body, []byte("# EOF\n")) {
			t.Errorf("Content-Type %q, body ending %q: want OpenMetrics (ending # EOF)", ct, body[max(0, len(body)-20):])
		}
	})

	t.Run("PromtoolCheckMetrics", func(t *testing.T) {
		promtool := needPromtool(t)
		body := getMetrics(t, p.URL).body
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s\nscrape:\n%s", err, out, body)
		}
	})
}

// needPromtool returns promtool's path, or skips t saying why: it comes
// with Debian's prometheus package, which .ci/run installs.
func needPromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found (apt-get install prometheus; .ci/run installs it): " + err.Error())
	}
	return path
}

// TestAlertRules checks docs/alerts.yml, the rules docs/OPERATIONS.md
// offers, with promtool: they parse, their PromQL is valid, and they fire
// on what they say and not otherwise (testdata/alerts_test.yml: the queue
// gauges combined with max across processes, no leader at all, a failure
// ratio summed over processes but not for a kind that seldom runs).
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := needPromtool(t)
	_, file, _, _ := runtime.Caller(0)
	rules := filepath.Join(filepath.Dir(file), "..", "..", "docs", "alerts.yml")
	if _, err := os.Stat(rules); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rules, err, out)
	}
	t.Logf("%s", out)
	test := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	test.Dir = "testdata"
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules testdata/alerts_test.yml: %v\n%s", err, out)
	}
}
