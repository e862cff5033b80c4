package http

import (
	"context"
	"errors"
	"net/http"

	"github.com/taskd/taskd/internal/auth"
)

// HealthConfig configures the handler of a process without the API
// (`taskd worker`), which still answers its orchestrator and its scraper.
type HealthConfig struct {
	// Ready is GET /readyz's check, as Config.Ready. Required.
	Ready func(context.Context) error
	// Leader is GET /readyz's leader field, as Config.Leader. Defaults to
	// always false.
	Leader func(context.Context) (bool, error)
	// Metrics, when set, serves GET /metrics (Prometheus text format);
	// without it /metrics is a 404 like any unknown path.
	Metrics http.Handler
	// Auth, when set, puts /metrics behind the admin scope once a token
	// exists, as on the API (Config.Auth).
	Auth *auth.Cache
}

// NewHealthServer returns the handler of GET /healthz, GET /readyz (with
// the same answers as the API's) and, when configured, GET /metrics. It
// has no body to read, so the http.Server serving it may use plain
// timeouts.
func NewHealthServer(cfg HealthConfig) (http.Handler, error) {
	if cfg.Ready == nil {
		return nil, errors.New("http: HealthConfig.Ready is required")
	}
	if cfg.Leader == nil {
		cfg.Leader = notLeader
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { healthz(w) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { readyz(w, r, cfg.Ready, cfg.Leader) })
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", authorize(cfg.Auth, auth.NewLimiter(0, 0, nil), auth.ScopeAdmin, cfg.Metrics))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such endpoint: " + clip(r.URL.Path) + "; a worker serves /healthz, /readyz and /metrics only"})
	})
	return mux, nil
}
