package bench

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/wire"
)

func TestParseStreams(t *testing.T) {
	tok := wire.Token{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	fp := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		in      string
		want    streamInfo
		wantErr string
	}{
		{"tcp", "streams 127.0.0.1:8801 - " + tok.String(),
			streamInfo{Addr: netip.MustParseAddrPort("127.0.0.1:8801"), Tokens: []wire.Token{tok}}, ""},
		{"tls, two tokens, upper-case pin", "streams [::1]:443 " + strings.ToUpper(fp) + " " + tok.String() + " " + tok.String(),
			streamInfo{Addr: netip.MustParseAddrPort("[::1]:443"), Fingerprint: fp, Tokens: []wire.Token{tok, tok}}, ""},
		{"no tokens", "streams 127.0.0.1:8801 -", streamInfo{}, "fields"},
		{"wrong verb", "usage 127.0.0.1:8801 - " + tok.String(), streamInfo{}, "fields"},
		{"port 0", "streams 127.0.0.1:0 - " + tok.String(), streamInfo{}, "address"},
		{"short pin", "streams 127.0.0.1:1 abcd " + tok.String(), streamInfo{}, "fingerprint"},
		{"bad token", "streams 127.0.0.1:1 - " + tok.String()[1:], streamInfo{}, "bad token 0"},
		{"too many tokens", "streams 127.0.0.1:1 -" + strings.Repeat(" "+tok.String(), maxStreams+1), streamInfo{}, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStreams(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), tok.String()[1:], "a token in an error message")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			again, err := parseStreams(got.line())
			require.NoError(t, err)
			require.Equal(t, got, again, "line is parseStreams' inverse")
		})
	}
}

// FuzzParseStreams: the parent's parser of the child's streams reply never
// panics, and what it accepts formats back (line) to a reply it parses to
// the same value.
func FuzzParseStreams(f *testing.F) {
	f.Add("streams 127.0.0.1:8801 - 0102030405060708090a0b0c0d0e0f10")
	f.Add("streams [::1]:443 " + strings.Repeat("ab", 32) + " 0102030405060708090a0b0c0d0e0f10 0102030405060708090A0B0C0D0E0F10")
	f.Add("streams 127.0.0.1:0 - x")
	f.Add("err boom")
	f.Fuzz(func(t *testing.T, s string) {
		si, err := parseStreams(s)
		if err != nil {
			return
		}
		again, err := parseStreams(si.line())
		require.NoError(t, err)
		require.Equal(t, si, again)
	})
}
