package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	secretA = []byte("0123456789abcdef-current")
	secretB = []byte("0123456789abcdef-previous")
	now     = time.Unix(1_700_000_000, 0)
)

func claims() Claims {
	return Claims{Meeting: "m1", Identity: "ann@example.org", Role: Participant, Expiry: now.Add(time.Hour)}
}

func TestMintVerify(t *testing.T) {
	tok, err := Mint(secretA, claims())
	require.NoError(t, err)
	v, err := NewVerifier(secretA)
	require.NoError(t, err)
	got, err := v.Verify(tok, now)
	require.NoError(t, err)
	require.Equal(t, claims().Meeting, got.Meeting)
	require.Equal(t, claims().Identity, got.Identity)
	require.Equal(t, Participant, got.Role)
	require.True(t, got.Expiry.Equal(claims().Expiry))
}

func TestVerifyOutcomes(t *testing.T) {
	good, err := Mint(secretA, claims())
	require.NoError(t, err)
	old, err := Mint(secretB, claims())
	require.NoError(t, err)
	expiredClaims := claims()
	expiredClaims.Expiry = now
	expired, err := Mint(secretA, expiredClaims)
	require.NoError(t, err)
	other, err := Mint([]byte("some-other-secret-entirely"), claims())
	require.NoError(t, err)
	forgedExpired, err := Mint([]byte("some-other-secret-entirely"), expiredClaims)
	require.NoError(t, err)

	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flipRole := append([]byte(nil), raw...)
	flipRole[1] = byte(Host) // escalate to host without re-signing
	flipMAC := append([]byte(nil), raw...)
	flipMAC[len(flipMAC)-1] ^= 1

	rotated, err := NewVerifier(secretA, secretB)
	require.NoError(t, err)
	onlyA, err := NewVerifier(secretA)
	require.NoError(t, err)

	tests := []struct {
		name string
		v    *Verifier
		tok  string
		want error
	}{
		{"current secret", onlyA, good, nil},
		{"previous secret accepted while rotating", rotated, old, nil},
		{"previous secret refused after rotation", onlyA, old, ErrSignature},
		{"expired", onlyA, expired, ErrExpired},
		{"unknown secret", rotated, other, ErrSignature},
		{"forged and expired reports forged", onlyA, forgedExpired, ErrSignature},
		{"role escalated", onlyA, base64.RawURLEncoding.EncodeToString(flipRole), ErrSignature},
		{"line break inside (base64 decoders skip it)", onlyA, good[:20] + "\r\n" + good[20:], ErrMalformed},
		{"mac altered", onlyA, base64.RawURLEncoding.EncodeToString(flipMAC), ErrSignature},
		{"empty", onlyA, "", ErrMalformed},
		{"not base64", onlyA, "!!!!", ErrMalformed},
		{"padded base64", onlyA, good + "=", ErrMalformed},
		{"truncated", onlyA, good[:len(good)-10], ErrMalformed},
		{"huge", onlyA, strings.Repeat("A", 10_000), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.tok, now)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

// TestLayout pins the byte layout documented in docs/control-protocol.md by
// building a token by hand, as a foreign implementation would.
func TestLayout(t *testing.T) {
	secret := []byte("correct horse battery staple")
	body, _ := hex.DecodeString("01" + "03" + "0000000065920080" + "02" + "6d31" + "03" + "626f62")
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("openmmr-join-token\x00"))
	mac.Write(body)
	manual := base64.RawURLEncoding.EncodeToString(mac.Sum(body))

	minted, err := Mint(secret, Claims{Meeting: "m1", Identity: "bob", Role: Viewer, Expiry: time.Unix(0x65920080, 0)})
	require.NoError(t, err)
	require.Equal(t, manual, minted)
	// The test vector of docs/control-protocol.md.
	require.Equal(t, "AQMAAAAAZZIAgAJtMQNib2Kblm5J-oPNURuw8lRQe-YZfT9JjKqb4kPx3gYNdPttfg", minted)

	v, err := NewVerifier(secret)
	require.NoError(t, err)
	c, err := v.Verify(manual, time.Unix(0x65920080-1, 0))
	require.NoError(t, err)
	require.Equal(t, Viewer, c.Role)
}

func TestMintRejects(t *testing.T) {
	long := strings.Repeat("x", MaxField+1)
	tests := []struct {
		name   string
		secret []byte
		mod    func(*Claims)
	}{
		{"short secret", []byte("short"), func(*Claims) {}},
		{"no meeting", secretA, func(c *Claims) { c.Meeting = "" }},
		{"long meeting", secretA, func(c *Claims) { c.Meeting = long }},
		{"no identity", secretA, func(c *Claims) { c.Identity = "" }},
		{"long identity", secretA, func(c *Claims) { c.Identity = long }},
		{"bad utf8", secretA, func(c *Claims) { c.Identity = "\xff" }},
		{"bad role", secretA, func(c *Claims) { c.Role = 9 }},
		{"zero expiry", secretA, func(c *Claims) { c.Expiry = time.Time{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := claims()
			tc.mod(&c)
			_, err := Mint(tc.secret, c)
			require.Error(t, err)
		})
	}
	_, err := NewVerifier(secretA, []byte("short"))
	require.ErrorIs(t, err, ErrSecret)
}

func TestRoles(t *testing.T) {
	for _, r := range []Role{Host, Participant, Viewer} {
		got, err := ParseRole(r.String())
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	_, err := ParseRole("admin")
	require.Error(t, err)
	require.True(t, Host.CanEndMeeting())
	require.False(t, Participant.CanEndMeeting())
	require.False(t, Viewer.CanPublish())
	require.True(t, Participant.CanPublish())
}

func FuzzVerify(f *testing.F) {
	for _, r := range []Role{Host, Participant, Viewer} {
		c := claims()
		c.Role = r
		tok, err := Mint(secretA, c)
		require.NoError(f, err)
		f.Add(tok)
	}
	f.Add("")
	f.Add("AQ")
	f.Add(strings.Repeat("_", 400))
	v, err := NewVerifier(secretA, secretB)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok, now)
		if err != nil {
			return
		}
		// Anything accepted must be exactly what Mint produces for its claims.
		again, err := Mint(secretA, c)
		require.NoError(t, err)
		require.Equal(t, tok, again)
	})
}
