package http_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/auth"
	"github.com/taskd/taskd/internal/config"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/store"
)

// authBundle is a server with auth on and one token of each kind.
type authBundle struct {
	*testBundle
	cache  *auth.Cache
	st     *store.Store
	tokens map[string]string // by name: admin, read, submit, work, revoked, expired; cpu-<scope> of the cpu queue only
}

func setupAuth(t *testing.T, limiter *auth.Limiter) *authBundle {
	t.Helper()
	var cache *auth.Cache
	// pull, an external kind, so that tasks can be claimed, completed...
	f, err := config.Parse("taskd.yaml", []byte("kinds:\n  - name: pull\n    run: external\n"), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), f.Kinds...)...)
	if err != nil {
		t.Fatal(err)
	}
	b := setupWith(t, setupOpts{Kinds: reg, ConfigFunc: func(cfg *taskdhttp.Config) {
		var err error
		cache, err = auth.NewCache(auth.CacheConfig{Store: cfg.Store})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth, cfg.AuthLimiter = cache, limiter
		cfg.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("# metrics\n")) })
		// A stand-in for River UI: what is checked here is the guard in
		// front of it (the real UI is driven in a browser elsewhere).
		cfg.Extra = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ui")) })
		cfg.ExtraPrefix = "/riverui"
	}})
	ab := &authBundle{testBundle: b, cache: cache, st: store.New(b.pool), tokens: map[string]string{}}
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	for _, tk := range []struct {
		name    string
		scopes  []string
		expires *time.Time
	}{
		{"admin", []string{"admin"}, nil}, {"read", []string{"read"}, nil}, {"submit", []string{"submit"}, nil},
		{"work", []string{"work"}, nil}, {"revoked", []string{"admin"}, nil}, {"expired", []string{"admin"}, &past},
	} {
		ab.tokens[tk.name] = ab.newToken(t, tk.name, tk.scopes, tk.expires)
	}
	// The tenants of the matrix's "other queue" column: each scope, limited
	// to the cpu queue.
	for _, scope := range []string{"read", "submit", "work", "admin"} {
		ab.tokens["cpu-"+scope] = ab.newTenantToken(t, "cpu-"+scope, []string{scope}, []string{"cpu"}, nil)
	}
	if err := ab.st.TokenRevoke(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}
	ab.refresh(t)
	if !cache.Enabled() {
		t.Fatal("auth is off with tokens in the database")
	}
	return ab
}

func (ab *authBundle) newToken(t *testing.T, name string, scopes []string, expires *time.Time) string {
	t.Helper()
	return ab.newTenantToken(t, name, scopes, nil, expires)
}

// newTenantToken is newToken for a token limited to queues (nil: every
// queue).
func (ab *authBundle) newTenantToken(t *testing.T, name string, scopes, queues []string, expires *time.Time) string {
	t.Helper()
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ab.st.TokenInsert(context.Background(), store.Token{Name: name, Hash: auth.HashToken(tok), Scopes: scopes, Queues: queues, ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func (ab *authBundle) refresh(t *testing.T) {
	t.Helper()
	if err := ab.cache.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// wrongScopeToken names a token without scope: the token of a scope
// that does not include it.
var wrongScopeToken = map[auth.Scope]string{
	auth.ScopeRead:   "work",
	auth.ScopeSubmit: "read",
	auth.ScopeWork:   "submit",
	auth.ScopeAdmin:  "submit",
}

// issueScopes is the scope of every route as issue 10 fixes it, written
// out apart from the route table so that a wrong entry there fails.
var issueScopes = map[string]auth.Scope{
	"GET /healthz": "", "GET /readyz": "", "GET /openapi.json": "",
	"GET /v1/kinds": "read", "GET /v1/tasks": "read", "GET /v1/tasks/{id}": "read", "GET /v1/queues": "read",
	"GET /v1/schedules": "read", "GET /v1/batches/{id}": "read",
	"POST /v1/tasks": "submit", "POST /v1/tasks/{id}/cancel": "submit", "POST /v1/tasks/{id}/retry": "submit",
	"POST /v1/batches": "submit", "POST /v1/batches/{id}/cancel": "submit",
	"POST /v1/claims": "work", "POST /v1/tasks/{id}/complete": "work", "POST /v1/tasks/{id}/fail": "work",
	"POST /v1/tasks/{id}/heartbeat": "work",
	"POST /v1/queues/{name}/pause":  "admin", "POST /v1/queues/{name}/resume": "admin", "GET /metrics": "admin",
	"* /riverui/*": "admin",
}

// concretePath turns a route pattern into a path it serves: of no task or
// batch that exists (those of the "other queue" column stay untouched).
func concretePath(pattern string) string {
	r := strings.NewReplacer("{id}", "999999999", "{name}", "default", "*", "api/jobs")
	return r.Replace(pattern)
}

// TestAuthMatrix sends every route of the router (chi.Walk, so that a new
// route cannot be left out) every kind of credential and checks the exact
// answer: 401 without a valid token, 403 with a token lacking the route's
// scope, neither with the right one (or admin), and for a token of the
// right scope limited to another queue the tenant rules' answer
// (otherQueueColumn). A route without a scope declared in the route table,
// or without an "other queue" case, fails the test.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	ab := setupAuth(t, auth.NewLimiter(1<<30, time.Hour, nil)) // the matrix fails often; the limiter has its own test
	type column struct {
		name   string
		header func(scope auth.Scope) string // "" sends none
		// want: 401, 403, or 0 for "neither 401 nor 403".
		want func(scope auth.Scope) int
	}
	bearer := func(name string) func(auth.Scope) string {
		return func(auth.Scope) string { return "Bearer " + ab.tokens[name] }
	}
	always := func(code int) func(auth.Scope) int { return func(auth.Scope) int { return code } }
	columns := []column{
		{"no token", func(auth.Scope) string { return "" }, always(401)},
		{"malformed header", func(auth.Scope) string { return "Token " + ab.tokens["admin"] }, always(401)},
		{"empty bearer", func(auth.Scope) string { return "Bearer " }, always(401)},
		{"unknown", func(auth.Scope) string { return "Bearer tkd_" + strings.Repeat("A", 43) }, always(401)},
		{"revoked", bearer("revoked"), always(401)},
		{"expired", bearer("expired"), always(401)},
		{"wrong scope", func(s auth.Scope) string { return "Bearer " + ab.tokens[wrongScopeToken[s]] }, always(403)},
		{"right scope", func(s auth.Scope) string { return "Bearer " + ab.tokens[string(s)] }, always(0)},
		{"admin", bearer("admin"), always(0)},
		{"basic, right scope", func(s auth.Scope) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+ab.tokens[string(s)]))
		}, always(0)},
	}
	// "other queue": a token of the right scope limited to cpu, at what is
	// default's (otherQueueColumn, checked per route below).
	oq := newOtherQueueColumn(t, ab)

	type rt struct{ method, pattern string }
	var routes []rt
	if err := chi.Walk(taskdhttp.Router(ab.handler), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, rt{method, route})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(routes) < 20 {
		t.Fatalf("chi.Walk found %d routes", len(routes))
	}
	seen := map[string]bool{}
	for _, r := range routes {
		scope, ok := taskdhttp.RouteScope(ab.handler, r.method, r.pattern)
		if !ok {
			t.Errorf("%s %s has no scope in the route table", r.method, r.pattern)
			continue
		}
		seen[r.pattern] = true
		key := r.method + " " + r.pattern
		if strings.HasPrefix(r.pattern, "/riverui/") {
			key = "* " + r.pattern
		}
		if want, ok := issueScopes[key]; !ok || want != scope {
			t.Errorf("%s is declared with scope %q; issue 10 says %q (known: %v)", key, scope, want, ok)
		}
		path := concretePath(r.pattern)
		body := ""
		if r.method != http.MethodGet && r.method != http.MethodHead {
			body = "{}"
		}
		if r.pattern == "/v1/claims" {
			body = `{"wait":"0s"}` // an empty claim would wait its full default
		}
		for _, col := range columns {
			var headers []string
			if h := col.header(scope); h != "" && scope != "" {
				headers = []string{"Authorization", h}
			} else if h := col.header(auth.ScopeAdmin); h != "" {
				headers = []string{"Authorization", h} // open route: any credential
			}
			res := ab.do(t, r.method, path, body, headers...)
			want := col.want(scope)
			if scope == "" {
				want = 0 // open: never 401 or 403
			}
			switch {
			case want == 0 && (res.Status == 401 || res.Status == 403):
				t.Errorf("%s %s (scope %q), %s: %d, want neither 401 nor 403: %s", r.method, r.pattern, scope, col.name, res.Status, res.Body)
			case want != 0 && res.Status != want:
				t.Errorf("%s %s (scope %q), %s: %d, want %d: %s", r.method, r.pattern, scope, col.name, res.Status, want, res.Body)
			case want == 401:
				if got := res.Header.Get("WWW-Authenticate"); got != `Bearer realm="taskd", Basic realm="taskd"` {
					t.Errorf("%s %s, %s: WWW-Authenticate %q", r.method, r.pattern, col.name, got)
				}
				fallthrough
			case want == 403:
				if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("%s %s, %s: Content-Type %q, want a problem", r.method, r.pattern, col.name, ct)
				}
			}
		}
		oq.check(t, ab, key, scope)
	}
	oq.checkUntouched(t, ab)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/metrics", "/riverui/*", "/v1/tasks/{id}/complete"} {
		if !seen[p] {
			t.Errorf("chi.Walk did not report %s", p)
		}
	}
	// openapi.json states each operation's scope as the route table does.
	type operation struct {
		Scope     *auth.Scope    `json:"x-taskd-scope"`
		Security  *[]any         `json:"security"`
		Responses map[string]any `json:"responses"`
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(ab.get(t, "/openapi.json").Body, &doc); err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			scope, ok := taskdhttp.RouteScope(ab.handler, strings.ToUpper(method), path)
			switch {
			case !ok:
				t.Errorf("openapi.json: %s %s is not routed", method, path)
			case scope == "" && (op.Security == nil || len(*op.Security) != 0):
				t.Errorf("openapi.json: %s %s is open but does not say security: []", method, path)
			case scope != "" && (op.Scope == nil || *op.Scope != scope || op.Responses["401"] == nil || op.Responses["403"] == nil):
				t.Errorf("openapi.json: %s %s: x-taskd-scope %v or its 401/403 do not match the route's scope %q", method, path, op.Scope, scope)
			}
		}
	}

	// River UI's own API, below the mount, and a method chi routes to it
	// through the 405 handler.
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete, "PROPFIND"} {
		wantStatus(t, ab.do(t, m, "/riverui/api/jobs", ""), 401)
		wantStatus(t, ab.do(t, m, "/riverui/api/jobs", "", "Authorization", "Bearer "+ab.tokens["read"]), 403)
	}

	// Auth goes off once no token is left (checked live).
	for _, name := range []string{"admin", "read", "submit", "work", "expired", "cpu-read", "cpu-submit", "cpu-work", "cpu-admin"} {
		if err := ab.st.TokenRevoke(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	ab.refresh(t)
	wantStatus(t, ab.get(t, "/v1/tasks"), 200)
}

func TestAuthBasic(t *testing.T) {
	t.Parallel()
	ab := setupAuth(t, nil)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	wantStatus(t, ab.do(t, "GET", "/riverui/", "", "Authorization", basic("", ab.tokens["admin"])), 200)
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", "Authorization", basic("someone", ab.tokens["read"])), 200)
	wantStatus(t, ab.do(t, "GET", "/riverui/", "", "Authorization", basic("someone", ab.tokens["read"])), 403)
	res := ab.do(t, "GET", "/riverui/", "", "Authorization", basic(ab.tokens["admin"], ""))
	wantStatus(t, res, 401) // the token must be the password
	if !strings.Contains(res.Header.Get("WWW-Authenticate"), `Basic realm="taskd"`) {
		t.Errorf("WWW-Authenticate %q does not offer Basic: browsers would not prompt", res.Header.Get("WWW-Authenticate"))
	}
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", "Authorization", "Basic !!notbase64"), 401)
	// Bearer works in any case of the scheme.
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", "Authorization", "bearer "+ab.tokens["read"]), 200)
}

// TestAuthLimiter: past the failures allowed, an address's failures are
// answered 429, while a valid token from the same address still passes.
func TestAuthLimiter(t *testing.T) {
	t.Parallel()
	ab := setupAuth(t, auth.NewLimiter(3, time.Hour, nil))
	bad := []string{"Authorization", "Bearer tkd_nope"}
	for range 3 {
		wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", bad...), 401)
	}
	res := ab.do(t, "GET", "/v1/tasks", "", bad...)
	wantStatus(t, res, 429)
	if res.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", ""), 429) // no token is a failure too
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", "Authorization", "Bearer "+ab.tokens["read"]), 200)
	wantStatus(t, ab.do(t, "GET", "/riverui/", "", "Authorization", "Bearer "+ab.tokens["read"]), 403) // a known token's lack of scope is no failure
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", bad...), 429)
}

// TestAuthLastUsed: a request records the token's use only in memory;
// Run writes it.
func TestAuthLastUsed(t *testing.T) {
	t.Parallel()
	ab := setupAuth(t, nil)
	wantStatus(t, ab.do(t, "GET", "/v1/tasks", "", "Authorization", "Bearer "+ab.tokens["read"]), 200)
	lastUsed := func() *time.Time {
		toks, err := ab.st.TokenList(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range toks {
			if tk.Name == "read" {
				return tk.LastUsedAt
			}
		}
		t.Fatal("token read not listed")
		return nil
	}
	if lastUsed() != nil {
		t.Fatal("last_used_at written on the request")
	}
	cache, err := auth.NewCache(auth.CacheConfig{Store: ab.st, TouchInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, res := cache.Lookup(ab.tokens["read"]); res != auth.Valid {
		t.Fatalf("lookup: %v", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cache.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for lastUsed() == nil {
		if time.Now().After(deadline) {
			t.Fatal("last_used_at not written within 10s")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// otherQueueCase is the "other queue" column's request for one route: a
// token of the route's scope limited to the cpu queue, sent at a task,
// batch or queue of default.
type otherQueueCase struct {
	// notApplicable says why the route has no queue to be outside of; the
	// right-scope tenant is then only checked not to be refused (401/403).
	notApplicable string
	path, body    string
	want          int
	// problem is the problem type a 403 must have, fields its errors.
	problem string
	fields  []string
	// check looks further at a 200 (a filtered list).
	check func(t *testing.T, res *response)
}

// otherQueueColumn holds the column's cases by route key and what they
// are sent at.
type otherQueueColumn struct {
	cases   map[string]otherQueueCase
	task    apiTask // of default
	batchID int64   // of default
}

// newOtherQueueColumn submits a task and a batch to default (with the
// admin token; scheduled an hour ahead, so that the other columns' claims
// leave them be) and returns the column's case for every route key of the
// matrix. A route missing here fails the matrix, so that a new route
// cannot silently skip the column; one the column does not apply to says
// why.
func newOtherQueueColumn(t *testing.T, ab *authBundle) *otherQueueColumn {
	t.Helper()
	admin := []string{"Authorization", "Bearer " + ab.tokens["admin"]}
	r := ab.do(t, "POST", "/v1/tasks", `{"kind":"pull","args":{},"queue":"default","delay":"1h"}`, admin...)
	wantStatus(t, r, http.StatusCreated)
	var task apiTask
	decode(t, r, &task)
	r = ab.do(t, "POST", "/v1/batches", `{"tasks":[{"kind":"pull","args":{},"queue":"default","delay":"1h"}]}`, admin...)
	wantStatus(t, r, http.StatusCreated)
	var batch apiBatchCreated
	decode(t, r, &batch)
	task1, batch1 := "/v1/tasks/"+itoa(task.ID), "/v1/batches/"+itoa(batch.ID)
	notFound := func(path, body string) otherQueueCase {
		return otherQueueCase{path: path, body: body, want: http.StatusNotFound}
	}
	forbidden := func(path, body string, fields ...string) otherQueueCase {
		return otherQueueCase{path: path, body: body, want: http.StatusForbidden, problem: typeQueueForbidden, fields: fields}
	}
	open := otherQueueCase{notApplicable: "open to anyone"}
	return &otherQueueColumn{task: task, batchID: batch.ID, cases: map[string]otherQueueCase{
		"GET /healthz": open, "GET /readyz": open, "GET /openapi.json": open,
		"GET /v1/kinds":     {notApplicable: "kinds are not per queue: every kind is listed"},
		"GET /v1/schedules": {notApplicable: "this server has no schedules; their filtering by queue is TestTenantQueues's"},
		"GET /metrics":      {notApplicable: "not per queue: a tenant's admin token gets every queue's metrics (docs/SECURITY.md)"},
		"* /riverui/*":      {notApplicable: "not per queue: a tenant's admin token gets all of River UI (docs/SECURITY.md)"},

		"GET /v1/tasks": {path: "/v1/tasks", want: http.StatusOK, check: func(t *testing.T, res *response) {
			var l apiList
			decode(t, res, &l)
			if len(l.Tasks) != 0 {
				t.Errorf("GET /v1/tasks, other queue: lists %d tasks of default", len(l.Tasks))
			}
		}},
		"GET /v1/tasks/{id}": notFound(task1, ""),
		"GET /v1/queues": {path: "/v1/queues", want: http.StatusOK, check: func(t *testing.T, res *response) {
			var l client.QueueList
			decode(t, res, &l)
			if len(l.Queues) != 1 || l.Queues[0].Name != "cpu" {
				t.Errorf("GET /v1/queues, other queue: %+v, want cpu alone", l.Queues)
			}
		}},
		"GET /v1/batches/{id}":          notFound(batch1, ""),
		"POST /v1/tasks":                forbidden("/v1/tasks", `{"kind":"pull","args":{},"queue":"default"}`, "queue"),
		"POST /v1/tasks/{id}/cancel":    notFound(task1+"/cancel", ""),
		"POST /v1/tasks/{id}/retry":     notFound(task1+"/retry", ""),
		"POST /v1/batches":              forbidden("/v1/batches", `{"tasks":[{"kind":"pull","args":{},"queue":"cpu"},{"kind":"pull","args":{},"queue":"default"}]}`, "tasks[1].queue"),
		"POST /v1/batches/{id}/cancel":  notFound(batch1+"/cancel", ""),
		"POST /v1/claims":               forbidden("/v1/claims", `{"queues":["default"],"wait":"0s"}`, "queues"),
		"POST /v1/tasks/{id}/complete":  notFound(task1+"/complete", `{"lease":"x"}`),
		"POST /v1/tasks/{id}/fail":      notFound(task1+"/fail", `{"lease":"x","error":"e"}`),
		"POST /v1/tasks/{id}/heartbeat": notFound(task1+"/heartbeat", `{"lease":"x"}`),
		"POST /v1/queues/{name}/pause":  notFound("/v1/queues/default/pause", ""),
		"POST /v1/queues/{name}/resume": notFound("/v1/queues/default/resume", ""),
	}}
}

// check runs the column for the route key (as issueScopes spells it) of
// scope.
func (c *otherQueueColumn) check(t *testing.T, ab *authBundle, key string, scope auth.Scope) {
	t.Helper()
	oc, ok := c.cases[key]
	method, pattern, _ := strings.Cut(key, " ")
	if method == "*" {
		method = http.MethodGet
	}
	switch {
	case !ok:
		t.Errorf(`%s has no "other queue" case: add one, or say why it does not apply`, key)
		return
	case oc.notApplicable != "":
		if scope == "" {
			return
		}
		if res := ab.do(t, method, concretePath(pattern), "", "Authorization", "Bearer "+ab.tokens["cpu-"+string(scope)]); res.Status == 401 || res.Status == 403 {
			t.Errorf("%s, other queue (n/a: %s): %d: %s", key, oc.notApplicable, res.Status, res.Body)
		}
		return
	}
	res := ab.do(t, method, oc.path, oc.body, "Authorization", "Bearer "+ab.tokens["cpu-"+string(scope)])
	if res.Status != oc.want {
		t.Errorf("%s %s (scope %q), other queue: %d, want %d: %s", method, oc.path, scope, res.Status, oc.want, res.Body)
		return
	}
	if oc.problem != "" {
		wantProblem(t, res, oc.want, oc.problem, oc.fields...)
	}
	if oc.check != nil {
		oc.check(t, res)
	}
}

// checkUntouched: the tenants changed nothing of default's.
func (c *otherQueueColumn) checkUntouched(t *testing.T, ab *authBundle) {
	t.Helper()
	admin := []string{"Authorization", "Bearer " + ab.tokens["admin"]}
	r := ab.do(t, "GET", "/v1/tasks/"+itoa(c.task.ID), "", admin...)
	wantStatus(t, r, http.StatusOK)
	var task apiTask
	decode(t, r, &task)
	if task.State != c.task.State {
		t.Errorf("other queue: task %d went from %s to %s", task.ID, c.task.State, task.State)
	}
	r = ab.do(t, "GET", "/v1/batches/"+itoa(c.batchID), "", admin...)
	wantStatus(t, r, http.StatusOK)
	var batch struct {
		Counts map[string]int `json:"counts"`
	}
	if err := json.Unmarshal(r.Body, &batch); err != nil {
		t.Fatal(err)
	}
	if batch.Counts["scheduled"] != 1 {
		t.Errorf("other queue: batch %d counts %v, want its task scheduled still", c.batchID, batch.Counts)
	}
	r = ab.do(t, "GET", "/v1/queues", "", admin...)
	wantStatus(t, r, http.StatusOK)
	var l client.QueueList
	decode(t, r, &l)
	for _, q := range l.Queues {
		if q.Name == "default" && q.Paused {
			t.Error("other queue: default was paused")
		}
	}
}
