package geo

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/web/geo/geotest"
)

// FuzzDatabase: any bytes as a database file are refused or answer
// lookups without a panic.
func FuzzDatabase(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.mmdb")
	geotest.Write(f, path, geotest.At("127.0.0.2/32", geotest.Frankfurt), geotest.At("2001:db8::/32", geotest.Tokyo))
	seed, err := os.ReadFile(path)
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte("garbage"))
	probes := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("10.0.0.1")}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &DB{}
		if d.install(b) != nil {
			return
		}
		for _, a := range probes {
			d.Locate(a)
		}
	})
}
