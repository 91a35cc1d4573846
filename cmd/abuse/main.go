// Command abuse runs a short version of every hostile scenario of issue 14
// against an in-process MMR (router, shared TLS port, control channel) on
// loopback, and prints a table: what each cost legitimate traffic, what the
// MMR refused, and descriptors and goroutines before and after. It exits 1
// if legitimate traffic was lost or something leaked. `make abuse` runs it;
// the scenarios that forge source addresses need CAP_NET_RAW and are
// skipped without it.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

// result is one row of the table.
type result struct {
	name                string
	lost, legit         int    // legitimate operations lost, of legit tried
	refused             uint64 // hostile operations the MMR refused or dropped
	note                string
	fdsBefore, fdsAfter int
	grBefore, grAfter   int
	err                 error
}

type scenario struct {
	name string
	run  func(ctx context.Context, res *result) error
}

func main() {
	flood := flag.Duration("flood", 2*time.Second, "how long each flood lasts")
	flag.Parse()
	floodFor = *flood
	scenarios := []scenario{
		{"TLS handshake flood, 1 source (1,100 silent)", tlsFlood},
		{"failed joins, 1 source", failedJoins},
		{"bind flood, 1 token from 256 ports", bindFlood},
		{"spoofed binds+keepalives (raw socket)", spoofed},
		{"garbage UDP flood", garbage},
		{"TCP 8801 stream flood, 1 source", tcpFlood},
		{"stream cap (MaxStreams 50), 3 sources", streamCap},
		{"second router on a held UDP port", secondRouter},
	}
	var rows []result
	failed := false
	for _, sc := range scenarios {
		res := result{name: sc.name, fdsBefore: openFDs(), grBefore: runtime.NumGoroutine()}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res.err = sc.run(ctx, &res)
		cancel()
		settle(&res)
		if res.err != nil && !errors.Is(res.err, errSkipped) || res.lost > 0 || res.fdsAfter > res.fdsBefore || res.grAfter > res.grBefore {
			failed = true
		}
		rows = append(rows, res)
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\tlegit lost\trefused\tfds before/after\tgoroutines before/after\tnote")
	for _, r := range rows {
		note := r.note
		if r.err != nil {
			note = "ERROR: " + r.err.Error()
			if errors.Is(r.err, errSkipped) {
				note = r.err.Error()
			}
		}
		fmt.Fprintf(w, "%s\t%d/%d\t%d\t%d/%d\t%d/%d\t%s\n", r.name, r.lost, r.legit, r.refused, r.fdsBefore, r.fdsAfter, r.grBefore, r.grAfter, note)
	}
	w.Flush()
	if failed {
		fmt.Println("FAIL: legitimate traffic lost, an error, or a leak")
		os.Exit(1)
	}
	fmt.Println("ok")
}

var (
	floodFor   time.Duration
	errSkipped = errors.New("skipped")
	quiet      = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// settle waits for the scenario's goroutines and descriptors to wind down
// (up to 5 s) and records what is left.
func settle(res *result) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		res.fdsAfter, res.grAfter = openFDs(), runtime.NumGoroutine()
		if res.fdsAfter <= res.fdsBefore && res.grAfter <= res.grBefore || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling for the wind-down
	}
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// rig is an MMR on loopback: router (UDP and TCP 8801 on ephemeral
// ports), the shared TLS port with the control channel and TLS media.
type rig struct {
	r      *router.Router
	e      *edge.Edge
	ctl    *control.Server
	cli    *tls.Config
	secret []byte
	served chan error
}

func newRig(mut func(*router.Config)) (*rig, error) {
	cfg := router.Config{
		UDP:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		TCP:    []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")},
		Shards: 2, Logger: quiet,
	}
	if mut != nil {
		mut(&cfg)
	}
	g := &rig{secret: make([]byte, 32), served: make(chan error, 1)}
	_, _ = rand.Read(g.secret)
	var err error
	if g.r, err = router.New(cfg); err != nil {
		return nil, err
	}
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		g.r.Close()
		return nil, err
	}
	ln, err := edge.Listen("0.0.0.0:0", "-control")
	if err != nil {
		g.r.Close()
		return nil, err
	}
	if g.e, err = edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(cert), Logger: quiet}); err != nil {
		ln.Close()
		g.r.Close()
		return nil, err
	}
	eps := control.UDPEndpoints(g.r.UDPAddrs())
	if g.ctl, err = control.New(control.Config{TLS: tlsutil.ServerConfig(cert), Secret: g.secret, Endpoints: eps, Logger: quiet}, g.r); err != nil {
		g.e.Close()
		g.r.Close()
		return nil, err
	}
	g.e.Handle(ctlproto.ALPN, g.ctl.HandleConn)
	g.e.Handle("", g.ctl.HandleConn)
	g.e.Handle(streammedia.ALPN, func(c net.Conn) { _ = g.r.ServeStream(c) })
	go func() { g.served <- g.e.Serve() }()
	if g.cli, err = tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert)); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *rig) close() {
	g.e.Close()
	<-g.served
	g.ctl.Close()
	g.r.Close()
}

func (g *rig) tlsAddr() string {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addrPort(g.e.Addr()).Port()).String()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))}
}

// join joins meeting through the control channel from source address src
// with a valid (or, with bad, a forged) token; the client is closed.
func (g *rig) join(ctx context.Context, src, meeting, identity string, bad bool) error {
	tok, err := token.Mint(g.secret, token.Claims{Meeting: meeting, Identity: identity, Role: token.Participant, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		return err
	}
	if bad {
		tok = tok[:len(tok)-2] + "AA"
	}
	d := dialerFrom(src)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := ctlclient.Dial(ctx, g.tlsAddr(), ctlclient.Config{TLS: g.cli, Dial: d.DialContext, Logger: quiet})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Join(ctx, meeting, tok, identity)
	return err
}

// bindOnce sends one Bind (and echoes one challenge) from a fresh socket
// and reports whether the flow got bound within d.
func bindOnce(dst netip.AddrPort, tok wire.Token, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, err := udpmedia.Dial(ctx, dst, media.Audio, tok)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func tlsFlood(ctx context.Context, res *result) error {
	g, err := newRig(nil)
	if err != nil {
		return err
	}
	defer g.close()
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	d := dialerFrom("127.0.0.1")
	for range edge.DefaultMaxHandshakes + 76 {
		c, err := d.Dial("tcp", g.tlsAddr())
		if err != nil {
			return err
		}
		flood = append(flood, c)
	}
	for i := range 20 {
		res.legit++
		if g.join(ctx, "127.0.0.2", "m", fmt.Sprint("u", i), false) != nil {
			res.lost++
		}
	}
	st := g.e.Stats()
	res.refused = st.RefusedSource + st.Refused
	res.note = fmt.Sprintf("%d refused as over the source's share", st.RefusedSource)
	return nil
}

func failedJoins(ctx context.Context, res *result) error {
	g, err := newRig(nil)
	if err != nil {
		return err
	}
	defer g.close()
	for i := range 6 {
		if g.join(ctx, "127.0.0.3", "m", fmt.Sprint("x", i), true) == nil {
			return errors.New("a forged token joined")
		}
	}
	for i := range 5 {
		res.legit++
		start := time.Now()
		if g.join(ctx, "127.0.0.4", "m", fmt.Sprint("u", i), false) != nil {
			res.lost++
		}
		res.note = fmt.Sprintf("last good join %v", time.Since(start).Round(time.Millisecond))
	}
	res.refused = g.ctl.Stats().AuthFailures
	res.note += fmt.Sprintf("; %d refusals delayed", g.ctl.Stats().AuthDelayed)
	return nil
}

func bindFlood(ctx context.Context, res *result) error {
	g, err := newRig(nil)
	if err != nil {
		return err
	}
	defer g.close()
	if err := g.r.CreateMeeting("m"); err != nil {
		return err
	}
	fl, err := g.r.AddParticipant("m", router.ParticipantOptions{})
	if err != nil {
		return err
	}
	dst := g.r.UDPAddrs()[0]
	// The flooder holds its token, so each of its Binds is authentic: a
	// new counter each (a copy of one Bind is refused before the queue,
	// bind_replayed, and would not test the queue's fair shares).
	var ctr wire.BindCounter
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g0 := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var socks []*net.UDPConn
			defer func() {
				for _, c := range socks {
					c.Close()
				}
			}()
			for range 64 {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
				if err != nil {
					return
				}
				socks = append(socks, c)
			}
			var b [wire.BindSize]byte
			for i := g0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				bind := wire.Bind{Kind: media.Video, TxID: uint32(i)}
				now := time.Now()
				bind.Sign(fl.Token, ctr.Next(now), now)
				n, _ := bind.MarshalTo(b[:])
				_, _ = socks[i%len(socks)].Write(b[:n])
			}
		}()
	}
	end := time.Now().Add(floodFor)
	for time.Now().Before(end) {
		p, err := g.r.AddParticipant("m", router.ParticipantOptions{})
		if err != nil {
			return err
		}
		res.legit++
		if !bindOnce(dst, p.Token, 5*time.Second) {
			res.lost++
		}
	}
	close(stop)
	wg.Wait()
	d := g.r.Stats().Drops
	res.refused = d[stats.DropBindLimited] + d[stats.DropBindBusy]
	res.note = fmt.Sprintf("bind_limited %d, bind_busy %d, bind_replayed %d (the flooder's own, overtaken)",
		d[stats.DropBindLimited], d[stats.DropBindBusy], d[stats.DropBindReplayed])
	return nil
}

// spoofer sends IPv4 UDP with a forged source through a raw socket.
type spoofer struct{ fd int }

func (s *spoofer) send(src, dst netip.AddrPort, payload []byte) {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	_ = unix.Sendto(s.fd, b, 0, &unix.SockaddrInet4{Addr: d4})
}

// pair creates meeting "m" on g with a publisher (participant 1, its
// video SSRC returned) and a subscriber (participant 2), the legitimate
// traffic of the UDP scenarios. The caller closes both flows.
func pair(ctx context.Context, g *rig) (pub, sub *udpmedia.Flow, ssrc uint32, err error) {
	if err := g.r.CreateMeeting("m"); err != nil {
		return nil, nil, 0, err
	}
	if pub, ssrc, err = member(ctx, g, 1); err != nil {
		return nil, nil, 0, err
	}
	if sub, _, err = member(ctx, g, 2); err != nil {
		pub.Close()
		return nil, nil, 0, err
	}
	return pub, sub, ssrc, nil
}

// member is a participant with a bound audio flow publishing one SSRC.
func member(ctx context.Context, g *rig, n int) (*udpmedia.Flow, uint32, error) {
	p, err := g.r.AddParticipant("m", router.ParticipantOptions{})
	if err != nil {
		return nil, 0, err
	}
	f, err := udpmedia.Dial(ctx, g.r.UDPAddrs()[0], media.Audio, p.Token)
	if err != nil {
		return nil, 0, err
	}
	ssrc := uint32(1000 + n)
	return f, ssrc, g.r.Publish(p.ID, media.Audio, ssrc)
}

func rtpPacket(ssrc uint32, seq uint16) []byte {
	b := make([]byte, 200)
	b[0], b[1] = 0x80, 96
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

// exchange sends n RTP packets from pub (paced) and counts those sub gets.
func exchange(pub, sub *udpmedia.Flow, ssrc uint32, n int) int {
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 2048)
		k := 0
		for k < n {
			m, err := sub.Recv(buf, time.Now().Add(2*time.Second))
			if err != nil {
				break
			}
			if wire.Classify(buf[:m]) == wire.ClassRTP {
				k++
			}
		}
		got <- k
	}()
	for i := range n {
		_ = pub.Send(rtpPacket(ssrc, uint16(i)))
		time.Sleep(floodFor / time.Duration(n)) // paced like real media, spread over the flood
	}
	return <-got
}

func spoofed(ctx context.Context, res *result) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("%w: raw socket needs CAP_NET_RAW", errSkipped)
	}
	defer unix.Close(fd)
	sp := &spoofer{fd: fd}
	g, err := newRig(nil)
	if err != nil {
		return err
	}
	defer g.close()
	pub, sub, ssrc, err := pair(ctx, g)
	if err != nil {
		return err
	}
	defer pub.Close()
	defer sub.Close()
	attacker, err := g.r.AddParticipant("m", router.ParticipantOptions{})
	if err != nil {
		return err
	}
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 77)})
	if err != nil {
		return err
	}
	defer victim.Close()
	vaddr := victim.LocalAddr().(*net.UDPAddr).AddrPort()
	var vbytes atomic.Int64
	vdone := make(chan struct{})
	go func() {
		defer close(vdone)
		buf := make([]byte, 2048)
		for {
			n, err := victim.Read(buf)
			if err != nil {
				return
			}
			vbytes.Add(int64(n))
		}
	}()
	forged := 0
	stop := make(chan struct{})
	fdone := make(chan struct{})
	go func() {
		defer close(fdone)
		var b [wire.BindSize]byte
		var ka [wire.KeepaliveSize]byte
		var ctr wire.BindCounter
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Signed with the attacker's own token: authentic, but from a
			// forged source, so only ever challenged.
			bind := wire.Bind{Kind: media.Audio, TxID: uint32(i), Nonce: uint64(i)}
			now := time.Now()
			bind.Sign(attacker.Token, ctr.Next(now), now)
			_, _ = bind.MarshalTo(b[:])
			sp.send(vaddr, g.r.UDPAddrs()[0], b[:])
			_, _ = (&wire.Keepalive{Kind: media.Audio, TxID: uint32(i), Nonce: uint64(i)}).MarshalTo(ka[:])
			sp.send(vaddr, g.r.UDPAddrs()[0], ka[:])
			forged += len(b) + len(ka)
			time.Sleep(time.Millisecond) // a steady forged stream, not a flood: the point is the aim
		}
	}()
	const n = 100
	got := exchange(pub, sub, ssrc, n)
	close(stop)
	<-fdone
	time.Sleep(100 * time.Millisecond) // last answers in flight to the victim
	victim.Close()
	<-vdone
	res.legit, res.lost = n, n-got
	_, bound := g.r.Bound(attacker.ID, media.Audio)
	res.refused = g.r.Stats().BindChallenges
	res.note = fmt.Sprintf("victim got %d of %d forged bytes, bound there: %v", vbytes.Load(), forged, bound)
	if bound || vbytes.Load() > int64(forged) {
		return errors.New("media aimed at a forged address")
	}
	return nil
}

func garbage(ctx context.Context, res *result) error {
	g, err := newRig(nil)
	if err != nil {
		return err
	}
	defer g.close()
	pub, sub, ssrc, err := pair(ctx, g)
	if err != nil {
		return err
	}
	defer pub.Close()
	defer sub.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(g.r.UDPAddrs()[0]))
			if err != nil {
				return
			}
			defer c.Close()
			b := make([]byte, 200)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = rand.Read(b[:8])
				_, _ = c.Write(b[:1+int(b[7])%200])
				time.Sleep(20 * time.Microsecond) // a flood the loopback can carry next to the media
			}
		}()
	}
	const n = 100
	got := exchange(pub, sub, ssrc, n)
	close(stop)
	wg.Wait()
	res.legit, res.lost = n, n-got
	d := g.r.Stats().Drops
	res.refused = d[stats.DropMalformed] + d[stats.DropUnbound] + d[stats.DropBadToken]
	res.note = fmt.Sprintf("malformed %d, unbound %d, bad_token %d", d[stats.DropMalformed], d[stats.DropUnbound], d[stats.DropBadToken])
	return nil
}

func tcpFlood(ctx context.Context, res *result) error {
	g, err := newRig(func(c *router.Config) { c.BindTimeout = time.Minute })
	if err != nil {
		return err
	}
	defer g.close()
	if err := g.r.CreateMeeting("m"); err != nil {
		return err
	}
	tcp := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.r.TCPAddrs()[0].Port())
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	d := dialerFrom("127.0.0.5")
	for range 300 {
		c, err := d.Dial("tcp", tcp.String())
		if err != nil {
			return err
		}
		flood = append(flood, c)
	}
	for range 5 {
		p, err := g.r.AddParticipant("m", router.ParticipantOptions{})
		if err != nil {
			return err
		}
		res.legit++
		f, err := streammedia.Dial(ctx, tcp, media.Audio, p.Token, nil)
		if err != nil {
			res.lost++
			continue
		}
		f.Close()
	}
	time.Sleep(100 * time.Millisecond) // the router's refusals of the flood's tail
	st := g.r.Stats()
	res.refused = st.Drops[stats.DropStreamLimit]
	res.note = fmt.Sprintf("%d streams held from the flooding address", st.Streams)
	return nil
}

func streamCap(ctx context.Context, res *result) error {
	g, err := newRig(func(c *router.Config) { c.BindTimeout = time.Minute; c.MaxStreams = 50 })
	if err != nil {
		return err
	}
	defer g.close()
	tcp := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.r.TCPAddrs()[0].Port())
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 150 {
		c, err := dialerFrom(fmt.Sprintf("127.0.1.%d", 1+i/50)).Dial("tcp", tcp.String())
		if err != nil {
			return err
		}
		flood = append(flood, c)
	}
	for i := range 5 {
		res.legit++
		if g.join(ctx, "127.0.0.6", "m", fmt.Sprint("u", i), false) != nil {
			res.lost++
		}
	}
	time.Sleep(100 * time.Millisecond) // the router's refusals of the flood's tail
	st := g.r.Stats()
	res.refused = st.Drops[stats.DropStreamsFull]
	res.note = fmt.Sprintf("%d of at most %d streams held", st.Streams, st.MaxStreams)
	return nil
}

func secondRouter(ctx context.Context, res *result) error {
	g, err := newRig(nil)
	if err != nil {
		return err
	}
	defer g.close()
	r2, err := router.New(router.Config{UDP: g.r.UDPAddrs(), Shards: 1, DisableTCP: true, Logger: quiet})
	if err == nil {
		r2.Close()
		return errors.New("a second router started on a held port")
	}
	res.refused = 1
	res.note = "refused: " + err.Error()[:min(len(err.Error()), 60)] + "..."
	return nil
}
