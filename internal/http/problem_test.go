package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
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

// TestWriteErrorClientGone: a request whose client went away is no server
// error (no 5xx for metrics and alerts, no error in the log), but the same
// cancellation while the client is still there is one.
func TestWriteErrorClientGone(t *testing.T) {
	var log strings.Builder
	cfg := Config{Ready: func(context.Context) error { return nil },
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))}.WithDefaults()
	s := &server{Config: cfg, logger: cfg.Logger}
	err := fmt.Errorf("reading task: %w", context.Canceled)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest("GET", "/v1/tasks/1", nil).WithContext(ctx), err, "")
	if rec.Code != StatusClientClosedRequest || log.Len() != 0 {
		t.Errorf("client gone: got %d and log %q, want %d and nothing logged", rec.Code, log.String(), StatusClientClosedRequest)
	}

	rec = httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest("GET", "/v1/tasks/1", nil), err, "")
	if rec.Code != http.StatusInternalServerError || !strings.Contains(log.String(), "request failed") {
		t.Errorf("client there: got %d and log %q, want 500 and an error logged", rec.Code, log.String())
	}
}

// TestWriteJSONOneBody checks that an answer larger than net/http's 2 KiB
// chunking buffer leaves with a Content-Length, not chunked, whether or
// not it is flushed, and that it decodes to what was written.
func TestWriteJSONOneBody(t *testing.T) {
	big := map[string]string{"pad": strings.Repeat("x", 10<<10)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flushed" {
			if err := writeJSONErr(w, http.StatusOK, big); err != nil {
				t.Errorf("writeJSONErr: %v", err)
			}
			return
		}
		writeJSON(w, http.StatusCreated, big)
	}))
	defer srv.Close()
	for _, path := range []string{"/plain", "/flushed"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		err = json.NewDecoder(res.Body).Decode(&got)
		res.Body.Close()
		if err != nil || got["pad"] != big["pad"] {
			t.Errorf("%s: body does not decode to what was written: %v", path, err)
		}
		if len(res.TransferEncoding) != 0 || res.ContentLength <= int64(len(big["pad"])) {
			t.Errorf("%s: Transfer-Encoding %q, Content-Length %d: want one body with its length", path, res.TransferEncoding, res.ContentLength)
		}
	}
}

// failingFlusher is a ResponseWriter whose flush fails, as a connection
// the client closed does.
type failingFlusher struct{ *httptest.ResponseRecorder }

var errFlushFailed = errors.New("flush failed")

func (failingFlusher) FlushError() error { return errFlushFailed }

// TestFlushErrorPassesThrough checks that the middlewares' writers hand a
// failed flush to writeJSONErr: a claim gives its tasks back only when it
// learns that its answer did not leave.
func TestFlushErrorPassesThrough(t *testing.T) {
	for name, wrap := range map[string]func(http.ResponseWriter) http.ResponseWriter{
		"statusWriter": func(w http.ResponseWriter) http.ResponseWriter { return &statusWriter{ResponseWriter: w} },
		"closeIfUnread": func(w http.ResponseWriter) http.ResponseWriter {
			return &closeIfUnread{ResponseWriter: w, body: &trackedBody{}}
		},
		"both": func(w http.ResponseWriter) http.ResponseWriter {
			return &statusWriter{ResponseWriter: &closeIfUnread{ResponseWriter: w, body: &trackedBody{}}}
		},
	} {
		w := wrap(failingFlusher{httptest.NewRecorder()})
		if err := writeJSONErr(w, http.StatusOK, map[string]int{"n": 1}); !errors.Is(err, errFlushFailed) {
			t.Errorf("%s: writeJSONErr = %v, want the flush's error", name, err)
		}
	}
}

// TestWriteJSONEncodeBug checks that an answer that cannot be encoded, a
// bug, is logged once with its cause and answered 500, without the
// Location of the resource it would have shown.
func TestWriteJSONEncodeBug(t *testing.T) {
	var log strings.Builder
	cfg := Config{Ready: func(context.Context) error { return nil }, Logger: slog.New(slog.NewTextHandler(&log, nil))}.WithDefaults()
	s := &server{Config: cfg, logger: cfg.Logger}
	h := s.recoverer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/v1/tasks/1")
		writeJSON(w, http.StatusCreated, map[string]float64{"bad": math.NaN()})
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/tasks", nil))
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Location") != "" {
		t.Errorf("got %d, Location %q: want 500 without Location", rec.Code, rec.Header().Get("Location"))
	}
	if n := strings.Count(log.String(), "encoding the answer"); n != 1 {
		t.Errorf("log has the cause %d times, want once:\n%s", n, log.String())
	}
}
