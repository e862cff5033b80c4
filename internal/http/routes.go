package http

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/taskd/taskd/internal/auth"
)

// methods are the methods the router is asked about when it answers 405 or
// 404 for a path: every method any route of taskd or of the River UI uses.
// HEAD is not among them: it is allowed wherever GET is.
var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	if s.ObserveFunc != nil {
		// Outermost: it sees every answer, a recovered panic's included.
		r.Use(s.observe)
	}
	// Order matters: panics anywhere become a 500 problem; every request
	// gets its deadlines first, then cross-origin writes are refused
	// before anything reads their body, and every handler (ours or the
	// River UI's) sees a decoded, valid path and query.
	r.Use(s.recoverer)
	r.Use(s.deadlines) // first: even a refused request must not wait forever for its body
	r.Use(s.cors)      // before crossOrigin and routing: it answers preflights
	r.Use(s.crossOrigin())
	r.Use(s.validURL)
	// HEAD is served wherever GET is (net/http drops the body).
	r.Use(middleware.GetHead)

	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + clip(routingPath(r.URL))})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// chi comes here for a known path with another method, and for any
		// path with a method it does not know at all ("FOO /nope"), so the
		// allowed methods are asked of the router: none means no such
		// endpoint. The River UI knows its own routes: it answers for its
		// paths whatever the method.
		if s.Extra != nil && (routingPath(req.URL) == s.ExtraPrefix || strings.HasPrefix(routingPath(req.URL), s.ExtraPrefix+"/")) {
			s.Extra.ServeHTTP(w, req)
			return
		}
		var allowed []string
		for _, m := range methods {
			if r.Match(chi.NewRouteContext(), m, routingPath(req.URL)) {
				allowed = append(allowed, m)
				if m == http.MethodGet {
					allowed = append(allowed, http.MethodHead)
				}
			}
		}
		if len(allowed) == 0 {
			writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + clip(routingPath(req.URL))})
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, Problem{Status: http.StatusMethodNotAllowed,
			Detail: clip(req.Method) + " is not allowed on " + clip(routingPath(req.URL)) + "; allowed: " + strings.Join(allowed, ", ")})
	})

	s.scopes = map[string]auth.Scope{}
	for _, rt := range s.routeTable() {
		s.scopes[rt.method+" "+rt.pattern] = rt.scope
		h := s.authorize(rt.scope, rt.handler)
		if rt.pattern != "/v1/claims" {
			h = s.databaseDeadline(h)
		}
		r.Method(rt.method, rt.pattern, h)
	}
	if s.Extra != nil {
		// Its own routes, any method; s.Extra requires admin (NewServer).
		s.scopes["* "+s.ExtraPrefix+"/*"] = auth.ScopeAdmin
		r.Mount(s.ExtraPrefix, s.Extra)
	}
	return r
}

// route is one endpoint of the API and the scope a token needs for it
// once auth is on (scopeOpen: none, ever).
type route struct {
	method, pattern string
	scope           auth.Scope
	handler         http.Handler
}

// routeTable is every route of the API with its scope, the one place both
// are declared: the access matrix test walks the router and fails on a
// route missing here.
//
// Full paths rather than r.Route("/v1", ...): a mounted subrouter makes chi
// match "/v1" itself for every method, so 405s for it would list them all.
func (s *server) routeTable() []route {
	h := func(method, pattern string, scope auth.Scope, f http.HandlerFunc) route {
		return route{method: method, pattern: pattern, scope: scope, handler: f}
	}
	const get, post = http.MethodGet, http.MethodPost
	const read, submit, work, admin = auth.ScopeRead, auth.ScopeSubmit, auth.ScopeWork, auth.ScopeAdmin
	rs := []route{
		h(get, "/healthz", scopeOpen, s.handleHealthz),
		h(get, "/readyz", scopeOpen, s.handleReadyz),
		h(get, "/openapi.json", scopeOpen, s.handleOpenAPI),

		h(get, "/v1/kinds", read, s.handleKindList),
		h(post, "/v1/tasks", submit, s.handleTaskCreate),
		h(get, "/v1/tasks", read, s.handleTaskList),
		h(get, "/v1/tasks/{id}", read, s.handleTaskGet),
		h(post, "/v1/tasks/{id}/cancel", submit, s.handleTaskCancel),
		h(post, "/v1/tasks/{id}/retry", submit, s.handleTaskRetry),
		h(post, "/v1/tasks/{id}/complete", work, s.handleTaskComplete),
		h(post, "/v1/tasks/{id}/fail", work, s.handleTaskFail),
		h(post, "/v1/tasks/{id}/heartbeat", work, s.handleTaskHeartbeat),
		h(post, "/v1/claims", work, s.handleClaim),
		h(get, "/v1/queues", read, s.handleQueueList),
		h(post, "/v1/queues/{name}/pause", admin, s.handleQueuePause),
		h(post, "/v1/queues/{name}/resume", admin, s.handleQueueResume),
		h(get, "/v1/schedules", read, s.handleScheduleList),
		h(post, "/v1/batches", submit, s.handleBatchCreate),
		h(get, "/v1/batches/{id}", read, s.handleBatchGet),
		h(post, "/v1/batches/{id}/cancel", submit, s.handleBatchCancel),
	}
	if s.Metrics != nil {
		rs = append(rs, route{method: get, pattern: "/metrics", scope: admin, handler: s.Metrics})
	}
	return rs
}
