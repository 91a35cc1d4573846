package keys

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/stretchr/testify/require"
)

// seq returns n bytes start, start+1, ...
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// srtpKDF is RFC 3711 §4.3.1 (AES-CM PRF, key derivation rate 0) written
// from the specification, independently of pion: block i of the output is
// AES(masterKey, (masterSalt || 0x0000 0000) XOR (label at byte 7) with
// bytes 14..15 = i).
func srtpKDF(t *testing.T, masterKey, masterSalt []byte, label byte, n int) []byte {
	block, err := aes.NewCipher(masterKey)
	require.NoError(t, err)
	var out []byte
	for i := 0; len(out) < n; i++ {
		var in [16]byte
		copy(in[:], masterSalt)
		in[7] ^= label
		binary.BigEndian.PutUint16(in[14:], uint16(i))
		var o [16]byte
		block.Encrypt(o[:], in[:])
		out = append(out, o[:]...)
	}
	return out[:n]
}

func gcmSeal(t *testing.T, key, iv, plain, aad []byte) []byte {
	block, err := aes.NewCipher(key)
	require.NoError(t, err)
	a, err := cipher.NewGCM(block)
	require.NoError(t, err)
	return a.Seal(nil, iv, plain, aad)
}

// vectors computes the test vectors of docs/PROTOCOL.md with the package
// code, and checks each packet against an independent implementation of
// the transforms as the document describes them.
func vectors(t *testing.T) [][2]string {
	var v [][2]string
	add := func(name string, b []byte) { v = append(v, [2]string{name, hex.EncodeToString(b)}) }
	addS := func(name, s string) { v = append(v, [2]string{name, s}) }

	// SRTP.
	mk := protect.MeetingKey{ID: 1}
	copy(mk.Secret[:], seq(0x00, 32))
	snd := protect.Sender{Participant: 17, SSRC: 0xdeadbeef}
	key, salt := protect.DeriveSender(mk, snd)
	add("srtp.master_key", key[:])
	add("srtp.master_salt", salt[:])
	sk := srtpKDF(t, key[:], salt[:], 0x00, 32)
	ss := srtpKDF(t, key[:], salt[:], 0x02, 12)
	add("srtp.session_key", sk)
	add("srtp.session_salt", ss)
	// RTP: V=2, X=1, M=1, PT=111, seq 0x1234, ts 0x11223344, SSRC deadbeef,
	// one-byte extension (0xBEDE, 1 word): ID 1 len 1 (audio level 0xaa), pad.
	rtpPkt, _ := hex.DecodeString("90ef123411223344deadbeef" + "bede0001" + "10aa0000" + "000102030405060708090a0b0c0d0e0f")
	add("srtp.plain", rtpPkt)
	s := protect.NewSealer(snd.Participant, 0)
	require.NoError(t, s.SetKey(mk))
	sealed, err := s.Seal(nil, rtpPkt)
	require.NoError(t, err)
	add("srtp.packet", sealed)
	iv := make([]byte, 12)
	binary.BigEndian.PutUint32(iv[2:], snd.SSRC)
	binary.BigEndian.PutUint32(iv[6:], 0) // ROC
	binary.BigEndian.PutUint16(iv[10:], 0x1234)
	for i := range iv {
		iv[i] ^= ss[i]
	}
	add("srtp.iv", iv)
	want := append(append(bytes.Clone(rtpPkt[:20]), gcmSeal(t, sk, iv, rtpPkt[20:], rtpPkt[:20])...), 0, 0, 0, 1)
	require.Equal(t, want, sealed, "pion's SRTP matches the transform as documented")

	// SRTCP, client to router.
	rsec := seq(0x20, 32)
	rkey, rsalt := protect.DeriveRTCP(rsec, 17, media.Audio, 1)
	add("srtcp.secret", rsec)
	add("srtcp.master_key", rkey[:])
	add("srtcp.master_salt", rsalt[:])
	rsk := srtpKDF(t, rkey[:], rsalt[:], 0x03, 32)
	rss := srtpKDF(t, rkey[:], rsalt[:], 0x05, 12)
	add("srtcp.session_key", rsk)
	add("srtcp.session_salt", rss)
	// RR from SSRC 0x01020304 with one report block about deadbeef.
	rr, _ := hex.DecodeString("81c90007" + "01020304" + "deadbeef" + "05000010" + "00001234" + "00000020" + "00000000" + "00000000")
	add("srtcp.plain", rr)
	f, err := protect.NewRTCPFlow(rsec, 17, media.Audio, protect.ClientSide, 0)
	require.NoError(t, err)
	srtcp, err := f.Seal(nil, rr)
	require.NoError(t, err)
	add("srtcp.packet", srtcp)
	riv := make([]byte, 12)
	binary.BigEndian.PutUint32(riv[2:], 0x01020304)
	binary.BigEndian.PutUint32(riv[8:], 1) // SRTCP index 1
	for i := range riv {
		riv[i] ^= rss[i]
	}
	esrtcp := []byte{0x80, 0, 0, 1}
	rwant := append(append(bytes.Clone(rr[:8]), gcmSeal(t, rsk, riv, rr[8:], append(bytes.Clone(rr[:8]), esrtcp...))...), esrtcp...)
	require.Equal(t, rwant, srtcp, "pion's SRTCP matches the transform as documented")

	// E2EE: two members, a roster, a wrap, a security code.
	a, err := ecdh.X25519().NewPrivateKey(seq(0x40, 32))
	require.NoError(t, err)
	b, err := ecdh.X25519().NewPrivateKey(seq(0x60, 32))
	require.NoError(t, err)
	add("e2ee.a_public", a.PublicKey().Bytes())
	add("e2ee.b_public", b.PublicKey().Bytes())
	r, err := NewRoster([]Member{
		{Participant: 18, Identity: "bob@example.org", PublicKey: b.PublicKey().Bytes()},
		{Participant: 17, Identity: "ann@example.org", Host: true, PublicKey: a.PublicKey().Bytes()},
	})
	require.NoError(t, err)
	h := r.Hash()
	add("e2ee.roster_hash", h[:])
	z, err := a.ECDH(b.PublicKey())
	require.NoError(t, err)
	add("e2ee.shared", z)
	wk := protect.MeetingKey{ID: 7}
	copy(wk.Secret[:], seq(0x80, 32))
	w, err := SealWrap(bytes.NewReader(seq(0xa0, 12)), a, 17, 18, b.PublicKey(), h, wk)
	require.NoError(t, err)
	kek, err := wrapKey(z, w, a.PublicKey().Bytes(), b.PublicKey().Bytes())
	require.NoError(t, err)
	add("e2ee.kek", kek)
	var wb [WrapSize]byte
	_, err = w.MarshalTo(wb[:])
	require.NoError(t, err)
	add("e2ee.wrap", wb[:])
	require.Equal(t, wb[66:], gcmSeal(t, kek, seq(0xa0, 12), wk.Secret[:], wb[:66]), "wrap = AES-GCM as documented")
	got, err := OpenWrap(w, b, a.PublicKey())
	require.NoError(t, err)
	require.Equal(t, wk, got)
	addS("e2ee.security_code", r.SecurityCode(7))
	return v
}

// TestVectorsInProtocolDoc checks that the test vectors in docs/PROTOCOL.md
// are the ones this code computes. On a mismatch it prints the block to
// paste.
func TestVectorsInProtocolDoc(t *testing.T) {
	leaktest.Check(t)
	v := vectors(t)
	doc, err := os.ReadFile("../../docs/PROTOCOL.md")
	require.NoError(t, err)
	const marker = "<!-- protect test vectors: checked by protect/keys TestVectorsInProtocolDoc -->"
	var blk strings.Builder
	blk.WriteString(marker + "\n```\n")
	for _, kv := range v {
		fmt.Fprintf(&blk, "%-20s %s\n", kv[0], kv[1])
	}
	blk.WriteString("```\n")
	if out := os.Getenv("PROTECT_VECTORS_OUT"); out != "" { // regenerate: write the block to paste
		require.NoError(t, os.WriteFile(out, []byte(blk.String()), 0o644))
	}
	i := bytes.Index(doc, []byte(marker))
	require.GreaterOrEqual(t, i, 0, "marker missing; the block is:\n%s", blk.String())
	found := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(doc[i+len(marker):]))
	sc.Scan() // rest of the marker line
	sc.Scan() // opening fence
	for sc.Scan() && sc.Text() != "```" {
		name, val, _ := strings.Cut(sc.Text(), " ")
		found[name] = strings.TrimSpace(val)
	}
	for _, kv := range v {
		require.Equal(t, kv[1], found[kv[0]], "vector %s; the block is:\n%s", kv[0], blk.String())
	}
	require.Len(t, found, len(v), "extra lines in the doc block:\n%s", blk.String())
}
