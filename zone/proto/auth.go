package proto

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
)

// ALPN is the TLS application protocol (RFC 7301) of the ZC port. Peers
// offer it; a listener shared with other protocols can route on it.
const ALPN = "openmmr-zc/1"

// ExporterLabel is the RFC 5705 / RFC 8446 §7.5 exporter label from which
// both ends derive the channel binding the proofs cover (the idea of RFC
// 9266's tls-exporter binding, with a label of our own).
const ExporterLabel = "EXPORTER-openmmr-zone-auth"

// exporterSize is the number of exported bytes (256 bits).
const exporterSize = 32

// Proof labels: distinct per direction so a proof cannot be reflected.
const (
	labelMMR = "openmmr zone v1 mmr"
	labelZC  = "openmmr zone v1 zc"
)

// MinSecretLen is the shortest zone secret accepted (128 bits as raw bytes;
// a generated secret is 64 hex characters).
const MinSecretLen = 16

// ErrSecretShort is returned for a zone secret below MinSecretLen bytes.
var ErrSecretShort = fmt.Errorf("zone: secret shorter than %d bytes", MinSecretLen)

// CheckSecret returns ErrSecretShort when s is too short to be a zone secret.
func CheckSecret(s []byte) error {
	if len(s) < MinSecretLen {
		return ErrSecretShort
	}
	return nil
}

// Exporter returns the channel binding of a completed TLS connection: the
// 32-byte keying material exported with ExporterLabel. It fails when the
// handshake is not complete or the session cannot export safely (TLS 1.2
// without extended master secret, RFC 7627).
func Exporter(cs tls.ConnectionState) ([]byte, error) {
	if !cs.HandshakeComplete {
		return nil, errors.New("zone/proto: TLS handshake not complete")
	}
	b, err := cs.ExportKeyingMaterial(ExporterLabel, nil, exporterSize)
	if err != nil {
		return nil, fmt.Errorf("zone/proto: TLS exporter: %w", err)
	}
	return b, nil
}

// MMRProof is the proof an MMR sends in Hello: HMAC-SHA-256 (RFC 2104) keyed
// with the zone secret over labelMMR, a zero byte, the exporter and the MMR
// ID. Bound to the TLS session, it cannot be replayed on another connection
// or relayed by a man in the middle (who has a different session).
func MMRProof(secret, exporter []byte, mmr string) []byte {
	return proof(secret, labelMMR, exporter, mmr)
}

// ZCProof is the proof a ZC sends in Welcome, computed like MMRProof with
// labelZC: it shows the MMR that the ZC knows the zone secret too.
func ZCProof(secret, exporter []byte, mmr string) []byte {
	return proof(secret, labelZC, exporter, mmr)
}

func proof(secret []byte, label string, exporter []byte, mmr string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(exporter)
	m.Write([]byte(mmr))
	return m.Sum(nil)
}

// VerifyProof compares two proofs in constant time.
func VerifyProof(want, got []byte) bool { return hmac.Equal(want, got) }
