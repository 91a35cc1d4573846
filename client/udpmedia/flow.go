// Package udpmedia is a client for the router's UDP media transport
// (docs/PROTOCOL.md, "Media over UDP 8801"): it binds one flow of one media
// kind with Binds signed with the participant's media token (the token
// itself never goes on the wire), then sends and receives RTP and RTCP on
// it and keeps its NAT binding open.
// With Protect, every RTP and RTCP packet is sealed on Send and opened
// on Recv (client/secure).
package udpmedia

import (
	"context"
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

// Bind retransmission schedule (docs/PROTOCOL.md): the first retry after
// bindRetry, doubling, at most bindTries sends.
const (
	bindRetry = 100 * time.Millisecond
	bindTries = 5
)

// ErrNoAnswer is returned by Dial and Rebind when no BindAck came back:
// the UDP path does not work (try TCP, then TLS) or the token is wrong.
var ErrNoAnswer = errors.New("udpmedia: no bind answer from the router")

// Flow is one bound UDP media flow. Send, Recv and Keepalive may be called
// from different goroutines; buffers passed in stay owned by the caller.
//
// The flow does the router's return-routability check and consent
// freshness (docs/PROTOCOL.md, "Binding a flow", "Keepalives") itself:
// Dial and Rebind echo the router's challenge, and Keepalive echoes the
// latest consent nonce, which Recv picks up from the KeepaliveAcks it
// returns. A client must therefore call Recv (the router stops sending
// media to a flow whose keepalives echo no recent nonce, after
// wire.ConsentTimeout) and Keepalive every wire.ConsentInterval.
type Flow struct {
	conn    *net.UDPConn
	server  netip.AddrPort
	kind    media.Kind
	token   wire.Token
	txID    atomic.Uint32
	binds   wire.BindCounter // counters of the flow's Binds
	mapped  netip.AddrPort
	consent atomic.Uint64 // latest consent nonce from the router

	prot     Protection
	smu      sync.Mutex // guards sbuf; held across seal and write
	sbuf     []byte
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

// sealSlack is the room the send buffer keeps beyond the largest packet
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

// Dial opens a UDP socket on an ephemeral port and binds it as the flow of
// kind k. It returns ErrNoAnswer when no BindAck arrives.
func Dial(ctx context.Context, server netip.AddrPort, k media.Kind, token wire.Token) (*Flow, error) {
	return DialFrom(ctx, netip.AddrPort{}, server, k, token)
}

// DialFrom is Dial from the local address local (the zero AddrPort: any
// address, an ephemeral port), e.g. to pick one interface of a multi-homed
// client.
func DialFrom(ctx context.Context, local, server netip.AddrPort, k media.Kind, token wire.Token) (*Flow, error) {
	network := "udp4"
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		network = "udp6"
	}
	var laddr *net.UDPAddr
	if local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(local)
	}
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	f := &Flow{conn: c, server: server, kind: k, token: token}
	if err := f.bind(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return f, nil
}

// Rebind moves the flow to a new local socket (a new source port), as a
// NAT rebinding or a network change would, and binds it again.
func (f *Flow) Rebind(ctx context.Context) error {
	network := "udp4"
	if f.server.Addr().Is6() && !f.server.Addr().Is4In6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		return err
	}
	old := f.conn
	f.conn = c
	old.Close()
	return f.bind(ctx)
}

// maxChallenges bounds the StatusVerify answers one bind follows: a
// router challenges once per new address; more means the echo keeps
// failing (the address changes under a NAT), and the bind gives up.
const maxChallenges = 4

func (f *Flow) bind(ctx context.Context) error {
	var req [wire.BindSize]byte
	first := f.txID.Load() + 1
	wait := bindRetry
	buf := make([]byte, 2048)
	var nonce uint64 // the router's challenge, once it sent one
	challenges := 0
	send := func() (uint32, error) {
		// A new TxID per transmission (docs/PROTOCOL.md); an answer to any
		// of them counts.
		// Signed with the token, which never goes on the wire; a new
		// counter per transmission, so that none is taken for a replay.
		b := wire.Bind{Kind: f.kind, TxID: f.txID.Add(1), Nonce: nonce}
		now := time.Now()
		b.Sign(f.token, f.binds.Next(now), now)
		if _, err := b.MarshalTo(req[:]); err != nil {
			return 0, err
		}
		_, err := f.conn.WriteToUDPAddrPort(req[:], f.server)
		return b.TxID, err
	}
	for try := 0; try < bindTries; try++ {
		last, err := send()
		if err != nil {
			return err
		}
		deadline := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		for {
			_ = f.conn.SetReadDeadline(deadline)
			n, from, err := f.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // timeout: retransmit
			}
			var ack wire.BindAck
			if from != f.server || wire.Classify(buf[:n]) != wire.ClassBindAck || ack.Unmarshal(buf[:n]) != nil ||
				ack.TxID < first || ack.TxID > last || ack.Kind != f.kind {
				continue // stray packet (media racing the ack, old answers)
			}
			switch ack.Status {
			case wire.StatusOK:
				_ = f.conn.SetReadDeadline(time.Time{})
				f.mapped = ack.Mapped
				f.consent.Store(ack.Nonce)
				return nil
			case wire.StatusVerify:
				// Return routability: echo the nonce at once, from this
				// socket; the echo is retransmitted like a first Bind.
				if challenges++; challenges > maxChallenges {
					return fmt.Errorf("%w (%s flow to %v: the router's challenge keeps failing)", ErrNoAnswer, f.kind, f.server)
				}
				nonce = ack.Nonce
				if last, err = send(); err != nil {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait *= 2
	}
	return fmt.Errorf("%w (%s flow to %v)", ErrNoAnswer, f.kind, f.server)
}

// Mapped returns the source address the router saw in the last bind.
func (f *Flow) Mapped() netip.AddrPort { return f.mapped }

// LocalAddr returns the flow's local address.
func (f *Flow) LocalAddr() netip.AddrPort { return f.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Kind returns the flow's media kind.
func (f *Flow) Kind() media.Kind { return f.kind }

// Send sends one RTP or RTCP packet, sealed first if the flow is
// protected (a packet that cannot be sealed, e.g. before the first
// meeting key, is not sent and the error returned). pkt is not modified
// or retained.
func (f *Flow) Send(pkt []byte) error {
	if f.prot != nil && isMedia(pkt) {
		f.smu.Lock()
		defer f.smu.Unlock()
		if cap(f.sbuf) < len(pkt)+sealSlack {
			f.sbuf = make([]byte, 0, max(len(pkt)+sealSlack, 1500))
		}
		out, err := f.prot.Seal(f.sbuf[:0], pkt)
		if err != nil {
			return err
		}
		_, err = f.conn.WriteToUDPAddrPort(out, f.server)
		return err
	}
	_, err := f.conn.WriteToUDPAddrPort(pkt, f.server)
	return err
}

func isMedia(pkt []byte) bool {
	c := wire.Classify(pkt)
	return c == wire.ClassRTP || c == wire.ClassRTCP
}

// Keepalive sends a keepalive echoing the latest consent nonce
// (wire.ConsentEcho under the token); the
// router's KeepaliveAck arrives through Recv, which keeps its new nonce
// for the next Keepalive.
func (f *Flow) Keepalive() error {
	var b [wire.KeepaliveSize]byte
	k := wire.Keepalive{Kind: f.kind, TxID: f.txID.Add(1), Nonce: wire.ConsentEcho(f.token, f.kind, f.consent.Load())}
	if _, err := k.MarshalTo(b[:]); err != nil {
		return err
	}
	// Written directly, not through Send: a keepalive is never sealed, and
	// passing b to Send (which may hand packets to the Protection
	// interface) would make it escape to the heap.
	_, err := f.conn.WriteToUDPAddrPort(b[:], f.server)
	return err
}

// Recv reads the next packet from the router into buf, waiting until
// deadline (zero: no deadline). Packets from other sources are skipped,
// and so, on a protected flow, are media packets that do not open; the
// RTP or RTCP returned is then the opened plaintext (decrypted in buf).
func (f *Flow) Recv(buf []byte, deadline time.Time) (int, error) {
	if err := f.conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, err
		}
		if from == f.server {
			if n >= wire.KeepaliveSize && wire.Classify(buf[:n]) == wire.ClassKeepaliveAck {
				var ka wire.Keepalive
				if ka.Unmarshal(buf[:n]) == nil && ka.Kind == f.kind && ka.Nonce != 0 {
					f.consent.Store(ka.Nonce)
				}
			}
			if f.prot != nil && isMedia(buf[:n]) {
				out, err := f.prot.Open(buf[:0], buf[:n])
				if err != nil {
					f.rejected.Add(1)
					continue
				}
				n = len(out)
			}
			return n, nil
		}
	}
}

// Conn exposes the socket, e.g. to read DSCP marks in tests.
func (f *Flow) Conn() *net.UDPConn { return f.conn }

// Close closes the socket. Idempotent.
func (f *Flow) Close() error {
	err := f.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
