package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/taskd/taskd/internal/jobs"
)

// pushKind is scenario 8's kind: run: http, on a queue of its own.
const pushKind = "bench_push"

// receiver is the endpoint of scenario 8's http kind, in the harness's
// process: it reads each POST and answers 200 {"ok":true}, as a minimal Go
// service would. It does not verify signatures (that would be the
// receiver's cost, not taskd's); it only counts requests without one, so
// that a run whose signing was off does not pass unnoticed.
type receiver struct {
	srv      *http.Server
	url      string
	requests atomic.Int64
	unsigned atomic.Int64
	done     chan error
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/", done: make(chan error, 1)}
	ok := []byte(`{"ok":true}`)
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			r.requests.Add(1)
			if req.Header.Get("webhook-signature") == "" {
				r.unsigned.Add(1)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(ok)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() { r.done <- r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	if serr := <-r.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// reset zeroes the counts before a run.
func (r *receiver) reset() {
	r.requests.Store(0)
	r.unsigned.Store(0)
}

// writePushConfig writes scenario 8's configuration file: taskd's default
// queues plus a push queue, loopback allowed, and the http kind signed
// with a fresh secret (so that every attempt pays for its HMAC-SHA256).
func (b *bench) writePushConfig(url string, workers int) (string, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	data := fmt.Sprintf(`# scenario 8 (taskd-bench)
queues: {default: %d, cpu: %d, push: %d}
allow_private: ["127.0.0.1/32"]
kinds:
  - {name: %s, run: http, queue: push, url: %q, secret: %q, timeout: 10s}
`, jobs.QueueDefaultWorkers, runtime.NumCPU(), workers, pushKind, url, "whsec_"+base64.StdEncoding.EncodeToString(secret))
	path := filepath.Join(b.tmp, "push.yaml")
	return path, os.WriteFile(path, []byte(data), 0o600)
}

// scenario8: end to end through an http kind: PushN tasks in batches, each
// attempt a signed POST to the receiver, alternating with as many double
// tasks on the same taskd configuration.
func (b *bench) scenario8(ctx context.Context) (err error) {
	c := b.cfg
	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rcv.close()) }()
	cfgPath, err := b.writePushConfig(rcv.url, c.PushWorkers)
	if err != nil {
		return err
	}
	env := []string{"TASKD_CONFIG=" + cfgPath}
	b.logf("scenario 8: push: %d %s tasks (run: http, signed, queue push of %d workers) to a receiver in this process answering 200 {\"ok\":true}, %d per batch, %d concurrent submitters; alternating with %d double tasks on the same taskd configuration, %d pairs",
		c.PushN, pushKind, c.PushWorkers, c.BatchSize, c.Clients, c.PushN, c.Pairs)
	pushRun := func(profile string) (e2eResult, error) {
		rcv.reset()
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.PushN, Kind: pushKind, Env: env, Attempts: true, Profile: profile})
		if err != nil {
			return r, err
		}
		if n := rcv.requests.Load(); n < int64(c.PushN) {
			return r, fmt.Errorf("the receiver got %d requests for %d tasks", n, c.PushN)
		}
		if n := rcv.unsigned.Load(); n > 0 {
			return r, fmt.Errorf("the receiver got %d requests without a webhook-signature", n)
		}
		return r, nil
	}
	var push, double, p50, p99 []float64
	for i := 1; i <= c.Pairs; i++ {
		r, err := pushRun("")
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		b.logf("  pair %d push:   %s; the receiver got %d requests", i, r, rcv.requests.Load())
		push, p50, p99 = append(push, r.Rate), append(p50, r.Attempt.P50), append(p99, r.Attempt.P99)
		r, err = b.e2eTaskd(ctx, e2eRun{N: c.PushN, Env: env, Attempts: true})
		if err != nil {
			return fmt.Errorf("double: %w", err)
		}
		b.logf("  pair %d double: %s", i, r)
		double = append(double, r.Rate)
	}
	b.compare(row{Scenario: "8 push http", Metric: "tasks/s", A: push, B: double, Baseline: "taskd double, same n and config", Target: "≥5000/s"})
	if len(b.s1) > 0 {
		b.compare(row{Scenario: "8 push http", Metric: "tasks/s vs S1", A: push, B: b.s1, Baseline: fmt.Sprintf("scenario 1 taskd double, n=%d", c.N)})
	}
	b.compare(row{Scenario: "8 push http", Metric: "attempt p50 ms", A: p50, Baseline: "(taskd only)"})
	b.compare(row{Scenario: "8 push http", Metric: "attempt p99 ms", A: p99, Baseline: "(taskd only)"})
	if c.CPUProfile != "" {
		path := profilePath(c.CPUProfile, 8)
		b.logf("  profiling one more push run (not counted) into %s", path)
		r, err := pushRun(path)
		if err != nil {
			return fmt.Errorf("profiled push run: %w", err)
		}
		if err := b.saveProfileBinary(path); err != nil {
			return err
		}
		b.logf("  profiled run: %s; go tool pprof -top -nodecount=25 %s.taskd %s", r, path, path)
	}
	return nil
}
