package webclient

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// TestSRTPInBrowser: the page's WebCrypto SRTP/SRTCP module (srtp.js)
// reproduces every SRTP and SRTCP test vector of docs/PROTOCOL.md (read
// from the document itself), opens the sealed packet, and refuses a replay
// and a tampered packet.
func TestSRTPInBrowser(t *testing.T) {
	leaktest.Check(t)
	z := startWebZone(t, nil)
	b := newBrowser(t, z, "vectors")
	js, err := json.Marshal(vectors(t))
	require.NoError(t, err)
	bad, err := eval[[]string](b, `import('/static/srtp.js').then(m => m.selfTest(`+string(js)+`))`)
	require.NoError(t, err, b.console())
	require.Empty(t, bad)

	if z.ns != nil {
		// The browser's network has only its loopback: the test's own
		// server on the host's loopback is out of its reach, its own is not.
		require.NoError(t, b.run(30*time.Second, chromedp.Navigate(z.url+"/v1/healthz")))
		err := b.run(30*time.Second, chromedp.Navigate(z.hostURL+"/v1/healthz"))
		require.ErrorContains(t, err, "ERR_CONNECTION_REFUSED")
	}
}
