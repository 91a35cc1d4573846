package protect

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/openmmr/mmr/media"
	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// Side says which end of a client-router flow an RTCPFlow is: it seals with
// its own direction's key and opens with the other's.
type Side uint8

// The two ends of a flow.
const (
	ClientSide Side = 1 // seals direction 1 (client to router), opens 2
	RouterSide Side = 2 // seals direction 2 (router to client), opens 1
)

// MaxRTCPSenders bounds the distinct sender SSRCs (bytes 4..7 of the first
// RTCP packet) an RTCPFlow accepts: each costs a replay window, and a
// client has only its few SSRCs (plus one for a receive-only client's
// reports). A new SSRC beyond it is rejected as UnknownSender.
const MaxRTCPSenders = 64

// MaxRTCPSendersFromRouter is the same bound for what a client opens (the
// router's direction): the router forwards the RTCP of every other member
// of the meeting, so a publisher in a webinar receives the receiver
// reports of every viewer, each under its own sender SSRC. It covers the
// largest meeting the control server admits (10,000 viewers plus hosts and
// participants) with room for SSRC changes; each sender costs its replay
// window (about 100 bytes with the default window), about 3 MB at the
// bound, on the client.
const MaxRTCPSendersFromRouter = 32768

// RTCPFlow protects the RTCP of one client-router flow (participant,
// media kind) with SRTCP AEAD_AES_256_GCM (RFC 7714 §9), no MKI, keys from
// DeriveRTCP. One direction's context seals, the other's opens, each under
// its own mutex, so the router may Open a flow's input on its receive path
// while other flows' RTCP is Sealed towards it. Safe for concurrent use.
// See the package doc for buffers.
type RTCPFlow struct {
	sealMu  sync.Mutex
	seal    *srtp.Context
	sealHdr rtcp.Header

	openMu     sync.Mutex
	open       *srtp.Context
	openHdr    rtcp.Header
	rej        uint8
	senders    map[uint32]struct{}
	maxSenders int // MaxRTCPSenders (router side) or MaxRTCPSendersFromRouter

	c counters
}

// NewRTCPFlow returns the RTCP protection of participant's flow of kind k
// at side, from the participant's 32-byte RTCP secret (given to the client
// by the control channel, to the router by the embedding API). window 0
// means DefaultReplayWindow.
func NewRTCPFlow(secret []byte, participant uint64, k media.Kind, side Side, window int) (*RTCPFlow, error) {
	if len(secret) != SecretSize {
		return nil, ErrSecret
	}
	if !k.Valid() {
		return nil, ErrKind
	}
	if window == 0 {
		window = DefaultReplayWindow
	}
	if window < 64 || window > MaxReplayWindow {
		return nil, (&OpenerConfig{ReplayWindow: window}).validate()
	}
	sealDir, openDir := byte(dirClientToRouter), byte(dirRouterToClient)
	if side == RouterSide {
		sealDir, openDir = openDir, sealDir
	} else if side != ClientSide {
		return nil, ErrSide
	}
	f := &RTCPFlow{senders: map[uint32]struct{}{}, maxSenders: MaxRTCPSenders}
	if side == ClientSide {
		f.maxSenders = MaxRTCPSendersFromRouter
	}
	key, salt := DeriveRTCP(secret, participant, k, sealDir)
	var err error
	if f.seal, err = srtp.CreateContext(key[:], salt[:], Profile); err != nil {
		return nil, err
	}
	key, salt = DeriveRTCP(secret, participant, k, openDir)
	opts := contextOptions(0, window, &f.rej)[1:] // no MKI on RTCP
	if f.open, err = srtp.CreateContext(key[:], salt[:], Profile, opts...); err != nil {
		return nil, err
	}
	return f, nil
}

// Seal protects the (compound) RTCP packet plain: the first 8 bytes (the
// first packet's header and sender SSRC) stay clear and authenticated, the
// rest is encrypted, then the 16-byte tag and the E flag + 31-bit SRTCP
// index follow. Written from dst[0]; allocation-free when cap(dst) >=
// len(plain)+RTCPOverhead; dst may be plain[:0].
func (f *RTCPFlow) Seal(dst, plain []byte) ([]byte, error) {
	if len(plain) < 8 {
		f.c.sealErrors.Add(1)
		return nil, ErrMalformed
	}
	f.sealMu.Lock()
	out, err := f.seal.EncryptRTCP(dst, plain, &f.sealHdr)
	f.sealMu.Unlock()
	if err != nil {
		f.c.sealErrors.Add(1)
		return nil, ErrMalformed
	}
	f.c.sealed.Add(1)
	return out, nil
}

// Open checks and decrypts an SRTCP packet from the peer into dst (from
// dst[0]; allocation-free for an accepted packet when cap(dst) >=
// len(pkt); dst may be pkt[:0]). It returns the RTCP packet or one of
// ErrMalformed, ErrUnknownSender (too many sender SSRCs), ErrAuth,
// ErrReplayed, ErrTooOld, each counted in Stats.
func (f *RTCPFlow) Open(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < 8+RTCPOverhead {
		f.c.malformed.Add(1)
		return nil, ErrMalformed
	}
	ssrc := binary.BigEndian.Uint32(pkt[4:8])
	f.openMu.Lock()
	defer f.openMu.Unlock()
	_, known := f.senders[ssrc]
	if !known && len(f.senders) >= f.maxSenders {
		f.c.unknownSender.Add(1)
		return nil, ErrUnknownSender
	}
	f.rej = rejNone
	out, err := f.open.DecryptRTCP(dst, pkt, &f.openHdr)
	if err != nil {
		return nil, f.c.reject(f.rej, err)
	}
	if !known {
		f.senders[ssrc] = struct{}{}
	}
	f.c.opened.Add(1)
	return out, nil
}

// Stats returns the flow's counters. Safe for concurrent use.
func (f *RTCPFlow) Stats() Stats { return f.c.snapshot() }

// FlowKey names a client-router flow: participant and media kind.
type FlowKey struct {
	Participant uint64
	Kind        media.Kind
}

// RTCPTranslator is the router's RTCP protection: the RouterSide RTCPFlow
// of every bound flow, looked up through an immutable map snapshot
// (atomic.Pointer, copy on write), so lookups take no lock. For an RTCP
// datagram from flow A the router calls Open(A), routes the plaintext
// (wire.RTCPRoute, docs/PROTOCOL.md RTCP rules, unchanged), and calls
// Seal(B) into a buffer of its own for every destination flow B: RTCP is
// re-protected once per destination (a few packets per second per stream),
// RTP never. Safe for concurrent use.
type RTCPTranslator struct {
	window int
	mu     sync.Mutex // serialises writers of flows
	flows  atomic.Pointer[map[FlowKey]*RTCPFlow]
}

// NewRTCPTranslator returns an empty translator; window 0 means
// DefaultReplayWindow.
func NewRTCPTranslator(window int) *RTCPTranslator {
	t := &RTCPTranslator{window: window}
	m := map[FlowKey]*RTCPFlow{}
	t.flows.Store(&m)
	return t
}

// Add installs (or replaces, e.g. after a resume with a new secret) the
// flow k from the participant's RTCP secret.
func (t *RTCPTranslator) Add(k FlowKey, secret []byte) error {
	f, err := NewRTCPFlow(secret, k.Participant, k.Kind, RouterSide, t.window)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.flows.Load()
	m := make(map[FlowKey]*RTCPFlow, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = f
	t.flows.Store(&m)
	return nil
}

// Remove forgets flow k (its participant left).
func (t *RTCPTranslator) Remove(k FlowKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.flows.Load()
	if _, ok := old[k]; !ok {
		return
	}
	m := make(map[FlowKey]*RTCPFlow, len(old))
	for kk, v := range old {
		if kk != k {
			m[kk] = v
		}
	}
	t.flows.Store(&m)
}

// Flow returns flow k or nil. The router may keep the pointer in its own
// flow table to skip the map lookup.
func (t *RTCPTranslator) Flow(k FlowKey) *RTCPFlow { return (*t.flows.Load())[k] }

// Open decrypts an SRTCP datagram that arrived on flow from (see
// RTCPFlow.Open); ErrUnknownSender if the flow has no RTCP keys.
func (t *RTCPTranslator) Open(from FlowKey, dst, pkt []byte) ([]byte, error) {
	f := t.Flow(from)
	if f == nil {
		return nil, ErrUnknownSender
	}
	return f.Open(dst, pkt)
}

// Seal protects plaintext RTCP for flow to (see RTCPFlow.Seal).
func (t *RTCPTranslator) Seal(to FlowKey, dst, plain []byte) ([]byte, error) {
	f := t.Flow(to)
	if f == nil {
		return nil, ErrUnknownSender
	}
	return f.Seal(dst, plain)
}
