package geo_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/web/geo"
	"github.com/openmmr/mmr/web/geo/geotest"
)

// The bar's zones: Amsterdam, Singapore, São Paulo.
var zones = []geo.Zone{
	{Name: "ams", Lat: 52.3676, Lon: 4.9041},
	{Name: "sin", Lat: 1.3521, Lon: 103.8198},
	{Name: "gru", Lat: -23.5505, Lon: -46.6333, Countries: []string{"BR"}},
}

func names(r []geo.Ranked) []string {
	var out []string
	for _, z := range r {
		out = append(out, zones[z.Zone].Name)
	}
	return out
}

func TestDistance(t *testing.T) {
	leaktest.Check(t)
	// Frankfurt-Amsterdam is about 365 km, Frankfurt-Tokyo about 9,330 km.
	require.InDelta(t, 365, geo.DistanceKM(50.1109, 8.6821, 52.3676, 4.9041), 5)
	require.InDelta(t, 9330, geo.DistanceKM(50.1109, 8.6821, 35.6762, 139.6503), 40)
	require.InDelta(t, 0, geo.DistanceKM(1, 2, 1, 2), 1e-9)
	require.InDelta(t, 20015, geo.DistanceKM(0, 0, 0, 180), 2, "half the circumference")
}

func TestRank(t *testing.T) {
	leaktest.Check(t)
	r, err := geo.NewRanker(zones, []string{"sin"}, map[string][]string{"NZ": {"gru", "ams"}})
	require.NoError(t, err)
	tests := []struct {
		name  string
		loc   geo.Location
		known bool
		want  []string
	}{
		{"unknown gets the default order", geo.Location{}, false, []string{"sin", "ams", "gru"}},
		{"frankfurt", geo.Location{Country: "DE", Continent: "EU", Lat: 50.11, Lon: 8.68, HasCoords: true}, true, []string{"ams", "gru", "sin"}},
		{"tokyo", geo.Location{Country: "JP", Continent: "AS", Lat: 35.68, Lon: 139.65, HasCoords: true}, true, []string{"sin", "ams", "gru"}},
		{"country list beats distance", geo.Location{Country: "BR", Lat: 5, Lon: 0, HasCoords: true}, true, []string{"gru", "ams", "sin"}},
		{"override first, in its order", geo.Location{Country: "NZ", Lat: -41.3, Lon: 174.8, HasCoords: true}, true, []string{"gru", "ams", "sin"}},
		{"country only (Country database): default order within groups", geo.Location{Country: "BR"}, true, []string{"gru", "sin", "ams"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Rank(tt.loc, tt.known)
			require.Equal(t, tt.want, names(got))
			for _, z := range got {
				require.Equal(t, tt.loc.HasCoords, z.HasDistance)
			}
		})
	}
	_, err = geo.NewRanker(zones, []string{"nope"}, nil)
	require.Error(t, err)
	_, err = geo.NewRanker(zones, nil, map[string][]string{"DE": {"nope"}})
	require.Error(t, err)
}

func TestLocateAndReload(t *testing.T) {
	leaktest.Check(t)
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.Write(t, path, geotest.At("127.0.0.2/32", geotest.Frankfurt), geotest.At("127.0.0.3/32", geotest.Tokyo), geotest.At("2001:db8::/32", geotest.Sydney))
	db, err := geo.Open(path, 20*time.Millisecond, nil)
	require.NoError(t, err)
	defer db.Close()
	loc, ok := db.Locate(netip.MustParseAddr("127.0.0.2"))
	require.True(t, ok)
	require.Equal(t, "DE", loc.Country)
	require.Equal(t, "EU", loc.Continent)
	require.InDelta(t, 50.1109, loc.Lat, 1e-6)
	loc, ok = db.Locate(netip.MustParseAddr("::ffff:127.0.0.3"))
	require.True(t, ok, "IPv4-mapped IPv6 finds the IPv4 record")
	require.Equal(t, "JP", loc.Country)
	loc, ok = db.Locate(netip.MustParseAddr("2001:db8::1"))
	require.True(t, ok)
	require.Equal(t, "AU", loc.Country)
	for _, a := range []string{"127.0.0.1", "10.0.0.1", "192.0.2.1"} {
		_, ok = db.Locate(netip.MustParseAddr(a))
		require.False(t, ok, a)
	}
	_, ok = db.Locate(netip.Addr{})
	require.False(t, ok)

	// A half-written file is refused and the old database kept.
	require.NoError(t, os.WriteFile(path+".bad", []byte("garbage"), 0o600))
	require.NoError(t, os.Rename(path+".bad", path))
	require.Eventually(t, func() bool { _, f := db.Reloads(); return f > 0 }, 10*time.Second, 10*time.Millisecond)
	loc, ok = db.Locate(netip.MustParseAddr("127.0.0.2"))
	require.True(t, ok)
	require.Equal(t, "DE", loc.Country)

	// Replaced: 127.0.0.2 moves to Tokyo, without a restart.
	geotest.Write(t, path, geotest.At("127.0.0.2/32", geotest.Tokyo))
	require.Eventually(t, func() bool {
		loc, ok := db.Locate(netip.MustParseAddr("127.0.0.2"))
		return ok && loc.Country == "JP"
	}, 10*time.Second, 10*time.Millisecond)
	_, ok = db.Locate(netip.MustParseAddr("127.0.0.3"))
	require.False(t, ok)
	require.NoError(t, db.Close())
	require.NoError(t, db.Close(), "idempotent")

	_, err = geo.Open(filepath.Join(t.TempDir(), "missing.mmdb"), 0, nil)
	require.Error(t, err)
}
