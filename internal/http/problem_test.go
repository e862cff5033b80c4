package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taskd/taskd/internal/store"
)

// TestWriteErrorUnavailable checks the table's answers for a database that
// cannot be reached, and for a commit whose outcome is unknown, which must
// never read as a plain failure.
func TestWriteErrorUnavailable(t *testing.T) {
	cfg := Config{Ready: func(context.Context) error { return nil }}.WithDefaults()
	s := &server{Config: cfg, logger: cfg.Logger}
	lost := fmt.Errorf("inserting task: %w", io.ErrUnexpectedEOF)
	for _, tc := range []struct {
		err        error
		wantDetail string
	}{
		{fmt.Errorf("%w: %w", store.ErrUnavailable, lost), "retry shortly"},
		{fmt.Errorf("%w: %w: %w", store.ErrUnavailable, store.ErrCommitUnknown, lost), "Idempotency-Key"},
	} {
		rec := httptest.NewRecorder()
		s.writeError(rec, httptest.NewRequest("POST", "/v1/tasks", nil), tc.err, "")
		var p Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusServiceUnavailable || p.Type != typeUnavailable || rec.Header().Get("Retry-After") == "" ||
			!strings.Contains(p.Detail, tc.wantDetail) {
			t.Errorf("%v: got %d %+v (Retry-After %q), want 503 %s with Retry-After and %q in detail",
				tc.err, rec.Code, p, rec.Header().Get("Retry-After"), typeUnavailable, tc.wantDetail)
		}
	}
	// Anything else unknown is a bug: 500.
	rec := httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest("GET", "/v1/tasks", nil), errors.New("boom"), "")
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("want 500 for an unknown error, got %d", rec.Code)
	}
}
