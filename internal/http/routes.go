package http

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: http.StatusMethodNotAllowed, Detail: r.Method + " is not allowed on " + r.URL.Path})
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
