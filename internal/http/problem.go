package http

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
)

// clip shortens a client's value for echoing in a message.
func clip(s string) string { return strictjson.Clip(s) }

// quoteClip quotes a client's value, shortened, for a message.
func quoteClip(s string) string { return strconv.Quote(strictjson.Clip(s)) }

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

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
)

// retryAfterSeconds is the Retry-After of 503 answers: a lost database
// connection is replaced, and a burst of large bodies drains, within about
// a second.
const retryAfterSeconds = "1"

func writeProblem(w http.ResponseWriter, p Problem) {
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
		Detail: field + ": " + message,
		Errors: []FieldError{{Field: field, Message: message}},
	})
}

// serverError answers an error no table entry claims. A database that
// cannot be reached is the client's to retry (503 with Retry-After, logged
// as a warning); anything else is a bug, logged once and answered 500
// without details.
func (s *server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		s.logger.WarnContext(r.Context(), "database unavailable",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.Header().Set("Retry-After", retryAfterSeconds)
		detail := "the database is unavailable; retry shortly"
		if errors.Is(err, store.ErrCommitUnknown) {
			detail = "the database connection was lost while saving; the request may or may not have taken effect. " +
				"Retry with the same Idempotency-Key to find out safely"
		}
		writeProblem(w, Problem{Type: typeUnavailable, Status: http.StatusServiceUnavailable, Detail: detail})
		return
	}
	s.logger.ErrorContext(r.Context(), "request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	writeProblem(w, Problem{Status: http.StatusInternalServerError, Detail: "internal error; see the server log"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers the domain errors of the packages below with their
// status: the one table of error → status. what names the resource a
// not-found error is about ("task 12").
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error, what string) {
	var (
		verr *jobs.ValidationError
		serr *jobs.StateError
	)
	switch {
	case errors.As(err, &verr):
		p := Problem{Type: typeValidation, Status: http.StatusUnprocessableEntity, Detail: clip(verr.Error())}
		for _, fe := range verr.Errors {
			p.Errors = append(p.Errors, FieldError{Field: fe.Field, Message: fe.Message})
		}
		writeProblem(w, p)
	case errors.Is(err, jobs.ErrIdempotencyMismatch):
		writeProblem(w, Problem{Type: typeIdempotency, Status: http.StatusConflict,
			Detail: "this Idempotency-Key was used with a different request body",
			Errors: []FieldError{{Field: "Idempotency-Key", Message: "already used with a different request body"}}})
	case errors.As(err, &serr):
		writeProblem(w, Problem{Type: typeState, Status: http.StatusConflict, Detail: serr.Error(),
			Errors: []FieldError{{Field: "state", Message: serr.Error()}}})
	case errors.Is(err, store.ErrNotFound) && what != "":
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: what + " does not exist (finished tasks are deleted after their retention period)"})
	default:
		s.serverError(w, r, err)
	}
}
