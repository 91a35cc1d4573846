package keys

import (
	"errors"
	"time"

	"github.com/openmmr/mmr/protect"
)

// Defaults of RingConfig.
const (
	// DefaultSwitchDelay is how long a client keeps sending under its old
	// key after receiving a new one: time for the same key to reach every
	// other participant (one control-channel hop from the server or the
	// leader, well under a second on a working connection), so receivers
	// hold it before the first packet under it arrives.
	DefaultSwitchDelay = time.Second
	// DefaultRetireDelay is how long a replaced key stays live for
	// receiving after the client switched away from it: the other senders
	// switch up to about a SwitchDelay later (they got the key a little
	// later), and packets under it may still sit in the network and the
	// jitter buffer.
	DefaultRetireDelay = 3 * time.Second
)

// RingConfig configures a Ring; zero fields take the defaults.
type RingConfig struct {
	SwitchDelay time.Duration
	RetireDelay time.Duration
	// MaxKeys is the number of live keys, at least 2; 0 means
	// protect.DefaultMaxKeys. It must not exceed the MaxKeys of the Opener
	// the Ring drives, or Opener.AddKey fails with ErrTooManyKeys.
	MaxKeys int
}

// ActionKind is what an Action asks of the Sealer and Opener.
type ActionKind uint8

// The actions a Ring emits.
const (
	AddKey  ActionKind = 1 + iota // Opener.AddKey(Key)
	UseKey                        // Sealer.SetKey(Key)
	DropKey                       // Opener.DropKey(Key.ID)
)

// Action is one step for the packet layer, in the order emitted.
type Action struct {
	Kind ActionKind
	Key  protect.MeetingKey
}

// Ring errors.
var (
	ErrKeyConflict = errors.New("keys: key ID already installed with another secret")
	ErrKeyID       = errors.New("keys: key ID 0")
)

type ringEntry struct {
	key      protect.MeetingKey
	switchAt time.Time // zero once switched to (or superseded)
	retireAt time.Time // zero while not scheduled
}

// Ring is a client's set of live meeting keys. Not safe for concurrent use.
type Ring struct {
	cfg     RingConfig
	entries []ringEntry // install order
	send    protect.KeyID
}

// NewRing returns an empty Ring.
func NewRing(cfg RingConfig) *Ring {
	if cfg.SwitchDelay <= 0 {
		cfg.SwitchDelay = DefaultSwitchDelay
	}
	if cfg.RetireDelay <= 0 {
		cfg.RetireDelay = DefaultRetireDelay
	}
	if cfg.MaxKeys < 2 {
		cfg.MaxKeys = protect.DefaultMaxKeys
	}
	return &Ring{cfg: cfg}
}

// Install adds a newly received (or, for the E2EE leader, generated) key.
// It is live for receiving at once (AddKey); the client starts sending
// under it SwitchDelay later, or at once if it has no send key yet. If the
// Ring is full, the oldest key that is not the send key is dropped first.
// Installing an installed key again changes nothing.
func (r *Ring) Install(k protect.MeetingKey, now time.Time) ([]Action, error) {
	if k.ID == 0 {
		return nil, ErrKeyID
	}
	for _, e := range r.entries {
		if e.key.ID == k.ID {
			if e.key.Secret != k.Secret {
				return nil, ErrKeyConflict
			}
			return nil, nil
		}
	}
	var acts []Action
	if len(r.entries) >= r.cfg.MaxKeys {
		for i, e := range r.entries {
			if e.key.ID != r.send {
				acts = append(acts, Action{DropKey, e.key})
				r.entries = append(r.entries[:i], r.entries[i+1:]...)
				break
			}
		}
	}
	e := ringEntry{key: k, switchAt: now.Add(r.cfg.SwitchDelay)}
	if r.send == 0 {
		e.switchAt = now
	}
	r.entries = append(r.entries, e)
	acts = append(acts, Action{AddKey, k})
	return append(acts, r.Advance(now)...), nil
}

// Advance performs what is due at now: switching the send key to the
// newest key whose switch time has come (older pending ones are skipped),
// and dropping keys whose retire time has come.
func (r *Ring) Advance(now time.Time) []Action {
	var acts []Action
	newest := -1
	for i, e := range r.entries {
		if !e.switchAt.IsZero() && !now.Before(e.switchAt) {
			newest = i
		}
	}
	if newest >= 0 {
		k := r.entries[newest].key
		r.send = k.ID
		acts = append(acts, Action{UseKey, k})
		for i := range r.entries {
			if i <= newest {
				r.entries[i].switchAt = time.Time{}
			}
			if i < newest && r.entries[i].retireAt.IsZero() {
				r.entries[i].retireAt = now.Add(r.cfg.RetireDelay)
			}
		}
	}
	kept := r.entries[:0]
	for _, e := range r.entries {
		if !e.retireAt.IsZero() && !now.Before(e.retireAt) {
			acts = append(acts, Action{DropKey, e.key})
			continue
		}
		kept = append(kept, e)
	}
	r.entries = kept
	return acts
}

// Deadline returns when Advance next has something to do, or the zero
// time if nothing is pending.
func (r *Ring) Deadline() time.Time {
	var d time.Time
	for _, e := range r.entries {
		for _, t := range []time.Time{e.switchAt, e.retireAt} {
			if !t.IsZero() && (d.IsZero() || t.Before(d)) {
				d = t
			}
		}
	}
	return d
}

// SendKey returns the ID of the key the client sends under (0: none yet).
func (r *Ring) SendKey() protect.KeyID { return r.send }

// Live returns the IDs of the live keys in install order.
func (r *Ring) Live() []protect.KeyID {
	ids := make([]protect.KeyID, len(r.entries))
	for i, e := range r.entries {
		ids[i] = e.key.ID
	}
	return ids
}

// Has reports whether key id is live.
func (r *Ring) Has(id protect.KeyID) bool {
	for _, e := range r.entries {
		if e.key.ID == id {
			return true
		}
	}
	return false
}

// Newest returns the most recently installed key (ok false if none).
func (r *Ring) Newest() (protect.MeetingKey, bool) {
	if len(r.entries) == 0 {
		return protect.MeetingKey{}, false
	}
	return r.entries[len(r.entries)-1].key, true
}

// Apply performs actions on a Sealer and an Opener (either may be nil),
// stopping at the first error.
func Apply(acts []Action, s *protect.Sealer, o *protect.Opener) error {
	for _, a := range acts {
		var err error
		switch a.Kind {
		case AddKey:
			if o != nil {
				err = o.AddKey(a.Key)
			}
		case UseKey:
			if s != nil {
				err = s.SetKey(a.Key)
			}
		case DropKey:
			if o != nil {
				o.DropKey(a.Key.ID)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
