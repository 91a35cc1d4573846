// Package geo locates client addresses in a MaxMind-format database
// (GeoLite2-City or -Country, read with maxminddb-golang) and ranks meeting
// zones for a location: per-country overrides first, then zones serving the
// client's country, then its continent, each group by great-circle
// distance; clients without a location get the configured default order.
//
// The database file is reloaded when it is replaced (its size, modification
// time or inode change), without a restart. A DB and a Ranker are safe for
// concurrent use; lookups are lock-free (the current reader is an
// atomic.Pointer; a replaced one is left to the garbage collector, as the
// file is read into memory rather than mapped).
package geo

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MaxDBSize bounds the database file read into memory (GeoLite2-City is
// about 60 MB; the commercial City database about 130 MB).
const MaxDBSize = 512 << 20

// Location is where an address is, as far as the database knows.
type Location struct {
	Country   string // ISO 3166-1 alpha-2, "" when unknown
	Continent string // MaxMind continent code (EU, AS, ...), "" when unknown
	Lat, Lon  float64
	HasCoords bool // Lat/Lon are set (City databases)
}

// record is the part of a GeoLite2 record used here.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// DB is a database file, reloaded when replaced.
type DB struct {
	path    string
	log     *slog.Logger
	cur     atomic.Pointer[maxminddb.Reader]
	stat    os.FileInfo // of the loaded file; only the poller touches it
	reloads atomic.Uint64
	failed  atomic.Uint64
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Open loads the database at path and polls it every poll for a
// replacement (poll <= 0: never). log may be nil.
func Open(path string, poll time.Duration, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.Default()
	}
	d := &DB{path: path, log: log, done: make(chan struct{})}
	st, err := d.load()
	if err != nil {
		return nil, err
	}
	d.stat = st
	if poll > 0 {
		d.wg.Add(1)
		go d.poll(poll)
	}
	return d, nil
}

func (d *DB) load() (os.FileInfo, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	if st.Size() > MaxDBSize {
		return nil, fmt.Errorf("geo: %s: larger than %d bytes", d.path, MaxDBSize)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("geo: read %s: %w", d.path, err)
	}
	if err := d.install(b); err != nil {
		return nil, fmt.Errorf("geo: %s: %w", d.path, err)
	}
	return st, nil
}

// install makes the database b (a whole file's bytes, kept) current.
func (d *DB) install(b []byte) error {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return err
	}
	d.cur.Store(r)
	return nil
}

func (d *DB) poll(every time.Duration) {
	defer d.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
		}
		st, err := os.Stat(d.path)
		if err != nil || (st.Size() == d.stat.Size() && st.ModTime().Equal(d.stat.ModTime()) && os.SameFile(st, d.stat)) {
			continue // gone for a moment (being replaced), or unchanged
		}
		nst, err := d.load()
		if err != nil {
			// A half-copied file: keep the old database, try again next
			// time (the stat is not updated).
			d.failed.Add(1)
			d.log.Warn("geo: reload failed; keeping the previous database", "path", d.path, "err", err)
			continue
		}
		d.stat = nst
		d.reloads.Add(1)
		d.log.Info("geo: database reloaded", "path", d.path)
	}
}

// Reloads returns how many times the database was reloaded, and how many
// reloads failed.
func (d *DB) Reloads() (ok, failed uint64) { return d.reloads.Load(), d.failed.Load() }

// Locate returns the location of ip; false when the database has no
// record for it (private, loopback, unknown addresses).
func (d *DB) Locate(ip netip.Addr) (Location, bool) {
	if d == nil || !ip.IsValid() {
		return Location{}, false
	}
	var rec record
	res := d.cur.Load().Lookup(ip.Unmap())
	if !res.Found() || res.Decode(&rec) != nil {
		return Location{}, false
	}
	loc := Location{Country: rec.Country.ISOCode, Continent: rec.Continent.Code}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		loc.Lat, loc.Lon, loc.HasCoords = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	if loc.Country == "" && loc.Continent == "" && !loc.HasCoords {
		return Location{}, false
	}
	return loc, true
}

// Close stops the poller. Idempotent.
func (d *DB) Close() error {
	d.once.Do(func() {
		close(d.done)
		d.wg.Wait()
	})
	return nil
}

// EarthRadiusKM is the mean Earth radius (IUGG), for the haversine formula.
const EarthRadiusKM = 6371.0088

// DistanceKM is the great-circle distance between two points in degrees
// (haversine formula; error under 0.5% against the ellipsoid).
func DistanceKM(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * EarthRadiusKM * math.Asin(math.Min(1, math.Sqrt(a)))
}

// Zone is what the ranking knows of a zone.
type Zone struct {
	Name       string
	Lat, Lon   float64
	Countries  []string
	Continents []string
}

// Ranker ranks a fixed zone list. Immutable; safe for concurrent use.
type Ranker struct {
	zones     []Zone
	def       []int            // default order: indexes into zones
	overrides map[string][]int // country -> zones first
}

// NewRanker checks the names in defaultOrder and overrides against zones.
// Zones missing from defaultOrder follow it in zones order.
func NewRanker(zones []Zone, defaultOrder []string, overrides map[string][]string) (*Ranker, error) {
	idx := map[string]int{}
	for i, z := range zones {
		idx[z.Name] = i
	}
	lookup := func(names []string) ([]int, error) {
		var out []int
		for _, n := range names {
			i, ok := idx[n]
			if !ok {
				return nil, fmt.Errorf("geo: no zone %q", n)
			}
			out = append(out, i)
		}
		return out, nil
	}
	r := &Ranker{zones: zones, overrides: map[string][]int{}}
	var err error
	if r.def, err = lookup(defaultOrder); err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, i := range r.def {
		seen[i] = true
	}
	for i := range zones {
		if !seen[i] {
			r.def = append(r.def, i)
		}
	}
	for cc, names := range overrides {
		if r.overrides[cc], err = lookup(names); err != nil {
			return nil, errors.Join(fmt.Errorf("geo: override %s", cc), err)
		}
	}
	return r, nil
}

// Ranked is one zone in a ranking.
type Ranked struct {
	Zone        int     // index into the Ranker's zones
	DistanceKM  float64 // valid when HasDistance
	HasDistance bool
}

// Rank orders every zone for a client at loc (known false: no location):
// the country's overrides in their order, then zones listing the country,
// then zones listing the continent, then the rest; within each group by
// distance when loc has coordinates, else in the default order.
func (r *Ranker) Rank(loc Location, known bool) []Ranked {
	out := make([]Ranked, 0, len(r.zones))
	if !known {
		for _, i := range r.def {
			out = append(out, Ranked{Zone: i})
		}
		return out
	}
	type key struct {
		group int
		dist  float64
		def   int
	}
	keys := make([]key, len(r.zones))
	for pos, i := range r.def {
		z := &r.zones[i]
		k := key{group: 3, def: pos}
		switch {
		case contains(z.Countries, loc.Country):
			k.group = 1
		case contains(z.Continents, loc.Continent):
			k.group = 2
		}
		if loc.HasCoords {
			k.dist = DistanceKM(loc.Lat, loc.Lon, z.Lat, z.Lon)
		}
		keys[i] = k
	}
	for pos, i := range r.overrides[loc.Country] {
		keys[i].group, keys[i].def = 0, pos-len(r.zones) // overrides in their own order, before anything
		keys[i].dist = 0
	}
	for _, i := range r.def {
		out = append(out, Ranked{Zone: i})
	}
	less := func(a, b key) bool {
		if a.group != b.group {
			return a.group < b.group
		}
		if a.group != 0 && a.dist != b.dist {
			return a.dist < b.dist
		}
		return a.def < b.def
	}
	// Insertion sort: a handful of zones.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && less(keys[out[j].Zone], keys[out[j-1].Zone]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if loc.HasCoords {
		for k := range out {
			z := &r.zones[out[k].Zone]
			out[k].DistanceKM = math.Round(DistanceKM(loc.Lat, loc.Lon, z.Lat, z.Lon)*10) / 10
			out[k].HasDistance = true
		}
	}
	return out
}

func contains(list []string, s string) bool {
	if s == "" {
		return false
	}
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
