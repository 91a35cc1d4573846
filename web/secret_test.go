package web

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

func TestSecretHash(t *testing.T) {
	leaktest.Check(t)
	h, err := HashSecret("123456")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$"), h)
	require.NotContains(t, h, "123456")
	h2, err := HashSecret("123456")
	require.NoError(t, err)
	require.NotEqual(t, h, h2, "salted")
	ok, err := VerifySecret(h, "123456")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = VerifySecret(h, "123457")
	require.NoError(t, err)
	require.False(t, ok)
	for _, bad := range []string{"", "$argon2i$v=19$m=8,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=1,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAA", strings.Replace(h, "$", "", 1)} {
		_, err := VerifySecret(bad, "x")
		require.Error(t, err, bad)
	}

	v := newVerifier(2)
	cheap, err := HashSecretWith(testArgon2, "abc")
	require.NoError(t, err)
	for range 3 {
		ok, err := v.verify(cheap, "abc")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = v.verify(cheap, "abd")
		require.NoError(t, err)
		require.False(t, ok, "only successes are cached")
	}
	other, err := HashSecretWith(testArgon2, "abc")
	require.NoError(t, err)
	ok, err = v.verify(other, "abd")
	require.NoError(t, err)
	require.False(t, ok, "a changed hash is a new cache key")
}

func TestAPIKey(t *testing.T) {
	leaktest.Check(t)
	k, id, hash, err := NewAPIKey()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(k, APIKeyPrefix))
	require.Len(t, k, len(APIKeyPrefix)+43)
	require.Equal(t, HashAPIKey(k), hash)
	require.NotContains(t, hash, k)
	require.True(t, strings.HasPrefix(id, "key-"))
}
