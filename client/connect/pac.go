package connect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dop251/goja"
)

// PAC limits.
const (
	// maxPAC bounds a PAC file: real ones are a few KiB.
	maxPAC = 1 << 20
	// pacEvalTimeout bounds one FindProxyForURL call: a PAC script with an
	// endless loop must not hang the connection process.
	pacEvalTimeout = time.Second
	// pacDNSTimeout bounds the DNS lookups of isResolvable, isInNet and
	// dnsResolve.
	pacDNSTimeout = 500 * time.Millisecond
)

// pac is a compiled proxy auto-config script (the Netscape PAC format,
// FindProxyForURL(url, host)) with the standard helper functions. Safe for
// concurrent use (calls are serialised: a goja runtime is single-threaded).
type pac struct {
	mu  sync.Mutex
	vm  *goja.Runtime
	fn  goja.Callable
	now func() time.Time
}

// newPAC compiles script.
func newPAC(script string, now func() time.Time) (*pac, error) {
	if len(script) > maxPAC {
		return nil, fmt.Errorf("PAC file larger than %d bytes", maxPAC)
	}
	p := &pac{vm: goja.New(), now: now}
	for name, f := range map[string]any{
		"isPlainHostName":     func(h string) bool { return !strings.Contains(h, ".") },
		"dnsDomainIs":         pacDNSDomainIs,
		"localHostOrDomainIs": pacLocalHostOrDomainIs,
		"isResolvable":        func(h string) bool { return pacResolve(h) != "" },
		"isInNet":             pacIsInNet,
		"dnsResolve": func(h string) goja.Value {
			if ip := pacResolve(h); ip != "" {
				return p.vm.ToValue(ip)
			}
			return goja.Null()
		},
		"myIpAddress":     pacMyIPAddress,
		"dnsDomainLevels": func(h string) int { return strings.Count(h, ".") },
		"shExpMatch":      pacShExpMatch,
		"weekdayRange":    p.weekdayRange,
		"dateRange":       p.dateRange,
		"timeRange":       p.timeRange,
	} {
		if err := p.vm.Set(name, f); err != nil {
			return nil, err
		}
	}
	t := time.AfterFunc(pacEvalTimeout, func() { p.vm.Interrupt("PAC script timed out") })
	_, err := p.vm.RunString(script)
	t.Stop()
	p.vm.ClearInterrupt()
	if err != nil {
		return nil, fmt.Errorf("PAC file: %w", err)
	}
	fn, ok := goja.AssertFunction(p.vm.Get("FindProxyForURL"))
	if !ok {
		return nil, errors.New("PAC file defines no FindProxyForURL function")
	}
	p.fn = fn
	return p, nil
}

// find evaluates FindProxyForURL(u, host) and returns its answer string
// ("PROXY host:port; DIRECT").
func (p *pac) find(u *url.URL) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := time.AfterFunc(pacEvalTimeout, func() { p.vm.Interrupt("FindProxyForURL timed out") })
	defer func() {
		t.Stop()
		p.vm.ClearInterrupt()
	}()
	v, err := p.fn(goja.Undefined(), p.vm.ToValue(u.String()), p.vm.ToValue(u.Hostname()))
	if err != nil {
		return "", fmt.Errorf("PAC FindProxyForURL: %w", err)
	}
	if goja.IsUndefined(v) || goja.IsNull(v) {
		return "DIRECT", nil
	}
	return v.String(), nil
}

// parsePACResult picks the first usable entry of a PAC answer: PROXY or
// HTTP host:port → an http:// proxy, DIRECT → nil. SOCKS and HTTPS
// entries are skipped (not supported); an answer with no usable entry is
// an error.
func parsePACResult(s string) (*url.URL, error) {
	for _, e := range strings.Split(s, ";") {
		f := strings.Fields(e)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "DIRECT":
			return nil, nil
		case "PROXY", "HTTP":
			if len(f) < 2 {
				continue
			}
			if _, _, err := net.SplitHostPort(f[1]); err != nil {
				continue
			}
			return &url.URL{Scheme: "http", Host: f[1]}, nil
		}
	}
	return nil, fmt.Errorf("PAC answer %q names no usable proxy (PROXY host:port or DIRECT)", s)
}

func pacDNSDomainIs(host, domain string) bool {
	return strings.HasSuffix(strings.ToLower(host), strings.ToLower(domain))
}

func pacLocalHostOrDomainIs(host, hostdom string) bool {
	host, hostdom = strings.ToLower(host), strings.ToLower(hostdom)
	if host == hostdom {
		return true
	}
	return !strings.Contains(host, ".") && strings.HasPrefix(hostdom, host+".")
}

// pacResolve returns host's first IPv4 address (an IP literal as is), or "".
func pacResolve(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), pacDNSTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
	if err != nil || len(ips) == 0 {
		return ""
	}
	return ips[0].String()
}

func pacIsInNet(host, pattern, mask string) bool {
	ip := net.ParseIP(pacResolve(host)).To4()
	p, m := net.ParseIP(pattern).To4(), net.ParseIP(mask).To4()
	if ip == nil || p == nil || m == nil {
		return false
	}
	for i := range 4 {
		if ip[i]&m[i] != p[i]&m[i] {
			return false
		}
	}
	return true
}

// pacMyIPAddress returns the local address a route to the outside would
// use (a connected UDP socket sends nothing), or 127.0.0.1.
func pacMyIPAddress() string {
	c, err := net.Dial("udp4", "192.0.2.1:9") // TEST-NET-1: never contacted
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

// pacShExpMatch matches a shell expression (* any run, ? one character).
func pacShExpMatch(s, exp string) bool {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range exp {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(s)
}

var pacDays = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
var pacMonths = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}

// clock returns the time for the range functions: local, or UTC when the
// last argument is "GMT"; args without it.
func (p *pac) clock(args []goja.Value) (time.Time, []string) {
	var s []string
	for _, a := range args {
		s = append(s, strings.ToUpper(a.String()))
	}
	t := p.now()
	if len(s) > 0 && s[len(s)-1] == "GMT" {
		return t.UTC(), s[:len(s)-1]
	}
	return t.Local(), s
}

func index(list []string, v string) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return -1
}

// inRange reports lo <= v <= hi, wrapping around when lo > hi.
func inRange(v, lo, hi int) bool {
	if lo <= hi {
		return lo <= v && v <= hi
	}
	return v >= lo || v <= hi
}

func (p *pac) weekdayRange(c goja.FunctionCall) goja.Value {
	t, s := p.clock(c.Arguments)
	if len(s) == 0 {
		return p.vm.ToValue(false)
	}
	lo := index(pacDays, s[0])
	hi := lo
	if len(s) > 1 {
		hi = index(pacDays, s[1])
	}
	return p.vm.ToValue(lo >= 0 && hi >= 0 && inRange(int(t.Weekday()), lo, hi))
}

// dateRange supports the one- and two-value forms of day (1..31), month
// (JAN..DEC) or year (four digits), and day-month pairs of four values.
func (p *pac) dateRange(c goja.FunctionCall) goja.Value {
	t, s := p.clock(c.Arguments)
	val := func(x string) (kind byte, n int) {
		if m := index(pacMonths, x); m >= 0 {
			return 'm', m + 1
		}
		n, err := strconv.Atoi(x)
		switch {
		case err != nil:
			return 0, 0
		case n > 31:
			return 'y', n
		default:
			return 'd', n
		}
	}
	cur := func(kind byte) int {
		switch kind {
		case 'm':
			return int(t.Month())
		case 'y':
			return t.Year()
		}
		return t.Day()
	}
	switch len(s) {
	case 1, 2:
		k1, lo := val(s[0])
		hi := lo
		if len(s) == 2 {
			var k2 byte
			if k2, hi = val(s[1]); k2 != k1 {
				return p.vm.ToValue(false)
			}
		}
		return p.vm.ToValue(k1 != 0 && inRange(cur(k1), lo, hi))
	case 4: // day month day month
		_, d1 := val(s[0])
		_, m1 := val(s[1])
		_, d2 := val(s[2])
		_, m2 := val(s[3])
		v := int(t.Month())*100 + t.Day()
		return p.vm.ToValue(inRange(v, m1*100+d1, m2*100+d2))
	}
	return p.vm.ToValue(false)
}

// timeRange supports hour (one or two values), and hour-minute pairs.
func (p *pac) timeRange(c goja.FunctionCall) goja.Value {
	t, s := p.clock(c.Arguments)
	n := make([]int, len(s))
	for i, x := range s {
		v, err := strconv.Atoi(x)
		if err != nil {
			return p.vm.ToValue(false)
		}
		n[i] = v
	}
	switch len(n) {
	case 1:
		return p.vm.ToValue(t.Hour() == n[0])
	case 2:
		return p.vm.ToValue(t.Hour() >= n[0] && t.Hour() < n[1])
	case 4:
		v := t.Hour()*60 + t.Minute()
		return p.vm.ToValue(v >= n[0]*60+n[1] && v < n[2]*60+n[3])
	}
	return p.vm.ToValue(false)
}
