package http

import (
	"encoding/json"
	"log/slog"
	"net/http"
)

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
)

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

// serverError logs err once and answers 500 without details.
func (s *server) serverError(w http.ResponseWriter, r *http.Request, err error) {
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
