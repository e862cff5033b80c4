package jobs

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of a submitted task. Field is a
// path into the request body such as "args.value" or "tasks[3].queue".
type FieldError struct {
	Field   string
	Message string
}

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

// fieldErrors collects FieldErrors under a path prefix.
type fieldErrors struct {
	prefix string
	errs   []FieldError
}

func (f *fieldErrors) add(field, format string, args ...any) {
	f.errs = append(f.errs, FieldError{Field: joinPath(f.prefix, field), Message: fmt.Sprintf(format, args...)})
}

func (f *fieldErrors) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: f.errs}
}

func joinPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case strings.HasPrefix(field, "["):
		return prefix + field
	default:
		return prefix + "." + field
	}
}
