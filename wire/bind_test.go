package wire

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmmr/mmr/internal/docvec"
	"github.com/openmmr/mmr/media"
	"github.com/stretchr/testify/require"
)

// vectorTime is the signing time of the documented test vectors:
// 2026-01-01T00:00:00Z.
var vectorTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// signedBind returns the first Bind of the documented vectors: audio,
// TxID 0x01020304, signed with testToken at vectorTime, counter the
// time in microseconds.
func signedBind() Bind {
	b := Bind{Kind: media.Audio, TxID: 0x01020304}
	b.Sign(testToken, uint64(vectorTime.UnixMicro()), vectorTime)
	return b
}

// bindPacket marshals b.
func bindPacket(t testing.TB, b Bind) []byte {
	var dst [BindSize]byte
	n, err := b.MarshalTo(dst[:])
	require.NoError(t, err)
	return dst[:n]
}

// TestTokenMACIsHMAC checks the allocation-free HMAC against crypto/hmac.
func TestTokenMACIsHMAC(t *testing.T) {
	tests := []struct {
		name  string
		label string
		msg   []byte
	}{
		{"handle", labelHandle, nil},
		{"bind", labelBind, bytes.Repeat([]byte{0xa5}, signedSize)},
		{"consent", labelConsent, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"longest", "", bytes.Repeat([]byte{7}, 64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, key := range []Token{testToken, {}, {0xff, 1}} {
				h := hmac.New(sha256.New, key[:])
				h.Write([]byte(tc.label))
				h.Write(tc.msg)
				require.Equal(t, h.Sum(nil), func() []byte { s := tokenMAC(&key, tc.label, tc.msg); return s[:] }())
			}
		})
	}
}

func TestTokenHandle(t *testing.T) {
	h := hmac.New(sha256.New, testToken[:])
	h.Write([]byte("openmmr/1 bind handle"))
	require.Equal(t, h.Sum(nil)[:BindHandleSize], func() []byte { x := testToken.Handle(); return x[:] }())
	other := testToken
	other[15] ^= 1
	require.NotEqual(t, testToken.Handle(), other.Handle())
}

func TestBindMarshalLayout(t *testing.T) {
	b := signedBind()
	p := bindPacket(t, b)
	require.Len(t, p, BindSize)
	require.Equal(t, []byte{TypeBind, BindVersion, byte(media.Audio), 0, 1, 2, 3, 4}, p[:8])
	h := testToken.Handle()
	require.Equal(t, h[:], p[8:16])
	require.Equal(t, uint64(vectorTime.UnixMicro()), binary.BigEndian.Uint64(p[16:24]))
	require.Equal(t, uint64(vectorTime.UnixMilli()), binary.BigEndian.Uint64(p[24:32]))
	require.Zero(t, binary.BigEndian.Uint64(p[32:40]))
	mac := hmac.New(sha256.New, testToken[:])
	mac.Write([]byte("openmmr/1 bind"))
	mac.Write(p[:40])
	require.Equal(t, mac.Sum(nil)[:BindMACSize], p[40:56], "MAC = HMAC-SHA-256(token, label || bytes 0-39), truncated")
	require.False(t, bytes.Contains(p, testToken[:8]), "the token is not on the wire")
	require.False(t, bytes.Contains(p, testToken[8:]), "the token is not on the wire")

	var back Bind
	require.NoError(t, back.Unmarshal(p))
	require.Equal(t, b, back)
}

func TestBindUnmarshal(t *testing.T) {
	valid := func() []byte { return bindPacket(t, signedBind()) }
	// A version-1 Bind (token in clear, 40 bytes) padded to 56 bytes: the
	// only difference the parser may see is the version byte.
	v1 := append([]byte{TypeBind, 1, byte(media.Audio), 0, 1, 2, 3, 4}, testToken[:]...)
	v1 = append(v1, make([]byte, 32)...)
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{"valid", valid(), nil},
		{"longer accepted", append(valid(), 0xde, 0xad), nil},
		{"empty", nil, ErrShort},
		{"one byte", []byte{TypeBind}, ErrShort},
		{"short by one", valid()[:BindSize-1], ErrShort},
		{"version 1 size", valid()[:40], ErrShort},
		{"version 1", v1, ErrVersion},
		{"version 1, 40 bytes", v1[:40], ErrShort},
		{"version 0", with(valid(), set(1, 0)), ErrVersion},
		{"version 3", with(valid(), set(1, 3)), ErrVersion},
		{"wrong type", with(valid(), set(0, TypeKeepalive)), ErrType},
		{"rtp type", with(valid(), set(0, 0x80)), ErrType},
		{"kind 0", with(valid(), set(2, 0)), ErrKind},
		{"kind 4", with(valid(), set(2, 4)), ErrKind},
		{"reserved", with(valid(), set(3, 1)), ErrReserved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Bind
			err := got.Unmarshal(tc.in)
			require.ErrorIs(t, err, tc.err)
			if tc.err != nil {
				require.Equal(t, Bind{}, got, "on error the receiver must be unchanged")
				return
			}
			require.Equal(t, signedBind(), got)
		})
	}
}

func TestBindMarshalToErrors(t *testing.T) {
	tests := []struct {
		name string
		in   Bind
		dst  int
		err  error
	}{
		{"short dst", Bind{Kind: media.Audio}, BindSize - 1, ErrShortBuffer},
		{"nil dst", Bind{Kind: media.Audio}, 0, ErrShortBuffer},
		{"kind 0", Bind{}, BindSize, ErrKind},
		{"kind 9", Bind{Kind: 9}, BindSize, ErrKind},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := bytes.Repeat([]byte{0xee}, tc.dst)
			n, err := tc.in.MarshalTo(dst)
			require.ErrorIs(t, err, tc.err)
			require.Zero(t, n)
			require.Equal(t, bytes.Repeat([]byte{0xee}, tc.dst), dst, "nothing written on error")
		})
	}
}

// TestBindCheck is the receiver's test of a parsed Bind: each field
// tampered with after signing, the wrong token, replayed counters and
// stale or future times.
func TestBindCheck(t *testing.T) {
	const last = 1000 // the last counter the receiver accepted
	now := vectorTime
	base := func() Bind {
		b := Bind{Kind: media.Video, TxID: 77, Nonce: 0xa1b2c3d4e5f60718}
		b.Sign(testToken, last+1, now)
		return b
	}
	other := testToken
	other[0] ^= 0x80
	tests := []struct {
		name string
		edit func(*Bind)
		tok  Token
		now  time.Time
		last uint64
		err  error
	}{
		{"valid", func(*Bind) {}, testToken, now, last, nil},
		{"valid from counter 0", func(*Bind) {}, testToken, now, 0, nil},
		{"kind tampered", func(b *Bind) { b.Kind = media.Audio }, testToken, now, last, ErrBindMAC},
		{"txid tampered", func(b *Bind) { b.TxID++ }, testToken, now, last, ErrBindMAC},
		{"handle tampered", func(b *Bind) { b.Handle[3] ^= 1 }, testToken, now, last, ErrBindMAC},
		{"counter tampered", func(b *Bind) { b.Counter += 1 << 40 }, testToken, now, last, ErrBindMAC},
		{"time tampered", func(b *Bind) { b.Time++ }, testToken, now, last, ErrBindMAC},
		{"nonce tampered", func(b *Bind) { b.Nonce ^= 1 }, testToken, now, last, ErrBindMAC},
		{"mac tampered", func(b *Bind) { b.MAC[15] ^= 0x40 }, testToken, now, last, ErrBindMAC},
		{"mac zero", func(b *Bind) { b.MAC = [BindMACSize]byte{} }, testToken, now, last, ErrBindMAC},
		{"wrong token", func(*Bind) {}, other, now, last, ErrBindMAC},
		{"handle of another token, MAC redone", func(b *Bind) { b.Handle = other.Handle(); b.MAC = b.mac(&testToken) }, testToken, now, last, ErrBindMAC},
		{"replayed: counter equal to last", func(*Bind) {}, testToken, now, last + 1, ErrBindReplayed},
		{"replayed: counter below last", func(*Bind) {}, testToken, now, last + 500, ErrBindReplayed},
		{"30 s old", func(*Bind) {}, testToken, now.Add(BindTimeWindow), last, nil},
		{"30 s ahead", func(*Bind) {}, testToken, now.Add(-BindTimeWindow), last, nil},
		{"stale by a millisecond", func(*Bind) {}, testToken, now.Add(BindTimeWindow + time.Millisecond), last, ErrBindStale},
		{"future by a millisecond", func(*Bind) {}, testToken, now.Add(-BindTimeWindow - time.Millisecond), last, ErrBindStale},
		{"an hour old", func(*Bind) {}, testToken, now.Add(time.Hour), last, ErrBindStale},
		{"stale and replayed: stale first", func(*Bind) {}, testToken, now.Add(time.Hour), last + 1, ErrBindStale},
		{"forged and stale: MAC first", func(b *Bind) { b.TxID++ }, testToken, now.Add(time.Hour), last, ErrBindMAC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			tc.edit(&b)
			// Through the wire, as a receiver sees it.
			var got Bind
			require.NoError(t, got.Unmarshal(bindPacket(t, b)))
			require.Equal(t, b, got)
			require.ErrorIs(t, got.Check(tc.tok, tc.now, tc.last), tc.err)
			require.Equal(t, tc.err != ErrBindMAC, got.Verify(tc.tok))
		})
	}
}

// TestBindEveryBitCovered flips each bit of a signed Bind: the result is
// refused by Unmarshal or by Check, never accepted.
func TestBindEveryBitCovered(t *testing.T) {
	p := bindPacket(t, signedBind())
	for i := range BindSize * 8 {
		q := bytes.Clone(p)
		q[i/8] ^= 1 << (i % 8)
		var b Bind
		if b.Unmarshal(q) != nil {
			continue
		}
		require.ErrorIs(t, b.Check(testToken, vectorTime, 0), ErrBindMAC, "bit %d", i)
	}
}

func TestBindCounter(t *testing.T) {
	var c BindCounter
	now := vectorTime
	first := c.Next(now)
	require.Equal(t, uint64(now.UnixMicro()), first, "seeded from the clock")
	require.Equal(t, first+1, c.Next(now), "same microsecond: one more")
	require.Equal(t, first+2, c.Next(now.Add(-time.Hour)), "clock stepped back: still rising")
	require.Equal(t, uint64(now.Add(time.Second).UnixMicro()), c.Next(now.Add(time.Second)))

	var fresh BindCounter
	require.Greater(t, fresh.Next(now.Add(2*time.Second)), first+2, "a new counter later starts above an older one")

	// Concurrent callers never get the same value.
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				v := c.Next(now)
				mu.Lock()
				require.False(t, seen[v])
				seen[v] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, 4000)
}

func TestConsentEcho(t *testing.T) {
	require.Zero(t, ConsentEcho(testToken, media.Audio, 0), "no nonce, no echo")
	e := ConsentEcho(testToken, media.Audio, 0x0123456789abcdef)
	mac := hmac.New(sha256.New, testToken[:])
	mac.Write([]byte("openmmr/1 consent"))
	mac.Write([]byte{1, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
	require.Equal(t, binary.BigEndian.Uint64(mac.Sum(nil)), e)
	require.NotEqual(t, uint64(0x0123456789abcdef), e, "the echo is not the nonce")
	require.NotEqual(t, e, ConsentEcho(testToken, media.Video, 0x0123456789abcdef), "bound to the kind")
	require.NotEqual(t, e, ConsentEcho(testToken, media.Audio, 0x0123456789abcdee), "bound to the nonce")
	other := testToken
	other[7]++
	require.NotEqual(t, e, ConsentEcho(other, media.Audio, 0x0123456789abcdef), "bound to the token")
}

var bindSink error

func TestBindAllocs(t *testing.T) {
	b := signedBind()
	p := bindPacket(t, b)
	dst := make([]byte, BindSize)
	var m Bind
	var c BindCounter
	tests := []struct {
		name string
		f    func()
	}{
		{"Unmarshal", func() { bindSink = m.Unmarshal(p) }},
		{"Unmarshal error", func() { bindSink = m.Unmarshal(p[:3]) }},
		{"Check", func() { bindSink = m.Check(testToken, vectorTime, 0) }},
		{"Sign", func() { b.Sign(testToken, c.Next(vectorTime), vectorTime) }},
		{"MarshalTo", func() { _, bindSink = b.MarshalTo(dst) }},
		{"ConsentEcho", func() { _ = ConsentEcho(testToken, media.Audio, 5) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Zero(t, testing.AllocsPerRun(100, tc.f))
		})
	}
}

// BenchmarkBindCheck is what the router spends on an authentic Bind
// (two HMACs) and on a forged one naming a known handle (one).
func BenchmarkBindCheck(b *testing.B) {
	good := signedBind()
	forged := good
	forged.MAC[0] ^= 1
	b.Run("valid", func(b *testing.B) {
		for b.Loop() {
			bindSink = good.Check(testToken, vectorTime, 0)
		}
	})
	b.Run("forged", func(b *testing.B) {
		for b.Loop() {
			bindSink = forged.Check(testToken, vectorTime, 0)
		}
	})
}

// bindVectors computes the test vectors of docs/PROTOCOL.md ("Bind test
// vectors"): name, lowercase hex.
func bindVectors(t *testing.T) [][2]string {
	var v [][2]string
	add := func(name string, b []byte) { v = append(v, [2]string{name, hex.EncodeToString(b)}) }
	add("token", testToken[:])
	h := testToken.Handle()
	add("handle", h[:])

	first := signedBind()
	p := bindPacket(t, first)
	add("bind.first.mac_input", append([]byte(labelBind), p[:signedSize]...))
	add("bind.first", p)

	// The answer to a challenge 120 ms later: new TxID and counter.
	later := vectorTime.Add(120 * time.Millisecond)
	echo := Bind{Kind: media.Audio, TxID: 0x01020305, Nonce: 0xa1b2c3d4e5f60718}
	echo.Sign(testToken, uint64(later.UnixMicro()), later)
	add("bind.echo", bindPacket(t, echo))

	const nonce = 0x0123456789abcdef
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], nonce)
	add("consent.nonce", nb[:])
	e := ConsentEcho(testToken, media.Audio, nonce)
	binary.BigEndian.PutUint64(nb[:], e)
	add("consent.echo", nb[:])
	var ka [KeepaliveSize]byte
	_, err := (&Keepalive{Kind: media.Audio, TxID: 9, Nonce: e}).MarshalTo(ka[:])
	require.NoError(t, err)
	add("keepalive", ka[:])
	return v
}

// TestBindVectorsInProtocolDoc checks that the Bind and consent test
// vectors in docs/PROTOCOL.md, and the field-by-field dump of bind.first,
// are the ones this code computes. On a mismatch it prints the block to
// paste (or writes it to $BIND_VECTORS_OUT).
func TestBindVectorsInProtocolDoc(t *testing.T) {
	const doc = "../docs/PROTOCOL.md"
	found := docvec.Check(t, doc, "<!-- bind test vectors: checked by wire TestBindVectorsInProtocolDoc -->", bindVectors(t), "BIND_VECTORS_OUT")

	// The annotated dump of bind.first is that vector.
	const dumpMark = "`bind.first` field by field:"
	text, err := os.ReadFile(doc)
	require.NoError(t, err)
	j := bytes.Index(text, []byte(dumpMark))
	require.GreaterOrEqual(t, j, 0, "field-by-field dump missing")
	sc := bufio.NewScanner(bytes.NewReader(text[j+len(dumpMark):]))
	for sc.Scan() && sc.Text() != "```" { // to the opening fence
	}
	var dump strings.Builder
	for sc.Scan() && sc.Text() != "```" {
		hexPart, _, _ := strings.Cut(sc.Text(), "  ")
		dump.WriteString(strings.ReplaceAll(hexPart, " ", ""))
	}
	require.Equal(t, found["bind.first"], dump.String(), "the field-by-field dump of bind.first")

	// The vectors verify as a receiver would check them.
	for _, name := range []string{"bind.first", "bind.echo"} {
		p, err := hex.DecodeString(found[name])
		require.NoError(t, err)
		var b Bind
		require.NoError(t, b.Unmarshal(p))
		require.NoError(t, b.Check(testToken, vectorTime, 0), name)
	}
}
