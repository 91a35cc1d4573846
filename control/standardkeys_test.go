package control

import (
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/router"
)

// fakeTimers replaces the re-key delay's timer (Config.rekeyTimer): the
// test sees each wait being armed and decides when it fires.
type fakeTimers struct {
	mu    sync.Mutex
	armed []chan time.Time
	ch    chan struct{} // signalled on every arm
}

func newFakeTimers() *fakeTimers { return &fakeTimers{ch: make(chan struct{}, 16)} }

func (f *fakeTimers) timer(time.Duration) (<-chan time.Time, func() bool) {
	c := make(chan time.Time, 1)
	f.mu.Lock()
	f.armed = append(f.armed, c)
	f.mu.Unlock()
	f.ch <- struct{}{}
	return c, func() bool { return true }
}

func (f *fakeTimers) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.armed)
}

// waitArmed waits until n waits were armed in all.
func (f *fakeTimers) waitArmed(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitLimit)
	for f.count() < n {
		select {
		case <-f.ch:
		case <-deadline:
			t.Fatalf("%d re-key waits armed, want %d", f.count(), n)
		}
	}
}

// fire fires the i-th (0-based) armed wait.
func (f *fakeTimers) fire(i int) {
	f.mu.Lock()
	c := f.armed[i]
	f.mu.Unlock()
	c <- time.Now()
}

func (f *fakeRouter) rtcpSecret(id uint64) *[32]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.parts[router.ParticipantID(id)]; p != nil {
		return p.rtcp
	}
	return nil
}

// mediaKeyEvent matches a media-key event with the given key ID.
func mediaKeyEvent(id uint32) func(proto.Message) bool {
	return func(m proto.Message) bool {
		k, ok := m.(*proto.MediaKey)
		return ok && k.KeyID == id
	}
}

func mediaKeys(ev *events) []*proto.MediaKey {
	var out []*proto.MediaKey
	for _, m := range ev.all() {
		if k, ok := m.(*proto.MediaKey); ok {
			out = append(out, k)
		}
	}
	return out
}

// TestStandardKeys follows one Standard meeting's keys over real TLS:
// joined carries the mode, the participant's own RTCP secret (the one the
// router got), its identity and the current key; joins and leaves re-key
// once per coalescing wait, to everyone then present; a resume gets a new
// RTCP secret and the current key, and re-keys nothing.
func TestStandardKeys(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	timers := newFakeTimers()
	e := startServer(t, rt, func(c *Config) {
		c.Grace = time.Minute
		c.rekeyTimer = timers.timer
	})
	ann := e.join(t, "m", "ann@example.org", token.Host)
	j := ann.j
	require.Equal(t, proto.ProtectionStandard, j.MediaProtection)
	require.Equal(t, "ann@example.org", j.Identity)
	require.NotNil(t, j.MediaKey)
	require.Equal(t, uint32(1), j.MediaKey.KeyID, "the meeting's first key")
	secret := rt.rtcpSecret(ann.id())
	require.NotNil(t, secret, "the router got an RTCP secret")
	require.Equal(t, hex.EncodeToString(secret[:]), j.RTCPSecret, "the one joined gave the client")
	require.Zero(t, timers.count(), "the first join creates the meeting's key: no re-key")

	// Two joins before the wait fires: one re-key.
	bob := e.join(t, "m", "bob", token.Participant)
	require.Equal(t, *j.MediaKey, *bob.j.MediaKey, "a joiner gets the current key")
	require.NotEqual(t, j.RTCPSecret, bob.j.RTCPSecret, "RTCP secrets are per participant")
	timers.waitArmed(t, 1)
	carl := e.join(t, "m", "carl", token.Viewer)
	require.Equal(t, *j.MediaKey, *carl.j.MediaKey)
	require.Equal(t, 1, timers.count(), "a change during the wait joins it")
	timers.fire(0)
	var k2 *proto.MediaKey
	for _, m := range []*member{ann, bob, carl} { // viewers too: they decrypt the media
		got := m.ev.waitFor(t, "key 2", mediaKeyEvent(2)).(*proto.MediaKey)
		if k2 == nil {
			k2 = got
		}
		require.Equal(t, *k2, *got, "one key for everyone")
	}
	require.NotEqual(t, j.MediaKey.Key, k2.Key)

	// A leave re-keys; the leaver gets nothing more.
	require.NoError(t, carl.c.Leave(ctxT(t)))
	timers.waitArmed(t, 2)
	timers.fire(1)
	ann.ev.waitFor(t, "key 3", mediaKeyEvent(3))
	k3 := bob.ev.waitFor(t, "key 3", mediaKeyEvent(3)).(*proto.MediaKey)
	require.Len(t, mediaKeys(carl.ev), 1, "the leaver got key 2 only")
	require.Len(t, mediaKeys(ann.ev), 2, "keys 2 and 3, one event each")

	// A resume: a new RTCP secret, given to the router as well; the
	// current key; no re-key.
	res, err := bob.c.Resume(ctxT(t))
	require.NoError(t, err)
	require.NotEqual(t, bob.j.RTCPSecret, res.RTCPSecret, "fresh RTCP secret in resumed")
	secret = rt.rtcpSecret(bob.id())
	require.Equal(t, hex.EncodeToString(secret[:]), res.RTCPSecret, "the router switched to it")
	require.Equal(t, *k3, *res.MediaKey)
	require.Equal(t, proto.ProtectionStandard, res.MediaProtection)
	require.Equal(t, "bob", res.Identity)
	_, _, err = ann.c.Ping(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, 2, timers.count(), "a resume re-keys nothing")
	require.Equal(t, uint64(2), e.srv.Stats().MediaKeys)

	// A re-key still waiting when the last participant leaves ends with
	// the meeting (noLeaks checks its goroutine is gone).
	require.NoError(t, bob.c.Leave(ctxT(t)))
	timers.waitArmed(t, 3)
	require.NoError(t, ann.c.Leave(ctxT(t)))
	require.Eventually(t, func() bool { return e.srv.Stats().Meetings == 0 }, waitLimit, 10*time.Millisecond)
}

// TestStandardRekeyTimer uses the real 250 ms wait: a join is followed by
// a media-key event to both participants, and the server closing while a
// wait is pending ends it.
func TestStandardRekeyTimer(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	a := e.join(t, "m", "a", token.Participant)
	b := e.join(t, "m", "b", token.Participant)
	ka := a.ev.waitFor(t, "key 2", mediaKeyEvent(2)).(*proto.MediaKey)
	kb := b.ev.waitFor(t, "key 2", mediaKeyEvent(2)).(*proto.MediaKey)
	require.Equal(t, *ka, *kb)
	require.NotEqual(t, a.j.MediaKey.Key, ka.Key)

	_ = e.join(t, "m", "c", token.Participant) // a wait is pending now (or just fired)
	require.NoError(t, e.srv.Close())
}
