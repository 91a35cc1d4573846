package router

import (
	"bytes"
	"testing"
	"time"

	"github.com/openmmr/mmr/media"
)

// FuzzPacket sends arbitrary datagrams from a bound flow through a live
// router and checks that it keeps forwarding after each one: no panic, no
// wedged reader. One router serves the whole fuzz run (building one per
// input made the harness, not the router, the thing under test).
func FuzzPacket(f *testing.F) {
	f.Add([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 1, 1})
	f.Add([]byte{0x81, 200, 0, 6, 0, 0, 1, 2})
	f.Add([]byte{6, 1, 2, 0, 0, 0, 0, 1})
	f.Add([]byte{4, 1, 1, 0})
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0xbe, 0xde, 0, 9})
	r := newTestRouter(f, func(c *Config) { c.Shards = 1 })
	if err := r.CreateMeeting("m"); err != nil {
		f.Fatal(err)
	}
	a, b := join(f, r, "m", 1), join(f, r, "m", 2)
	v := media.Video.Index()
	// An authentic Bind of a's video flow (a refresh from its own
	// address) for the fuzzer to mutate.
	now := time.Now()
	f.Add(signBind(f, a.info.Token, media.Video, 1, 0, uint64(now.UnixMicro()), now))
	buf := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) == 0 {
			return
		}
		_ = a.flows[v].Send(pkt)
		probe := a.rtpPacket(t, media.Video, 100)
		if err := a.flows[v].Send(probe); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for { // the input itself may have been forwarded first
			n, err := b.flows[v].Recv(buf, deadline)
			if err != nil {
				t.Fatalf("router stopped forwarding after %x: %v", pkt, err)
			}
			if bytes.Equal(buf[:n], probe) {
				return
			}
		}
	})
}
