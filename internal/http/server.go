// Package http is taskd's HTTP API v1: a chi router, JSON handlers and
// RFC 9457 problem responses. It reads state straight from the store and
// submits through the jobs client; no database type reaches it.
package http

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/taskd/taskd/internal/auth"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
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
	Store *store.Store
	Jobs  *jobs.Client
	// Tasks submits, cancels and retries. Defaults to a Service on Store
	// and Jobs.
	Tasks  *tasks.Service
	Logger *slog.Logger
	// Kinds is what GET /v1/kinds lists. Defaults to the kinds of Jobs (or
	// the built-in kinds without Jobs).
	Kinds *kinds.Registry
	// MaxBodyBytes: see MaxBodyBytesDefault.
	MaxBodyBytes int64
	// MaxBatchBodyBytes: see MaxBatchBodyBytesDefault.
	MaxBatchBodyBytes int64
	// MaxBodyBytesInFlight: see MaxBodyBytesInFlightDefault. At least
	// MaxBatchBodyBytes.
	MaxBodyBytesInFlight int64
	// RequestTimeout: see RequestTimeoutDefault.
	RequestTimeout time.Duration
	// DatabaseTimeout: see DatabaseTimeoutDefault (at most half of
	// RequestTimeout by default). Less than RequestTimeout, so that the
	// 503 can still be written.
	DatabaseTimeout time.Duration
	// BodyIdleTimeout: see BodyIdleTimeoutDefault.
	BodyIdleTimeout time.Duration
	// BodyMinRate: see BodyMinRateDefault.
	BodyMinRate int
	// BodyGrace: see BodyGraceDefault.
	BodyGrace time.Duration
	// TrustedOrigins are origins ("https://app.example.com") whose
	// browser pages may make unsafe requests; all others are refused as
	// cross-origin. Defaults to none.
	TrustedOrigins []string
	// Ready reports whether the service can serve: database reachable and
	// schema current. Required.
	Ready func(context.Context) error
	// Leader reports whether this process is River's leader, for GET
	// /readyz. Defaults to Jobs.IsLeader (always false without Jobs).
	Leader func(context.Context) (bool, error)
	// Metrics, when set, is served as GET /metrics (metrics.Metrics.Handler);
	// nil: no such route.
	Metrics http.Handler
	// ObserveFunc, when set, is told of every answered request: the route
	// pattern ("unmatched" when none matched), the method ("other" for one
	// the API does not know), the status and how long the answer took
	// (metrics.Metrics.ObserveHTTP).
	ObserveFunc func(route, method string, code int, d time.Duration)
	// Extra is mounted under its prefix when set (the River UI), behind
	// the admin scope.
	Extra       http.Handler
	ExtraPrefix string
	// Auth, when set, holds the API tokens: once one exists, every route
	// but /healthz, /readyz and /openapi.json needs a token with the
	// route's scope (routeTable). Nil: no auth at all (tests, embedding).
	Auth *auth.Cache
	// AuthLimiter slows clients whose tokens fail. Defaults to
	// auth.NewLimiter with its defaults.
	AuthLimiter *auth.Limiter
}

// WithDefaults returns c with zero values replaced by their defaults.
func (c Config) WithDefaults() Config {
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, MaxBodyBytesDefault)
	c.MaxBatchBodyBytes = cmp.Or(c.MaxBatchBodyBytes, MaxBatchBodyBytesDefault)
	c.MaxBodyBytesInFlight = cmp.Or(c.MaxBodyBytesInFlight, max(MaxBodyBytesInFlightDefault, c.MaxBatchBodyBytes))
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	// A shorter RequestTimeout (tests set one) shortens the default, which
	// must leave time to answer.
	c.DatabaseTimeout = cmp.Or(c.DatabaseTimeout, min(DatabaseTimeoutDefault, c.RequestTimeout/2))
	c.BodyIdleTimeout = cmp.Or(c.BodyIdleTimeout, BodyIdleTimeoutDefault)
	c.BodyMinRate = cmp.Or(c.BodyMinRate, BodyMinRateDefault)
	c.BodyGrace = cmp.Or(c.BodyGrace, BodyGraceDefault)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Kinds == nil && c.Jobs != nil {
		c.Kinds = c.Jobs.Kinds()
	}
	if c.Kinds == nil {
		c.Kinds = builtin.Registry()
	}
	if c.Leader == nil && c.Jobs != nil {
		c.Leader = c.Jobs.IsLeader
	}
	if c.Leader == nil {
		c.Leader = notLeader
	}
	if c.AuthLimiter == nil {
		c.AuthLimiter = auth.NewLimiter(0, 0, nil)
	}
	if c.Tasks == nil && c.Store != nil && c.Jobs != nil {
		c.Tasks, _ = tasks.New(tasks.Config{Store: c.Store, Jobs: c.Jobs}) // both set: cannot fail
	}
	return c
}

// Validate reports the first invalid setting of c (after WithDefaults).
func (c Config) Validate() error {
	switch {
	case c.Ready == nil:
		return errors.New("http: Config.Ready is required")
	case c.MaxBodyBytes < 1 || c.MaxBatchBodyBytes < 1:
		return errors.New("http: MaxBodyBytes and MaxBatchBodyBytes must be positive")
	case c.MaxBodyBytesInFlight < max(c.MaxBodyBytes, c.MaxBatchBodyBytes):
		return errors.New("http: MaxBodyBytesInFlight must be at least the largest body allowed")
	case c.RequestTimeout < time.Second || c.BodyIdleTimeout <= 0 || c.BodyGrace <= 0 || c.BodyMinRate < 1:
		return errors.New("http: RequestTimeout must be at least 1s, BodyIdleTimeout, BodyGrace and BodyMinRate positive")
	case c.DatabaseTimeout <= 0 || c.DatabaseTimeout >= c.RequestTimeout:
		return errors.New("http: DatabaseTimeout must be positive and less than RequestTimeout")
	}
	cop := http.NewCrossOriginProtection()
	for _, o := range c.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return fmt.Errorf("http: TrustedOrigins: %w", err)
		}
	}
	return nil
}

type server struct {
	Config
	logger  *slog.Logger
	budget  *byteBudget
	handler http.Handler
	// scopes is each route's scope by "METHOD pattern" ("* pattern" for
	// the mounted handler's), filled by routes.
	scopes map[string]auth.Scope
	// kindPolicies: see kindPoliciesOf.
	kindPolicies map[string]wirePolicy
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

//go:embed openapi.json
var openAPIDocument []byte

// NewServer returns the API's http.Handler. The http.Server serving it
// needs a ReadHeaderTimeout but no ReadTimeout or WriteTimeout: the
// handler sets its deadlines per request (see RequestTimeout).
func NewServer(cfg Config) (http.Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &server{Config: cfg, logger: cfg.Logger, budget: &byteBudget{max: cfg.MaxBodyBytesInFlight}}
	s.kindPolicies = s.kindPoliciesOf()
	if s.Extra != nil {
		// Authorized before its body is read: River UI's API can cancel,
		// retry and delete jobs.
		s.Extra = s.authorize(auth.ScopeAdmin, s.guardExtra(s.Extra))
	}
	s.handler = s.routes()
	return s, nil
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
