// Package clientip finds the address of the client behind a chain of
// proxies from X-Forwarded-For (the de facto header; RFC 7239 describes its
// standard successor, Forwarded): only the entries appended by trusted
// proxies are believed.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Trusted is the set of proxies whose X-Forwarded-For entries are believed
// (config proxy.trusted_proxies): a load balancer in front of the Chorus
// proxy, say. The zero Trusted trusts nobody.
type Trusted struct {
	prefixes []netip.Prefix
}

// ParseTrusted parses CIDRs ("10.0.0.0/8", "2001:db8::/32") and single IPs
// ("192.0.2.7"). It fails on the first entry that is neither.
func ParseTrusted(entries []string) (Trusted, error) {
	var t Trusted
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			t.prefixes = append(t.prefixes, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return Trusted{}, fmt.Errorf("%q is neither a CIDR nor an IP address", e)
		}
		t.prefixes = append(t.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return t, nil
}

// Contains reports whether addr (an IP, without port) is a trusted proxy.
func (t Trusted) Contains(addr string) bool {
	a, err := netip.ParseAddr(strings.TrimSpace(addr))
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client's address from hops, the addresses a request
// went through, oldest first, the last being the one this process received
// it from: the X-Forwarded-For entries, then the peer (Hops). It walks from
// the last hop towards the first while the hop is a trusted proxy, and
// returns the first one that is not: entries before it were written by
// whoever that is, and may be anything. A hop that is not an IP address
// stops the walk at the trusted hop after it. With every hop trusted, the
// first is the client.
func (t Trusted) Client(hops []string) string {
	if len(hops) == 0 {
		return ""
	}
	i := len(hops) - 1
	for ; i > 0 && t.Contains(hops[i]); i-- {
		if _, err := netip.ParseAddr(hops[i-1]); err != nil {
			return hops[i]
		}
	}
	return hops[i]
}

// ForwardedFor returns the X-Forwarded-For entries of r, oldest first (every
// X-Forwarded-For header, comma-separated lists split, spaces trimmed).
func ForwardedFor(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// Peer returns the IP address r came from (its RemoteAddr without port).
func Peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Hops returns the X-Forwarded-For entries of r followed by its peer: what
// Client expects.
func Hops(r *http.Request) []string {
	return append(ForwardedFor(r), Peer(r))
}
