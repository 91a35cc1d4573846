package webclient

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
)

// TestBrowsersWebTransport: two headless Chromiums and a native Go
// participant in one meeting, the browsers' media over WebTransport
// datagrams (HTTP/3 on the page's port number, UDP): each browser decodes
// the other's video (frames counted, canvas not blank) and audio, and the
// native participant's; the native participant decrypts both browsers'.
// Then nftables in the browsers' namespace drops UDP to that port (a
// network blocking UDP 443), the pages are reloaded, fall back to
// WebSockets after the WebTransport timeout and say so, and the same
// checks pass.
//
// Chromium trusts the test's self-signed certificate by its SPKI hash
// (--ignore-certificate-errors-spki-list) for the page and for QUIC, and
// --webtransport-developer-mode lifts WebTransport's extra rule that the
// certificate be issued by a known root (newBrowser): what works headless
// with the server's own certificate (serverCertificateHashes would need a
// second, ECDSA certificate valid under 14 days).
func TestBrowsersWebTransport(t *testing.T) {
	leaktest.Check(t)
	z := startWebZoneWith(t, nil, true)
	ann := newBrowser(t, z, "ann")
	bob := newBrowser(t, z, "bob")
	ann.join(z.meeting.Passcode, "Ann")
	bob.join(z.meeting.Passcode, "Bob")
	joinedOver := func(b *browser, transport string) pageStats {
		s := b.waitFor("joined over "+transport, pageWait, func(s pageStats) bool { return s.Phase == "joined" && s.Transport != "" })
		require.Equal(t, transport, s.Transport, "%s: %s %v", b.name, s.WTError, z.wt.Stats())
		badge, err := eval[string](b, `document.getElementById('transport').dataset.transport`)
		require.NoError(t, err)
		require.Equal(t, transport, badge, "the page says which transport it uses")
		for k, l := range s.Links {
			require.Equal(t, transport, l.Transport, "%s link", k)
		}
		return s
	}
	sa := joinedOver(ann, "webtransport")
	sb := joinedOver(bob, "webtransport")
	nat := joinNative(t, z, "Native")
	nat.startRelay(t, sa.Participant)
	np := nat.c.Joined().Participant
	threeWay(t, ann, bob, nat, sa.Participant, sb.Participant, np)
	in, out := z.wt.Datagrams()
	t.Logf("WebTransport: %d datagrams in, %d out, refusals %v", in, out, z.wt.Stats().Refused)
	require.Positive(t, in)
	require.Positive(t, out)
	ann.screenshot(t, "meeting-webtransport.png")

	if z.ns == nil {
		t.Skip("no network namespace: UDP cannot be dropped for the browsers only")
	}
	require.NoError(t, z.ns.dropUDP(z.wtPort))
	for _, b := range []*browser{ann, bob} {
		require.NoError(t, b.run(30*time.Second, chromedp.Reload()))
	}
	sa2 := joinedOver(ann, "websocket")
	sb2 := joinedOver(bob, "websocket")
	require.Equal(t, sa.Participant, sa2.Participant, "resumed")
	require.Equal(t, sb.Participant, sb2.Participant, "resumed")
	require.NotEmpty(t, sa2.WTError, "WebTransport was tried first")
	t.Logf("fallback: %s", sa2.WTError)
	threeWay(t, ann, bob, nat, sa.Participant, sb.Participant, np)
	require.NoError(t, nat.c.Leave(ctxT(t)))
}

// threeWay waits until each browser decodes the other's and the native
// participant's video (30 frames, not blank) and audio (50 frames), and
// the native participant has decrypted 20 more packets of each kind of
// each browser than before.
func threeWay(t *testing.T, ann, bob *browser, nat *native, pa, pb, pn uint64) {
	t.Helper()
	base := map[uint64]map[media.Kind]int{}
	for _, p := range []uint64{pa, pb} {
		base[p] = map[media.Kind]int{media.Audio: nat.decrypted(p, media.Audio), media.Video: nat.decrypted(p, media.Video)}
	}
	for _, c := range []struct {
		b     *browser
		froms []uint64
	}{{ann, []uint64{pb, pn}}, {bob, []uint64{pa, pn}}} {
		for _, from := range c.froms {
			c.b.waitFor("video and audio of "+key(from), pageWait, func(s pageStats) bool {
				tl, ok := s.Tiles[key(from)]
				return ok && tl.Video >= 30 && tl.Audio >= 50
			})
			px, err := eval[map[string]float64](c.b, `openmmr.pixels(`+key(from)+`)`)
			require.NoError(t, err)
			require.Greater(t, px["std"], 5.0, "%s: the video of %d is not blank: %v", c.b.name, from, px)
		}
	}
	require.Eventually(t, func() bool {
		for p, kinds := range base {
			for k, n := range kinds {
				if nat.decrypted(p, k) < n+20 {
					return false
				}
			}
		}
		return true
	}, pageWait, 100*time.Millisecond, "the native participant decrypts both browsers' audio and video")
}
