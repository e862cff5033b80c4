package http

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/taskd/taskd/internal/tasks"
)

// DatabaseTimeoutDefault bounds how long one request waits for the
// database, apart from the upload of its body and from the ?wait= it asks
// for. A database that does not answer at all, as behind a network cut
// that closes nothing (the connection looks open and TCP stays quiet),
// would otherwise hold the request until the kernel gives up on the
// connection, many minutes later; past the bound the request is answered
// 503 with Retry-After, and its connection is closed (pgx closes a
// connection whose statement's context ends), so the pool replaces it.
// Ten seconds is far beyond any statement of the API on a healthy
// database (docs/PERFORMANCE.md), and well inside RequestTimeout.
const DatabaseTimeoutDefault = 10 * time.Second

// errDatabaseTimeout is the cause of a request's context once its
// DatabaseTimeout has passed.
var errDatabaseTimeout = errors.New("the database did not answer in time")

// dbDeadline is the database deadline of a request with a body: it
// starts once the body is in (startDBDeadline, from readBody), since a
// slow upload has its own bounds. A request without one gets a plain
// timeout context instead (databaseDeadline).
type dbDeadline struct {
	d      time.Duration
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

func (dl *dbDeadline) start() {
	if dl.timer == nil {
		dl.timer = time.AfterFunc(dl.d, func() { dl.cancel(errDatabaseTimeout) })
	}
}

func (dl *dbDeadline) stop() {
	if dl.timer != nil {
		dl.timer.Stop()
	}
}

type dbDeadlineKey struct{}

// databaseDeadline gives the request's context DatabaseTimeout, plus the
// request's ?wait= when it is a valid one (the handler checks it again and
// answers an invalid one 422), from its start or from the end of its body
// (dbDeadline), and ends it with errDatabaseTimeout as its cause;
// writeError answers that 503. Claims are not given one here: their wait is in the body, so
// handleClaim sets their own once it is read.
func (s *server) databaseDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := s.DatabaseTimeout
		if raw := queryWait(r); raw != "" {
			if wait, err := time.ParseDuration(raw); err == nil && wait > 0 && wait <= tasks.WaitMax {
				d += wait
			}
		}
		if r.ContentLength == 0 {
			// No body: the deadline starts now, and nothing needs to
			// find it to start it (one context instead of three values
			// and a timer of our own, on the path of every GET).
			ctx, cancel := context.WithTimeoutCause(r.Context(), d, errDatabaseTimeout)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		ctx, cancel := context.WithCancelCause(r.Context())
		defer cancel(nil)
		dl := &dbDeadline{d: d, cancel: cancel}
		defer dl.stop()
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, dbDeadlineKey{}, dl)))
	})
}

// queryWait is the request's ?wait=, without parsing a query that is not
// there (most requests have none).
func queryWait(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get("wait")
}

// startDBDeadline starts the database deadline of ctx's request, if it
// has one and it has not started.
func startDBDeadline(ctx context.Context) {
	if dl, ok := ctx.Value(dbDeadlineKey{}).(*dbDeadline); ok {
		dl.start()
	}
}

// databaseTimedOut says whether r's database deadline has passed.
func databaseTimedOut(r *http.Request) bool {
	return errors.Is(context.Cause(r.Context()), errDatabaseTimeout)
}
