package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeUI counts the handlers lazyUI makes and keeps the contexts they were
// started with.
type fakeUI struct {
	mu      sync.Mutex
	started []context.Context
}

func (f *fakeUI) newUI() (http.Handler, func(context.Context) error, error) {
	f.mu.Lock()
	n := len(f.started) + 1
	f.mu.Unlock()
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Handler", string(rune('0'+n))) })
	return h, func(ctx context.Context) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.started = append(f.started, ctx)
		return nil
	}, nil
}

func (f *fakeUI) starts() []context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]context.Context(nil), f.started...)
}

// TestLazyUI: River UI's services start with the first request, once
// however many requests come at once, keep running while requests come,
// stop once none came for the idle time, and start again (a new handler)
// with the next request.
func TestLazyUI(t *testing.T) {
	f := &fakeUI{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const idle = 500 * time.Millisecond
	u := &lazyUI{newUI: f.newUI, ctx: ctx, idle: idle, logger: slog.New(slog.DiscardHandler)}
	get := func() string {
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, httptest.NewRequest("GET", "/riverui/", nil))
		return rec.Header().Get("X-Handler")
	}

	if n := len(f.starts()); n != 0 {
		t.Fatalf("%d starts before any request", n)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { get() })
	}
	wg.Wait()
	if n := len(f.starts()); n != 1 {
		t.Fatalf("%d starts for 20 requests at once, want 1", n)
	}

	// Requests closer together than idle keep their handler running. (A
	// pause of the test longer than idle may stop one; the next request
	// then gets a new handler, which is right too.)
	handler := "1"
	// last is when the last request started, before lazyUI saw it.
	last := time.Now()
	for end := last.Add(3 * idle); time.Now().Before(end); {
		start := time.Now()
		h := get()
		gap := start.Sub(last)
		last = start
		if gap < idle && h != handler {
			t.Fatalf("after a gap of %s (< %s): handler %q, want %q, still running", gap, idle, h, handler)
		}
		handler = h
		time.Sleep(idle / 10)
	}
	n := int(handler[0] - '0')
	running := f.starts()[n-1]
	if running.Err() != nil {
		t.Fatalf("handler %s stopped right after a request", handler)
	}

	// No requests: the services stop.
	deadline := time.Now().Add(10 * time.Second)
	for running.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("services still running %s after the last request; idle is %s", time.Since(last), idle)
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	if gap := time.Since(last); gap < idle {
		t.Fatalf("services stopped %s after the last request, before idle (%s)", gap, idle)
	}

	if h := get(); h != string(rune('0'+n+1)) {
		t.Fatalf("request after the stop of handler %d served by handler %q, want a new one", n, h)
	}
	if starts := f.starts(); len(starts) != n+1 || starts[n].Err() != nil {
		t.Fatalf("%d starts after the stop, want %d with the last running", len(starts), n+1)
	}

	// The server's context stops them too.
	cancel()
	if err := f.starts()[n].Err(); err == nil {
		t.Fatal("services still running after the server's context ended")
	}
}
