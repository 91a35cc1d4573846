package bench

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/openmmr/mmr/wire"
)

// noFingerprint stands for "plain TCP, no certificate" in the streams reply.
const noFingerprint = "-"

// streamInfo is what the parent needs to connect the stream subscribers of
// a tcp or tls child: where to connect, which certificate to pin (TLS),
// and one media token per subscriber participant. The tokens are secrets
// of the benchmark's own router; they travel only over the child's stdout
// pipe and are never logged. A plain value; safe for concurrent reads.
type streamInfo struct {
	Addr netip.AddrPort
	// Fingerprint is the SHA-256 (hex) of the child's TLS certificate, as
	// tlsutil.Fingerprint; empty for plain TCP.
	Fingerprint string
	Tokens      []wire.Token
}

// line formats the child's "streams" reply (parseStreams is its inverse).
// Not String, so that printing a streamInfo by mistake does not show the
// tokens.
func (si streamInfo) line() string {
	var b strings.Builder
	fp := si.Fingerprint
	if fp == "" {
		fp = noFingerprint
	}
	fmt.Fprintf(&b, "streams %s %s", si.Addr, fp)
	for _, t := range si.Tokens {
		b.WriteByte(' ')
		b.WriteString(t.String())
	}
	return b.String()
}

// parseStreams parses the child's "streams <address> <fingerprint|->
// <token>..." reply: a valid address with a non-zero port, a fingerprint of
// 64 hex digits or "-", and at least one token of 32 hex digits.
func parseStreams(reply string) (streamInfo, error) {
	f := strings.Fields(reply)
	if len(f) < 4 || f[0] != "streams" {
		return streamInfo{}, fmt.Errorf("bench: bad streams reply (%d fields)", len(f))
	}
	var si streamInfo
	var err error
	if si.Addr, err = netip.ParseAddrPort(f[1]); err != nil || si.Addr.Port() == 0 {
		return streamInfo{}, fmt.Errorf("bench: bad stream address %q in streams reply", f[1])
	}
	if fp := f[2]; fp != noFingerprint {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
			return streamInfo{}, errors.New("bench: bad fingerprint in streams reply")
		}
		si.Fingerprint = strings.ToLower(fp)
	}
	if len(f)-3 > maxStreams {
		return streamInfo{}, fmt.Errorf("bench: %d tokens in streams reply, at most %d", len(f)-3, maxStreams)
	}
	for i, s := range f[3:] {
		t, err := wire.ParseToken(s)
		if err != nil {
			// The token itself is not quoted: it is a secret.
			return streamInfo{}, fmt.Errorf("bench: bad token %d in streams reply", i)
		}
		si.Tokens = append(si.Tokens, t)
	}
	return si, nil
}
