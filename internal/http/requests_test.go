package http_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"riverqueue.com/riverui"

	taskdhttp "github.com/taskd/taskd/internal/http"
)

// Tests of how requests are read: cross-origin refusal, methods, query
// strings, path ids and headers. Each case was once answered wrongly (a
// black-box probe found them), so each is written to fail on that answer.

const typeCrossOrigin = "urn:taskd:problem:cross-origin"

// setupWithUI is setup with the real River UI mounted under /riverui, as
// taskd serve mounts it.
func setupWithUI(t *testing.T, cfgFunc func(*taskdhttp.Config)) *testBundle {
	t.Helper()
	return setupWith(t, setupOpts{ConfigFunc: func(c *taskdhttp.Config) {
		ui, err := riverui.NewHandler(&riverui.HandlerOpts{
			Endpoints: riverui.NewEndpoints(c.Jobs.River(), nil),
			Logger:    c.Logger,
			Prefix:    "/riverui",
		})
		if err != nil {
			t.Fatalf("riverui.NewHandler: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		if err := ui.Start(ctx); err != nil {
			t.Fatalf("starting River UI: %v", err)
		}
		c.Extra, c.ExtraPrefix = ui, "/riverui"
		if cfgFunc != nil {
			cfgFunc(c)
		}
	}})
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, func(c *taskdhttp.Config) {
		c.TrustedOrigins = []string{"https://app.example.com"}
	})
	task := b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	id := itoa(task.ID)

	crossSite := []string{"Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"}
	foreignOrigin := []string{"Origin", "https://evil.example", "Content-Type", "text/plain"}
	refused := []struct {
		name, method, path, body string
		headers                  []string
	}{
		{"submit", "POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`, crossSite},
		{"submit by Origin alone", "POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`, foreignOrigin},
		{"batch", "POST", "/v1/batches", `{"tasks":[{"kind":"double","args":{"value":2}}]}`, crossSite},
		{"cancel", "POST", "/v1/tasks/" + id + "/cancel", "", crossSite},
		{"retry", "POST", "/v1/tasks/" + id + "/retry", "", crossSite},
		{"River UI delete", "POST", "/riverui/api/jobs/delete", `{"ids":["` + id + `"]}`, crossSite},
		{"River UI delete by Origin alone", "POST", "/riverui/api/jobs/delete", `{"ids":["` + id + `"]}`, foreignOrigin},
		{"River UI cancel", "POST", "/riverui/api/jobs/cancel", `{"ids":["` + id + `"]}`, crossSite},
		{"River UI pause queue", "PUT", "/riverui/api/queues/default/pause", `{}`, crossSite},
		{"same site is still another origin", "POST", "/v1/tasks", `{"kind":"double","args":{"value":2}}`, []string{"Sec-Fetch-Site", "same-site"}},
	}
	for _, tt := range refused {
		r := b.do(t, tt.method, tt.path, tt.body, tt.headers...)
		if r.Status != http.StatusForbidden {
			t.Errorf("%s: want 403, got %s", tt.name, r)
			continue
		}
		wantProblem(t, r, http.StatusForbidden, typeCrossOrigin)
	}
	if n := b.count(t, "river_job"); n != 1 {
		t.Errorf("want only the first task, got %d tasks", n)
	}
	if got := b.getTask(t, task.ID); got.State != "available" || got.CancelRequested {
		t.Errorf("refused requests changed the task: %s", got)
	}
	var paused int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM river_queue WHERE paused_at IS NOT NULL").Scan(&paused); err != nil {
		t.Fatal(err)
	}
	if paused != 0 {
		t.Errorf("a refused request paused %d queue(s)", paused)
	}

	// Safe methods pass cross-origin (they change nothing); so do requests
	// without browser headers (curl's), same-origin ones and trusted
	// origins. The last one deletes the task through the River UI, which
	// shows the refused delete above would have worked.
	wantStatus(t, b.do(t, "GET", "/v1/tasks/"+id, "", crossSite...), http.StatusOK)
	wantStatus(t, b.do(t, "HEAD", "/v1/tasks", "", crossSite...), http.StatusOK)
	wantStatus(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":3}}`), http.StatusCreated)
	wantStatus(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":4}}`,
		"Sec-Fetch-Site", "cross-site", "Origin", "https://app.example.com"), http.StatusCreated)
	wantStatus(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":5}}`, "Sec-Fetch-Site", "same-origin"), http.StatusCreated)
	wantStatus(t, b.post(t, "/riverui/api/jobs/delete", `{"ids":["`+id+`"]}`, "Sec-Fetch-Site", "same-origin"), http.StatusOK)
	wantStatus(t, b.get(t, "/v1/tasks/"+id), http.StatusNotFound)
}

// TestCORSForTrustedOrigins: a trusted origin's page can make the requests
// a browser preflights (a JSON Content-Type, an Authorization header) and
// read the answers; an untrusted origin's gets no CORS headers at all.
func TestCORSForTrustedOrigins(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, func(c *taskdhttp.Config) {
		c.TrustedOrigins = []string{"https://app.example.com"}
	})
	preflight := func(origin string) *response {
		return b.do(t, "OPTIONS", "/v1/tasks", "", "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
	}
	r := preflight("https://app.example.com")
	wantStatus(t, r, http.StatusNoContent)
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":  "https://app.example.com",
		"Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
		"Access-Control-Allow-Headers": "authorization, content-type, idempotency-key",
		"Access-Control-Max-Age":       "600",
	} {
		if got := r.Header.Get(name); got != want {
			t.Errorf("preflight of the trusted origin: %s = %q, want %q", name, got, want)
		}
	}
	if r.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight allows credentials: %q", r.Header.Get("Access-Control-Allow-Credentials"))
	}

	// The request itself, as a browser sends it after the preflight.
	r = b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":2}}`,
		"Origin", "https://app.example.com", "Sec-Fetch-Site", "cross-site", "Content-Type", "application/json")
	wantStatus(t, r, http.StatusCreated)
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("answer to the trusted origin: Access-Control-Allow-Origin = %q", got)
	}
	if got := r.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Location") {
		t.Errorf("answer to the trusted origin: Access-Control-Expose-Headers = %q, want Location among them", got)
	}
	if got := r.Header.Values("Vary"); !slices.Contains(got, "Origin") {
		t.Errorf("answer: Vary = %q, want Origin", got)
	}

	// Another origin: no preflight answer, no CORS headers, and what it
	// would change is still refused.
	r = preflight("https://evil.example")
	if r.Status == http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of an untrusted origin: %s, Access-Control-Allow-Origin %q", r, r.Header.Get("Access-Control-Allow-Origin"))
	}
	r = b.do(t, "GET", "/v1/tasks", "", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	wantStatus(t, r, http.StatusOK)
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("GET from an untrusted origin: Access-Control-Allow-Origin = %q", got)
	}
	wantStatus(t, b.post(t, "/v1/tasks", `{"kind":"double","args":{"value":3}}`,
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"), http.StatusForbidden)
}

func TestHead(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, nil)
	task := b.createTask(t, `{"kind":"double","args":{"value":1}}`)

	for _, path := range []string{"/healthz", "/readyz", "/openapi.json", "/v1/kinds", "/v1/tasks", "/v1/tasks/" + itoa(task.ID), "/riverui/"} {
		get := b.get(t, path)
		head := b.do(t, "HEAD", path, "")
		if head.Status != get.Status || head.Status != http.StatusOK {
			t.Errorf("HEAD %s: want 200 like GET, got %d (GET %d)", path, head.Status, get.Status)
		}
		if len(head.Body) != 0 {
			t.Errorf("HEAD %s: want no body, got %q", path, head.Body)
		}
		if head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("HEAD %s: Content-Type %q, GET's %q", path, head.Header.Get("Content-Type"), get.Header.Get("Content-Type"))
		}
	}
	// HEAD of what GET would not find is a 404 too.
	wantStatus(t, b.do(t, "HEAD", "/v1/tasks/424242", ""), http.StatusNotFound)
	wantStatus(t, b.do(t, "HEAD", "/nope", ""), http.StatusNotFound)
}

func TestAllow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"FOO", "/healthz", 405, "GET, HEAD"},
		{"DELETE", "/v1/tasks", 405, "GET, HEAD, POST"},
		{"PUT", "/v1/tasks/1", 405, "GET, HEAD"},
		{"HEAD", "/v1/tasks/1/cancel", 405, "POST"},
		{"FOO", "/v1/tasks/1/cancel", 405, "POST"},
		// No route at the path: 404 whatever the method, never a 405 with
		// an empty Allow (or with every method, for "/v1" itself).
		{"FOO", "/nope", 404, ""},
		{"FOO", "/v1", 404, ""},
		{"FOO", "/v1/", 404, ""},
		{"DELETE", "/v1", 404, ""},
		{"DELETE", "/nope", 404, ""},
		{"PROPFIND", "/v1/nope", 404, ""},
	}
	for _, tt := range tests {
		r := b.do(t, tt.method, tt.path, "")
		if r.Status != tt.status {
			t.Errorf("%s %s: want %d, got %s", tt.method, tt.path, tt.status, r)
			continue
		}
		if tt.method != "HEAD" {
			wantProblem(t, r, tt.status, typeBlank)
		}
		if got := r.Header.Get("Allow"); got != tt.allow || (tt.status == 404 && r.Header.Values("Allow") != nil) {
			t.Errorf("%s %s: want Allow %q, got %q", tt.method, tt.path, tt.allow, r.Header.Values("Allow"))
		}
	}
}

// TestRiverUIAnswersItsOwnPaths checks that a method chi does not know,
// on a River UI path, is left to the River UI rather than answered with
// a 405 that claims every method.
func TestRiverUIAnswersItsOwnPaths(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, nil)
	r := b.do(t, "FOO", "/riverui/api/jobs/delete", "")
	if r.Status < 400 || r.Header.Get("Allow") == "GET, HEAD, POST, PUT, PATCH, DELETE" {
		t.Errorf("FOO /riverui/api/jobs/delete: got %d with Allow %q", r.Status, r.Header.Get("Allow"))
	}
	// Text PostgreSQL cannot store does not reach it through the River UI.
	r = b.do(t, "PATCH", "/riverui/api/queues/default", `{"concurrency":{"global_limit":0,"local_limit":0,"partition":{"by_args":["\u0000"],"by_kind":false}}}`)
	wantProblem(t, r, http.StatusUnprocessableEntity, typeValidation, "concurrency.partition.by_args[0]")
}

func TestBodyTextValid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, body := range []string{
		`{"kind":"fail","args":{"times":0,"message":"x` + "\xff" + `y"}}`,
		`{"kind":"fail","args":{"times":0,"message":"\ud800"}}`,
		`{"kind":"fail","args":{"times":0,"message":"\udfff\ud800"}}`,
		`{"kind":"fail","tags":["` + "\xed\xa0\x80" + `abc"],"args":{"times":0}}`,
	} {
		wantProblem(t, b.post(t, "/v1/tasks", body), http.StatusUnprocessableEntity, typeValidation, "body")
		wantProblem(t, b.post(t, "/v1/batches", `{"tasks":[`+body+`]}`), http.StatusUnprocessableEntity, typeValidation, "body")
	}
	// A surrogate pair is a character like any other.
	wantStatus(t, b.post(t, "/v1/tasks", `{"kind":"fail","args":{"times":0,"message":"\ud83d\ude00"}}`), http.StatusCreated)
	if n := b.count(t, "river_job"); n != 1 {
		t.Errorf("want only the valid task inserted, got %d", n)
	}
}

func TestProblemsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	states := make([]string, 3000)
	for i := range states {
		states[i] = "a" + itoa(int64(i))
	}
	r := b.get(t, "/v1/tasks?state="+strings.Join(states, ","))
	var p apiProblem
	if err := json.Unmarshal(r.Body, &p); err != nil || r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("3,000 bad states: want a 422 problem, got %d (%v)", r.Status, err)
	}
	if len(p.Errors) > 100 || len(r.Body) > 50_000 {
		t.Errorf("3,000 bad states: %d errors, %d bytes", len(p.Errors), len(r.Body))
	}
	// A duplicate key under deep keys of 300 characters each.
	key := strings.Repeat("k", 300)
	body := `{"kind":"double","args":{"value":1},"x":` + strings.Repeat(`{"`+key+`":`, 30) + `{"a":1,"a":2}` + strings.Repeat("}", 30) + `}`
	r = b.post(t, "/v1/tasks", body)
	if err := json.Unmarshal(r.Body, &p); err != nil || r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("deep duplicate: want a 422 problem, got %d (%v)", r.Status, err)
	}
	if len(p.Detail) > 500 || len(p.Errors) != 1 || len(p.Errors[0].Field) > 210 {
		t.Errorf("deep duplicate: detail of %d bytes, field of %d: %.300s", len(p.Detail), len(p.Errors[0].Field), r.Body)
	}
}

func TestQueryStrict(t *testing.T) {
	t.Parallel()
	b := setupWithUI(t, nil)
	b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	long := strings.Repeat("x", 5000)

	tests := []struct {
		query string
		field string
	}{
		// Each of these was once answered 200 (or 500) with a filter
		// silently dropped or misread.
		{"limit=1;state=completed", "limit"},
		{"state=completed;limit=1", "state"},
		{"limit=05", "limit"},
		{"limit=+5", "limit"},
		{"limit=5&limit=6", "limit"},
		{"state=completed&state=running", "state"},
		{"kind=double&kind=sleep", "kind"},
		{"kind=%ff", "kind"},
		{"kind=%00", "kind"},
		{"queue=%00", "queue"},
		{"queue=%ed%a0%80", "queue"},
		{"kind=%zz", "kind"},
		{"kind=", "kind"},
		{"kind", "kind"},
		{"state=completed,,running", "state"},
		{"state=completed,%20running", "state"},
		{"state=completed,", "state"},
		{"limit=1&", "query"},
		{"&limit=1", "query"},
		{"=1", "query"},
		{"%ff=1", "query"},
		{"kind=" + strings.Repeat("k", 128), "kind"},
		{"cursor=aWQ6MDU", "cursor"}, // "id:05"
		{"nope=1", "nope"},
	}
	for _, tt := range tests {
		r := b.get(t, "/v1/tasks?"+tt.query)
		if r.Status != http.StatusUnprocessableEntity {
			t.Errorf("?%s: want 422 naming %q, got %s", tt.query, tt.field, r)
			continue
		}
		wantProblem(t, r, http.StatusUnprocessableEntity, typeValidation, tt.field)
	}

	// Routes without query parameters refuse any.
	for _, path := range []string{"/v1/tasks/1?x=1", "/v1/kinds?x=1", "/v1/batches/1?x=1"} {
		wantProblem(t, b.get(t, path), http.StatusUnprocessableEntity, typeValidation, "x")
	}
	wantProblem(t, b.post(t, "/v1/tasks?x=1", `{"kind":"double","args":{"value":1}}`), http.StatusUnprocessableEntity, typeValidation, "x")
	// The River UI's API gets no string PostgreSQL would choke on either.
	wantProblem(t, b.get(t, "/riverui/api/jobs?kinds=%ff"), http.StatusUnprocessableEntity, typeValidation, "kinds")

	// Echoed names and values are clipped, whatever is wrong with them.
	for _, path := range []string{
		"/v1/tasks?" + long + "=1&state=" + long,
		"/v1/tasks?" + long + ";x=1",
		"/v1/tasks?" + long,
		"/v1/tasks?" + long + "=%ff",
		"/v1/tasks?" + long + "=%zz",
		"/v1/tasks?limit=1&" + long + "=",
		"/v1/tasks?" + long + "=1&" + long + "=2",
		"/riverui/api/jobs?" + long + "=%ff",
		"/v1/" + long,
	} {
		r := b.get(t, path)
		if r.Status < 400 || r.Status >= 500 || len(r.Body) > 2000 {
			t.Errorf("want a short 4xx for a long name, got %d with %d bytes: %.200s", r.Status, len(r.Body), r.Body)
		}
	}

	// What is right still works.
	wantStatus(t, b.get(t, "/v1/tasks?state=available,running&kind=double&queue=default&limit=5"), http.StatusOK)
	wantStatus(t, b.get(t, "/v1/tasks?kind=d%6Fuble"), http.StatusOK)
}

func TestPathIDsDecoded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	task := b.createTask(t, `{"kind":"double","args":{"value":1}}`)
	if task.ID != 1 {
		t.Fatalf("want task 1 in a fresh database, got %d", task.ID)
	}
	for _, path := range []string{"/v1/tasks/%31", "/v1/%74asks/1", "/v1/tasks/1"} {
		r := b.get(t, path)
		wantStatus(t, r, http.StatusOK)
	}
	wantStatus(t, b.post(t, "/v1/tasks/%31/cancel", ""), http.StatusOK)
	// An encoded slash stays inside its segment.
	wantProblem(t, b.get(t, "/v1/tasks/1%2Fcancel"), http.StatusBadRequest, typeBlank, "id")
	wantProblem(t, b.get(t, "/v1/tasks/%30%31"), http.StatusBadRequest, typeBlank, "id") // "01"
	// Decoded once, like any URL: "%2531" is the id "%31".
	wantProblem(t, b.get(t, "/v1/tasks/%2531"), http.StatusBadRequest, typeBlank, "id")
	wantProblem(t, b.get(t, "/v1/tasks/%ff"), http.StatusUnprocessableEntity, typeValidation, "path")
}

func TestIdempotencyKeyHeaderOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	send := func(keys ...string) *response {
		req, err := http.NewRequest("POST", b.server.URL+"/v1/tasks", strings.NewReader(`{"kind":"double","args":{"value":1}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Idempotency-Key"] = keys
		res, err := b.server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return &response{Method: "POST", Path: "/v1/tasks", Status: res.StatusCode, Header: res.Header, Body: body}
	}
	wantProblem(t, send("a-key", "another-key"), http.StatusBadRequest, typeBlank, "Idempotency-Key")
	wantProblem(t, send("a-key", "a-key"), http.StatusBadRequest, typeBlank, "Idempotency-Key")
	wantProblem(t, send(""), http.StatusBadRequest, typeBlank, "Idempotency-Key")
	if n := b.count(t, "river_job"); n != 0 {
		t.Errorf("refused requests inserted %d tasks", n)
	}
	wantStatus(t, send("a-key"), http.StatusCreated)
	wantStatus(t, send("a-key"), http.StatusOK)
}

func TestUnknownNamesClipped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("é", 5000)
	for _, body := range []string{
		`{"kind":"` + long + `"}`,
		`{"kind":"double","queue":"` + long + `","args":{"value":1}}`,
		`{"kind":"double","tags":["` + long + `"],"args":{"value":1}}`,
		`{"kind":"double","delay":"` + long + `","args":{"value":1}}`,
	} {
		r := b.post(t, "/v1/tasks", body)
		if r.Status != http.StatusUnprocessableEntity {
			t.Errorf("want 422, got %d", r.Status)
		}
		if len(r.Body) > 1500 {
			t.Errorf("a 422 echoed too much: %d bytes: %.300s…", len(r.Body), r.Body)
		}
	}
}
