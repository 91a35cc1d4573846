package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
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

// TestLayoutV2 pins the version 2 layout and its test vector
// (docs/PROTOCOL.md §8).
func TestLayoutV2(t *testing.T) {
	leaktest.Check(t)
	secret := []byte("correct horse battery staple")
	body, _ := hex.DecodeString("02" + "02" + "0000000065920080" + "000102030405060708090a0b0c0d0e0f" +
		"0a" + hex.EncodeToString([]byte("1234567890")) + "06" + hex.EncodeToString([]byte("p-0001")) + "03" + hex.EncodeToString([]byte("Ann")))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("openmmr-join-token\x00"))
	mac.Write(body)
	require.Equal(t, "b6cd484d726379d1e9934aaede2535d205bfbf846ca53ce18ef6656a1082a0a2", hex.EncodeToString(mac.Sum(nil)))
	manual := base64.RawURLEncoding.EncodeToString(mac.Sum(body))

	id := [IDSize]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	minted, err := Mint(secret, Claims{Meeting: "1234567890", Identity: "p-0001", Name: "Ann", ID: id, Role: Participant, Expiry: time.Unix(0x65920080, 0)})
	require.NoError(t, err)
	require.Equal(t, manual, minted)
	require.Equal(t, "AgIAAAAAZZIAgAABAgMEBQYHCAkKCwwNDg8KMTIzNDU2Nzg5MAZwLTAwMDEDQW5uts1ITXJjedHpk0qu3iU10gW_v4RspTzhjvZlahCCoKI", minted)

	v, err := NewVerifier(secret)
	require.NoError(t, err)
	c, err := v.Verify(manual, time.Unix(0x65920080-1, 0))
	require.NoError(t, err)
	require.Equal(t, Claims{Meeting: "1234567890", Identity: "p-0001", Name: "Ann", ID: id, Role: Participant, Expiry: time.Unix(0x65920080, 0), Version: Version2}, c)

	// Version 2 with only a name (zero ID) is still version 2; a v1 body
	// relabelled as v2 does not parse.
	onlyName, err := Mint(secret, Claims{Meeting: "m", Identity: "i", Name: "N", Role: Viewer, Expiry: time.Unix(0x65920080, 0)})
	require.NoError(t, err)
	c, err = v.Verify(onlyName, time.Unix(0x65920080-1, 0))
	require.NoError(t, err)
	require.Equal(t, Version2, c.Version)
	v1, _ := base64.RawURLEncoding.DecodeString("AQMAAAAAZZIAgAJtMQNib2Kblm5J-oPNURuw8lRQe-YZfT9JjKqb4kPx3gYNdPttfg")
	v1[0] = Version2
	_, err = v.Verify(base64.RawURLEncoding.EncodeToString(v1), time.Unix(0x65920080-1, 0))
	require.ErrorIs(t, err, ErrMalformed)
	_, err = Mint(secret, Claims{Meeting: "m", Identity: "i", Name: strings.Repeat("n", MaxField+1), Role: Viewer, Expiry: time.Unix(1, 0)})
	require.Error(t, err)
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
	c := claims()
	c.Name, c.ID = "Ann", [IDSize]byte{1}
	tok, err := Mint(secretA, c)
	require.NoError(f, err)
	f.Add(tok)
	for _, e2ee := range []bool{false, true} { // version 3, both modes
		c.E2EE, c.Version = e2ee, Version3
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

// v3Vector is the version 3 test vector of docs/control-protocol.md ("Join
// tokens", "Version 3"), checked against that file by TestLayoutV3.
var v3Vector = struct{ body, mac, token string }{
	body:  "03 01 0000000065920080 000102030405060708090a0b0c0d0e0f 0a 31323334353637383930 06 702d30303031 03 416e6e 01",
	mac:   "47ff228fef939e018c291a9162373e957c48efc8f21d47233e24fd2391aca9a5",
	token: "AwEAAAAAZZIAgAABAgMEBQYHCAkKCwwNDg8KMTIzNDU2Nzg5MAZwLTAwMDEDQW5uAUf_Io_vk54BjCkakWI3PpV8SO_I8h1HIz4k_SORrKml",
}

// TestLayoutV3 pins the version 3 layout (version 2 plus a flags byte
// before the MAC) by building the documented vector by hand, and checks
// that docs/control-protocol.md shows exactly this vector.
func TestLayoutV3(t *testing.T) {
	leaktest.Check(t)
	secret := []byte("correct horse battery staple")
	exp := time.Unix(0x65920080, 0)
	body, err := hex.DecodeString(strings.ReplaceAll(v3Vector.body, " ", ""))
	require.NoError(t, err)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("openmmr-join-token\x00"))
	mac.Write(body)
	require.Equal(t, v3Vector.mac, hex.EncodeToString(mac.Sum(nil)))
	require.Equal(t, v3Vector.token, base64.RawURLEncoding.EncodeToString(mac.Sum(body)))

	id := [IDSize]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	want := Claims{Meeting: "1234567890", Identity: "p-0001", Name: "Ann", ID: id, Role: Host, Expiry: exp, E2EE: true}
	minted, err := Mint(secret, want)
	require.NoError(t, err)
	require.Equal(t, v3Vector.token, minted)

	v, err := NewVerifier(secret)
	require.NoError(t, err)
	got, err := v.Verify(minted, exp.Add(-time.Second))
	require.NoError(t, err)
	want.Version = Version3
	require.Equal(t, want, got)

	doc, err := os.ReadFile("../../docs/control-protocol.md")
	require.NoError(t, err)
	for _, line := range []string{"body   " + v3Vector.body, "MAC    " + v3Vector.mac, "token  " + v3Vector.token} {
		require.True(t, strings.Contains(string(doc), line), "docs/control-protocol.md must show the version 3 test vector line %q", line)
	}
}

// TestVersion3 covers the flags byte and version choice: a Standard v3
// token (flags 0), reserved flags refused, a v3 body relabelled v2 refused,
// and Mint refusing a version too low for the claims.
func TestVersion3(t *testing.T) {
	v, err := NewVerifier(secretA)
	require.NoError(t, err)
	c := claims()
	c.Version = Version3
	std, err := Mint(secretA, c)
	require.NoError(t, err)
	got, err := v.Verify(std, now)
	require.NoError(t, err)
	require.Equal(t, Version3, got.Version)
	require.False(t, got.E2EE)

	c = claims()
	c.E2EE = true
	e2ee, err := Mint(secretA, c)
	require.NoError(t, err)
	got, err = v.Verify(e2ee, now)
	require.NoError(t, err)
	require.Equal(t, Version3, got.Version)
	require.True(t, got.E2EE)

	// Re-sign altered bodies, so only the layout can refuse them.
	resign := func(mod func(body []byte) []byte) string {
		raw, err := base64.RawURLEncoding.DecodeString(e2ee)
		require.NoError(t, err)
		body := mod(append([]byte(nil), raw[:len(raw)-macSize]...))
		return base64.RawURLEncoding.EncodeToString(append(body, sign(secretA, body)...))
	}
	for name, tok := range map[string]string{
		"reserved flag bit":        resign(func(b []byte) []byte { b[len(b)-1] |= 0x02; return b }),
		"v3 relabelled v2":         resign(func(b []byte) []byte { b[0] = Version2; return b }),
		"version 4":                resign(func(b []byte) []byte { b[0] = 4; return b }),
		"flags byte missing":       resign(func(b []byte) []byte { return b[:len(b)-1] }),
		"two flags bytes":          resign(func(b []byte) []byte { return append(b, 0) }),
		"flag on a version 1 body": func() string { c := claims(); tok, _ := Mint(secretA, c); return tok + "AQ" }(),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(tok, now)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
	// The tampered flag without re-signing is a forgery.
	raw, _ := base64.RawURLEncoding.DecodeString(e2ee)
	raw[len(raw)-macSize-1] = 0
	_, err = v.Verify(base64.RawURLEncoding.EncodeToString(raw), now)
	require.ErrorIs(t, err, ErrSignature)

	for _, tc := range []struct {
		version int
		mod     func(*Claims)
	}{
		{Version, func(c *Claims) { c.Name = "Ann" }},
		{Version2, func(c *Claims) { c.E2EE = true }},
		{Version, func(c *Claims) { c.E2EE = true }},
		{4, func(*Claims) {}},
	} {
		c := claims()
		tc.mod(&c)
		c.Version = tc.version
		_, err := Mint(secretA, c)
		require.Error(t, err, "version %d for %+v", tc.version, c)
	}
}
