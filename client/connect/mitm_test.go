package connect_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
	"github.com/openmmr/mmr/tlsutil"
)

// mitm is a man in the middle of one client's control channel, as a
// compromised or impersonated MMR would be: it ends the client's TLS with
// its own certificate (the client pins it), talks to the real MMR itself,
// and performs the E2EE attack the security code exists to reveal:
//
//   - the victim's join announces the victim's public key; the MITM puts
//     its own (toServer) in its place, so the leader wraps the victim's
//     keys to the MITM;
//   - every other member's public key that reaches the victim is replaced
//     by the MITM's other key (toVictim);
//   - each wrap relayed to the victim is opened with toServer (the MITM
//     now holds the meeting key) and sealed again from toVictim to the
//     victim's real key, for the roster as the victim sees it, so that
//     the victim accepts it.
type mitm struct {
	t                  *testing.T
	ln                 net.Listener
	fingerprint        string
	upstream           string
	upTLS              *tls.Config
	toServer, toVictim *ecdh.PrivateKey

	mu      sync.Mutex
	self    keys.Member            // the victim as it sees itself
	real    map[uint64][]byte      // members' real public keys
	members map[uint64]keys.Member // the others as the victim sees them
	stolen  []protect.MeetingKey
	wg      sync.WaitGroup
	conns   []net.Conn
}

func startMITM(t *testing.T, z *connecttest.Zone) *mitm {
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	up, err := tlsutil.PinnedClientConfig(z.Fingerprint)
	require.NoError(t, err)
	up.NextProtos = []string{proto.ALPN}
	srv := tlsutil.ServerConfig(cert)
	srv.NextProtos = []string{proto.ALPN}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	require.NoError(t, err)
	m := &mitm{t: t, ln: ln, fingerprint: tlsutil.Fingerprint(cert), upstream: z.TLSAddr.String(), upTLS: up,
		real: map[uint64][]byte{}, members: map[uint64]keys.Member{}}
	for _, k := range []**ecdh.PrivateKey{&m.toServer, &m.toVictim} {
		*k, err = ecdh.X25519().GenerateKey(rand.Reader)
		require.NoError(t, err)
	}
	m.wg.Add(1)
	go m.accept()
	t.Cleanup(m.close)
	return m
}

func (m *mitm) close() {
	m.ln.Close()
	m.mu.Lock()
	for _, c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *mitm) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		u, err := tls.Dial("tcp", m.upstream, m.upTLS)
		if err != nil {
			c.Close()
			continue
		}
		m.mu.Lock()
		m.conns = append(m.conns, c, u)
		m.mu.Unlock()
		m.wg.Add(2)
		go m.pipe(c, u, m.fromVictim)
		go m.pipe(u, c, m.fromServer)
	}
}

// pipe forwards frames from src to dst through edit; it closes both ends
// when either fails.
func (m *mitm) pipe(src, dst net.Conn, edit func(proto.Message) proto.Message) {
	defer m.wg.Done()
	defer src.Close()
	defer dst.Close()
	fr := proto.NewFrameReader(src, 0)
	for {
		payload, err := fr.Next()
		if err != nil {
			return
		}
		frame, _ := proto.AppendFrame(nil, payload)
		if id, msg, err := proto.Decode(payload); err == nil {
			if out := edit(msg); out != nil {
				if frame, err = proto.Encode(id, out); err != nil {
					m.t.Errorf("mitm: %v", err)
					return
				}
			}
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

// fromVictim swaps the public key of the victim's join.
func (m *mitm) fromVictim(msg proto.Message) proto.Message {
	j, ok := msg.(*proto.Join)
	if !ok {
		return nil
	}
	pub, err := keys.ParsePublicKeyHex(j.E2EEPublicKey)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	m.self.PublicKey = pub
	m.mu.Unlock()
	j.E2EEPublicKey = keys.PublicKeyHex(m.toServer.PublicKey().Bytes())
	return j
}

// fromServer swaps the others' public keys and re-wraps the keys.
func (m *mitm) fromServer(msg proto.Message) proto.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch msg := msg.(type) {
	case *proto.Joined:
		m.self.Participant, m.self.Identity, m.self.Host = msg.Participant, msg.Identity, msg.Role == proto.RoleHost
		for i := range msg.Roster {
			m.swap(&msg.Roster[i])
		}
		return msg
	case *proto.ParticipantJoined:
		m.swap(&msg.Participant)
		return msg
	case *proto.ParticipantLeft:
		delete(m.members, msg.Participant)
	case *proto.E2EEKey:
		return m.rewrap(msg)
	}
	return nil
}

func (m *mitm) swap(e *proto.RosterEntry) {
	pub, err := keys.ParsePublicKeyHex(e.E2EEPublicKey)
	if err != nil {
		return
	}
	m.real[e.ID] = pub
	fake := m.toVictim.PublicKey().Bytes()
	m.members[e.ID] = keys.Member{Participant: e.ID, Identity: e.Identity, Host: e.Role == proto.RoleHost, PublicKey: fake}
	e.E2EEPublicKey = keys.PublicKeyHex(fake)
}

func (m *mitm) rewrap(ev *proto.E2EEKey) proto.Message {
	w, err := keys.E2EEKey{From: ev.From, Wrap: ev.Wrap}.KeyWrap()
	if err != nil {
		return nil
	}
	fromPub, err := keys.ParsePublicKey(m.real[w.From])
	if err != nil {
		return nil
	}
	k, err := keys.OpenWrap(w, m.toServer, fromPub) // the leader wrapped it to the MITM
	if err != nil {
		m.t.Errorf("mitm: open wrap: %v", err)
		return nil
	}
	m.stolen = append(m.stolen, k)
	ms := []keys.Member{m.self}
	for _, mm := range m.members {
		ms = append(ms, mm)
	}
	r, err := keys.NewRoster(ms)
	if err != nil {
		m.t.Errorf("mitm: roster: %v", err)
		return nil
	}
	victimPub, err := keys.ParsePublicKey(m.self.PublicKey)
	if err != nil {
		return nil
	}
	nw, err := keys.SealWrap(rand.Reader, m.toVictim, w.From, w.To, victimPub, r.Hash(), k)
	if err != nil {
		m.t.Errorf("mitm: seal wrap: %v", err)
		return nil
	}
	out := keys.NewE2EEKey(nw)
	return &proto.E2EEKey{From: ev.From, Wrap: out.Wrap}
}

func (m *mitm) keys() []protect.MeetingKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]protect.MeetingKey(nil), m.stolen...)
}

// TestE2EESecurityCodeRevealsAMITM: a man in the middle of bob's control
// channel substitutes public keys both ways and re-wraps the leader's
// keys, so bob accepts them and the MITM reads the meeting's media; the
// security codes are the only sign, and they show it: ann's and cid's
// agree, bob's differs for the same key ID.
func TestE2EESecurityCodeRevealsAMITM(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	z := e.zones[0]
	const meeting = "e2ee-mitm"
	mm := startMITM(t, z)
	ann := joinRaw(t, z, meeting, "ann@example.org", token.Host, true, 0xa2)
	bob := joinRawVia(t, z, mm.ln.Addr().String(), mm.fingerprint, meeting, "bob@example.org", token.Participant, true, 0xb2)
	cid := joinRaw(t, z, meeting, "cid@example.org", token.Participant, true, 0xc2)

	var ia, ib, ic secure.Info
	require.Eventually(t, func() bool {
		ia, ib, ic = ann.st.Info(), bob.st.Info(), cid.st.Info()
		return ia.SendKey != 0 && ia.Members == 3 && ia == ic && ib.SendKey == ia.SendKey
	}, 30*time.Second, 10*time.Millisecond, "the MITM'd key never reached bob")
	require.NotEqual(t, ia.Code, ib.Code, "the security code did not reveal the substituted keys")
	require.Equal(t, ia.Code, ic.Code)

	// The attack is real: bob opens ann's media, and so does the MITM.
	p := ann.deliver(bob, cid)
	require.True(t, secure.Opens(mm.keys(), protect.Sender{Participant: ann.id, SSRC: ann.ssrc}, p), "the MITM cannot read the media: the test attacks nothing")
	for _, m := range []*rawMember{ann, bob, cid} {
		m.leave()
	}
	mm.close()
}
