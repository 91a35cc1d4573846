// RTP (RFC 3550) packetization as docs/PROTOCOL.md "Web client" says:
// Opus one frame per packet (RFC 7587, PT 111, 48 kHz clock), VP8 with the
// RFC 7741 payload descriptor (PT 96, 90 kHz clock), at most MAX_PAYLOAD
// bytes of payload so that a protected packet stays under about 1,200 bytes.

export const PT_OPUS = 111;
export const PT_VP8 = 96;
export const MAX_PAYLOAD = 1100; // 12 header + 4 descriptor + 1100 + 20 SRTP = 1136 bytes

export function header(pt, marker, seq, ts, ssrc) {
  const b = new Uint8Array(12);
  b[0] = 0x80;
  b[1] = (marker ? 0x80 : 0) | pt;
  b[2] = (seq >> 8) & 255; b[3] = seq & 255;
  b[4] = (ts >>> 24) & 255; b[5] = (ts >>> 16) & 255; b[6] = (ts >>> 8) & 255; b[7] = ts & 255;
  b[8] = (ssrc >>> 24) & 255; b[9] = (ssrc >>> 16) & 255; b[10] = (ssrc >>> 8) & 255; b[11] = ssrc & 255;
  return b;
}

// parse returns the fields of an RTP packet (payload is a view) or null.
export function parse(b) {
  if (b.length < 12 || (b[0] >> 6) !== 2) return null;
  let off = 12 + 4 * (b[0] & 15);
  if (b[0] & 0x10) {
    if (b.length < off + 4) return null;
    off += 4 + 4 * ((b[off + 2] << 8) | b[off + 3]);
  }
  let end = b.length;
  if (b[0] & 0x20) end -= b[b.length - 1];
  if (off > end) return null;
  return {
    marker: (b[1] & 0x80) !== 0, pt: b[1] & 0x7f, seq: (b[2] << 8) | b[3],
    ts: ((b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7]) >>> 0,
    ssrc: ((b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11]) >>> 0,
    payload: b.subarray(off, end),
  };
}

// AUDIO_LEVEL_EXT_ID is the header extension ID of the audio level, fixed
// by docs/PROTOCOL.md (RTP, "Audio level"; wire.AudioLevelExtID).
export const AUDIO_LEVEL_EXT_ID = 1;
// AUDIO_LEVEL_EXT_LEN: the one-byte-header extension block (RFC 8285 §4.2)
// holding only the audio level: profile 0xBEDE, length 1 (32-bit word),
// then ID 1 with L=0 (one byte), the level byte and two bytes of padding.
export const AUDIO_LEVEL_EXT_LEN = 8;

// audioLevelExt returns that block for level (RFC 6464 §3: the V bit, top
// bit, is 0: the page runs no voice activity detection; the low 7 bits are
// the level in -dBov, 0 loudest, 127 silence).
export function audioLevelExt(level) {
  return Uint8Array.of(0xbe, 0xde, 0, 1, (AUDIO_LEVEL_EXT_ID << 4) | 0, Math.max(0, Math.min(127, Math.round(level))) & 0x7f, 0, 0);
}

// audioLevel returns the RFC 6464 level of audio whose samples (floats,
// full scale ±1, the overload point of 0 dBov) have sum of squares sumSq
// over n samples: -20·log10(RMS) rounded and clamped to 0..127 (silence,
// and no samples at all, is 127).
export function audioLevel(sumSq, n) {
  if (n <= 0 || sumSq <= 0) return 127;
  const db = -10 * Math.log10(sumSq / n); // -20·log10(sqrt(sumSq/n))
  return Math.max(0, Math.min(127, Math.round(db)));
}

// Packetizer numbers the packets of one SSRC (random first sequence number
// and timestamp offset, RFC 3550 §5.1).
export class Packetizer {
  constructor(ssrc, pt, clock) {
    this.ssrc = ssrc; this.pt = pt; this.clock = clock;
    this.seq = (Math.random() * 65536) | 0;
    this.tsOff = (Math.random() * 2 ** 32) >>> 0;
    this.pictureID = (Math.random() * 32768) | 0;
  }
  ts(us) { return (this.tsOff + Math.round(us * this.clock / 1e6)) >>> 0; }
  next() { const s = this.seq; this.seq = (this.seq + 1) & 0xffff; return s; }
  // opus: one packet per encoded frame, with the audio level (0..127 in
  // -dBov, see audioLevel) as the RFC 6464 header extension when level is
  // a number.
  opus(data, us, level) {
    const h = header(this.pt, false, this.next(), this.ts(us), this.ssrc);
    const ext = level === undefined ? 0 : AUDIO_LEVEL_EXT_LEN;
    const p = new Uint8Array(12 + ext + data.length); p.set(h);
    if (ext) { p[0] |= 0x10; p.set(audioLevelExt(level), 12); }
    p.set(data, 12 + ext);
    return [p];
  }
  // vp8: RFC 7741 §4.2 descriptor X=1, S on the first packet, PID 0,
  // I=1 with a 15-bit PictureID (so receivers can tell frames apart);
  // the marker bit on the frame's last packet.
  vp8(data, us) {
    const ts = this.ts(us);
    const pid = this.pictureID; this.pictureID = (this.pictureID + 1) & 0x7fff;
    const out = [];
    for (let off = 0; off < data.length || off === 0; off += MAX_PAYLOAD) {
      const chunk = data.subarray(off, Math.min(data.length, off + MAX_PAYLOAD));
      const last = off + MAX_PAYLOAD >= data.length;
      const p = new Uint8Array(12 + 4 + chunk.length);
      p.set(header(this.pt, last, this.next(), ts, this.ssrc));
      p[12] = 0x80 | (off === 0 ? 0x10 : 0);
      p[13] = 0x80;
      p[14] = 0x80 | (pid >> 8); p[15] = pid & 255;
      p.set(chunk, 16);
      out.push(p);
      if (data.length === 0) break;
    }
    return out;
  }
}

// vp8Payload strips the RFC 7741 descriptor: {start, data} or null.
export function vp8Payload(pl) {
  if (pl.length < 1) return null;
  let i = 1;
  const x = pl[0] & 0x80, s = (pl[0] & 0x10) !== 0, pid = pl[0] & 7;
  if (x) {
    if (pl.length < 2) return null;
    const ext = pl[1]; i = 2;
    if (ext & 0x80) { if (pl.length < 3) return null; i += (pl[i] & 0x80) ? 2 : 1; }
    if (ext & 0x40) i++;
    if (ext & 0x30) i++;
  }
  if (i > pl.length) return null;
  return { start: s && pid === 0, data: pl.subarray(i) };
}

// isVP8Key: the frame tag's P bit (RFC 6386 §9.1) is 0 on a keyframe.
export function isVP8Key(frame) { return frame.length > 0 && (frame[0] & 1) === 0; }

// pli returns an RTCP PLI (RFC 4585 §6.3.1, PSFB FMT 1), 12 bytes, for
// media SSRC media, sent alone (reduced-size, RFC 5506) as the router's
// keyframe throttle asks.
export function pli(sender, media) {
  const b = new Uint8Array(12);
  b[0] = 0x81; b[1] = 206; b[2] = 0; b[3] = 2;
  new DataView(b.buffer).setUint32(4, sender >>> 0);
  new DataView(b.buffer).setUint32(8, media >>> 0);
  return b;
}

// pliTarget returns the media SSRCs of the PLIs and FIRs in an RTCP datagram.
export function keyframeRequests(b) {
  const out = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let o = 0; o + 4 <= b.length;) {
    const len = (dv.getUint16(o + 2) + 1) * 4;
    if (o + len > b.length) break;
    const pt = b[o + 1], fmt = b[o] & 31;
    if (pt === 206 && fmt === 1 && len >= 12) out.push(dv.getUint32(o + 8));
    if (pt === 206 && fmt === 4) for (let e = o + 12; e + 8 <= o + len; e += 8) out.push(dv.getUint32(e));
    o += len;
  }
  return out;
}

// Wire packets of the stream protocol (docs/PROTOCOL.md "Media over UDP 8801").
export const KIND = { audio: 1, video: 2, content: 3 };
// A Bind (version 2) is 56 bytes: header (8), handle (8), counter (8),
// time (8), nonce (8), MAC (16). It names the participant by the handle
// HMAC-SHA-256(token, "openmmr/1 bind handle")[0:8] and carries
// HMAC-SHA-256(token, "openmmr/1 bind" || bytes 0-39)[0:16]: the token
// itself never leaves the page (docs/PROTOCOL.md "Bind (type 4)"). On a
// stream (this WebSocket) the router never challenges a Bind, so the
// nonce stays 0 (docs/PROTOCOL.md "Media over TCP 8801 and TLS 443").
const enc = new TextEncoder();
async function tokenMAC(key, label, msg) {
  const l = enc.encode(label);
  const m = new Uint8Array(l.length + msg.length); m.set(l); m.set(msg, l.length);
  return new Uint8Array(await crypto.subtle.sign('HMAC', key, m));
}
function hmacKey(token) {
  return crypto.subtle.importKey('raw', token, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}
// bindAt returns the Bind signed with token (16 bytes) for the given
// counter and time (BigInt microseconds-based counter, milliseconds).
export async function bindAt(kind, txid, token, nonce, counter, timeMs) {
  const key = await hmacKey(token);
  const b = new Uint8Array(56);
  const v = new DataView(b.buffer);
  b[0] = 4; b[1] = 2; b[2] = kind;
  v.setUint32(4, txid >>> 0);
  b.set((await tokenMAC(key, 'openmmr/1 bind handle', new Uint8Array(0))).subarray(0, 8), 8);
  v.setBigUint64(16, BigInt(counter));
  v.setBigUint64(24, BigInt(timeMs));
  v.setBigUint64(32, BigInt(nonce));
  b.set((await tokenMAC(key, 'openmmr/1 bind', b.subarray(0, 40))).subarray(0, 16), 40);
  return b;
}
// lastCounter is the counter of the page's last Bind: each new one is
// above it and at least the time in microseconds, so counters keep rising
// across links and reloads (docs/PROTOCOL.md: Counter).
let lastCounter = 0n;
export function bind(kind, txid, token) {
  const now = Date.now();
  let c = BigInt(now) * 1000n;
  if (c <= lastCounter) c = lastCounter + 1n;
  lastCounter = c;
  return bindAt(kind, txid, token, 0n, c, now);
}
// consentEcho is a UDP Keepalive's echo of consent nonce (BigInt) on a
// flow of kind, as a BigInt (docs/PROTOCOL.md "Keepalive"). Streams send
// 0; it is here for the test vectors.
export async function consentEcho(token, kind, nonce) {
  if (BigInt(nonce) === 0n) return 0n;
  const m = new Uint8Array(9); m[0] = kind;
  new DataView(m.buffer).setBigUint64(1, BigInt(nonce));
  const s = await tokenMAC(await hmacKey(token), 'openmmr/1 consent', m);
  const e = new DataView(s.buffer).getBigUint64(0);
  return e === 0n ? 1n : e;
}
// A Keepalive is 16 bytes: header (8) and the consent nonce (8), which a
// stream's KeepaliveAck leaves at 0.
export function keepalive(kind, txid) {
  const b = new Uint8Array(16);
  b[0] = 6; b[1] = 1; b[2] = kind;
  new DataView(b.buffer).setUint32(4, txid >>> 0);
  return b;
}
// classify by first bytes (RFC 7983 ranges, docs/PROTOCOL.md).
export function classify(b) {
  if (b.length < 1) return 'unknown';
  const b0 = b[0];
  if (b0 === 5) return 'bindack';
  if (b0 === 7) return 'keepaliveack';
  if (b0 >= 128 && b0 <= 191) return (b.length > 1 && b[1] >= 192 && b[1] <= 223) ? 'rtcp' : 'rtp';
  return 'unknown';
}
