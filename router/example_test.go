package router_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/pion/rtp"

	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
)

// A complete embedding: a router on an ephemeral loopback port, one meeting,
// two participants whose clients bind their audio flows with their media
// tokens, and one RTP packet from alice delivered to bob.
func ExampleRouter() {
	r, err := router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1})
	if err != nil {
		panic(err)
	}
	defer r.Close()

	if err := r.CreateMeeting("standup"); err != nil {
		panic(err)
	}
	alice, _ := r.AddParticipant("standup", router.ParticipantOptions{Name: "alice"})
	bob, _ := r.AddParticipant("standup", router.ParticipantOptions{Name: "bob"})
	if err := r.Publish(alice.ID, media.Audio, 0xA11CE); err != nil {
		panic(err)
	}

	// The clients (normally remote) bind one UDP flow each with their tokens.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	server := r.UDPAddrs()[0]
	af, err := udpmedia.Dial(ctx, server, media.Audio, alice.Token)
	if err != nil {
		panic(err)
	}
	defer af.Close()
	bf, err := udpmedia.Dial(ctx, server, media.Audio, bob.Token)
	if err != nil {
		panic(err)
	}
	defer bf.Close()

	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 1, SSRC: 0xA11CE}, Payload: []byte("hello")}).Marshal()
	_ = af.Send(pkt)

	buf := make([]byte, 1500)
	n, err := bf.Recv(buf, time.Now().Add(5*time.Second))
	if err != nil {
		panic(err)
	}
	var got rtp.Packet
	_ = got.Unmarshal(buf[:n])
	fmt.Printf("bob got %q from SSRC %#x\n", got.Payload, got.SSRC)

	st := r.Stats()
	fmt.Println("meetings:", st.Meetings, "participants:", st.Participants)
	// Output:
	// bob got "hello" from SSRC 0xa11ce
	// meetings: 1 participants: 2
}
