package tasks

import (
	"strings"

	"github.com/taskd/taskd/internal/kinds"
)

// FieldError is one problem with one field of a submitted task.
type FieldError = kinds.FieldError

// ValidationError reports every problem found in a submission. Nothing is
// inserted when a submission fails validation.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Field + ": " + fe.Message
	}
	return "invalid task: " + strings.Join(parts, "; ")
}
