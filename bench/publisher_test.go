package bench

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"github.com/openmmr/mmr/protect"
)

// pubBurst is the most packets the closed loop sends in one burst (one
// sendmmsg on Linux). Bursts keep the forwarder busy with full recvmmsg
// batches, as under the aggregate load of many publishers, instead of
// waking it for every packet of a publisher that sends one at a time.
const pubBurst = 32

// publisher is the load generator's sending socket: it sends benchmark RTP
// packets of a fixed size to the forwarder with increasing sequence
// numbers. Not safe for concurrent use.
type publisher struct {
	conn  *net.UDPConn
	addr  netip.AddrPort
	dst   netip.AddrPort
	bufs  [pubBurst][]byte
	ssrc  uint32
	seq   uint16
	epoch uint32
	// full rebuilds the payload of every packet (verify mode); otherwise
	// only the header changes and the payload stays that of the first
	// packet, which keeps the parent's cost per packet low.
	full bool
	// video gives packets the lengths of video frames (videoLen) and
	// limits bursts to the rest of the current frame (burstLimit).
	video bool
	os    pubOS // OS-specific burst state (publisher_linux_test.go)
	// lat, when set, records each send time (paced rounds only; see latency).
	lat *latency
	// seal, when set (scenario.srtp), protects every packet with SRTP
	// AEAD_AES_256_GCM as a client does: the packet on the wire is the
	// benchmark's size, its plaintext 20 bytes shorter, built in plain.
	seal  *protect.Sealer
	plain []byte
}

// benchMeetingKey is the meeting key srtp scenarios seal with: any key
// does, the forwarder never holds one.
var benchMeetingKey = protect.MeetingKey{ID: 1, Secret: [protect.SecretSize]byte{1, 2, 3}}

// protect makes the publisher seal every packet (see publisher.seal).
func (p *publisher) protect() error {
	p.seal = protect.NewSealer(1, 0)
	p.plain = make([]byte, fwdBufSize)
	return p.seal.SetKey(benchMeetingKey)
}

func newPublisher(size int, ssrc uint32, full bool) (*publisher, error) {
	if size < rtpHeaderLen || size > fwdBufSize {
		return nil, errors.New("bench: packet size out of range")
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	if err := conn.SetWriteBuffer(sinkSocketBuffer); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	p := &publisher{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), ssrc: ssrc, full: full}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, size)
		makePacket(p.bufs[i], 0, 0, ssrc)
	}
	return p, nil
}

// setDst sets the forwarder's address, where every packet goes.
func (p *publisher) setDst(dst netip.AddrPort) error {
	p.dst = dst
	return p.os.setDst(p, dst)
}

// startRound makes the following packets carry epoch; in full mode the
// sequence numbers restart at 0.
func (p *publisher) startRound(epoch uint32) {
	p.epoch = epoch
	if p.full {
		p.seq = 0
	}
}

// next writes the next packet into buffer i and returns its length.
func (p *publisher) next(i int) int {
	b := p.bufs[i]
	if p.video {
		b = b[:videoLen(p.seq, len(b))]
	}
	if p.seal != nil {
		pt := p.plain[:len(b)-protect.Overhead]
		makePacket(pt, p.seq, p.epoch, p.ssrc)
		p.seq++
		out, err := p.seal.Seal(b[:0], pt)
		if err != nil || len(out) != len(b) {
			panic("bench: seal failed") // a fixed key and valid packets: cannot happen
		}
		return len(b)
	}
	if p.full {
		makePacket(b, p.seq, p.epoch, p.ssrc)
	} else {
		binary.BigEndian.PutUint16(b[2:], p.seq)
		binary.BigEndian.PutUint32(b[4:], p.epoch)
	}
	p.seq++
	return len(b)
}

// burstLimit is the most packets the next burst may hold: pubBurst, or
// for video the rest of the current frame (one frame per burst, as an
// encoder's packetizer sends it).
func (p *publisher) burstLimit() int {
	if !p.video {
		return pubBurst
	}
	idx, n := videoFrame(p.seq)
	return n - idx
}

// send sends the next packet.
func (p *publisher) send() error {
	if p.lat != nil {
		p.lat.stamp(p.seq)
	}
	n := p.next(0)
	_, err := p.conn.WriteToUDPAddrPort(p.bufs[0][:n], p.dst)
	return err
}

func (p *publisher) close() error { return p.conn.Close() }
