package http

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
)

// crossOrigin refuses unsafe (non-GET/HEAD/OPTIONS) requests that a browser
// marks as cross-origin (Sec-Fetch-Site, or an Origin whose host is not the
// Host), on every route including the River UI's API: otherwise any web
// page a user opens could submit, cancel or delete tasks on a taskd it can
// reach, since a cross-site text/plain POST needs no preflight and taskd
// reads bodies as JSON whatever their Content-Type. Requests without those
// headers (curl, server-side clients) pass; so do origins listed in
// Config.TrustedOrigins.
func (s *server) crossOrigin() func(http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	for _, o := range s.TrustedOrigins {
		// Validated by Config.Validate; an invalid one is simply not trusted.
		_ = cop.AddTrustedOrigin(o)
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Type: typeCrossOrigin, Status: http.StatusForbidden,
			Detail: "cross-origin " + clip(r.Method) + " requests are refused (a browser marked this request as coming from another site; " +
				"add the site to TASKD_TRUSTED_ORIGINS to allow it)"})
	}))
	return cop.Handler
}

// corsAllowMethods are the methods a trusted origin's page may send after
// a preflight: every method a route of taskd or the River UI takes.
const corsAllowMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"

// corsExposeHeaders are the response headers taskd sets that a page needs
// to read: where a created task is, when to come back, what a route
// allows, and how to authenticate.
const corsExposeHeaders = "Location, Retry-After, Allow, WWW-Authenticate"

// cors answers the browser pages of Config.TrustedOrigins as CORS (the
// Fetch standard) asks. crossOrigin lets their requests through, but
// without Access-Control-Allow-Origin a page cannot read the answer, and
// a request with an Authorization header or a JSON Content-Type is sent
// only after a preflight (OPTIONS), which no route answers. Other origins
// get no CORS headers: their pages can read nothing, and crossOrigin
// refuses what they would change. No credentials are allowed: taskd
// authenticates with bearer tokens, which a page sends itself, not with
// cookies.
func (s *server) cors(next http.Handler) http.Handler {
	trusted := make(map[string]bool, len(s.TrustedOrigins))
	for _, o := range s.TrustedOrigins {
		trusted[o] = true
	}
	if len(trusted) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if !trusted[origin] {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			// A preflight: answered here, before routing and
			// authentication (a browser sends no credentials with it).
			h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			if asked := r.Header.Get("Access-Control-Request-Headers"); asked != "" {
				h.Set("Access-Control-Allow-Headers", asked)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}

// deadlines gives every request a deadline for reading it and for writing
// its answer, replacing the http.Server's ReadTimeout and WriteTimeout
// (which run from the start of the request for every route alike and end
// a slow upload without any answer). readBody moves the read deadline as a
// body arrives and sets a fresh one for the handler once it is in. It also
// bounds the body of every request at MaxBodyBytes (MaxBatchBodyBytes on
// POST /v1/batches), and closes the connection after an answer given
// without reading the body (closeIfUnread).
func (s *server) deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		d := time.Now().Add(s.RequestTimeout)
		// Not every ResponseWriter supports deadlines (HTTP/1 and HTTP/2
		// do; a test recorder does not); without them a request has only
		// the server's ReadHeaderTimeout.
		_ = rc.SetReadDeadline(d)
		_ = rc.SetWriteDeadline(d)
		var tb *trackedBody
		if r.ContentLength != 0 { // declared or chunked
			tb = &trackedBody{ReadCloser: r.Body}
			w = &closeIfUnread{ResponseWriter: w, body: tb}
			r.Body = tb
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.bodyLimit(r))
		next.ServeHTTP(w, r)
		if tb != nil && !tb.eof {
			// After the handler net/http reads what is left of the body
			// (up to 256 KiB) before it closes the connection; nothing
			// more of it is wanted, so that read ends now rather than at
			// the deadline.
			_ = rc.SetReadDeadline(time.Now())
		}
	})
}

// trackedBody notes whether a request body was read to its end.
type trackedBody struct {
	io.ReadCloser
	eof bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// closeIfUnread closes the connection after an answer given without
// reading the whole request body (a refusal, a 404, a River UI error).
// Otherwise net/http reads up to 256 KiB of the rest before it sends the
// answer, and a client that sends its body slowly, or not at all, gets no
// answer until the read deadline.
type closeIfUnread struct {
	http.ResponseWriter
	body    *trackedBody
	written bool
}

func (w *closeIfUnread) WriteHeader(code int) {
	if !w.written && !w.body.eof {
		w.Header().Set("Connection", "close")
	}
	w.written = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeIfUnread) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *closeIfUnread) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps the writer an http.Flusher for handlers that check.
func (w *closeIfUnread) Flush() { _ = w.FlushError() }

// FlushError passes the write's error on, as statusWriter.FlushError does.
func (w *closeIfUnread) FlushError() error {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// bodyLimit is the largest body r may have.
func (s *server) bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && routingPath(r.URL) == "/v1/batches" {
		return s.MaxBatchBodyBytes
	}
	return s.MaxBodyBytes
}

// routingPath is the path requests are routed by: the decoded path, so
// that "/v1/tasks/%31" is "/v1/tasks/1" like any other URL, except when
// it holds an encoded slash, which is data inside a segment and not a
// separator (RFC 3986); then the escaped form is routed and path
// parameters are unescaped by the handlers.
func routingPath(u *url.URL) string {
	if u.RawPath != "" && strings.Contains(strings.ToLower(u.RawPath), "%2f") {
		return u.RawPath
	}
	if u.Path == "" {
		return "/"
	}
	return u.Path
}

// validURL routes by routingPath and refuses, with 422 naming the
// parameter, a path or query string that holds invalid UTF-8 or a NUL
// character: such strings would reach PostgreSQL (which rejects them with
// an error) from any handler, ours or the River UI's.
func (s *server) validURL(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validText(r.URL.Path) {
			fieldProblem(w, http.StatusUnprocessableEntity, "path", "must be valid UTF-8 without NUL characters once percent-decoded")
			return
		}
		if r.URL.RawQuery != "" {
			pairs, qerr := parseQuery(r.URL.RawQuery, false)
			if qerr != nil {
				fieldProblem(w, http.StatusUnprocessableEntity, qerr.key, qerr.message)
				return
			}
			for _, p := range pairs {
				if !validText(p.value) {
					fieldProblem(w, http.StatusUnprocessableEntity, p.key, "must be valid UTF-8 without NUL characters once percent-decoded")
					return
				}
			}
		}
		if rctx := chi.RouteContext(r.Context()); rctx != nil && r.URL.RawPath != "" {
			rctx.RoutePath = routingPath(r.URL)
		}
		next.ServeHTTP(w, r)
	})
}

// validText reports whether s can be stored in PostgreSQL text.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
