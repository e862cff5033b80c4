package http

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/taskd/taskd/internal/auth"
)

// BodyBytesInFlight reports the bytes of request bodies that h, made by
// NewServer, holds against MaxBodyBytesInFlight, so that tests can wait for
// a body to be in flight instead of guessing.
func BodyBytesInFlight(h http.Handler) int64 { return h.(*server).budget.inUse() }

// Router returns the chi router of h, made by NewServer, for tests that
// walk its routes.
func Router(h http.Handler) chi.Routes { return h.(*server).handler.(chi.Routes) }

// RouteScope returns the scope declared for a route as chi.Walk names it,
// and whether one is declared at all (scopeOpen, "", for open routes).
func RouteScope(h http.Handler, method, pattern string) (auth.Scope, bool) {
	s := h.(*server)
	if sc, ok := s.scopes[method+" "+pattern]; ok {
		return sc, true
	}
	sc, ok := s.scopes["* "+pattern]
	return sc, ok
}
