package web

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientInfo is what the service saw of the client's network.
type clientInfo struct {
	Address  string `json:"address"`
	ViaProxy bool   `json:"via_proxy"`
	Proxy    string `json:"proxy"`
	addr     netip.Addr
}

// maxForwardHops bounds how many addresses of a forwarding chain are
// examined (a long header is not a reason to spend time).
const maxForwardHops = 16

// clientOf resolves the client's address: the TCP peer, unless the peer is
// a trusted proxy, in which case the forwarding chain (Forwarded, RFC 7239,
// else X-Forwarded-For) is walked from the right, past trusted proxies, to
// the first address not trusted. Headers from untrusted peers are ignored:
// anyone can write them.
func (s *Server) clientOf(r *http.Request) clientInfo {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return clientInfo{Address: r.RemoteAddr}
	}
	ci := clientInfo{addr: peer.Addr().Unmap()}
	if s.trusted(ci.addr) {
		ci.ViaProxy = true
		ci.Proxy = firstElement(r.Header.Get("Via"))
		chain := forwardedFor(r.Header.Values("Forwarded"))
		if chain == nil {
			chain = xForwardedFor(r.Header.Values("X-Forwarded-For"))
		}
		for i := len(chain) - 1; i >= 0 && i >= len(chain)-maxForwardHops; i-- {
			ci.addr = chain[i]
			if !s.trusted(chain[i]) {
				break
			}
		}
	}
	ci.Address = ci.addr.String()
	return ci
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// firstElement is the first comma-separated element of a header, trimmed
// and cut to 128 bytes.
func firstElement(v string) string {
	v, _, _ = strings.Cut(v, ",")
	v = strings.TrimSpace(v)
	if len(v) > 128 {
		v = v[:128]
	}
	return v
}

// forwardedFor returns the for= addresses of Forwarded headers (RFC 7239
// §4), in order; nil when there are none. Obfuscated and "unknown" nodes
// are skipped.
func forwardedFor(values []string) []netip.Addr {
	var out []netip.Addr
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				if a, ok := parseNode(strings.Trim(val, `"`)); ok {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// xForwardedFor returns the addresses of X-Forwarded-For headers in order.
func xForwardedFor(values []string) []netip.Addr {
	var out []netip.Addr
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if a, ok := parseNode(strings.TrimSpace(e)); ok {
				out = append(out, a)
			}
		}
	}
	return out
}

// parseNode parses "192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:80" or
// "2001:db8::1".
func parseNode(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
