package webclient

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/web"
)

// TestBrowserRefusesE2EE: the web client does not join an end-to-end
// encrypted meeting (created with e2ee at the web tier, so its join
// tokens are version 3 with the E2EE flag). Told so by the lookup, the
// page says why and opens no control channel; when the lookup answer is
// stripped of its e2ee field (the page's fetch is wrapped), the MMR
// refuses the join without a public key and the page says the same. In
// neither case is anyone admitted to the meeting.
func TestBrowserRefusesE2EE(t *testing.T) {
	leaktest.Check(t)
	z := startWebZone(t, nil)
	yes := true
	m, err := z.web.CreateMeeting(ctxT(t), web.MeetingRequest{E2EE: &yes})
	require.NoError(t, err)
	b := newBrowser(t, z, "erin")
	require.NoError(t, b.run(60*time.Second, chromedp.Navigate(z.url+"/j/"+m.ID)))
	const msg = "This meeting is end-to-end encrypted: join it with the openmmr app."
	refused := func(code string) {
		t.Helper()
		s := b.waitFor("refused", pageWait, func(s pageStats) bool { return s.Phase == "error" })
		require.Equal(t, code, s.ErrorCode, s.Error)
		require.Equal(t, msg, s.Error)
		shown, err := eval[string](b, `document.getElementById('join-error').textContent`)
		require.NoError(t, err)
		require.Equal(t, msg, shown)
		hidden, err := eval[bool](b, `document.getElementById('meeting-view').hidden`)
		require.NoError(t, err)
		require.True(t, hidden, "the page stays on the join form")
		st := z.ctl.Stats()
		require.Zero(t, st.Joins)
		require.Zero(t, st.Participants)
	}

	b.join(m.Passcode, "Erin")
	refused("e2ee") // the page's own refusal
	require.Zero(t, z.wc.Stats().Accepted, "no WebSocket was opened")

	_, err = eval[bool](b, `(() => {
		const f = window.fetch;
		window.fetch = async (...a) => {
			const r = await f(...a);
			if (!String(a[0]).includes('/v1/lookup')) return r;
			const body = await r.json();
			if (body.meeting) delete body.meeting.e2ee;
			return new Response(JSON.stringify(body), { status: r.status, headers: r.headers });
		};
		return true;
	})()`)
	require.NoError(t, err)
	require.NoError(t, b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#join-button`))))
	b.waitFor("refused by the MMR", pageWait, func(s pageStats) bool { return s.Phase == "error" && z.wc.Stats().Accepted > 0 })
	refused("public-key-required") // the MMR's
	require.Positive(t, z.wc.Stats().Accepted, "this time the page asked the MMR")
	require.Eventually(t, func() bool { return z.wc.Stats().Open == 0 }, waitLimit, 50*time.Millisecond, "and closed its control channel")
}
