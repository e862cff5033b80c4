package push

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// loopback is what tests allow, since their servers listen there.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}

// testNow is the clock of most tests, on a whole second so that an HTTP
// date round-trips exactly.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

// serve starts a real HTTP server on loopback for the test.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newTestClient returns a Client of cfg, filling in what tests rarely
// set: loopback allowed, the fixed clock.
func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Target.AllowPrivate == nil {
		cfg.Target.AllowPrivate = loopback
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	c, err := NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// clientFor returns a Client pushing to rawURL with loopback allowed.
func clientFor(t *testing.T, rawURL string) *Client {
	t.Helper()
	return newTestClient(t, Config{Target: Target{URL: mustURL(t, rawURL)}})
}

func testRequest() Request {
	return Request{TaskID: 42, Kind: "email", Args: []byte(`{"to":"a@example.com"}`), Attempt: 1, MaxAttempts: 5, Queue: "default"}
}

// waitFor fails the test unless ch delivers within 5 s.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// canary is a TCP listener that must never be connected to. It counts the
// connections it accepts.
type canary struct {
	ln       net.Listener
	accepted atomic.Int64
}

// listenCanary starts a canary, or skips the test when it cannot listen.
func listenCanary(t *testing.T, network, address string) *canary {
	t.Helper()
	c, err := tryListenCanary(t, network, address)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, address, err)
	}
	return c
}

// listenCanaryIPv6 starts a canary on [::1]:port (port 0 picks one), or
// returns nil when the host has no IPv6 loopback or the port is taken.
func listenCanaryIPv6(t *testing.T, port uint16) *canary {
	t.Helper()
	c, err := tryListenCanary(t, "tcp6", netip.AddrPortFrom(netip.IPv6Loopback(), port).String())
	if err != nil {
		t.Logf("no IPv6 canary: %v", err)
		return nil
	}
	return c
}

func tryListenCanary(t *testing.T, network, address string) (*canary, error) {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	c := &canary{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepted.Add(1)
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return c, nil
}

func (c *canary) port() uint16 { return netip.MustParseAddrPort(c.ln.Addr().String()).Port() }

// requireUntouched fails the test if anything but its own probe connected
// to the canary. Connections are accepted in order, so once the probe,
// made last, has been accepted, any earlier connection has been counted.
func (c *canary) requireUntouched(t *testing.T) {
	t.Helper()
	probe, err := net.Dial(c.ln.Addr().Network(), c.ln.Addr().String())
	require.NoError(t, err)
	defer probe.Close()
	require.Eventually(t, func() bool { return c.accepted.Load() >= 1 }, 5*time.Second, time.Millisecond, "the probe was never accepted")
	require.Equal(t, int64(1), c.accepted.Load(), "the canary was connected to")
}
