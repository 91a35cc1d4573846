package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
)

// allowList is the set of destination IP:port pairs streams may reach, an
// immutable snapshot swapped whole when the zone names are resolved again.
type allowList struct {
	zones    []string
	resolver Resolver
	set      atomic.Pointer[map[netip.AddrPort]struct{}]
}

// resolveTimeout bounds one name resolution (zone refresh or destination).
const resolveTimeout = 5 * time.Second

// refresh resolves every zone entry and installs the new set. Entries that
// fail to resolve keep their previous addresses, so a DNS outage does not
// empty the list; the error names the failures.
func (a *allowList) refresh(ctx context.Context) error {
	old := a.set.Load()
	next := make(map[netip.AddrPort]struct{})
	var errs []error
	for _, z := range a.zones {
		host, port, _ := ParseTarget(z) // validated by Config.Validate
		ips, err := a.lookup(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", z, err))
			if old != nil {
				for ap := range *old {
					if ap.Port() == port {
						next[ap] = struct{}{} // keep: we cannot tell which name it came from
					}
				}
			}
			continue
		}
		for _, ip := range ips {
			next[netip.AddrPortFrom(ip.Unmap(), port)] = struct{}{}
		}
	}
	a.set.Store(&next)
	return errors.Join(errs...)
}

// lookup resolves host, or parses it when it is an IP literal.
func (a *allowList) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := a.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, errors.New("no addresses")
	}
	return ips, nil
}

// resolve returns the addresses of host:port, in resolver order.
func (a *allowList) resolve(ctx context.Context, host string, port uint16) ([]netip.AddrPort, error) {
	ips, err := a.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip.Unmap(), port)
	}
	return out, nil
}

// filter returns the addresses of aps that are in set, in order. Only
// these are dialled: the check and the dial use the same IP, so no second
// resolution can redirect the stream.
func filter(aps []netip.AddrPort, set map[netip.AddrPort]struct{}) []netip.AddrPort {
	var out []netip.AddrPort
	for _, ap := range aps {
		if _, ok := set[ap]; ok {
			out = append(out, ap)
		}
	}
	return out
}
