package control

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
)

// recConn is a server-side TLS connection that records every byte the
// client sends, after decryption: what the control server reads. It is a
// terminatedConn, so HandleConn uses it as is.
type recConn struct {
	*tls.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.buf.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recConn) recorded() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// recordingListener accepts TCP on loopback, wraps each connection in the
// server's TLS and a recConn, and hands it to srv.HandleConn.
type recordingListener struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []*recConn
	done  chan struct{}
}

func listenRecording(t *testing.T, e *env) *recordingListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tc := e.cfg.TLS.Clone()
	tc.NextProtos = []string{proto.ALPN}
	rl := &recordingListener{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(rl.done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			rc := &recConn{Conn: tls.Server(nc, tc)}
			rl.mu.Lock()
			rl.conns = append(rl.conns, rc)
			rl.mu.Unlock()
			e.srv.HandleConn(rc)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-rl.done })
	return rl
}

func (rl *recordingListener) recordings() [][]byte {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	var out [][]byte
	for _, c := range rl.conns {
		out = append(out, c.recorded())
	}
	return out
}

// groupClient is a minimal E2EE client over a raw connection: it keeps the
// roster from joined and events, drives a keys.Group, sends the wraps the
// leader makes and installs those it receives. It records every key it
// held.
type groupClient struct {
	t        *testing.T
	r        *rawConn
	self     uint64
	identity string
	host     bool
	g        *keys.Group
	members  map[uint64]keys.Member
	msgs     chan proto.Message
	nextID   uint32
	seen     []protect.MeetingKey // every key installed
	left     bool
}

func (e *env) rawAt(t *testing.T, addr string) *rawConn {
	t.Helper()
	d := tls.Dialer{Config: e.clientTLS(t)}
	nc, err := d.DialContext(ctxT(t), "tcp", addr)
	require.NoError(t, err)
	tc := nc.(*tls.Conn)
	t.Cleanup(func() { tc.Close() })
	require.NoError(t, tc.SetDeadline(time.Now().Add(3*waitLimit))) // a hang guard over the whole test
	return &rawConn{t: t, tc: tc, fr: proto.NewFrameReader(tc, proto.ClientMaxFrame)}
}

func newGroupClient(t *testing.T, e *env, addr, meeting, identity string, role token.Role) *groupClient {
	t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	r := e.rawAt(t, addr)
	r.hello()
	r.send(2, &proto.Join{Meeting: meeting, Token: mintE2EE(t, meeting, identity, role), E2EEPublicKey: keys.PublicKeyHex(priv.PublicKey().Bytes())})
	_, m := r.next()
	j, ok := m.(*proto.Joined)
	require.True(t, ok, "join answered by %#v", m)
	require.Equal(t, identity, j.Identity)
	g, err := keys.NewGroup(keys.GroupConfig{Self: j.Participant, Private: priv})
	require.NoError(t, err)
	c := &groupClient{t: t, r: r, self: j.Participant, identity: identity, host: role == token.Host, g: g,
		members: map[uint64]keys.Member{}, msgs: make(chan proto.Message, 256), nextID: 100}
	c.members[c.self] = keys.Member{Participant: c.self, Identity: identity, Host: c.host, PublicKey: priv.PublicKey().Bytes()}
	for _, e := range j.Roster {
		c.add(e)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the reader: decoded messages to msgs until the connection ends
		defer close(done)
		for {
			p, err := r.fr.Next()
			if err != nil {
				return
			}
			_, m, err := proto.Decode(p)
			if err != nil {
				return
			}
			select {
			case c.msgs <- m:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); r.tc.Close(); <-done })
	return c
}

func (c *groupClient) add(e proto.RosterEntry) {
	pub, err := hex.DecodeString(e.E2EEPublicKey)
	require.NoError(c.t, err)
	require.Len(c.t, pub, keys.PublicKeySize, "every E2EE roster entry has a public key")
	c.members[e.ID] = keys.Member{Participant: e.ID, Identity: e.Identity, Host: e.Role == proto.RoleHost, PublicKey: pub}
}

func (c *groupClient) apply(acts []keys.Action) {
	for _, a := range acts {
		if a.Kind == keys.AddKey {
			c.seen = append(c.seen, a.Key)
		}
	}
}

// step handles what arrived and does what is due at now.
func (c *groupClient) step(now time.Time) {
	if c.left {
		return
	}
	for more := true; more; {
		select {
		case m := <-c.msgs:
			switch m := m.(type) {
			case *proto.ParticipantJoined:
				c.add(m.Participant)
			case *proto.ParticipantLeft:
				delete(c.members, m.Participant)
			case *proto.E2EEKey:
				w, err := keys.E2EEKey{From: m.From, Wrap: m.Wrap}.KeyWrap()
				require.NoError(c.t, err)
				require.Equal(c.t, c.self, w.To)
				// A wrap for a roster this client has not caught up with
				// yet is superseded by the leader's next one.
				if err := c.g.SetRoster(c.memberList(), now); err == nil {
					if acts, err := c.g.Receive(w, now); err == nil {
						c.apply(acts)
					}
				}
			case *proto.Error:
				c.t.Errorf("participant %d got error %s: %s", c.self, m.Code, m.Message)
			}
		default:
			more = false
		}
	}
	require.NoError(c.t, c.g.SetRoster(c.memberList(), now))
	out, acts, err := c.g.Advance(now)
	require.NoError(c.t, err)
	c.apply(acts)
	for _, o := range out {
		c.nextID++
		c.r.send(c.nextID, &proto.E2EEKey{To: o.To, Wrap: keys.NewE2EEKey(o.Wrap).Wrap})
	}
}

func (c *groupClient) memberList() []keys.Member {
	out := make([]keys.Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	return out
}

// newest returns the newest key of the client's ring.
func (c *groupClient) newest() (protect.MeetingKey, bool) { return c.g.Ring().Newest() }

// converge steps every client until all hold the same newest key, newer
// than after (a leader re-keys on every roster change), made by leader for
// their common roster, and returns it.
func converge(t *testing.T, after protect.KeyID, leader *groupClient, cs ...*groupClient) protect.MeetingKey {
	t.Helper()
	var k protect.MeetingKey
	require.Eventually(t, func() bool {
		now := time.Now()
		for _, c := range cs {
			c.step(now)
		}
		lk, ok := leader.newest()
		if !ok || !leader.g.IsLeader() || lk.ID <= after {
			return false
		}
		for _, c := range cs {
			ck, ok := c.newest()
			if !ok || ck != lk || len(c.members) != len(cs) || c.g.Roster().Hash() != leader.g.Roster().Hash() {
				return false
			}
		}
		k = lk
		return true
	}, 20*time.Second, 20*time.Millisecond, "the E2EE clients agree on a key")
	return k
}

// TestE2EEGroupKeysNeverReachServer runs three E2EE clients (keys.Group)
// through a meeting, a leave included, recording every byte each sends to
// the control server. They agree on keys made by the host, the leaver
// does not get the key made after it left, and no client message carries
// a key: clients send hello, join (with a public key), pongs and e2ee-key
// wraps, and no key's secret appears in what they sent.
func TestE2EEGroupKeysNeverReachServer(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	rl := listenRecording(t, e)
	addr := rl.ln.Addr().String()
	ann := newGroupClient(t, e, addr, "sec", "ann@example.org", token.Host)
	bob := newGroupClient(t, e, addr, "sec", "bob@example.org", token.Participant)
	carl := newGroupClient(t, e, addr, "sec", "carl@example.org", token.Participant)
	k1 := converge(t, 0, ann, ann, bob, carl)

	carl.r.send(50, &proto.Leave{})
	carl.left = true
	k2 := converge(t, k1.ID, ann, ann, bob)
	require.NotEqual(t, k1.Secret, k2.Secret)
	for _, k := range carl.seen {
		require.NotEqual(t, k2.Secret, k.Secret, "the leaver never got the key made after its leave")
	}
	st := e.srv.Stats()
	require.Zero(t, st.WrapsRefused)
	require.GreaterOrEqual(t, st.WrapsRelayed, uint64(2+1), "two wraps for the first key, one after the leave")

	var secrets [][]byte
	for _, c := range []*groupClient{ann, bob, carl} {
		for _, k := range c.seen {
			secrets = append(secrets, bytes.Clone(k.Secret[:]))
		}
	}
	require.NotEmpty(t, secrets)
	// Wait until the server read carl's leave (its connection is gone)
	// so that every recording is complete.
	require.Eventually(t, func() bool { return e.srv.Stats().Participants == 2 }, waitLimit, 10*time.Millisecond)
	recs := rl.recordings()
	require.Len(t, recs, 3)
	wraps := 0
	for i, rec := range recs {
		for _, s := range secrets {
			require.False(t, bytes.Contains(rec, s), "connection %d sent a key's secret", i)
			require.False(t, bytes.Contains(bytes.ToLower(rec), []byte(hex.EncodeToString(s))), "connection %d sent a key's secret in hex", i)
		}
		fr := proto.NewFrameReader(bytes.NewReader(rec), proto.ClientMaxFrame)
		var self uint64
		for {
			payload, err := fr.Next()
			if err != nil {
				require.ErrorIs(t, err, io.EOF, "recording %d ends with a whole frame", i)
				break
			}
			_, m, err := proto.Decode(payload)
			require.NoError(t, err)
			switch m := m.(type) {
			case *proto.Hello, *proto.Pong, *proto.Ping, *proto.Leave:
			case *proto.Join:
				pub, err := keys.ParsePublicKeyHex(m.E2EEPublicKey)
				require.NoError(t, err, "every join announces a public key")
				for _, c := range []*groupClient{ann, bob, carl} {
					if bytes.Equal(c.members[c.self].PublicKey, pub) {
						self = c.self
					}
				}
			case *proto.E2EEKey:
				w, err := keys.E2EEKey{To: m.To, Wrap: m.Wrap}.KeyWrap()
				require.NoError(t, err, "an e2ee-key request carries a key wrap")
				require.Equal(t, self, w.From)
				wraps++
			default:
				t.Fatalf("recording %d: a client sent %s", i, m.Type())
			}
		}
	}
	require.Equal(t, int(st.WrapsRelayed), wraps, "every relayed wrap was recorded")
}
