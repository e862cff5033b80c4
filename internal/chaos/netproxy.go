package chaos

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// NetProxy is a TCP proxy between taskd and PostgreSQL, run in the test's
// own process with toxiproxy as a library, that injects network faults
// into the connections through it: a blackhole (bytes vanish, nothing is
// closed), latency, and connections reset by the peer. R4 runs one per
// taskd process, so that one process can be cut off while the others keep
// their link.
type NetProxy struct {
	proxy *toxiproxy.Proxy

	mu     sync.Mutex
	toxics []string
}

// netProxyServer is the toxiproxy server the proxies hang off; its HTTP
// API is never started.
var netProxyServer = sync.OnceValue(func() *toxiproxy.ApiServer {
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
})

// NewNetProxy starts a proxy from a free port of 127.0.0.1 to upstream
// (host:port) and stops it when the test ends.
func NewNetProxy(t testing.TB, name, upstream string) *NetProxy {
	t.Helper()
	p := &NetProxy{proxy: toxiproxy.NewProxy(netProxyServer(), name, "127.0.0.1:0", upstream)}
	if err := p.proxy.Start(); err != nil {
		t.Fatalf("chaos: starting the proxy to %s: %v", upstream, err)
	}
	t.Cleanup(p.proxy.Stop)
	return p
}

// Addr is the proxy's listening address (host:port).
func (p *NetProxy) Addr() string { return p.proxy.Listen }

// URL returns the database URL direct with its host and port replaced by
// the proxy's.
func (p *NetProxy) URL(t testing.TB, direct string) string {
	t.Helper()
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatalf("chaos: parsing the database URL: %v", err)
	}
	u.Host = p.Addr()
	return u.String()
}

// Upstream returns the host:port a database URL connects to (the default
// port when it names none).
func Upstream(t testing.TB, direct string) string {
	t.Helper()
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatalf("chaos: parsing the database URL: %v", err)
	}
	if u.Port() == "" {
		return u.Hostname() + ":5432"
	}
	return u.Host
}

// Blackhole makes the link swallow every byte in both directions, of the
// connections open now and of new ones (which the proxy still accepts, as
// a host behind a dead route would not answer), without closing any: the
// peers see silence, never an error. Heal ends it; toxiproxy then closes
// the connections that were open through it.
func (p *NetProxy) Blackhole(t testing.TB) {
	t.Helper()
	p.both(t, "timeout", `{"timeout":0}`)
}

// Latency delays every chunk by d in each direction: a statement's round
// trip takes at least 2·d.
func (p *NetProxy) Latency(t testing.TB, d time.Duration) {
	t.Helper()
	p.both(t, "latency", fmt.Sprintf(`{"latency":%d}`, d.Milliseconds()))
}

// ResetPeer resets every connection after timeout from its first bytes:
// new connections are reset (RST) by the proxy, those open now are closed.
func (p *NetProxy) ResetPeer(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.both(t, "reset_peer", fmt.Sprintf(`{"timeout":%d}`, timeout.Milliseconds()))
}

// Heal removes every fault.
func (p *NetProxy) Heal(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range p.toxics {
		if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
			t.Errorf("chaos: removing toxic %s: %v", name, err)
		}
	}
	p.toxics = nil
}

func (p *NetProxy) both(t testing.TB, typ, attributes string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, stream := range []string{"upstream", "downstream"} {
		name := fmt.Sprintf("%s_%s_%d", typ, stream, len(p.toxics))
		spec := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attributes)
		if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			t.Fatalf("chaos: adding toxic %s: %v", name, err)
		}
		p.toxics = append(p.toxics, name)
	}
}
