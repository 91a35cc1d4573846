// Package streammedia is a client for the router's stream media transport
// (docs/PROTOCOL.md, "Media over TCP 8801 and TLS 443"): one TCP or TLS
// connection per media kind carrying RFC 4571 framed packets, bound with a
// Bind signed with the participant's media token.
// With Protect, every RTP and RTCP packet is sealed on Send and opened
// on Recv (client/secure).
package streammedia

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

// ALPN is the TLS application protocol that marks a media stream on a TLS
// port shared with the control channel.
const ALPN = "openmmr-media/1"

// ErrBind is returned by Dial when the router did not answer the bind.
var ErrBind = errors.New("streammedia: bind not answered")

// Flow is one bound stream. Send may be called concurrently with Recv;
// neither concurrently with itself.
type Flow struct {
	conn   net.Conn
	kind   media.Kind
	d      *wire.Deframer
	wmu    sync.Mutex
	wbuf   []byte
	sbuf   []byte // sealed packet, under wmu
	mapped netip.AddrPort

	prot     Protection
	rejected atomic.Uint64
}

// Protection seals a flow's outgoing RTP and RTCP and opens what arrives
// (client/secure.Flow implements it: SRTP end to end, SRTCP to the
// router). Seal and Open write into dst from dst[0] and keep no
// reference; they must be safe for concurrent use.
type Protection interface {
	Seal(dst, pkt []byte) ([]byte, error)
	Open(dst, pkt []byte) ([]byte, error)
}

// sealSlack is the room the seal buffer keeps beyond the largest packet
// for what sealing adds (protect.Overhead, 20 bytes for RTP and RTCP).
const sealSlack = 64

// Protect makes the flow seal every RTP and RTCP packet Send is given and
// open every one Recv reads (dropping and counting, in Rejected and in
// p's own counters, those that fail); binds and keepalives stay as they
// are. Call it once, before the first Send or Recv of media.
func (f *Flow) Protect(p Protection) { f.prot = p }

// Rejected returns the number of received packets dropped because they
// did not open.
func (f *Flow) Rejected() uint64 { return f.rejected.Load() }

func isMedia(pkt []byte) bool {
	c := wire.Classify(pkt)
	return c == wire.ClassRTP || c == wire.ClassRTCP
}

// Dial connects to addr over TCP, or over TLS when tlsConf is not nil (its
// NextProtos is set to ALPN), and binds the stream as the flow of kind k.
func Dial(ctx context.Context, addr netip.AddrPort, k media.Kind, token wire.Token, tlsConf *tls.Config) (*Flow, error) {
	return DialWith(ctx, nil, addr.String(), k, token, tlsConf)
}

// DialFunc opens the TCP connection of a stream, e.g. through an HTTP
// CONNECT proxy (net.Dialer.DialContext has this signature).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialWith is Dial to addr ("host:port") over a connection opened by dial
// (nil: a net.Dialer). With tlsConf, a ServerName left empty defaults to
// the host of addr (unless InsecureSkipVerify). On error the connection is
// closed.
func DialWith(ctx context.Context, dial DialFunc, addr string, k media.Kind, token wire.Token, tlsConf *tls.Config) (*Flow, error) {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		tc := tlsConf.Clone()
		tc.NextProtos = []string{ALPN}
		if tc.ServerName == "" && !tc.InsecureSkipVerify {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				tc.ServerName = host
			}
		}
		tconn := tls.Client(c, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tconn
	}
	f, err := Bind(ctx, c, k, token)
	if err != nil {
		c.Close()
		return nil, err
	}
	return f, nil
}

// Bind binds an already connected stream (TCP, or TLS after its handshake)
// as the flow of kind k. The Flow takes ownership of c on success.
func Bind(ctx context.Context, c net.Conn, k media.Kind, token wire.Token) (*Flow, error) {
	f := &Flow{conn: c, kind: k, d: wire.NewDeframer(c, 0xffff)}
	if err := f.bind(ctx, token); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Flow) bind(ctx context.Context, token wire.Token) error {
	var b [wire.BindSize]byte
	// Signed with the token, which never goes on the wire (not even over
	// plain TCP); one Bind per stream, its counter from the clock.
	var ctr wire.BindCounter
	bind := wire.Bind{Kind: f.kind, TxID: 1}
	now := time.Now()
	bind.Sign(token, ctr.Next(now), now)
	if _, err := bind.MarshalTo(b[:]); err != nil {
		return err
	}
	if err := f.Send(b[:]); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	buf := make([]byte, 2048)
	n, err := f.Recv(buf, deadline)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBind, err)
	}
	var ack wire.BindAck
	if wire.Classify(buf[:n]) != wire.ClassBindAck || ack.Unmarshal(buf[:n]) != nil || ack.TxID != 1 {
		return ErrBind
	}
	f.mapped = ack.Mapped
	return nil
}

// Send writes one packet as an RFC 4571 frame, sealed first if the flow
// is protected and pkt is RTP or RTCP (a packet that cannot be sealed is
// not sent and the error returned). pkt is not modified or retained.
func (f *Flow) Send(pkt []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.prot != nil && isMedia(pkt) {
		if cap(f.sbuf) < len(pkt)+sealSlack {
			f.sbuf = make([]byte, 0, max(len(pkt)+sealSlack, 1500))
		}
		out, err := f.prot.Seal(f.sbuf[:0], pkt)
		if err != nil {
			return err
		}
		pkt = out
	}
	f.wbuf = wire.AppendFrame(f.wbuf[:0], pkt)
	_, err := f.conn.Write(f.wbuf)
	return err
}

// Recv reads the next packet into buf, waiting until deadline (zero:
// none). On a protected flow, media packets that do not open are skipped
// and the RTP or RTCP returned is the opened plaintext.
func (f *Flow) Recv(buf []byte, deadline time.Time) (int, error) {
	if err := f.conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	for {
		p, err := f.d.Next()
		if err != nil {
			return 0, err
		}
		if f.prot == nil || !isMedia(p) {
			return copy(buf, p), nil
		}
		out, err := f.prot.Open(buf[:0], p)
		if err != nil {
			f.rejected.Add(1)
			continue
		}
		if cap(buf) < len(p) { // Open allocated: buf is too small; copy (and truncate) as without protection
			return copy(buf, out), nil
		}
		return len(out), nil
	}
}

// Mapped returns the peer address the router saw.
func (f *Flow) Mapped() netip.AddrPort { return f.mapped }

// Conn exposes the connection (tests).
func (f *Flow) Conn() net.Conn { return f.conn }

// Close closes the connection. Idempotent.
func (f *Flow) Close() error {
	err := f.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
