// KeyRing: a client's live meeting keys, exactly the rules of the Go
// keys.Ring (docs/PROTOCOL.md "Standard mode key schedule", "Every client
// (both modes)"):
//  1. a new key is live for receiving at once;
//  2. the client seals with it switchDelay (1 s) after receiving it, at
//     once if it has no send key yet; of several keys pending at once it
//     switches straight to the newest;
//  3. the keys it sealed with before stay live retireDelay (3 s) after
//     the switch, then are dropped;
//  4. at most maxKeys (4) live keys: another one evicts the oldest that is
//     not the send key.
// A key ID already live with another secret is refused. Times are
// milliseconds on any one clock (the page uses performance.now()); the
// caller runs advance(now) at deadline(). The browser test drives this
// module and keys.Ring with the same keys and times and compares what they
// do (TestKeyRingMatchesGo).

export const SWITCH_DELAY_MS = 1000; // keys.DefaultSwitchDelay
export const RETIRE_DELAY_MS = 3000; // keys.DefaultRetireDelay
export const MAX_KEYS = 4; // protect.DefaultMaxKeys (keys.Ring's default)
// PAGE_MAX_KEYS is what the page holds: as many as the Go client
// (client/secure.DefaultMaxKeys), so that during a join storm, when the
// server makes a key every 250 ms and senders switch 1 s after receiving
// one, the key a sender still uses has not been evicted yet.
export const PAGE_MAX_KEYS = 8;

export class KeyConflictError extends Error {}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// A key is {id: uint32 (not 0), secret: Uint8Array(32)}. An action is
// {kind: 'add' | 'use' | 'drop', key}, as keys.Action (AddKey, UseKey,
// DropKey), in the same order.
export class KeyRing {
  constructor({ switchDelay = SWITCH_DELAY_MS, retireDelay = RETIRE_DELAY_MS, maxKeys = MAX_KEYS } = {}) {
    this.switchDelay = switchDelay > 0 ? switchDelay : SWITCH_DELAY_MS;
    this.retireDelay = retireDelay > 0 ? retireDelay : RETIRE_DELAY_MS;
    this.maxKeys = maxKeys >= 2 ? maxKeys : MAX_KEYS;
    this.entries = []; // install order: {key, switchAt (null once switched to or superseded), retireAt (null: not scheduled)}
    this.sendID = 0;
  }

  // install adds a received key and returns the actions it caused.
  install(key, now) {
    const id = key.id >>> 0;
    if (id === 0) throw new Error('keyring: key ID 0');
    for (const e of this.entries) {
      if (e.key.id === id) {
        if (!sameBytes(e.key.secret, key.secret)) throw new KeyConflictError('keyring: key ID ' + id + ' already installed with another secret');
        return [];
      }
    }
    const acts = [];
    if (this.entries.length >= this.maxKeys) {
      const i = this.entries.findIndex((e) => e.key.id !== this.sendID);
      if (i >= 0) { acts.push({ kind: 'drop', key: this.entries[i].key }); this.entries.splice(i, 1); }
    }
    const k = { id, secret: key.secret };
    this.entries.push({ key: k, switchAt: this.sendID === 0 ? now : now + this.switchDelay, retireAt: null });
    acts.push({ kind: 'add', key: k });
    return acts.concat(this.advance(now));
  }

  // advance performs what is due at now: the switch to the newest key
  // whose switch time has come (older pending ones are skipped), and the
  // drop of keys whose retire time has come.
  advance(now) {
    const acts = [];
    let newest = -1;
    this.entries.forEach((e, i) => { if (e.switchAt !== null && now >= e.switchAt) newest = i; });
    if (newest >= 0) {
      const k = this.entries[newest].key;
      this.sendID = k.id;
      acts.push({ kind: 'use', key: k });
      this.entries.forEach((e, i) => {
        if (i <= newest) e.switchAt = null;
        if (i < newest && e.retireAt === null) e.retireAt = now + this.retireDelay;
      });
    }
    this.entries = this.entries.filter((e) => {
      if (e.retireAt !== null && now >= e.retireAt) { acts.push({ kind: 'drop', key: e.key }); return false; }
      return true;
    });
    return acts;
  }

  // deadline returns when advance next has something to do, or null.
  deadline() {
    let d = null;
    for (const e of this.entries) {
      for (const t of [e.switchAt, e.retireAt]) if (t !== null && (d === null || t < d)) d = t;
    }
    return d;
  }

  // sendKey returns the key sealed with now, or null before the first.
  sendKey() { return this.sendID ? this.get(this.sendID) : null; }
  // get returns the live key with this ID, or null.
  get(id) { const e = this.entries.find((x) => x.key.id === id); return e ? e.key : null; }
  // live returns the IDs of the live keys in install order.
  live() { return this.entries.map((e) => e.key.id); }
  has(id) { return this.get(id) !== null; }
  // newest returns the most recently installed key, or null.
  newest() { return this.entries.length ? this.entries[this.entries.length - 1].key : null; }
}

// trace runs a scripted sequence on a fresh KeyRing (for the test against
// keys.Ring): ops are {op: 'install', id, secret (hex), at} or
// {op: 'advance', at}; each gives {acts: ['add3', 'use3', 'drop1'...],
// err, send, live, deadline}.
export function trace(ops, cfg) {
  const r = new KeyRing(cfg);
  const hexdec = (s) => Uint8Array.from(s.match(/../g), (x) => parseInt(x, 16));
  return ops.map((o) => {
    let acts = [], err = '';
    try {
      acts = o.op === 'install' ? r.install({ id: o.id, secret: hexdec(o.secret) }, o.at) : r.advance(o.at);
    } catch (e) { err = e instanceof KeyConflictError ? 'conflict' : 'id0'; }
    return { acts: acts.map((a) => a.kind + a.key.id), err, send: r.sendID, live: r.live(), deadline: r.deadline() };
  });
}
