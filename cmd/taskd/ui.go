package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"riverqueue.com/riverui"
	"riverqueue.com/riverui/uiendpoints"
)

// uiIdleStop is how long River UI's background services keep running
// after its last request. An open page asks every few seconds.
const uiIdleStop = 2 * time.Minute

// lazyUI serves River UI, whose background services run only while the UI
// is in use: they start with the first request and stop uiIdleStop after
// the last. Started, River UI counts river_job's rows by state in every
// process that serves it, whether or not anyone looks: a count bounded at
// 10,000 a state every 10 s or so, and an exact one (a scan of the whole
// table) every 30 s to 15 min, 50 times as long as it took. On a table of
// a few hundred thousand rows the two took about half a second of
// PostgreSQL's time in a 15 s run (docs/PERFORMANCE.md, "Round 2, eighth
// run").
//
// River UI's handler stops its services when the context it was started
// with ends, and cannot tell when they did, so it is not started again:
// each period of use gets a new handler (riverui.NewHandler is cheap).
type lazyUI struct {
	// newUI makes a handler and its start function.
	newUI  func() (http.Handler, func(context.Context) error, error)
	ctx    context.Context // the server's: services stop with it too
	idle   time.Duration
	logger *slog.Logger

	mu      sync.Mutex
	current http.Handler
	stop    context.CancelFunc
	last    time.Time // the last request's start
	timer   *time.Timer
}

// newLazyUI returns River UI under prefix, its endpoints made by
// endpoints (anew for each handler: the background services are theirs).
func newLazyUI(ctx context.Context, endpoints func() uiendpoints.Bundle, prefix string, logger *slog.Logger) *lazyUI {
	return &lazyUI{
		newUI: func() (http.Handler, func(context.Context) error, error) {
			h, err := riverui.NewHandler(&riverui.HandlerOpts{Endpoints: endpoints(), Logger: logger, Prefix: prefix})
			if err != nil {
				return nil, nil, err
			}
			return h, h.Start, nil
		},
		ctx:    ctx,
		idle:   uiIdleStop,
		logger: logger,
	}
}

func (u *lazyUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, err := u.handler()
	if err != nil {
		u.logger.Error("starting River UI failed", slog.String("error", err.Error()))
		http.Error(w, "River UI could not start; see the server log", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

// handler returns the running handler, making and starting one first if
// none runs.
func (u *lazyUI) handler() (http.Handler, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.last = time.Now()
	if u.current != nil {
		return u.current, nil
	}
	h, start, err := u.newUI()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(u.ctx)
	if err := start(ctx); err != nil {
		stop()
		return nil, err
	}
	u.current, u.stop = h, stop
	u.timer = time.AfterFunc(u.idle, u.stopIfIdle)
	return h, nil
}

// stopIfIdle stops the services when no request came for idle, and
// otherwise looks again idle after the last one.
func (u *lazyUI) stopIfIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.current == nil {
		return
	}
	if wait := u.idle - time.Since(u.last); wait > 0 {
		u.timer.Reset(wait)
		return
	}
	u.stop()
	u.current, u.stop, u.timer = nil, nil, nil
}
