package push

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// DNS record types and class (RFC 1035, section 3.2; RFC 3596).
const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
	dnsClassIN  = 1
)

// serveDNS starts a DNS server on loopback for the test that answers from
// records, as a zone under an attacker's control would: a name resolves
// to whatever addresses it lists (IPv4 ones as A records, the rest,
// IPv4-mapped among them, as AAAA), and a name it does not list does not
// exist. It returns a resolver that asks only that server.
func serveDNS(t *testing.T, records map[string][]netip.Addr) *net.Resolver {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsResponse(buf[:n], records); resp != nil {
				_, _ = conn.WriteTo(resp, from)
			}
		}
	}()
	server := conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		// Every query goes to the server, whatever resolv.conf names, and
		// over UDP even when the resolver asks for TCP: it speaks the
		// protocol the connection allows, and the answers are small.
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp4", server)
		},
	}
}

// dnsResponse answers query, a message of one question (RFC 1035, section
// 4.1), from records; it returns nil for a message it cannot read, which
// the resolver then waits out like a lost packet.
func dnsResponse(query []byte, records map[string][]netip.Addr) []byte {
	if len(query) < 12 || binary.BigEndian.Uint16(query[4:]) != 1 {
		return nil
	}
	// The question: its name's labels up to the root label (a query has
	// no compression pointers), then type and class.
	var labels []string
	i := 12
	for i < len(query) && query[i] != 0 {
		n := int(query[i])
		if n > 63 || i+1+n > len(query) {
			return nil
		}
		labels = append(labels, string(query[i+1:i+1+n]))
		i += 1 + n
	}
	if i+5 > len(query) || binary.BigEndian.Uint16(query[i+3:]) != dnsClassIN {
		return nil
	}
	qtype := binary.BigEndian.Uint16(query[i+1:])
	question := query[12 : i+5]

	addrs, exists := records[strings.ToLower(strings.Join(labels, "."))]
	// A response (QR), authoritative (AA), recursion available (RA), with
	// the query's recursion desired (RD); without AA or RA, an empty
	// answer would be taken for a lame referral.
	flags := 0x8000 | 0x0400 | 0x0080 | binary.BigEndian.Uint16(query[2:])&0x0100
	if !exists {
		flags |= 3 // NXDOMAIN
	}
	var rdata [][]byte
	for _, a := range addrs {
		if (qtype == dnsTypeA) == a.Is4() && (qtype == dnsTypeA || qtype == dnsTypeAAAA) {
			rdata = append(rdata, a.AsSlice())
		}
	}

	resp := append([]byte(nil), query[:2]...) // the query's ID
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)                  // questions
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata))) // answers
	resp = binary.BigEndian.AppendUint32(resp, 0)                  // authority and additional records
	resp = append(resp, question...)
	for _, d := range rdata {
		resp = append(resp, 0xc0, 12) // the name: a pointer to the question's
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, dnsClassIN)
		resp = binary.BigEndian.AppendUint32(resp, 0) // TTL: nothing to cache
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(d)))
		resp = append(resp, d...)
	}
	return resp
}

// mustAddrs parses addresses for serveDNS's records.
func mustAddrs(ss ...string) []netip.Addr {
	addrs := make([]netip.Addr, len(ss))
	for i, s := range ss {
		addrs[i] = netip.MustParseAddr(s)
	}
	return addrs
}

func TestServeDNS(t *testing.T) {
	t.Parallel()

	r := serveDNS(t, map[string][]netip.Addr{
		"both.test":   mustAddrs("10.0.0.1", "127.0.0.1", "::1", "::ffff:10.0.0.2"),
		"v6only.test": mustAddrs("fc00::1"),
	})
	lookup := func(host string) []string {
		t.Helper()
		addrs, err := r.LookupIPAddr(t.Context(), host)
		require.NoError(t, err, host)
		ss := make([]string, len(addrs))
		for i, a := range addrs {
			ss[i] = a.String()
		}
		return ss
	}
	// The mapped address comes back as the IPv4 address it maps: the
	// dialer connects there, over IPv4.
	require.ElementsMatch(t, []string{"10.0.0.1", "127.0.0.1", "::1", "10.0.0.2"}, lookup("both.test"))
	require.ElementsMatch(t, []string{"10.0.0.1", "127.0.0.1", "::1", "10.0.0.2"}, lookup("BOTH.test"))
	require.Equal(t, []string{"fc00::1"}, lookup("v6only.test"))

	_, err := r.LookupIPAddr(t.Context(), "missing.test")
	dnsErr, ok := errors.AsType[*net.DNSError](err)
	require.True(t, ok, "%v", err)
	require.True(t, dnsErr.IsNotFound, "%v", err)
}
