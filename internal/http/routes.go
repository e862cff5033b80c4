package http

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// A custom handler gets no list of allowed methods from chi, so it
		// asks the router.
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, Problem{Status: http.StatusMethodNotAllowed, Detail: req.Method + " is not allowed on " + req.URL.Path + "; allowed: " + strings.Join(allowed, ", ")})
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
