package http

import (
	"bytes"
	"cmp"
	"io"
	"maps"
	"net/http"

	"github.com/taskd/taskd/internal/store"
)

// guardExtra wraps the handler mounted beside the API (the River UI),
// whose code taskd does not control, with what taskd promises of every
// route:
//   - its body is read like the API's (readBody: the in-flight budget, the
//     body deadlines);
//   - a JSON body with text PostgreSQL cannot store (NUL, invalid UTF-8,
//     an unpaired surrogate) is refused with 422 instead of reaching SQL;
//   - a GET or HEAD that failed with 500 is run once more after the pool
//     was reset, since the usual cause is a connection cut under it (a
//     restart, pg_terminate_backend) and such a request is safe to repeat.
func (s *server) guardExtra(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 { // declared or chunked
			// Read as the API's bodies are: within the budget and the
			// body deadlines, answered 413, 503 or 408 here.
			body, release, ok := s.readBody(w, r, s.MaxBodyBytes)
			if !ok {
				return
			}
			defer release()
			if !checkText(w, body) {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if s.Store == nil {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// A write is not repeated; instead a connection is tried
			// first, and the pool reset when it was cut, so that the
			// write does not meet a dead one.
			if err := s.Store.Ping(r.Context()); store.IsConnectionLost(err) {
				s.Store.Pool().Reset()
			}
			next.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: http.Header{}}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusInternalServerError {
			s.Store.Pool().Reset()
			rec = &recorder{header: http.Header{}}
			next.ServeHTTP(rec, r)
		}
		maps.Copy(w.Header(), rec.header)
		w.WriteHeader(cmp.Or(rec.status, http.StatusOK))
		_, _ = w.Write(rec.body.Bytes())
	})
}

// recorder keeps an answer so that it can be thrown away and made again.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}
