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

	"github.com/taskd/taskd/internal/auth"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/store"
)

// authBundle is a server with auth on and one token of each kind.
type authBundle struct {
	*testBundle
	cache  *auth.Cache
	st     *store.Store
	tokens map[string]string // by name: admin, read, submit, work, revoked, expired
}

func setupAuth(t *testing.T, limiter *auth.Limiter) *authBundle {
	t.Helper()
	var cache *auth.Cache
	b := setupWith(t, setupOpts{ConfigFunc: func(cfg *taskdhttp.Config) {
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
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ab.st.TokenInsert(context.Background(), store.Token{Name: name, Hash: auth.HashToken(tok), Scopes: scopes, ExpiresAt: expires}); err != nil {
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

// concretePath turns a route pattern into a path it serves.
func concretePath(pattern string) string {
	r := strings.NewReplacer("{id}", "1", "{name}", "default", "*", "api/jobs")
	return r.Replace(pattern)
}

// TestAuthMatrix sends every route of the router (chi.Walk, so that a new
// route cannot be left out) every kind of credential and checks the exact
// answer: 401 without a valid token, 403 with a token lacking the route's
// scope, neither with the right one (or admin). A route without a scope
// declared in the route table fails the test.
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
		// "other queue" (a token limited to other queues: 404 or 403) is
		// queue tenancy's column, added with it.
	}

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
	}
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
	for _, name := range []string{"admin", "read", "submit", "work", "expired"} {
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
