package tasks

import (
	"strings"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/strictjson"
)

// FieldError is one problem with one field of a submitted task.
type FieldError = kinds.FieldError

// ValidationError reports every problem found in a submission. Nothing is
// inserted when a submission fails validation.
type ValidationError struct {
	Errors []FieldError
}

// Error lists every problem. Field paths are clipped: they join keys the
// client chose, and the message goes into answers and logs.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = strictjson.Clip(fe.Field) + ": " + fe.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}
