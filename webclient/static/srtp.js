// SRTP and SRTCP with AEAD_AES_256_GCM (RFC 3711, RFC 7714) exactly as
// docs/PROTOCOL.md "Media protection (SRTP AEAD-GCM) and meeting keys"
// specifies, with WebCrypto. The same keys and packet format as the Go
// library protect/; the browser test checks this module against the
// spec's test vectors.

import { KeyRing } from './keyring.js';

const te = new TextEncoder();
const subtle = crypto.subtle;

export const TAG = 16;
export const MKI = 4;
export const OVERHEAD = TAG + MKI; // a protected RTP packet is 20 bytes longer

function be32(n) { return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]; }
function be64(n) { // n < 2^53
  const hi = Math.floor(n / 2 ** 32), lo = n >>> 0;
  return [...be32(hi), ...be32(lo)];
}
function cat(...parts) {
  const len = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export async function hkdf(ikm, salt, info, len) {
  const k = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, k, len * 8));
}

// deriveSender: master key and salt of sender stream (participant p, SSRC
// s) under meeting key (kid, mk).
export async function deriveSender(kid, mk, p, s) {
  const info = cat(te.encode('openmmr/1 sender'), be32(kid), be64(p), be32(s));
  const okm = await hkdf(mk, te.encode('openmmr/1 srtp'), info, 44);
  return { key: okm.slice(0, 32), salt: okm.slice(32, 44) };
}

// deriveRTCP: SRTCP master key and salt of flow (participant p, kind k,
// direction dir: 1 client to router, 2 router to client).
export async function deriveRTCP(secret, p, k, dir) {
  const info = cat(te.encode('openmmr/1 flow'), be64(p), [k, dir]);
  const okm = await hkdf(secret, te.encode('openmmr/1 srtcp'), info, 44);
  return { key: okm.slice(0, 32), salt: okm.slice(32, 44) };
}

// sessionKeys: RFC 3711 §4.3.1 with key derivation rate 0 (AES-CTR with the
// counter block IN over zero bytes stands in for the ECB blocks). labels:
// [key label, salt label]: SRTP [0, 2], SRTCP [3, 5].
export async function sessionKeys(master, labels) {
  const k = await subtle.importKey('raw', master.key, 'AES-CTR', false, ['encrypt']);
  const out = [];
  for (const [label, len] of [[labels[0], 32], [labels[1], 12]]) {
    const iv = new Uint8Array(16);
    iv.set(master.salt);
    iv[7] ^= label;
    const ks = new Uint8Array(await subtle.encrypt({ name: 'AES-CTR', counter: iv, length: 16 }, k, new Uint8Array(len)));
    out.push(ks);
  }
  return { key: out[0], salt: out[1] };
}

async function gcmKey(raw) {
  return subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

// headerLen returns the RTP header length (fixed, CSRCs, extension) or -1.
export function headerLen(b) {
  if (b.length < 12 || (b[0] >> 6) !== 2) return -1;
  let n = 12 + 4 * (b[0] & 15);
  if (b[0] & 0x10) {
    if (b.length < n + 4) return -1;
    n += 4 + 4 * ((b[n + 2] << 8) | b[n + 3]);
  }
  return n <= b.length ? n : -1;
}

function rtpIV(salt, ssrc, roc, seq) {
  const iv = new Uint8Array(12);
  iv.set(be32(ssrc), 2);
  iv.set(be32(roc), 6);
  iv[10] = seq >> 8; iv[11] = seq & 255;
  for (let i = 0; i < 12; i++) iv[i] ^= salt[i];
  return iv;
}

// ReplayWindow is the sliding window over 48-bit indexes (RFC 3711 §3.3.2).
export class ReplayWindow {
  constructor(size = 512) { this.size = size; this.top = -1; this.seen = new Set(); }
  // check returns '' when idx may be accepted, else 'replayed' or 'too_old'.
  check(idx) {
    if (this.top < 0 || idx > this.top) return '';
    if (this.top - idx >= this.size) return 'too_old';
    return this.seen.has(idx) ? 'replayed' : '';
  }
  accept(idx) {
    this.seen.add(idx);
    if (idx > this.top) {
      this.top = idx;
      if (this.seen.size > this.size * 2) {
        for (const i of this.seen) if (this.top - i >= this.size) this.seen.delete(i);
      }
    }
  }
}

// SendStream seals the RTP packets of one SSRC under the current send key:
// keyOf() returns it ({id, secret}, as KeyRing.sendKey()) or null. The
// sender key of each new send key is derived at the first packet under it
// (the rollover counter carries over, as in protect.Sealer.SetKey).
export class SendStream {
  constructor(participant, ssrc, keyOf) {
    this.p = participant; this.ssrc = ssrc; this.keyOf = keyOf;
    this.kid = 0; this.roc = 0; this.lastSeq = -1;
  }
  async rekey(k) {
    const sk = await sessionKeys(await deriveSender(k.id, k.secret, this.p, this.ssrc), [0, 2]);
    this.salt = sk.salt; this.key = await gcmKey(sk.key); this.kid = k.id;
  }
  // seal returns the protected packet of RTP packet pkt (Uint8Array).
  // Calls must not overlap (the senders run them one after another).
  async seal(pkt) {
    const h = headerLen(pkt);
    if (h < 0) throw new Error('srtp: malformed RTP');
    const k = this.keyOf();
    if (!k) throw new Error('srtp: no send key');
    if (k.id !== this.kid) await this.rekey(k);
    const seq = (pkt[2] << 8) | pkt[3];
    if (this.lastSeq >= 0 && seq < this.lastSeq && this.lastSeq - seq > 32768) this.roc = (this.roc + 1) >>> 0;
    this.lastSeq = seq;
    const iv = rtpIV(this.salt, this.ssrc, this.roc, seq);
    const hdr = pkt.subarray(0, h);
    const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: hdr, tagLength: 128 }, this.key, pkt.subarray(h)));
    return cat(hdr, ct, be32(this.kid));
  }
}

// RecvStream opens the protected packets of one sender SSRC under the live
// keys of ring (a KeyRing: get(id) returns a live key {id, secret} or null,
// live() the live IDs). The sender key of each live key is derived once,
// at the first packet under it; a key the ring dropped opens nothing more.
export class RecvStream {
  constructor(participant, ssrc, ring, window = 512) {
    this.p = participant; this.ssrc = ssrc; this.ring = ring; this.keys = new Map(); this.win = new ReplayWindow(window);
    this.s_l = -1; this.roc = 0;
  }
  // key returns the session key of live key kid for this sender, or null.
  async key(kid) {
    const mk = this.ring.get(kid);
    if (!mk) { this.keys.delete(kid); return null; }
    let k = this.keys.get(kid);
    if (!k || k.secret !== mk.secret) {
      const sk = await sessionKeys(await deriveSender(kid, mk.secret, this.p, this.ssrc), [0, 2]);
      k = { secret: mk.secret, salt: sk.salt, key: await gcmKey(sk.key) };
      this.keys.set(kid, k);
      for (const id of this.keys.keys()) if (!this.ring.get(id)) this.keys.delete(id);
    }
    return k;
  }
  // estimate: RFC 3711 Appendix A.
  estimate(seq) {
    if (this.s_l < 0) return this.roc;
    let v = this.roc;
    if (this.s_l < 32768) {
      if (seq - this.s_l > 32768) v = (this.roc - 1) >>> 0;
    } else if (this.s_l - 32768 > seq) v = (this.roc + 1) >>> 0;
    return v;
  }
  // open returns {pkt} or {drop: reason}.
  async open(b) {
    if (b.length < 12 + OVERHEAD) return { drop: 'malformed' };
    const h = headerLen(b.subarray(0, b.length - OVERHEAD));
    if (h < 0) return { drop: 'malformed' };
    if (this.ring.live().length === 0) return { drop: 'unknown_key' };
    const seq = (b[2] << 8) | b[3];
    const v = this.estimate(seq);
    const idx = v * 65536 + seq;
    const r = this.win.check(idx);
    if (r) return { drop: r };
    const m = b.length - MKI;
    const kid = ((b[m] << 24) | (b[m + 1] << 16) | (b[m + 2] << 8) | b[m + 3]) >>> 0;
    const k = await this.key(kid);
    if (!k) return { drop: 'unknown_key' };
    const hdr = b.subarray(0, h);
    let pt;
    try {
      pt = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: rtpIV(k.salt, this.ssrc, v, seq), additionalData: hdr, tagLength: 128 }, k.key, b.subarray(h, m)));
    } catch {
      return { drop: 'auth' };
    }
    this.win.accept(idx);
    if (this.s_l < 0 || idx > this.roc * 65536 + this.s_l) { this.roc = v; this.s_l = seq; }
    return { pkt: cat(hdr, pt) };
  }
}

function rtcpIV(salt, ssrc, index) {
  const iv = new Uint8Array(12);
  iv.set(be32(ssrc), 2);
  iv.set(be32(index & 0x7fffffff), 8);
  for (let i = 0; i < 12; i++) iv[i] ^= salt[i];
  return iv;
}

// RTCPFlow seals (side 'client': direction 1) and opens (direction 2)
// the SRTCP of one flow, RFC 7714 §9 as docs/PROTOCOL.md specifies.
export class RTCPFlow {
  static async create(secret, participant, kind) {
    const f = new RTCPFlow();
    const tx = await sessionKeys(await deriveRTCP(secret, participant, kind, 1), [3, 5]);
    const rx = await sessionKeys(await deriveRTCP(secret, participant, kind, 2), [3, 5]);
    f.tx = { salt: tx.salt, key: await gcmKey(tx.key) };
    f.rx = { salt: rx.salt, key: await gcmKey(rx.key) };
    f.index = new Map(); f.win = new Map();
    return f;
  }
  async seal(plain) {
    const ssrc = ((plain[4] << 24) | (plain[5] << 16) | (plain[6] << 8) | plain[7]) >>> 0;
    const idx = (this.index.get(ssrc) || 0) + 1;
    this.index.set(ssrc, idx);
    const e = be32((0x80000000 | idx) >>> 0);
    const head = plain.subarray(0, 8);
    const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: rtcpIV(this.tx.salt, ssrc, idx), additionalData: cat(head, e), tagLength: 128 }, this.tx.key, plain.subarray(8)));
    return cat(head, ct, e);
  }
  async open(pkt, dir = 'rx') {
    if (pkt.length < 8 + TAG + 4) return { drop: 'malformed' };
    const k = this[dir];
    const ssrc = ((pkt[4] << 24) | (pkt[5] << 16) | (pkt[6] << 8) | pkt[7]) >>> 0;
    const e = pkt.subarray(pkt.length - 4);
    if (!(e[0] & 0x80)) return { drop: 'malformed' };
    const idx = (((e[0] & 0x7f) << 24) | (e[1] << 16) | (e[2] << 8) | e[3]) >>> 0;
    let w = this.win.get(ssrc);
    if (!w) { w = new ReplayWindow(); this.win.set(ssrc, w); }
    const r = w.check(idx);
    if (r) return { drop: r };
    const head = pkt.subarray(0, 8);
    let pt;
    try {
      pt = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: rtcpIV(k.salt, ssrc, idx), additionalData: cat(head, e), tagLength: 128 }, k.key, pkt.subarray(8, pkt.length - 4)));
    } catch {
      return { drop: 'auth' };
    }
    w.accept(idx);
    return { pkt: cat(head, pt) };
  }
}

export const hex = {
  dec(s) { const b = new Uint8Array(s.length / 2); for (let i = 0; i < b.length; i++) b[i] = parseInt(s.substr(2 * i, 2), 16); return b; },
  enc(b) { return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''); },
};

// selfTest checks this module against the spec's vectors (v: name to hex,
// as in docs/PROTOCOL.md) and returns the names that failed.
export async function selfTest(v) {
  const bad = [];
  const eq = (name, got) => { if (hex.enc(got) !== v[name]) bad.push(name + ': got ' + hex.enc(got)); };
  const mk = new Uint8Array(32).map((_, i) => i);
  const m = await deriveSender(1, mk, 17, 0xdeadbeef);
  eq('srtp.master_key', m.key); eq('srtp.master_salt', m.salt);
  const sk = await sessionKeys(m, [0, 2]);
  eq('srtp.session_key', sk.key); eq('srtp.session_salt', sk.salt);
  eq('srtp.iv', rtpIV(sk.salt, 0xdeadbeef, 0, 0x1234));
  const ring = new KeyRing();
  ring.install({ id: 1, secret: mk }, 0);
  const tx = new SendStream(17, 0xdeadbeef, () => ring.sendKey());
  const sealed = await tx.seal(hex.dec(v['srtp.plain']));
  eq('srtp.packet', sealed);
  const rx = new RecvStream(17, 0xdeadbeef, ring);
  const o = await rx.open(hex.dec(v['srtp.packet']));
  if (!o.pkt) bad.push('srtp open: ' + o.drop); else eq('srtp.plain', o.pkt);
  const again = await rx.open(hex.dec(v['srtp.packet']));
  if (again.drop !== 'replayed') bad.push('srtp replay not refused: ' + JSON.stringify(again));
  const tampered = hex.dec(v['srtp.packet']); tampered[20] ^= 1;
  if ((await new RecvStream(17, 0xdeadbeef, ring).open(tampered)).drop !== 'auth') bad.push('srtp tampered packet not refused');
  // A packet under a key the receiver does not hold (its MKI names key 2).
  const other = new KeyRing();
  other.install({ id: 2, secret: mk }, 0);
  const under2 = await new SendStream(17, 0xdeadbeef, () => other.sendKey()).seal(hex.dec(v['srtp.plain']));
  if ((await new RecvStream(17, 0xdeadbeef, ring).open(under2)).drop !== 'unknown_key') bad.push('srtp packet under an unknown key not refused');
  if (!(await new RecvStream(17, 0xdeadbeef, other).open(under2)).pkt) bad.push('srtp packet under key 2 does not open with key 2');
  const rs = new Uint8Array(32).map((_, i) => 0x20 + i);
  const rm = await deriveRTCP(rs, 17, 1, 1);
  eq('srtcp.master_key', rm.key); eq('srtcp.master_salt', rm.salt);
  const rsk = await sessionKeys(rm, [3, 5]);
  eq('srtcp.session_key', rsk.key); eq('srtcp.session_salt', rsk.salt);
  const f = await RTCPFlow.create(rs, 17, 1);
  eq('srtcp.packet', await f.seal(hex.dec(v['srtcp.plain'])));
  const ro = await f.open(hex.dec(v['srtcp.packet']), 'tx');
  if (!ro.pkt) bad.push('srtcp open: ' + ro.drop); else eq('srtcp.plain', ro.pkt);
  return bad;
}
