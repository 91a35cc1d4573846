package protect

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/wire"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

func newKey(t testing.TB, id KeyID) MeetingKey {
	k := MeetingKey{ID: id}
	_, err := rand.Read(k.Secret[:])
	require.NoError(t, err)
	return k
}

// rtpPacket builds an RTP packet with an RFC 8285 one-byte header
// extension (ID 1, audio level) and the given payload size.
func rtpPacket(t testing.TB, ssrc uint32, seq uint16, ts uint32, marker bool, size int) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: marker}}
	require.NoError(t, p.Header.SetExtension(1, []byte{0x80 | 42}))
	p.Payload = make([]byte, size)
	for i := range p.Payload {
		p.Payload[i] = byte(i*7 + int(seq))
	}
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

func newOpener(t testing.TB, keys []MeetingKey, senders ...Sender) *Opener {
	o, err := NewOpener(OpenerConfig{})
	require.NoError(t, err)
	for _, k := range keys {
		require.NoError(t, o.AddKey(k))
	}
	for _, s := range senders {
		require.NoError(t, o.AddSender(s))
	}
	return o
}

func seal(t testing.TB, s *Sealer, pkt []byte) []byte {
	out, err := s.Seal(make([]byte, 0, len(pkt)+Overhead), pkt)
	require.NoError(t, err)
	return out
}

func TestRoundTripManySendersAndRekeys(t *testing.T) {
	leaktest.Check(t)
	const participants, ssrcsEach = 6, 3
	type sender struct {
		s     *Sealer
		ssrcs []uint32
		seq   uint16
	}
	var senders []*sender
	var all []Sender
	for p := range participants {
		sd := &sender{s: NewSealer(uint64(100+p), 0), seq: uint16(65500 + p)} // cross a sequence wrap
		for j := range ssrcsEach {
			ssrc := uint32(1000*p + j + 1)
			sd.ssrcs = append(sd.ssrcs, ssrc)
			all = append(all, Sender{uint64(100 + p), ssrc})
		}
		senders = append(senders, sd)
	}
	o := newOpener(t, nil, all...)
	var prev KeyID
	for id := KeyID(1); id <= 5; id++ {
		k := newKey(t, id)
		require.NoError(t, o.AddKey(k))
		for _, sd := range senders {
			require.NoError(t, sd.s.SetKey(k))
		}
		if prev != 0 {
			o.DropKey(prev)
		}
		prev = id
		for range 50 {
			for _, sd := range senders {
				sd.seq++
				for _, ssrc := range sd.ssrcs {
					pkt := rtpPacket(t, ssrc, sd.seq, uint32(sd.seq)*960, sd.seq%2 == 0, 160)
					sp := seal(t, sd.s, pkt)
					require.Equal(t, uint32(id), binary.BigEndian.Uint32(sp[len(sp)-4:]), "MKI carries the key ID")
					got, err := o.Open(nil, sp)
					require.NoError(t, err)
					require.Equal(t, pkt, got)
				}
			}
		}
		require.Len(t, o.Keys(), 1)
	}
	st := o.Stats()
	require.Equal(t, uint64(5*50*participants*ssrcsEach), st.Opened)
	require.Zero(t, st.Rejected())
}

func TestHeaderStaysClearAndUnchanged(t *testing.T) {
	leaktest.Check(t)
	k := newKey(t, 7)
	s := NewSealer(5, 0)
	require.NoError(t, s.SetKey(k))
	pkt := rtpPacket(t, 0xdeadbeef, 4242, 123456, true, 1000)
	var plain rtp.Header
	hl, err := plain.Unmarshal(pkt)
	require.NoError(t, err)
	sp := seal(t, s, pkt)
	require.Len(t, sp, len(pkt)+Overhead)
	require.Equal(t, wire.ClassRTP, wire.Classify(sp))
	var h rtp.Header
	n, err := h.Unmarshal(sp)
	require.NoError(t, err)
	require.Equal(t, hl, n)
	require.Equal(t, pkt[:hl], sp[:hl], "header bytes unchanged")
	require.Equal(t, uint32(0xdeadbeef), h.SSRC)
	require.Equal(t, uint16(4242), h.SequenceNumber)
	require.Equal(t, uint32(123456), h.Timestamp)
	require.True(t, h.Marker)
	require.Equal(t, []byte{0x80 | 42}, h.GetExtension(1), "audio level readable")
	require.False(t, bytes.Contains(sp[hl:], pkt[hl:hl+32]), "payload not in clear")
}

func TestRejections(t *testing.T) {
	leaktest.Check(t)
	k1, k2 := newKey(t, 1), newKey(t, 2)
	snd := Sender{Participant: 9, SSRC: 77}
	type tc struct {
		name   string
		run    func(t *testing.T, s *Sealer, o *Opener)
		reason func(Stats) uint64
		err    error
	}
	for _, c := range []tc{
		{"replayed", func(t *testing.T, s *Sealer, o *Opener) {
			sp := seal(t, s, rtpPacket(t, 77, 1, 0, false, 100))
			_, err := o.Open(nil, sp)
			require.NoError(t, err)
			_, err = o.Open(nil, sp)
			require.ErrorIs(t, err, ErrReplayed)
		}, func(s Stats) uint64 { return s.Replayed }, ErrReplayed},
		{"too old", func(t *testing.T, s *Sealer, o *Opener) {
			old := seal(t, s, rtpPacket(t, 77, 100, 0, false, 100))
			var last []byte
			for seq := uint16(101); seq <= 100+DefaultReplayWindow; seq++ {
				last = seal(t, s, rtpPacket(t, 77, seq, 0, false, 100))
			}
			_, err := o.Open(nil, last)
			require.NoError(t, err)
			_, err = o.Open(nil, old)
			require.ErrorIs(t, err, ErrTooOld)
		}, func(s Stats) uint64 { return s.TooOld }, ErrTooOld},
		{"unknown key", func(t *testing.T, s *Sealer, o *Opener) {
			require.NoError(t, s.SetKey(k2))
			_, err := o.Open(nil, seal(t, s, rtpPacket(t, 77, 1, 0, false, 100)))
			require.ErrorIs(t, err, ErrUnknownKey)
		}, func(s Stats) uint64 { return s.UnknownKey }, ErrUnknownKey},
		{"unknown sender", func(t *testing.T, s *Sealer, o *Opener) {
			_, err := o.Open(nil, seal(t, s, rtpPacket(t, 78, 1, 0, false, 100)))
			require.ErrorIs(t, err, ErrUnknownSender)
		}, func(s Stats) uint64 { return s.UnknownSender }, ErrUnknownSender},
		{"wrong participant", func(t *testing.T, _ *Sealer, o *Opener) {
			other := NewSealer(10, 0) // same SSRC, another participant: another key stream
			require.NoError(t, other.SetKey(k1))
			_, err := o.Open(nil, seal(t, other, rtpPacket(t, 77, 1, 0, false, 100)))
			require.ErrorIs(t, err, ErrAuth)
		}, func(s Stats) uint64 { return s.Auth }, ErrAuth},
		{"truncated", func(t *testing.T, s *Sealer, o *Opener) {
			sp := seal(t, s, rtpPacket(t, 77, 1, 0, false, 100))
			_, err := o.Open(nil, sp[:12+Overhead-1])
			require.ErrorIs(t, err, ErrMalformed)
		}, func(s Stats) uint64 { return s.Malformed }, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewSealer(snd.Participant, 0)
			require.NoError(t, s.SetKey(k1))
			o := newOpener(t, []MeetingKey{k1}, snd)
			before := o.Stats()
			c.run(t, s, o)
			after := o.Stats()
			require.Equal(t, c.reason(before)+1, c.reason(after), "counted under its reason")
			require.Equal(t, before.Rejected()+1, after.Rejected(), "counted once")
		})
	}
}

func TestEveryFlippedBitRejected(t *testing.T) {
	leaktest.Check(t)
	k := newKey(t, 3)
	s := NewSealer(1, 0)
	require.NoError(t, s.SetKey(k))
	o := newOpener(t, []MeetingKey{k}, Sender{1, 0x01020304})
	sp := seal(t, s, rtpPacket(t, 0x01020304, 500, 9000, true, 60))
	for bit := range len(sp) * 8 {
		bad := bytes.Clone(sp)
		bad[bit/8] ^= 1 << (bit % 8)
		before := o.Stats()
		_, err := o.Open(make([]byte, 0, len(bad)), bad)
		require.Error(t, err, "bit %d", bit)
		after := o.Stats()
		require.Equal(t, before.Rejected()+1, after.Rejected(), "bit %d counted", bit)
		require.Equal(t, before.Opened, after.Opened)
	}
	// Nothing rejected was committed to the replay window.
	got, err := o.Open(nil, sp)
	require.NoError(t, err)
	require.Equal(t, uint16(500), binary.BigEndian.Uint16(got[2:4]))
}

func TestOldKeyDuringChange(t *testing.T) {
	leaktest.Check(t)
	k1, k2 := newKey(t, 1), newKey(t, 2)
	s := NewSealer(4, 0)
	require.NoError(t, s.SetKey(k1))
	o := newOpener(t, []MeetingKey{k1}, Sender{4, 50})
	under1 := []([]byte){seal(t, s, rtpPacket(t, 50, 1, 0, false, 100)), seal(t, s, rtpPacket(t, 50, 2, 0, false, 100)), seal(t, s, rtpPacket(t, 50, 3, 0, false, 100))}
	require.NoError(t, o.AddKey(k2)) // receivers install first
	require.NoError(t, s.SetKey(k2)) // then the sender switches
	under2 := seal(t, s, rtpPacket(t, 50, 4, 0, false, 100))
	_, err := o.Open(nil, under2)
	require.NoError(t, err)
	_, err = o.Open(nil, under1[0]) // late packet under the old key: still live
	require.NoError(t, err)
	o.DropKey(1)
	_, err = o.Open(nil, under1[1])
	require.ErrorIs(t, err, ErrUnknownKey)
	require.Equal(t, []KeyID{2}, o.Keys())
	o.DropKey(2)
	_, err = o.Open(nil, under1[2])
	require.ErrorIs(t, err, ErrUnknownKey)
	require.Equal(t, uint64(2), o.Stats().UnknownKey)
}

func TestKeyManagementErrors(t *testing.T) {
	leaktest.Check(t)
	o := newOpener(t, nil)
	require.ErrorIs(t, o.AddKey(MeetingKey{}), ErrKeyID)
	k := newKey(t, 1)
	require.NoError(t, o.AddKey(k))
	require.NoError(t, o.AddKey(k))
	k.Secret[0] ^= 1
	require.ErrorIs(t, o.AddKey(k), ErrKeyConflict)
	for id := KeyID(2); id <= DefaultMaxKeys; id++ {
		require.NoError(t, o.AddKey(newKey(t, id)))
	}
	require.ErrorIs(t, o.AddKey(newKey(t, 99)), ErrTooManyKeys)
	require.ErrorIs(t, o.AddSender(Sender{1, 0}), ErrSSRC)
	s := NewSealer(1, 1)
	_, err := s.Seal(nil, rtpPacket(t, 1, 1, 0, false, 10))
	require.ErrorIs(t, err, ErrNoKey)
	require.NoError(t, s.SetKey(newKey(t, 1)))
	_, err = s.Seal(nil, rtpPacket(t, 1, 1, 0, false, 10))
	require.NoError(t, err)
	_, err = s.Seal(nil, rtpPacket(t, 2, 1, 0, false, 10))
	require.ErrorIs(t, err, ErrTooManySSRCs)
	_, err = s.Seal(nil, []byte{0x80, 0})
	require.ErrorIs(t, err, ErrMalformed)
	require.Equal(t, uint64(3), s.Stats().SealErrors)
	_, err = NewOpener(OpenerConfig{ReplayWindow: 10})
	require.Error(t, err)
}

func TestZeroAllocs(t *testing.T) {
	leaktest.Check(t)
	k := newKey(t, 1)
	s := NewSealer(1, 0)
	require.NoError(t, s.SetKey(k))
	o := newOpener(t, []MeetingKey{k}, Sender{1, 9})
	seq := uint16(0)
	for _, size := range []int{200, 1200} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			pkt := rtpPacket(t, 9, 0, 0, false, size-16)
			sbuf := make([]byte, 0, len(pkt)+Overhead)
			obuf := make([]byte, 0, len(pkt)+Overhead)
			allocs := testing.AllocsPerRun(200, func() {
				seq++
				binary.BigEndian.PutUint16(pkt[2:4], seq)
				sp, err := s.Seal(sbuf, pkt)
				if err != nil {
					panic(err)
				}
				if _, err := o.Open(obuf, sp); err != nil {
					panic(err)
				}
			})
			require.Zero(t, allocs)
		})
	}
}

// Seal and Open from several goroutines while keys change: the race
// detector checks the locking; every packet either opens or is refused
// with a counted reason.
func TestConcurrentUse(t *testing.T) {
	leaktest.Check(t)
	k1, k2 := newKey(t, 1), newKey(t, 2)
	s := NewSealer(1, 0)
	require.NoError(t, s.SetKey(k1))
	o := newOpener(t, []MeetingKey{k1, k2}, Sender{1, 10}, Sender{1, 11})
	done := make(chan error, 2)
	for g := range 2 {
		go func() {
			ssrc := uint32(10 + g)
			buf := make([]byte, 0, 1500)
			out := make([]byte, 0, 1500)
			for seq := range uint16(500) {
				pkt := rtpPacket(t, ssrc, seq, 0, false, 100)
				sp, err := s.Seal(buf, pkt)
				if err != nil {
					done <- err
					return
				}
				if _, err := o.Open(out, sp); err != nil && err != ErrUnknownKey {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := range 50 {
		require.NoError(t, s.SetKey([]MeetingKey{k1, k2}[i%2]))
		_ = o.Stats()
	}
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	st := o.Stats()
	require.Equal(t, uint64(1000), st.Opened+st.Rejected())
}

// Rejected packets: what they cost in allocations (pion builds a wrapped
// error for a failed tag and a *duplicatedError for a replay). Logged, not
// asserted as zero: the figure is documented on Open.
func TestRejectionAllocs(t *testing.T) {
	leaktest.Check(t)
	k := newKey(t, 1)
	s := NewSealer(1, 0)
	require.NoError(t, s.SetKey(k))
	o := newOpener(t, []MeetingKey{k}, Sender{1, 9})
	sp := seal(t, s, rtpPacket(t, 9, 1, 0, false, 100))
	_, err := o.Open(nil, sp)
	require.NoError(t, err)
	bad := seal(t, s, rtpPacket(t, 9, 2, 0, false, 100))
	bad[30] ^= 1
	buf := make([]byte, 0, 200)
	for _, c := range []struct {
		name string
		pkt  []byte
		err  error
		max  float64
	}{
		{"replayed", sp, ErrReplayed, 2}, // pion: one *duplicatedError
		{"auth", bad, ErrAuth, 8},        // pion: fmt.Errorf("%w: %w") wrapping GCM's error (4 today)
		{"unknown sender", rtpPacket(t, 8, 1, 0, false, 100), ErrUnknownSender, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := o.Open(buf, c.pkt); err != c.err {
					panic(err)
				}
			})
			t.Logf("%s: %.0f allocs per rejected packet", c.name, allocs)
			require.LessOrEqual(t, allocs, c.max)
		})
	}
}
