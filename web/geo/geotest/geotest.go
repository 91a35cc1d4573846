// Package geotest writes small MaxMind-format databases for tests, with
// mmdbwriter (reserved networks such as 127.0.0.0/8 and the documentation
// ranges included), so that no test downloads a database.
package geotest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/stretchr/testify/require"
)

// Place is one network's record.
type Place struct {
	CIDR      string // e.g. "127.0.0.2/32"
	Country   string // ISO code
	Continent string
	Lat, Lon  float64
}

// Cities used by the tests.
var (
	Frankfurt = Place{Country: "DE", Continent: "EU", Lat: 50.1109, Lon: 8.6821}
	Tokyo     = Place{Country: "JP", Continent: "AS", Lat: 35.6762, Lon: 139.6503}
	SaoPaulo  = Place{Country: "BR", Continent: "SA", Lat: -23.5505, Lon: -46.6333}
	Sydney    = Place{Country: "AU", Continent: "OC", Lat: -33.8688, Lon: 151.2093}
)

// At returns p for the network cidr.
func At(cidr string, p Place) Place { p.CIDR = cidr; return p }

// Write writes a GeoLite2-City-shaped database of places to path,
// atomically (a temporary file renamed over path), as an operator replacing
// the file would.
func Write(t testing.TB, path string, places ...Place) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-City", IncludeReservedNetworks: true, RecordSize: 28})
	require.NoError(t, err)
	for _, p := range places {
		_, n, err := net.ParseCIDR(p.CIDR)
		require.NoError(t, err)
		require.NoError(t, tree.Insert(n, mmdbtype.Map{
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(p.Country)},
			"continent": mmdbtype.Map{"code": mmdbtype.String(p.Continent)},
			"location":  mmdbtype.Map{"latitude": mmdbtype.Float64(p.Lat), "longitude": mmdbtype.Float64(p.Lon)},
		}))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".geo-*.mmdb")
	require.NoError(t, err)
	_, err = tree.WriteTo(tmp)
	require.NoError(t, err)
	require.NoError(t, tmp.Close())
	require.NoError(t, os.Rename(tmp.Name(), path))
}
