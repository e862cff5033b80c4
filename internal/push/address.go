package push

import (
	"fmt"
	"net/netip"
	"syscall"
)

// A refusal is a range of addresses the dialer refuses and why.
type refusal struct {
	prefix netip.Prefix
	reason string
}

// refusedIPv4 are the IPv4 ranges a target may not reach unless allowed:
// everything that is this host, this network, the operator's private
// networks or the cloud's internal services, and nothing a public
// endpoint can have. The first match names the reason, so narrower ranges
// come first.
var refusedIPv4 = []refusal{
	{netip.MustParsePrefix("169.254.169.254/32"), "link-local (the cloud metadata service)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("0.0.0.0/8"), `unspecified ("this network")`},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (shared address space)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	// Reserved for future use and routed nowhere; it holds the broadcast
	// address above.
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

// refusedIPv6 are the IPv6 ranges refused in their own right. The ranges
// that embed an IPv4 address are judged by that address instead (see
// embeddedIPv4).
var refusedIPv6 = []refusal{
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	// Deprecated (RFC 3879) but still routed inside some sites.
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// Ranges of IPv6 addresses that carry an IPv4 address, which a host, a
// NAT64 gateway or a 6to4 relay may turn into a connection to that IPv4
// address. Without them, ::ffff:127.0.0.1 or 64:ff9b::a9fe:a9fe would
// reach what 127.0.0.1 and 169.254.169.254 are refused for.
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// An embedding is an IPv4 address found inside an IPv6 one, and how.
type embedding struct {
	form string
	ipv4 netip.Addr
}

// embeddedIPv4 returns the IPv4 addresses that a6 may stand for.
func embeddedIPv4(a6 netip.Addr) []embedding {
	b := a6.As16()
	from := func(form string, i, j, k, l int) embedding {
		return embedding{form, netip.AddrFrom4([4]byte{b[i], b[j], b[k], b[l]})}
	}
	switch {
	case a6.Is4In6():
		return []embedding{{"IPv4-mapped", a6.Unmap()}}
	case ipv4Compatible.Contains(a6):
		return []embedding{from("IPv4-compatible", 12, 13, 14, 15)}
	case nat64.Contains(a6):
		return []embedding{from("NAT64", 12, 13, 14, 15)}
	case nat64Local.Contains(a6):
		// A local-use prefix may be the /48 itself or any longer prefix
		// cut from it; the address does not say which, and so not where
		// the IPv4 address sits (RFC 6052, around the "u" octet, byte 8).
		// Every reading is judged, so that no layout is a way around the
		// rules; the price is that most of the range is refused (a zero
		// filled reading is "this network") unless the operator allows
		// the prefix its NAT64 gateway uses.
		return []embedding{
			from("NAT64", 12, 13, 14, 15), // /96
			from("NAT64", 9, 10, 11, 12),  // /64
			from("NAT64", 7, 9, 10, 11),   // /56
			from("NAT64", 6, 7, 9, 10),    // /48
		}
	case sixToFour.Contains(a6):
		return []embedding{from("6to4", 2, 3, 4, 5)}
	}
	return nil
}

// Refused reports whether the dialer refuses to connect to addr and, if it
// does, why ("loopback", "private", ...). It refuses loopback, private,
// link-local (the cloud metadata address among them), carrier-grade NAT,
// unspecified, multicast, broadcast and reserved IPv4 addresses; IPv6
// loopback, unspecified, unique local, link-local, site-local and
// multicast addresses; and IPv6 addresses that embed a refused IPv4
// address (IPv4-mapped, IPv4-compatible, NAT64 and 6to4). An invalid addr
// is refused.
//
// Allowing is by address, never by host name: a prefix of allow lifts the
// refusal of the addresses it contains, and of IPv6 addresses that embed
// an IPv4 address it contains (allowing 127.0.0.1/32 allows
// ::ffff:127.0.0.1 too, since that is the address connected to). A
// target's URL that names an IP literal is allowed exactly when that
// address is. A host name is allowed only in that every address it
// resolves to, checked at connect time, is, so that pointing an allowed
// name at another address (DNS rebinding) gains nothing.
func Refused(addr netip.Addr, allow []netip.Prefix) (reason string, refused bool) {
	if !addr.IsValid() {
		return "not an IP address", true
	}
	// Prefixes never contain an address with a zone (fe80::1%eth0).
	addr = addr.WithZone("")
	if allowed(addr, allow) {
		return "", false
	}
	if addr.Is4() {
		return refusedV4(addr)
	}
	for _, r := range refusedIPv6 {
		if r.prefix.Contains(addr) {
			return r.reason, true
		}
	}
	for _, e := range embeddedIPv4(addr) {
		if allowed(e.ipv4, allow) {
			continue
		}
		if reason, ok := refusedV4(e.ipv4); ok {
			return fmt.Sprintf("%s (%s form of %s)", reason, e.form, e.ipv4), true
		}
	}
	return "", false
}

func refusedV4(a4 netip.Addr) (string, bool) {
	for _, r := range refusedIPv4 {
		if r.prefix.Contains(a4) {
			return r.reason, true
		}
	}
	return "", false
}

// allowed reports whether a prefix of allow contains addr. A prefix
// written in IPv4-mapped form (::ffff:10.0.0.0/104) also contains the
// IPv4 addresses it maps, since the dialer sees those as plain IPv4.
func allowed(addr netip.Addr, allow []netip.Prefix) bool {
	for _, p := range allow {
		if p.Contains(addr) {
			return true
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 && addr.Is4() {
			if netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Contains(addr) {
				return true
			}
		}
	}
	return false
}

// RefusedError is the error of an attempt whose connection the dialer
// refused. It is a failed attempt, not a permanent failure: the operator
// may allow the address and the next attempt then goes through.
type RefusedError struct {
	// Addr is the address and port that was refused.
	Addr netip.AddrPort
	// Reason is what Refused said of it.
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("push: address %s refused: %s; add it to allow_private (top level or on the kind) to allow it", e.Addr, e.Reason)
}

// control is the dialer's Control: it sees every address the dialer is
// about to connect to, after resolution, so a host name that resolves (or
// is rebound) to an internal address is caught as surely as a literal.
func control(allow []netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			// Never expected from a TCP dial; refuse rather than guess.
			return fmt.Errorf("push: refusing to dial %s %q: %w", network, address, err)
		}
		if reason, refused := Refused(ap.Addr(), allow); refused {
			return &RefusedError{Addr: ap, Reason: reason}
		}
		return nil
	}
}
