package media

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKindRoundTrip(t *testing.T) {
	for i, k := range Kinds {
		t.Run(k.String(), func(t *testing.T) {
			require.True(t, k.Valid())
			require.Equal(t, i, k.Index())
			got, err := ParseKind(k.String())
			require.NoError(t, err)
			require.Equal(t, k, got)
		})
	}
	require.False(t, Kind(0).Valid())
	require.False(t, Kind(4).Valid())
	require.Equal(t, "kind(9)", Kind(9).String())
	_, err := ParseKind("smell")
	require.Error(t, err)
}
