package http

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
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

	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Get("/openapi.json", s.handleOpenAPI)
	if s.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", s.Metrics)
	}

	// Full paths rather than r.Route("/v1", ...): a mounted subrouter
	// makes chi match "/v1" itself for every method, so 405s for it
	// would list them all.
	r.Get("/v1/kinds", s.handleKindList)
	r.Post("/v1/tasks", s.handleTaskCreate)
	r.Get("/v1/tasks", s.handleTaskList)
	r.Get("/v1/tasks/{id}", s.handleTaskGet)
	r.Post("/v1/tasks/{id}/cancel", s.handleTaskCancel)
	r.Post("/v1/tasks/{id}/retry", s.handleTaskRetry)
	r.Post("/v1/tasks/{id}/complete", s.handleTaskComplete)
	r.Post("/v1/tasks/{id}/fail", s.handleTaskFail)
	r.Post("/v1/tasks/{id}/heartbeat", s.handleTaskHeartbeat)
	r.Post("/v1/claims", s.handleClaim)
	r.Get("/v1/queues", s.handleQueueList)
	r.Post("/v1/queues/{name}/pause", s.handleQueuePause)
	r.Post("/v1/queues/{name}/resume", s.handleQueueResume)
	r.Get("/v1/schedules", s.handleScheduleList)
	r.Post("/v1/batches", s.handleBatchCreate)
	r.Get("/v1/batches/{id}", s.handleBatchGet)
	r.Post("/v1/batches/{id}/cancel", s.handleBatchCancel)

	if s.Extra != nil {
		r.Mount(s.ExtraPrefix, s.Extra)
	}
	return r
}
