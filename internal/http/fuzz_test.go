package http_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/config"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
)

// The fuzz targets send what the fuzzer makes through the real handler,
// on a real database: one server per target, made once outside the fuzz
// loop. Whatever the input, the API must not panic and must not answer
// 5xx (bad input is a 4xx). `go test` runs their seeds and
// testdata/fuzz/<Target>/ as regular tests; scripts/fuzz.sh runs each for
// a few seconds in CI.

// fuzzConns bounds each target's pool: the PostgreSQL server is shared and
// `go test -fuzz` runs several workers, each with its own server.
const fuzzConns = 4

// setupFuzz is setup for a fuzz target: a small pool, workers not running,
// and besides the built-in kinds an external one, "pull", so that claims
// get past "no kind runs external here".
func setupFuzz(f *testing.F) *testBundle {
	f.Helper()
	file, err := config.Parse("taskd.yaml", []byte("kinds:\n  - name: pull\n    run: external\n"), f.TempDir(), func(string) string { return "" })
	if err != nil {
		f.Fatal(err)
	}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), file.Kinds...)...)
	if err != nil {
		f.Fatal(err)
	}
	return setupWith(f, setupOpts{MaxConns: fuzzConns, Kinds: reg})
}

// fuzzSend serves req with the real handler, in process (so that a panic
// the handler's recoverer does not turn into a 500 fails the target), and
// fails the test on a 5xx, with its body. A claim that waits for tasks is
// still unanswered when ctx ends; the handler then answers nothing.
func (b *testBundle) fuzzSend(t *testing.T, ctx context.Context, req *http.Request) {
	t.Helper()
	req = req.WithContext(ctx)
	req.RemoteAddr = "127.0.0.1:40000" // as from httptest.Server's client
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, rec.Code, rec.Body.Bytes())
	}
}

// fuzzPost posts body to path with the headers (name, value pairs).
func (b *testBundle) fuzzPost(t *testing.T, path string, body []byte, headers ...string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://taskd.test"+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	b.fuzzSend(t, context.Background(), req)
}

// fuzzGet gets path with rawQuery sent exactly as given.
func (b *testBundle) fuzzGet(t *testing.T, path, rawQuery string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://taskd.test"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = rawQuery
	b.fuzzSend(t, context.Background(), req)
}

// taskSeeds are request bodies of one task, valid and not, from the API's
// tests.
var taskSeeds = []string{
	`{"kind":"double","args":{"value":21}}`,
	`{"kind":"double","args":{"value":22},"tags":["nightly"]}`,
	`{"kind":"double","args":{"value":"x"}}`,
	`{"kind":"double","args":{"value":1},"queue":"cpu","priority":2,"max_attempts":3}`,
	`{"kind":"double","args":{"value":1},"delay":"90s"}`,
	`{"kind":"double","args":{"value":1},"scheduled_at":"2030-01-01T00:00:00Z","delay":"1s"}`,
	`{"kind":"double","args":{"value":1},"backoff":{"initial":"1s","max":"1h","multiplier":2,"jitter":0.1},"timeout":"30s"}`,
	`{"kind":"fail","args":{}}`,
	`{"kind":"pull","args":{},"timeout":"10s"}`,
	`{"kind":"pull","args":{},"timeout":"2s"}`,
	`{"kind":"nope"}`,
	`{"kind":"double","args":{"value":1},"extra":1}`,
	`{"kind":"double","kind":"double","args":{"value":1}}`,
	`{"kind":"double","args":{"value":1e400}}`,
	`{"kind":"double","args":{"value":1}} {}`,
	`{"kind":"\ud800","args":null}`,
	`[]`,
	`null`,
	``,
	`{`,
}

// FuzzTaskCreate fuzzes the body of POST /v1/tasks.
func FuzzTaskCreate(f *testing.F) {
	for _, s := range taskSeeds {
		f.Add([]byte(s))
	}
	b := setupFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		b.fuzzPost(t, "/v1/tasks", body)
	})
}

// FuzzIdempotencyKey fuzzes the Idempotency-Key header of POST /v1/tasks
// (with one of two bodies, so that a key seen before may mismatch).
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"k1", "order-42", "", " ", strings.Repeat("k", 300), "ключ", "a\tb", "\x7f"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	b := setupFuzz(f)
	f.Fuzz(func(t *testing.T, key string, other bool) {
		body := `{"kind":"double","args":{"value":1}}`
		if other {
			body = `{"kind":"double","args":{"value":2}}`
		}
		b.fuzzPost(t, "/v1/tasks", []byte(body), "Idempotency-Key", key)
	})
}

// FuzzBatchCreate fuzzes the body of POST /v1/batches.
func FuzzBatchCreate(f *testing.F) {
	for _, s := range taskSeeds[:6] {
		f.Add([]byte(`{"tasks":[` + s + `]}`))
		f.Add([]byte(`{"tasks":[` + s + `,` + s + `],"then":` + s + `}`))
	}
	for _, s := range []string{`{"tasks":[]}`, `{"tasks":null}`, `{"tasks":[{}],"then":"double"}`, `{"tasks":[1]}`, `{"then":[]}`, `{}`, `[]`} {
		f.Add([]byte(s))
	}
	b := setupFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		b.fuzzPost(t, "/v1/batches", body)
	})
}

// FuzzTaskList fuzzes the query of GET /v1/tasks: its filters and cursor.
func FuzzTaskList(f *testing.F) {
	cursor := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		"", "limit=3", "limit=0", "limit=501", "limit=-1", "limit=1.5", "limit=abc",
		"state=available,running&kind=double&queue=default&limit=5", "kind=d%6Fuble",
		"state=nope", "state=RUNNING", "state=", "foo=1", "Limit=5", "limit=1;state=completed",
		"limit=1&&state=completed", "limit=1&", "=1", "limit", "kind=%ff", "kind=%zz", "limit=1&limit=2",
		"cursor=!!!", "cursor=" + cursor("id:5"), "cursor=" + cursor("id:0"), "cursor=" + cursor("id:abc"),
		"cursor=" + cursor("page:5"), "cursor=" + cursor("id:99999999999999999999"), "state=nope&limit=0&cursor=x",
	} {
		f.Add(s)
	}
	b := setupFuzz(f)
	for i := range 3 { // a few tasks, so that pages and cursors have rows
		wantStatus(f, b.post(f, "/v1/tasks", `{"kind":"double","args":{"value":`+strconv.Itoa(i)+`}}`), http.StatusCreated)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		b.fuzzGet(t, "/v1/tasks", rawQuery)
	})
}

// FuzzTaskWait fuzzes the task ID and ?wait= of GET /v1/tasks/{id}. The
// only task is cancelled (final), so that no wait holds the fuzzer.
func FuzzTaskWait(f *testing.F) {
	for _, s := range []struct{ id, wait string }{
		{"1", "0s"}, {"1", "30s"}, {"1", "1m"}, {"1", "61s"}, {"1", "-1s"}, {"1", "1"}, {"1", ""}, {"1", "1h"},
		{"2", "5s"}, {"0", "1s"}, {"-1", "1s"}, {"x", "1s"}, {"99999999999999999999", "1s"}, {"1", "9223372036854775807ns"},
	} {
		f.Add(s.id, s.wait)
	}
	b := setupFuzz(f)
	r := b.post(f, "/v1/tasks", `{"kind":"double","args":{"value":1}}`)
	var task apiTask
	decode(f, r, &task)
	if r := b.post(f, "/v1/tasks/"+strconv.FormatInt(task.ID, 10)+"/cancel", ""); r.Status != http.StatusOK {
		f.Fatalf("cancelling the task: %s", r)
	}
	f.Fuzz(func(t *testing.T, id, wait string) {
		b.fuzzGet(t, "/v1/tasks/"+url.PathEscape(id), "wait="+url.QueryEscape(wait))
	})
}

// claimAnswer bounds how long a fuzzed claim may take to answer: a valid
// one with no tasks to give waits (by default 30 s), and that it waits
// means it was accepted, which is all the target checks.
const claimAnswer = 500 * time.Millisecond

// FuzzClaim fuzzes the body of POST /v1/claims.
func FuzzClaim(f *testing.F) {
	for _, s := range []string{
		`{"queues":["default"],"wait":"0s"}`, `{"kinds":["pull"],"max":2,"wait":"0s"}`, `{"kinds":["pull"],"max":100,"lease":"5s","worker":"w1","wait":"1s"}`, `{"kinds":["double"],"wait":"0s"}`,
		`{"max":0,"wait":"0s"}`, `{"max":101}`, `{"wait":"61s"}`, `{"wait":"-1s"}`, `{"lease":"1s","wait":"0s"}`,
		`{"lease":"2h"}`, `{"worker":"","wait":"0s"}`, `{"worker":"a\u0000b","wait":"0s"}`, `{"kinds":[1]}`,
		`{"queues":"default"}`, `{"extra":true}`, `{}`, `[]`, `null`, ``, `{"wait":"0s"}{}`,
	} {
		f.Add([]byte(s))
	}
	b := setupFuzz(f)
	for range 20 { // tasks to claim, so that some claims answer with them
		wantStatus(f, b.post(f, "/v1/tasks", `{"kind":"pull","args":{}}`), http.StatusCreated)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "http://taskd.test/v1/claims", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		ctx, cancel := context.WithTimeout(context.Background(), claimAnswer)
		defer cancel()
		b.fuzzSend(t, ctx, req)
	})
}
