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
	// Order matters: panics anywhere become a 500 problem; cross-origin
	// writes are refused before anything reads their body; every request
	// gets its deadlines and a decoded, valid path and query before a
	// handler (ours or the River UI's) sees it.
	r.Use(s.recoverer)
	r.Use(s.crossOrigin())
	r.Use(s.deadlines)
	r.Use(s.validURL)
	// HEAD is served wherever GET is (net/http drops the body).
	r.Use(middleware.GetHead)

	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + clip(r.URL.Path)})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// chi comes here for a known path with another method, and for any
		// path with a method it does not know at all ("FOO /nope"), so the
		// allowed methods are asked of the router: none means no such
		// endpoint.
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
			writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + clip(req.URL.Path)})
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, Problem{Status: http.StatusMethodNotAllowed,
			Detail: clip(req.Method) + " is not allowed on " + clip(req.URL.Path) + "; allowed: " + strings.Join(allowed, ", ")})
	})

	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Get("/openapi.json", s.handleOpenAPI)

	r.Route("/v1", func(r chi.Router) {
		r.Get("/kinds", s.handleKindList)
		r.Post("/tasks", s.handleTaskCreate)
		r.Get("/tasks", s.handleTaskList)
		r.Get("/tasks/{id}", s.handleTaskGet)
		r.Post("/tasks/{id}/cancel", s.handleTaskCancel)
		r.Post("/tasks/{id}/retry", s.handleTaskRetry)
		r.Post("/batches", s.handleBatchCreate)
		r.Get("/batches/{id}", s.handleBatchGet)
	})

	if s.Extra != nil {
		r.Mount(s.ExtraPrefix, s.Extra)
	}
	return r
}
