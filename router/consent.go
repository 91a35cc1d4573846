package router

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"

	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/wire"
)

// Nonce purposes: a return-routability challenge (BindAck StatusVerify,
// echoed in a Bind) and a consent nonce (BindAck StatusOK and
// KeepaliveAck, echoed in Keepalives).
const (
	purposeBind    = 'B'
	purposeConsent = 'C'
)

// Epochs a nonce stays valid after the one it was made in: a challenge is
// answered within a round trip, so one more epoch; a consent nonce is
// echoed at the client's next Keepalive (5 s later, or 15 s when two are
// lost), so two more.
const (
	bindEpochsBack    = 1
	consentEpochsBack = 2
)

// prover makes and checks the router's nonces without per-address state
// (like a SYN cookie or a QUIC Retry token): a nonce is the first 8 bytes
// of HMAC-SHA256 under the router's random key over its purpose, the
// flow's participant and kind, the remote address and port, and the time
// epoch. Only a party that receives at that address learns it, so echoing
// it proves return routability, and a fresh one per epoch proves consent
// (RFC 7675). A prover belongs to one goroutine; no allocation per nonce.
type prover struct {
	mac   hash.Hash
	in    [1 + 1 + 8 + 18 + 8]byte
	sum   [sha256.Size]byte
	epoch int64 // nanoseconds per epoch
}

func newProver(key []byte, epoch time.Duration) *prover {
	return &prover{mac: hmac.New(sha256.New, key), epoch: max(int64(epoch), 1)}
}

// nonce returns the nonce of purpose for flow f at address key in epoch e;
// never 0 (0 means "no nonce" on the wire).
func (p *prover) nonce(purpose byte, f *session.Flow, key *session.AddrKey, e int64) uint64 {
	in := p.in[:]
	in[0] = purpose
	in[1] = byte(f.Kind)
	binary.BigEndian.PutUint64(in[2:], f.Participant.ID)
	copy(in[10:28], key[:])
	binary.BigEndian.PutUint64(in[28:], uint64(e))
	p.mac.Reset()
	p.mac.Write(in)
	n := binary.BigEndian.Uint64(p.mac.Sum(p.sum[:0]))
	if n == 0 {
		n = 1
	}
	return n
}

// current returns the nonce of purpose for f at key at now (Unix nanoseconds).
func (p *prover) current(purpose byte, f *session.Flow, key *session.AddrKey, now int64) uint64 {
	return p.nonce(purpose, f, key, now/p.epoch)
}

// checkConsent reports whether got is a Keepalive's echo of a consent
// nonce for f at key: wire.ConsentEcho, under f's participant's token, of
// the nonce of the epoch of now (Unix nanoseconds) or of one of the
// consentEpochsBack epochs before it. A client echoes its latest nonce,
// so the current epoch usually matches first.
func (p *prover) checkConsent(f *session.Flow, key *session.AddrKey, now int64, got uint64) bool {
	if got == 0 {
		return false
	}
	e := now / p.epoch
	for i := range int64(consentEpochsBack + 1) {
		if wire.ConsentEcho(f.Participant.Token, f.Kind, p.nonce(purposeConsent, f, key, e-i)) == got {
			return true
		}
	}
	return false
}

// check reports whether got is the nonce of purpose for f at key in the
// epoch of now or one of the back epochs before it.
func (p *prover) check(purpose byte, f *session.Flow, key *session.AddrKey, now int64, got uint64, back int) bool {
	if got == 0 {
		return false
	}
	e := now / p.epoch
	for i := range int64(back + 1) {
		if p.nonce(purpose, f, key, e-i) == got {
			return true
		}
	}
	return false
}
