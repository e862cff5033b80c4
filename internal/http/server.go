// Package http is taskd's HTTP API v1: a chi router, JSON handlers and
// RFC 9457 problem responses. It reads state straight from the store and
// submits through the jobs client; no database type reaches it.
package http

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// Body limits.
const (
	// MaxBodyBytesDefault bounds the body of POST /v1/tasks.
	MaxBodyBytesDefault = 1 << 20
	// MaxBatchBodyBytesDefault bounds the body of POST /v1/batches.
	MaxBatchBodyBytesDefault = 16 << 20
)

// Config configures the API handler.
type Config struct {
	Store  *store.Store
	Jobs   *jobs.Client
	Logger *slog.Logger
	// MaxBodyBytes: see MaxBodyBytesDefault.
	MaxBodyBytes int64
	// MaxBatchBodyBytes: see MaxBatchBodyBytesDefault.
	MaxBatchBodyBytes int64
	// Ready reports whether the service can serve: database reachable and
	// schema current. Required.
	Ready func(context.Context) error
	// Extra is mounted under its prefix when set (the River UI).
	Extra       http.Handler
	ExtraPrefix string
}

type server struct {
	Config
	logger *slog.Logger
}

//go:embed openapi.json
var openAPIDocument []byte

// NewServer returns the API's http.Handler.
func NewServer(cfg Config) http.Handler {
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, MaxBodyBytesDefault)
	cfg.MaxBatchBodyBytes = cmp.Or(cfg.MaxBatchBodyBytes, MaxBatchBodyBytesDefault)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &server{Config: cfg, logger: logger}
	return s.routes()
}

// recoverer turns a panic in a handler into a logged 500 problem.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.serverError(w, r, fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
