package webclient

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
)

// ringOp is one step of a key ring script: install key ID with secret
// (hex) at time At (ms), or advance at At.
type ringOp struct {
	Op     string `json:"op"` // "install" or "advance"
	ID     uint32 `json:"id,omitempty"`
	Secret string `json:"secret,omitempty"`
	At     int64  `json:"at"`
}

// ringStep is what a ring did at one step and its state after it, as
// keyring.js's trace() reports it.
type ringStep struct {
	Acts     []string `json:"acts"` // "add3", "use3", "drop1"… in order
	Err      string   `json:"err"`  // "", "conflict", "id0"
	Send     uint32   `json:"send"`
	Live     []uint32 `json:"live"`
	Deadline *int64   `json:"deadline"` // ms, nil: nothing pending
}

// goTrace runs ops on a keys.Ring.
func goTrace(cfg keys.RingConfig, ops []ringOp) []ringStep {
	t0 := time.Unix(1_000_000, 0)
	at := func(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := keys.NewRing(cfg)
	out := make([]ringStep, 0, len(ops))
	for _, o := range ops {
		var acts []keys.Action
		var err error
		if o.Op == "install" {
			k := protect.MeetingKey{ID: protect.KeyID(o.ID)}
			hex.Decode(k.Secret[:], []byte(o.Secret))
			acts, err = r.Install(k, at(o.At))
		} else {
			acts = r.Advance(at(o.At))
		}
		st := ringStep{Acts: []string{}, Send: uint32(r.SendKey()), Live: []uint32{}}
		switch {
		case errors.Is(err, keys.ErrKeyConflict):
			st.Err = "conflict"
		case errors.Is(err, keys.ErrKeyID):
			st.Err = "id0"
		}
		for _, a := range acts {
			st.Acts = append(st.Acts, map[keys.ActionKind]string{keys.AddKey: "add", keys.UseKey: "use", keys.DropKey: "drop"}[a.Kind]+strconv.FormatUint(uint64(a.Key.ID), 10))
		}
		for _, id := range r.Live() {
			st.Live = append(st.Live, uint32(id))
		}
		if d := r.Deadline(); !d.IsZero() {
			ms := d.Sub(t0).Milliseconds()
			st.Deadline = &ms
		}
		out = append(out, st)
	}
	return out
}

// randomRingOps makes a script of n steps: new keys (mostly the next ID,
// sometimes one skipped), re-installs, conflicting secrets, key ID 0, and
// advances at random times and exactly at the ring's deadlines (the
// boundaries of the rules), on a deterministic random source.
func randomRingOps(t *testing.T, cfg keys.RingConfig, seed uint64, n int) []ringOp {
	rnd := mrand.New(mrand.NewPCG(seed, seed))
	secrets := map[uint32]string{}
	secret := func() string {
		b := make([]byte, protect.SecretSize)
		_, err := rand.Read(b)
		require.NoError(t, err)
		return hex.EncodeToString(b)
	}
	var ops []ringOp
	var now int64
	next := uint32(1)
	r := keys.NewRing(cfg) // only to find its deadlines
	t0 := time.Unix(1_000_000, 0)
	for len(ops) < n {
		switch x := rnd.IntN(20); {
		case x < 6: // a new key
			id := next
			if rnd.IntN(5) == 0 {
				id++
			}
			next = id + 1
			secrets[id] = secret()
			ops = append(ops, ringOp{Op: "install", ID: id, Secret: secrets[id], At: now})
		case x < 7 && len(secrets) > 0: // the same key again
			id := uint32(1 + rnd.IntN(int(next-1)))
			if s, ok := secrets[id]; ok {
				ops = append(ops, ringOp{Op: "install", ID: id, Secret: s, At: now})
			}
		case x < 8: // a live or old ID with another secret, or ID 0
			id := uint32(rnd.IntN(int(next)))
			ops = append(ops, ringOp{Op: "install", ID: id, Secret: secret(), At: now})
		case x < 13: // exactly at the deadline
			if d := r.Deadline(); !d.IsZero() {
				now = max(now, d.Sub(t0).Milliseconds())
			}
			ops = append(ops, ringOp{Op: "advance", At: now})
		default:
			now += int64(rnd.IntN(2500))
			ops = append(ops, ringOp{Op: "advance", At: now})
		}
		// Keep the helper ring in step (its results are not compared here).
		o := ops[len(ops)-1]
		at := t0.Add(time.Duration(o.At) * time.Millisecond)
		if o.Op == "install" {
			k := protect.MeetingKey{ID: protect.KeyID(o.ID)}
			hex.Decode(k.Secret[:], []byte(o.Secret))
			r.Install(k, at)
		} else {
			r.Advance(at)
		}
		now += int64(rnd.IntN(3)) * int64(rnd.IntN(400))
	}
	return ops
}

// TestKeyRingMatchesGo: the page's key ring (keyring.js) and the Go
// keys.Ring, driven with the same keys at the same times, do the same
// thing: after every step the same actions in the same order (add, use,
// drop), the same send key, live keys and next deadline, and the same
// refusals. Scripts: the schedule of keys.TestRingSchedule, and random
// scripts under the default configuration and a small one.
func TestKeyRingMatchesGo(t *testing.T) {
	leaktest.Check(t)
	z := startWebZone(t, nil)
	b := newBrowser(t, z, "keyring")
	s := func(id uint32) string {
		return hex.EncodeToString([]byte(strconv.Itoa(int(id)) + "-key-secret-0123456789abcdef-0123")[:32])
	}
	schedule := []ringOp{
		{Op: "install", ID: 1, Secret: s(1), At: 0},
		{Op: "install", ID: 2, Secret: s(2), At: 10_000},
		{Op: "advance", At: 10_999},
		{Op: "advance", At: 11_000},
		{Op: "advance", At: 14_000},
		{Op: "install", ID: 3, Secret: s(3), At: 20_000},
		{Op: "install", ID: 4, Secret: s(4), At: 20_100},
		{Op: "install", ID: 5, Secret: s(5), At: 20_200},
		{Op: "advance", At: 22_000},
		{Op: "advance", At: 25_000},
		{Op: "install", ID: 5, Secret: s(5), At: 30_000},
		{Op: "install", ID: 5, Secret: s(6), At: 30_000},
		{Op: "install", ID: 0, Secret: s(0), At: 30_000},
	}
	small := keys.RingConfig{SwitchDelay: 500 * time.Millisecond, RetireDelay: 700 * time.Millisecond, MaxKeys: 2}
	cases := []struct {
		name string
		cfg  keys.RingConfig
		ops  []ringOp
	}{
		{"schedule, 3 keys", keys.RingConfig{MaxKeys: 3}, schedule},
		{"random, defaults", keys.RingConfig{}, randomRingOps(t, keys.RingConfig{}, 1, 400)},
		{"random, defaults, another seed", keys.RingConfig{}, randomRingOps(t, keys.RingConfig{}, 2, 400)},
		{"random, 2 keys, short delays", small, randomRingOps(t, small, 3, 400)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ops, err := json.Marshal(c.ops)
			require.NoError(t, err)
			cfg, err := json.Marshal(map[string]int64{"switchDelay": c.cfg.SwitchDelay.Milliseconds(), "retireDelay": c.cfg.RetireDelay.Milliseconds(), "maxKeys": int64(c.cfg.MaxKeys)})
			require.NoError(t, err)
			raw, err := eval[string](b, `import('/static/keyring.js').then((m) => JSON.stringify(m.trace(`+string(ops)+`, `+string(cfg)+`)))`)
			require.NoError(t, err, b.console())
			var js []ringStep
			require.NoError(t, json.Unmarshal([]byte(raw), &js))
			want := goTrace(c.cfg, c.ops)
			require.Len(t, js, len(want))
			var switches, drops, refusals int
			for i := range want {
				require.Equal(t, want[i], js[i], "step %d: %+v", i, c.ops[i])
				for _, a := range want[i].Acts {
					switch a[0] {
					case 'u':
						switches++
					case 'd':
						drops++
					}
				}
				if want[i].Err != "" {
					refusals++
				}
			}
			t.Logf("%d steps: %d switches, %d drops, %d refusals", len(want), switches, drops, refusals)
			require.Positive(t, switches)
			require.Positive(t, drops)
			require.Positive(t, refusals)
		})
	}
}
