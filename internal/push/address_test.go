package push

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRefused(t *testing.T) {
	t.Parallel()

	// Each refused range by its first and last address where that is
	// telling, then the public neighbours that must stay reachable.
	refused := []struct {
		addr, reason string
	}{
		{"0.0.0.0", "unspecified"},
		{"0.255.255.255", "unspecified"},
		{"10.0.0.0", "private"},
		{"10.255.255.255", "private"},
		{"100.64.0.0", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.0.1", "link-local"},
		{"169.254.169.254", "link-local (the cloud metadata service)"},
		{"169.254.255.255", "link-local"},
		{"172.16.0.0", "private"},
		{"172.31.255.255", "private"},
		{"192.168.0.0", "private"},
		{"192.168.255.255", "private"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.255", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},

		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fc00::1", "unique local"},
		{"fd12:3456:789a::1", "unique local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf:ffff::1", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"ff0e::1", "multicast"},

		// IPv4-mapped.
		{"::ffff:0.0.0.0", `unspecified ("this network") (IPv4-mapped form of 0.0.0.0)`},
		{"::ffff:10.1.2.3", "private (IPv4-mapped form of 10.1.2.3)"},
		{"::ffff:100.64.0.1", "carrier-grade NAT"},
		{"::ffff:127.0.0.1", "loopback (IPv4-mapped form of 127.0.0.1)"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"::ffff:172.16.0.1", "private"},
		{"::ffff:192.168.1.1", "private"},
		{"::ffff:224.0.0.1", "multicast"},
		{"::ffff:255.255.255.255", "broadcast"},
		// IPv4-compatible (deprecated, still parsed by some stacks).
		{"::127.0.0.1", "loopback (IPv4-compatible form of 127.0.0.1)"},
		{"::10.0.0.1", "private (IPv4-compatible form of 10.0.0.1)"},
		{"::169.254.169.254", "cloud metadata"},
		{"::0.0.0.2", "unspecified"},
		// NAT64, well-known prefix.
		{"64:ff9b::7f00:1", "loopback (NAT64 form of 127.0.0.1)"},
		{"64:ff9b::a9fe:a9fe", "link-local (the cloud metadata service) (NAT64 form of 169.254.169.254)"},
		{"64:ff9b::c0a8:101", "private (NAT64 form of 192.168.1.1)"},
		{"64:ff9b::6440:1", "carrier-grade NAT"},
		// NAT64, local-use prefix, in its /96 and /48 layouts.
		{"64:ff9b:1::7f00:1", "loopback (NAT64 form of 127.0.0.1)"},
		{"64:ff9b:1:ab:cd:ef:a00:1", "private (NAT64 form of 10.0.0.1)"},
		{"64:ff9b:1:7f00:0:100::", "(NAT64 form of"},
		// 6to4.
		{"2002:7f00:1::1", "loopback (6to4 form of 127.0.0.1)"},
		{"2002:a9fe:a9fe::", "cloud metadata"},
		{"2002:c0a8:101::1", "private (6to4 form of 192.168.1.1)"},
	}
	for _, tt := range refused {
		addr := netip.MustParseAddr(tt.addr)
		reason, ok := Refused(addr, nil)
		require.True(t, ok, "%s is not refused", tt.addr)
		require.Contains(t, reason, tt.reason, tt.addr)
	}

	for _, s := range []string{
		"1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "100.63.255.255",
		"100.128.0.0", "126.255.255.255", "128.0.0.0", "169.253.255.255",
		"169.255.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255",
		"192.169.0.0", "223.255.255.255",
		"2001:4860:4860::8888", "2606:4700:4700::1111", "fbff::1", "fe7f::1", "fe00::1",
		"::ffff:8.8.8.8", "::8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
		"64:ff9b:1:808:808:808:808:808",
	} {
		reason, ok := Refused(netip.MustParseAddr(s), nil)
		require.False(t, ok, "%s is refused: %s", s, reason)
		require.Empty(t, reason)
	}

	reason, ok := Refused(netip.Addr{}, nil)
	require.True(t, ok)
	require.Equal(t, "not an IP address", reason)
}

func TestRefusedAllowPrivate(t *testing.T) {
	t.Parallel()

	prefixes := func(ss ...string) []netip.Prefix {
		ps := make([]netip.Prefix, len(ss))
		for i, s := range ss {
			ps[i] = netip.MustParsePrefix(s)
		}
		return ps
	}
	for _, tt := range []struct {
		addr    string
		allow   []netip.Prefix
		refused bool
	}{
		{"127.0.0.1", prefixes("127.0.0.1/32"), false},
		{"127.0.0.2", prefixes("127.0.0.1/32"), true},
		{"10.1.2.3", prefixes("10.0.0.0/8"), false},
		{"10.1.2.3", prefixes("192.168.0.0/16", "10.1.0.0/16"), false},
		{"172.16.0.1", prefixes("10.0.0.0/8"), true},
		{"169.254.169.254", prefixes("10.0.0.0/8"), true},
		{"::1", prefixes("::1/128"), false},
		{"::1", prefixes("127.0.0.1/32"), true},
		{"127.0.0.1", prefixes("::1/128"), true},
		{"fe80::1%eth0", prefixes("fe80::/10"), false},
		{"fd00::1", prefixes("fd00::/8"), false},
		// An allowed IPv4 address is allowed in the forms that embed it,
		// since that is where they connect.
		{"::ffff:127.0.0.1", prefixes("127.0.0.1/32"), false},
		{"64:ff9b::a00:1", prefixes("10.0.0.0/8"), false},
		{"2002:a00:1::", prefixes("10.0.0.0/8"), false},
		{"::ffff:127.0.0.2", prefixes("127.0.0.1/32"), true},
		// A prefix in IPv4-mapped form allows the plain IPv4 addresses
		// too: the dialer sees ::ffff:127.0.0.1 as 127.0.0.1.
		{"127.0.0.1", prefixes("::ffff:127.0.0.1/128"), false},
		{"10.9.9.9", prefixes("::ffff:10.0.0.0/104"), false},
		{"11.0.0.1", prefixes("::ffff:10.0.0.0/104"), false}, // public anyway
		{"10.9.9.9", prefixes("::ffff:11.0.0.0/104"), true},
		// The local-use NAT64 range is allowed by its own prefix.
		{"64:ff9b:1::808:808", nil, true},
		{"64:ff9b:1::808:808", prefixes("64:ff9b:1::/96"), false},
	} {
		reason, refused := Refused(netip.MustParseAddr(tt.addr), tt.allow)
		require.Equal(t, tt.refused, refused, "%s allowing %v: %q", tt.addr, tt.allow, reason)
	}
}

func TestRefusedEndToEnd(t *testing.T) {
	t.Parallel()

	v4 := listenCanary(t, "tcp4", "127.0.0.1:0")
	urls := []string{
		fmt.Sprintf("http://localhost:%d/", v4.port()), // resolves to loopback
		fmt.Sprintf("http://127.0.0.1:%d/", v4.port()),
		fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", v4.port()),
		fmt.Sprintf("http://0.0.0.0:%d/", v4.port()), // Linux connects it to this host
	}
	v6 := listenCanaryIPv6(t, 0)
	if v6 != nil {
		urls = append(urls,
			fmt.Sprintf("http://[::1]:%d/", v6.port()),
			fmt.Sprintf("http://localhost:%d/", v6.port()),
			fmt.Sprintf("http://[::]:%d/", v6.port()),
		)
	}

	for _, raw := range urls {
		// Allowing other private ranges changes nothing.
		c := newTestClient(t, Config{Target: Target{
			URL:          mustURL(t, raw),
			AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		}})
		o := c.Do(t.Context(), testRequest())
		require.Error(t, o.Err, raw)
		require.False(t, o.Permanent, raw)
		require.Zero(t, o.Status, raw)
		refused, ok := errors.AsType[*RefusedError](o.Err)
		require.True(t, ok, "%s: %v", raw, o.Err)
		t.Logf("%s: %v", raw, o.Err)
		require.True(t, refused.Addr.Addr().IsLoopback() || refused.Addr.Addr().IsUnspecified(), raw)
		require.True(t, strings.HasPrefix(o.Err.Error(), "push: address "), o.Err.Error())
		require.Contains(t, o.Err.Error(), "refused: ")
		require.Contains(t, o.Err.Error(), "; add it to allow_private (top level or on the kind) to allow it")
		require.NotContains(t, o.Err.Error(), "http://", "the error names the URL")
	}

	want := fmt.Sprintf("push: address 127.0.0.1:%d refused: loopback; add it to allow_private (top level or on the kind) to allow it", v4.port())
	c := newTestClient(t, Config{Target: Target{URL: mustURL(t, fmt.Sprintf("http://127.0.0.1:%d/", v4.port())), AllowPrivate: []netip.Prefix{}}})
	require.EqualError(t, c.Do(t.Context(), testRequest()).Err, want)

	v4.requireUntouched(t)
	if v6 != nil {
		v6.requireUntouched(t)
	}
}

func TestRefusedHostNameEndToEnd(t *testing.T) {
	t.Parallel()

	v4 := listenCanary(t, "tcp4", "127.0.0.1:0")
	v6 := listenCanaryIPv6(t, 0)

	// One address of each refused range, as the only record of a name.
	// The URL's port is the canary's of the address's family, so the
	// addresses that reach this host (loopback, and on Linux the
	// unspecified address) would land on a canary; nothing listens at the
	// others, where a dial past the check would end in another error or
	// in the timeout.
	ranges := []struct {
		addr, reason string
	}{
		{"127.0.0.1", "loopback"},
		{"127.0.0.2", "loopback"},
		{"0.0.0.0", `unspecified ("this network")`},
		{"10.1.2.3", "private"},
		{"172.16.5.4", "private"},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"169.254.169.254", "link-local (the cloud metadata service)"},
		{"169.254.1.1", "link-local"},
		{"224.0.0.1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		// IPv4-mapped, in an AAAA record: dialed, and so judged, as the
		// IPv4 address it maps.
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.0.0.1", "private"},
		{"::ffff:169.254.169.254", "link-local (the cloud metadata service)"},
		// IPv6, where the host has it.
		{"::1", "loopback"},
		{"::", "unspecified"},
		{"fc00::1", "unique local"},
		{"fe80::1", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"::127.0.0.1", "loopback (IPv4-compatible form of 127.0.0.1)"},
		{"64:ff9b::a00:1", "private (NAT64 form of 10.0.0.1)"},
		{"64:ff9b::7f00:1", "loopback (NAT64 form of 127.0.0.1)"},
		{"64:ff9b:1::a9fe:a9fe", "link-local (the cloud metadata service) (NAT64 form of 169.254.169.254)"},
		{"2002:a00:1::1", "private (6to4 form of 10.0.0.1)"},
		{"2002:7f00:1::1", "loopback (6to4 form of 127.0.0.1)"},
	}
	records := make(map[string][]netip.Addr, len(ranges))
	for i, r := range ranges {
		records[fmt.Sprintf("range%d.test", i)] = mustAddrs(r.addr)
	}
	resolver := serveDNS(t, records)

	for i, r := range ranges {
		t.Run(r.addr, func(t *testing.T) {
			addr := netip.MustParseAddr(r.addr)
			target := v4
			if addr.Is6() && !addr.Is4In6() {
				if v6 == nil {
					t.Skip("no IPv6 loopback")
				}
				target = v6
			}
			c := newTestClient(t, Config{
				Target: Target{
					URL: mustURL(t, fmt.Sprintf("http://range%d.test:%d/", i, target.port())),
					// Short, so that a dial that got past the check
					// fails the test soon rather than hang it.
					Timeout:      TimeoutMin,
					AllowPrivate: []netip.Prefix{}, // nothing (nil would allow loopback)
				},
				Resolver: resolver,
			})
			o := c.Do(t.Context(), testRequest())
			refused, ok := errors.AsType[*RefusedError](o.Err)
			require.True(t, ok, "not refused: %v", o.Err)
			require.False(t, o.Permanent)
			require.Zero(t, o.Status)
			require.Equal(t, netip.AddrPortFrom(addr.Unmap(), target.port()), refused.Addr)
			require.Contains(t, refused.Reason, r.reason)
			require.Contains(t, o.Err.Error(), " refused: "+refused.Reason+"; add it to allow_private")
		})
	}

	v4.requireUntouched(t)
	if v6 != nil {
		v6.requireUntouched(t)
	}
}

func TestRefusedHostNameEveryAddress(t *testing.T) {
	t.Parallel()

	// The dialer tries a name's addresses in turn, IPv4 and IPv6 ones
	// side by side (RFC 8305), and checks each: refusing one must not let
	// the next through, whichever order the resolver sorts them in.
	// TestAllowPrivateEndToEnd shows the next one is tried.
	v4 := listenCanary(t, "tcp4", "127.0.0.1:0")
	v6 := listenCanaryIPv6(t, v4.port())
	records := map[string][]netip.Addr{
		"private-and-loopback.test":  mustAddrs("10.0.0.1", "127.0.0.1"),
		"mapped-and-loopback.test":   mustAddrs("::ffff:10.0.0.1", "127.0.0.1"),
		"loopback-and-metadata.test": mustAddrs("127.0.0.1", "169.254.169.254", "127.0.0.2"),
	}
	if v6 != nil {
		records["dual-stack.test"] = mustAddrs("127.0.0.1", "::1")
		records["dual-stack-private.test"] = mustAddrs("fc00::1", "::1", "10.0.0.1", "127.0.0.1")
	}
	resolver := serveDNS(t, records)

	for host, addrs := range records {
		c := newTestClient(t, Config{
			Target: Target{
				URL:          mustURL(t, fmt.Sprintf("http://%s:%d/", host, v4.port())),
				Timeout:      TimeoutMin,
				AllowPrivate: []netip.Prefix{},
			},
			Resolver: resolver,
		})
		o := c.Do(t.Context(), testRequest())
		refused, ok := errors.AsType[*RefusedError](o.Err)
		require.True(t, ok, "%s not refused: %v", host, o.Err)
		require.False(t, o.Permanent, host)
		var unmapped []netip.Addr
		for _, a := range addrs {
			unmapped = append(unmapped, a.Unmap())
		}
		require.Contains(t, unmapped, refused.Addr.Addr(), host)
		require.Contains(t, o.Err.Error(), "allow_private", host)
	}

	v4.requireUntouched(t)
	if v6 != nil {
		v6.requireUntouched(t)
	}
}

func TestAllowPrivateEndToEnd(t *testing.T) {
	t.Parallel()

	var requests atomic.Int64
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	port := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
	// Allowing is by address, so a name is allowed by the addresses it
	// resolves to, and only those are connected to.
	resolver := serveDNS(t, map[string][]netip.Addr{
		"loopback.test":             mustAddrs("127.0.0.1"),
		"mapped.test":               mustAddrs("::ffff:127.0.0.1"),
		"private-and-loopback.test": mustAddrs("10.0.0.1", "127.0.0.1"),
	})

	for _, tt := range []struct {
		url   string
		allow string
	}{
		{fmt.Sprintf("http://127.0.0.1:%d/", port), "127.0.0.1/32"},
		{fmt.Sprintf("http://127.0.0.1:%d/", port), "127.0.0.0/8"},
		{fmt.Sprintf("http://localhost:%d/", port), "127.0.0.1/32"},
		{fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port), "127.0.0.1/32"},
		{fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port), "::ffff:127.0.0.1/128"},
		{fmt.Sprintf("http://loopback.test:%d/", port), "127.0.0.1/32"},
		{fmt.Sprintf("http://mapped.test:%d/", port), "127.0.0.1/32"},
		// 10.0.0.1 is refused and 127.0.0.1 tried next, whichever order
		// they come in.
		{fmt.Sprintf("http://private-and-loopback.test:%d/", port), "127.0.0.1/32"},
	} {
		c := newTestClient(t, Config{
			Target: Target{
				URL:          mustURL(t, tt.url),
				AllowPrivate: []netip.Prefix{netip.MustParsePrefix(tt.allow)},
			},
			Resolver: resolver,
		})
		o := c.Do(t.Context(), testRequest())
		require.NoError(t, o.Err, "%s allowing %s", tt.url, tt.allow)
		require.Equal(t, http.StatusOK, o.Status)
		require.JSONEq(t, `{"ok":true}`, string(o.Result))
	}
	require.Equal(t, int64(8), requests.Load())
}
