package webclient

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/docvec"
	"github.com/openmmr/mmr/internal/leaktest"
)

// TestBindInBrowser: the page's Bind (rtp.js, WebCrypto HMAC) is byte for
// byte the documented test vector, the consent echo too, and a Bind the
// page makes now carries no token byte.
func TestBindInBrowser(t *testing.T) {
	leaktest.Check(t)
	v := docvec.Read(t, "../docs/PROTOCOL.md", "<!-- bind test vectors")
	z := startWebZone(t, nil)
	b := newBrowser(t, z, "bind")
	const hex = `const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
		const tok = new Uint8Array('` + "00112233445566778899aabbccddeeff" + `'.match(/../g).map((h) => parseInt(h, 16)));`
	got, err := eval[[]string](b, `import('/static/rtp.js').then(async (m) => { `+hex+`
		const first = await m.bindAt(1, 0x01020304, tok, 0n, 1767225600000000n, 1767225600000);
		const echo = await m.bindAt(1, 0x01020305, tok, 0xa1b2c3d4e5f60718n, 1767225600120000n, 1767225600120);
		const e = await m.consentEcho(tok, 1, 0x0123456789abcdefn);
		const now = await m.bind(1, 7, tok);
		return [hex(first), hex(echo), e.toString(16).padStart(16, '0'), hex(now)];
	})`)
	require.NoError(t, err, b.console())
	require.Len(t, got, 4)
	require.Equal(t, v["token"], "00112233445566778899aabbccddeeff")
	require.Equal(t, v["bind.first"], got[0])
	require.Equal(t, v["bind.echo"], got[1])
	require.Equal(t, v["consent.echo"], got[2])
	require.Len(t, got[3], 112)
	require.NotContains(t, got[3], v["token"][:16])
	require.NotContains(t, got[3], v["token"][16:])
	require.Equal(t, v["handle"], got[3][16:32])
}
