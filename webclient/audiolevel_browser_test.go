package webclient

import (
	"encoding/hex"
	"testing"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/wire"
)

// TestAudioLevelInBrowser: the page's audio level (rtp.js) is
// -20·log10(RMS) in whole dB clamped to 0..127, and its Opus packets carry
// it as the RFC 6464 one-byte header extension with ID 1 that pion (and so
// the router's header parser) reads, the payload intact after it.
func TestAudioLevelInBrowser(t *testing.T) {
	leaktest.Check(t)
	z := startWebZone(t, nil)
	b := newBrowser(t, z, "level")
	got, err := eval[map[string]any](b, `import('/static/rtp.js').then((m) => {
		const lv = (f, n = 960) => { let s = 0; for (let i = 0; i < n; i++) { const x = f(i); s += x * x; } return m.audioLevel(s, n); };
		const sine = (a) => (i) => a * Math.sin(2 * Math.PI * 440 * i / 48000);
		const pz = new m.Packetizer(0x01020304, m.PT_OPUS, 48000);
		const [p] = pz.opus(Uint8Array.of(0xf8, 1, 2, 3, 4), 20000, 42);
		const hex = Array.from(p, (x) => x.toString(16).padStart(2, '0')).join('');
		return { silence: lv(() => 0), none: m.audioLevel(0, 0), square: lv((i) => (i & 1 ? 1 : -1)),
			half: lv(sine(0.5)), quiet: lv(sine(0.001)), tiny: lv(sine(1e-8)), packet: hex };
	})`)
	require.NoError(t, err, b.console())
	for name, want := range map[string]float64{
		"silence": 127, "none": 127, // no sound
		"square": 0,   // full scale: 0 dBov
		"half":   9,   // RMS 0.5/√2: 9.03 dB below full scale
		"quiet":  63,  // 60 + 3.01
		"tiny":   127, // 163 dB below: clamped
	} {
		require.Equal(t, want, got[name], name)
	}
	raw, err := hex.DecodeString(got["packet"].(string))
	require.NoError(t, err)
	var p rtp.Packet
	require.NoError(t, p.Unmarshal(raw))
	require.True(t, p.Extension)
	require.Equal(t, uint16(0xBEDE), p.ExtensionProfile)
	require.Equal(t, []byte{42}, p.GetExtension(wire.AudioLevelExtID), "V bit 0, level 42")
	require.Equal(t, []uint8{wire.AudioLevelExtID}, p.GetExtensionIDs())
	require.Equal(t, []byte{0xf8, 1, 2, 3, 4}, p.Payload)
	require.Equal(t, uint8(111), p.PayloadType)
	require.Equal(t, 20+5, len(raw), "a 20-byte header")
}
