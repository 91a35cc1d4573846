package router

import (
	"testing"
	"time"

	"github.com/openmmr/mmr/media"
)

// FuzzPacket sends arbitrary datagrams from a bound flow through a real
// router and checks that every one is either forwarded or counted as
// dropped, and that the router keeps forwarding afterwards: no panic, no
// wedged reader.
func FuzzPacket(f *testing.F) {
	f.Add([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 1, 1})
	f.Add([]byte{0x81, 200, 0, 6, 0, 0, 1, 2})
	f.Add([]byte{6, 1, 2, 0, 0, 0, 0, 1})
	f.Add([]byte{4, 1, 1, 0})
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0xbe, 0xde, 0, 9})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) == 0 {
			return
		}
		r := newTestRouter(t, func(c *Config) { c.Shards = 1 })
		if err := r.CreateMeeting("m"); err != nil {
			t.Fatal(err)
		}
		a, b := join(t, r, "m", 1), join(t, r, "m", 2)
		v := media.Video.Index()
		_ = a.flows[v].Send(pkt)
		probe := a.rtpPacket(t, media.Video, 100)
		_ = a.flows[v].Send(probe)
		buf := make([]byte, 2048)
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := b.flows[v].Recv(buf, deadline)
			if err != nil {
				t.Fatalf("router stopped forwarding after %x: %v", pkt, err)
			}
			if string(buf[:n]) == string(probe) {
				break
			}
		}
		st := r.Stats()
		if st.PacketsIn < 8 { // 6 binds, the input, the probe
			t.Fatalf("packets in = %d", st.PacketsIn)
		}
	})
}
