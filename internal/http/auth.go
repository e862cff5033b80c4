package http

import (
	"encoding/base64"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/taskd/taskd/internal/auth"
)

// scopeOpen marks a route anyone may call, auth on or off: health,
// readiness and the API's description.
const scopeOpen auth.Scope = ""

// Problem types of authentication and authorization.
const (
	typeUnauthorized = "urn:taskd:problem:unauthorized"
	typeForbidden    = "urn:taskd:problem:forbidden"
	typeTooMany      = "urn:taskd:problem:too-many-failures"
)

// wwwAuthenticate offers both schemes: Bearer for clients, Basic so that a
// browser opening River UI prompts for the token (as the password).
const wwwAuthenticate = `Bearer realm="taskd", Basic realm="taskd"`

// authorize requires scope of the request's token while auth is on (a
// token exists), and puts the token's principal in the request's context.
// A request without a valid token is answered 401, one whose token lacks
// the scope 403. Failures are counted per client address; past the
// limit they are answered 429 instead, but a valid token is checked first
// and always passes, so a valid client is never locked out.
func (s *server) authorize(scope auth.Scope, next http.Handler) http.Handler {
	return authorize(s.Auth, s.AuthLimiter, scope, next)
}

// authorize is server.authorize for a handler of its own (the worker's
// health server).
func authorize(cache *auth.Cache, limiter *auth.Limiter, scope auth.Scope, next http.Handler) http.Handler {
	if scope == scopeOpen || cache == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cache.Enabled() {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := presentedToken(r)
		if !ok {
			unauthorized(w, r, limiter, "this endpoint needs a token: Authorization: Bearer <token> (or HTTP Basic with the token as the password)")
			return
		}
		p, res := cache.Lookup(token)
		switch res {
		case auth.Unknown:
			detail := "unknown or revoked token"
			if !cache.HasTokens() {
				detail = "no API token exists and this address is reachable from other machines: create one with `taskd token create --name admin --scope admin`"
			}
			unauthorized(w, r, limiter, detail)
			return
		case auth.Expired:
			unauthorized(w, r, limiter, "token "+strconv.Quote(p.Name)+" has expired")
			return
		}
		if !p.Has(scope) {
			writeProblem(w, Problem{Type: typeForbidden, Status: http.StatusForbidden,
				Detail: "token " + strconv.Quote(p.Name) + " lacks the " + string(scope) + " scope this endpoint needs"})
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// unauthorized answers 401, or 429 once the client's address has failed
// too often.
func unauthorized(w http.ResponseWriter, r *http.Request, limiter *auth.Limiter, detail string) {
	if limited, after := limiter.Fail(clientAddr(r)); limited {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(after.Round(time.Second)/time.Second))))
		writeProblem(w, Problem{Type: typeTooMany, Status: http.StatusTooManyRequests,
			Detail: "too many failed authentications from this address; retry later"})
		return
	}
	w.Header().Set("WWW-Authenticate", wwwAuthenticate)
	writeProblem(w, Problem{Type: typeUnauthorized, Status: http.StatusUnauthorized, Detail: detail})
}

// presentedToken returns the token of a Bearer Authorization, or the
// password of a Basic one (any user name); false when there is none or the
// header is malformed.
func presentedToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(b), ":")
		return pass, ok && pass != ""
	}
	return "", false
}

// clientAddr is the address failures are counted by: the connection's
// peer (behind a reverse proxy, the proxy's).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
