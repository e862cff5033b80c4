package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
	"github.com/taskd/taskd/internal/tasks"
)

// clip shortens a client's value for echoing in a message.
func clip(s string) string { return strictjson.Clip(s) }

// clipDetail bounds a problem's detail, which may be built from several
// clipped values (a validation error joins every field's message).
func clipDetail(s string) string {
	const max = 1000
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// quoteClip quotes a client's value, shortened, for a message.
func quoteClip(s string) string { return strconv.Quote(strictjson.Clip(s)) }

// Problem is an RFC 9457 problem details object (the wire type is the
// public client's).
type Problem = client.Problem

// FieldError names one invalid field of a request.
type FieldError = client.FieldError

// Problem types beyond "about:blank".
const (
	typeValidation  = "urn:taskd:problem:validation"
	typeIdempotency = "urn:taskd:problem:idempotency-mismatch"
	typeState       = "urn:taskd:problem:state-conflict"
	typeSyntax      = "urn:taskd:problem:malformed-json"
	typeTooLarge    = "urn:taskd:problem:body-too-large"
	typeUnavailable = "urn:taskd:problem:unavailable"
	typeOverloaded  = "urn:taskd:problem:overloaded"
	typeCrossOrigin = "urn:taskd:problem:cross-origin"
	typeTimeout     = "urn:taskd:problem:request-timeout"
	typeLease       = "urn:taskd:problem:lease-conflict"
	// typeQueueForbidden: a tenant's token asked for a queue not its own.
	typeQueueForbidden = "urn:taskd:problem:queue-forbidden"
)

// StatusClientClosedRequest is what a request whose client left before
// the answer is recorded as (nginx's 499): nobody receives it.
const StatusClientClosedRequest = 499

// retryAfterSeconds is the Retry-After of 503 answers: a lost database
// connection is replaced, and a burst of large bodies drains, within about
// a second.
const retryAfterSeconds = "1"

// problemErrorsMax bounds the field errors one problem lists: a request
// can hold thousands of faults (a state list of 3,000 unknown names), and
// the first ones say what is wrong.
const problemErrorsMax = 100

func writeProblem(w http.ResponseWriter, p Problem) {
	if n := len(p.Errors); n > problemErrorsMax {
		p.Errors = p.Errors[:problemErrorsMax]
		p.Detail += " (the first " + strconv.Itoa(problemErrorsMax) + " of " + strconv.Itoa(n) + " errors are listed)"
	}
	// Paths join keys the client chose, each clipped already; the whole
	// is clipped too, so that deep nesting cannot echo more.
	for i := range p.Errors {
		p.Errors[i].Field = clip(p.Errors[i].Field)
	}
	p.Detail = clipDetail(p.Detail)
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// fieldProblem answers status naming a single field.
func fieldProblem(w http.ResponseWriter, status int, field, message string) {
	typ := typeValidation
	if status == http.StatusBadRequest {
		typ = "about:blank"
	}
	writeProblem(w, Problem{
		Type:   typ,
		Status: status,
		Detail: clip(field) + ": " + message,
		Errors: []FieldError{{Field: field, Message: message}},
	})
}

// serverError logs err once and answers 500 without details: an error no
// entry of writeError's table claims is a bug.
func (s *server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.ErrorContext(r.Context(), "request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	writeProblem(w, Problem{Status: http.StatusInternalServerError, Detail: "internal error; see the server log"})
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	_ = writeJSONBody(w, status, v, false)
}

// writeJSONErr is writeJSON for a handler that must know whether the
// answer left: it flushes it and returns the write's error.
func writeJSONErr(w http.ResponseWriter, status int, v any) error {
	return writeJSONBody(w, status, v, true)
}

// jsonBuffers hold answers while they are encoded.
var jsonBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// jsonBufferKeep is the largest buffer put back in jsonBuffers: a rare
// large answer (a full page of big tasks) is not kept alive by the pool.
const jsonBufferKeep = 256 << 10

// writeJSONBody encodes v whole before anything is written, so that the
// answer carries a Content-Length and leaves with its header in one write
// (net/http chunks a body that is flushed or outgrows its 2 KiB buffer:
// two writes or more, the terminating chunk included, which showed as a
// sixth of taskd's CPU under GET load). flush makes it leave now, and
// returns the write's error. v is built by the handlers from stored rows,
// so an encoding error is a bug: it panics, before anything is written,
// and the recoverer logs it with its stack and answers 500.
func writeJSONBody(w http.ResponseWriter, status int, v any, flush bool) error {
	buf := jsonBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= jsonBufferKeep {
			jsonBuffers.Put(buf)
		}
	}()
	if b, ok := appendAnswer(buf.AvailableBuffer(), v); ok {
		buf.Write(append(b, '\n')) // as json.Encoder ends a value
	} else if err := json.NewEncoder(buf).Encode(v); err != nil {
		w.Header().Del("Location") // of a resource the answer would have shown
		panic(fmt.Errorf("encoding the answer: %w", err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	if !flush {
		return nil
	}
	return http.NewResponseController(w).Flush()
}

// writeError answers the domain errors of the packages below with their
// status: the one table of error → status. what names the resource a
// not-found error is about ("task 12").
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error, what string) {
	var (
		verr *tasks.ValidationError
		serr *tasks.StateError
		lerr *tasks.LeaseError
		qerr *tasks.QueueError
	)
	switch {
	case errors.As(err, &verr):
		p := Problem{Type: typeValidation, Status: http.StatusUnprocessableEntity, Detail: verr.Error()}
		for _, fe := range verr.Errors {
			p.Errors = append(p.Errors, FieldError{Field: fe.Field, Message: fe.Message})
		}
		writeProblem(w, p)
	case errors.Is(err, tasks.ErrIdempotencyMismatch):
		writeProblem(w, Problem{Type: typeIdempotency, Status: http.StatusConflict,
			Detail: "this Idempotency-Key was used with a different request body",
			Errors: []FieldError{{Field: "Idempotency-Key", Message: "already used with a different request body"}}})
	case errors.As(err, &serr):
		writeProblem(w, Problem{Type: typeState, Status: http.StatusConflict, Detail: serr.Error(),
			Errors: []FieldError{{Field: "state", Message: serr.Error()}}})
	case errors.As(err, &lerr):
		writeProblem(w, Problem{Type: typeLease, Status: http.StatusConflict,
			Detail: lerr.Error() + " (task state: " + lerr.State + ")",
			Errors: []FieldError{{Field: "lease", Message: lerr.Reason}, {Field: "state", Message: lerr.State}}})
	case errors.As(err, &qerr):
		p := Problem{Type: typeQueueForbidden, Status: http.StatusForbidden, Detail: qerr.Error()}
		for _, fe := range qerr.Errors {
			p.Errors = append(p.Errors, FieldError{Field: fe.Field, Message: fe.Message})
		}
		writeProblem(w, p)
	case errors.Is(err, store.ErrNotFound) && what != "":
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: what + " does not exist (finished tasks are deleted after their retention period)"})
	case databaseTimedOut(r):
		// Whatever the error says (a cancelled statement, a pool that
		// could hand out no connection), the database kept quiet.
		s.logger.WarnContext(r.Context(), "database did not answer in time",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Duration("timeout", s.DatabaseTimeout),
			slog.String("error", err.Error()))
		w.Header().Set("Retry-After", retryAfterSeconds)
		detail := "the database did not answer within " + s.DatabaseTimeout.String() + "; retry shortly"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// It may have gone quiet after committing.
			detail = "the database did not answer within " + s.DatabaseTimeout.String() +
				"; the request may or may not have taken effect. Retry with the same Idempotency-Key to find out safely"
		}
		writeProblem(w, Problem{Type: typeUnavailable, Status: http.StatusServiceUnavailable, Detail: detail})
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		// The client left (its own timeout, a closed connection) while
		// the request ran: nobody receives an answer, and it is neither a
		// bug nor the database's fault, so it is no 500 (which the 5xx
		// alert pages for) but nginx's 499, as docs/OPERATIONS.md says of
		// taskd_http_requests_total, logged at debug level. After
		// databaseTimedOut: the database deadline ends the request's
		// context too.
		s.logger.DebugContext(r.Context(), "client left before the answer",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.WriteHeader(StatusClientClosedRequest)
	case errors.Is(err, store.ErrUnavailable):
		// Not a bug but the client's to retry; worth a warning, since
		// every request fails the same way until the database is back.
		s.logger.WarnContext(r.Context(), "database unavailable",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.Header().Set("Retry-After", retryAfterSeconds)
		detail := "the database is unavailable; retry shortly"
		if errors.Is(err, store.ErrCommitUnknown) {
			detail = "the database connection was lost while saving; the request may or may not have taken effect. " +
				"Retry with the same Idempotency-Key to find out safely"
		}
		writeProblem(w, Problem{Type: typeUnavailable, Status: http.StatusServiceUnavailable, Detail: detail})
	default:
		s.serverError(w, r, err)
	}
}
