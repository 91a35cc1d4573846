package keys

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"time"

	"github.com/openmmr/mmr/protect"
)

// DefaultRekeyInterval is the E2EE leader's periodic re-key: every 5
// minutes even without membership changes, so a key that leaks exposes at
// most 5 minutes of media.
const DefaultRekeyInterval = 5 * time.Minute

// GroupConfig configures a Group; zero durations take the defaults.
type GroupConfig struct {
	Self          uint64           // own participant ID
	Private       *ecdh.PrivateKey // own X25519 key, fresh for each join (ecdh.X25519().GenerateKey)
	Rand          io.Reader        // nil: crypto/rand
	RekeyInterval time.Duration    // DefaultRekeyInterval
	Coalesce      time.Duration    // DefaultCoalesce
	Ring          RingConfig       // the client's key ring
}

// Outgoing is a key wrap the client must send (e2ee-key request) to
// participant To through the control channel.
type Outgoing struct {
	To   uint64
	Wrap *KeyWrap
}

// Group errors (Receive).
var (
	ErrNotForMe    = errors.New("keys: key wrap addressed to another participant")
	ErrNotLeader   = errors.New("keys: key wrap not from the current leader")
	ErrStaleRoster = errors.New("keys: key wrap made for another roster")
	ErrOldKey      = errors.New("keys: key ID not newer than the leader's last")
	ErrNoRoster    = errors.New("keys: no roster yet")
	ErrExhausted   = errors.New("keys: key IDs exhausted")
)

// Group is one client's E2EE key schedule. Feed it the roster (SetRoster,
// after joined and on every participant-joined/left event and public-key
// change), the key wraps it receives (Receive), and call Advance at
// Deadline; apply the returned Actions to the Sealer and Opener and send
// the Outgoing wraps. When it is the leader (Roster.Leader) it makes the
// keys: a new one Coalesce after every roster change and every
// RekeyInterval. The server never sees a key: wraps are encrypted to each
// recipient. Not safe for concurrent use.
type Group struct {
	cfg        GroupConfig
	roster     *Roster
	ring       *Ring
	lastID     protect.KeyID // the newest key accepted (or made)
	lastFrom   uint64        // who made it
	rekeyAt    time.Time
	periodicAt time.Time
}

// NewGroup returns a Group without roster.
func NewGroup(cfg GroupConfig) (*Group, error) {
	if cfg.Self == 0 || cfg.Private == nil || cfg.Private.Curve() != ecdh.X25519() {
		return nil, errors.New("keys: GroupConfig needs Self and an X25519 Private key")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.RekeyInterval <= 0 {
		cfg.RekeyInterval = DefaultRekeyInterval
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	return &Group{cfg: cfg, ring: NewRing(cfg.Ring)}, nil
}

// PublicKey returns the client's public key to announce (32 bytes).
func (g *Group) PublicKey() []byte { return g.cfg.Private.PublicKey().Bytes() }

// Roster returns the current roster (nil before SetRoster).
func (g *Group) Roster() *Roster { return g.roster }

// Ring returns the client's key ring (read it; do not Install into it).
func (g *Group) Ring() *Ring { return g.ring }

// IsLeader reports whether this client is the leader of its roster.
func (g *Group) IsLeader() bool { return g.roster != nil && g.roster.Leader() == g.cfg.Self }

// SetRoster replaces the roster: every member with an announced public
// key, this client included (with its own key). A change of membership or
// of any public key makes the leader re-key Coalesce later (a joiner never
// gets a key used before it joined, a leaver none used after).
func (g *Group) SetRoster(members []Member, now time.Time) error {
	r, err := NewRoster(members)
	if err != nil {
		return err
	}
	i := r.find(g.cfg.Self)
	if i < 0 || string(r.members[i].PublicKey) != string(g.PublicKey()) {
		return errors.New("keys: roster lacks this client or shows another public key for it")
	}
	if g.roster != nil && g.roster.hash == r.hash {
		return nil
	}
	g.roster = r
	if r.Leader() != g.cfg.Self {
		g.rekeyAt, g.periodicAt = time.Time{}, time.Time{}
		return nil
	}
	if g.rekeyAt.IsZero() {
		g.rekeyAt = now.Add(g.cfg.Coalesce)
	}
	return nil
}

// Advance does what is due at now: as leader, make and wrap a new key when
// a re-key is due; in any role, the ring's switches and drops.
func (g *Group) Advance(now time.Time) ([]Outgoing, []Action, error) {
	var out []Outgoing
	var acts []Action
	if g.IsLeader() && ((!g.rekeyAt.IsZero() && !now.Before(g.rekeyAt)) || (!g.periodicAt.IsZero() && !now.Before(g.periodicAt))) {
		var err error
		if out, acts, err = g.rekey(now); err != nil {
			return nil, nil, err
		}
	}
	return out, append(acts, g.ring.Advance(now)...), nil
}

func (g *Group) rekey(now time.Time) ([]Outgoing, []Action, error) {
	k := protect.MeetingKey{ID: g.lastID + 1}
	if g.lastID == 0 {
		// A leader that never held a key (it is the first, or a host that
		// just joined) starts at a random ID in 1..2^31 so that its IDs are
		// unlikely to meet those of an earlier leader still live.
		var b [4]byte
		if _, err := io.ReadFull(g.cfg.Rand, b[:]); err != nil {
			return nil, nil, err
		}
		k.ID = protect.KeyID(binary.BigEndian.Uint32(b[:])>>1) + 1
	} else if g.lastID == math.MaxUint32 {
		return nil, nil, ErrExhausted
	}
	if _, err := io.ReadFull(g.cfg.Rand, k.Secret[:]); err != nil {
		return nil, nil, err
	}
	var out []Outgoing
	for i, m := range g.roster.members {
		if m.Participant == g.cfg.Self {
			continue
		}
		w, err := SealWrap(g.cfg.Rand, g.cfg.Private, g.cfg.Self, m.Participant, g.roster.pubs[i], g.roster.hash, k)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, Outgoing{To: m.Participant, Wrap: w})
	}
	acts, err := g.ring.Install(k, now)
	if err != nil {
		return nil, nil, err
	}
	g.lastID, g.lastFrom = k.ID, g.cfg.Self
	g.rekeyAt = time.Time{}
	g.periodicAt = now.Add(g.cfg.RekeyInterval)
	return out, acts, nil
}

// Receive checks a key wrap relayed by the server (addressed to this
// client, from the current leader, made for the current roster, a key ID
// newer than that leader's last) and installs its key.
func (g *Group) Receive(w *KeyWrap, now time.Time) ([]Action, error) {
	if g.roster == nil {
		return nil, ErrNoRoster
	}
	if w.To != g.cfg.Self {
		return nil, ErrNotForMe
	}
	if w.From != g.roster.Leader() || w.From == g.cfg.Self {
		return nil, ErrNotLeader
	}
	if w.RosterHash != g.roster.hash {
		return nil, ErrStaleRoster
	}
	if w.From == g.lastFrom && w.KeyID <= g.lastID {
		return nil, ErrOldKey
	}
	k, err := OpenWrap(w, g.cfg.Private, g.roster.pubs[g.roster.find(w.From)])
	if err != nil {
		return nil, err
	}
	acts, err := g.ring.Install(k, now)
	if err != nil {
		return nil, err
	}
	g.lastID, g.lastFrom = k.ID, w.From
	return acts, nil
}

// Deadline returns when Advance next has work (zero: nothing pending).
func (g *Group) Deadline() time.Time {
	d := g.ring.Deadline()
	for _, t := range []time.Time{g.rekeyAt, g.periodicAt} {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// SecurityCode returns the code of the current roster and send key (""
// before the roster). See Roster.SecurityCode.
func (g *Group) SecurityCode() string {
	if g.roster == nil {
		return ""
	}
	return g.roster.SecurityCode(g.ring.SendKey())
}
