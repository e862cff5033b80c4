package http

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"
)

// routeUnmatched is the route label of requests no route matched, so that
// scanners of random paths cannot grow the metrics' label sets.
const routeUnmatched = "unmatched"

// observe reports every request to ObserveFunc with the route pattern
// chi matched (never the raw path, whose IDs would make a series per
// task), the method (one the API knows, or "other") and the status. It is
// the outermost middleware, so that it sees the 500 of a recovered panic
// and the 403 of a refused cross-origin request too.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			route := routeUnmatched
			if rc := chi.RouteContext(r.Context()); rc != nil {
				// chi fills the route context while routing, after the
				// middleware ran.
				route = cmp.Or(rc.RoutePattern(), routeUnmatched)
			}
			method := r.Method
			if !slices.Contains(methods, method) && method != http.MethodHead {
				method = "other"
			}
			s.ObserveFunc(route, method, cmp.Or(sw.status, http.StatusOK), time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps the writer an http.Flusher for handlers that check.
func (w *statusWriter) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController.Flush calls first: without
// it the controller would fall back to Flush and lose the write's error,
// which a claim needs to give its tasks back (writeJSONErr).
func (w *statusWriter) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}
