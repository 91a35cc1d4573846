// Media in the browser: one WebSocket per media kind into the router's
// stream path (docs/PROTOCOL.md "Web client"), WebCodecs encoders and
// decoders, SRTP (srtp.js), a jitter buffer, Web Audio playback.

import * as rtp from './rtp.js';
import { SendStream, RecvStream } from './srtp.js';

const KEEPALIVE_MS = 15000; // docs/PROTOCOL.md: at least every 15 s
const BIND_TIMEOUT_MS = 5000; // the router's bind timeout

// Link is one media kind's WebSocket to the router: Bind, BindAck,
// keepalives, then RTP and RTCP both ways, one packet per message.
export class Link {
  constructor(url, kind, token, onPacket, onClose) {
    this.url = url; this.kind = kind; this.token = token; this.onPacket = onPacket; this.onClose = onClose;
    this.transport = 'websocket';
    this.sent = 0; this.received = 0; this.closed = false;
  }
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, 'openmmr-media.v1');
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      const txid = (Math.random() * 2 ** 32) >>> 0;
      let bound = false;
      const t = setTimeout(() => { ws.close(); reject(new Error('media bind timed out')); }, BIND_TIMEOUT_MS);
      ws.onopen = () => rtp.bind(rtp.KIND[this.kind], txid, this.token).then((b) => ws.send(b), (e) => { ws.close(); reject(e); });
      ws.onerror = () => {};
      ws.onclose = () => {
        clearTimeout(t); clearInterval(this.ka);
        if (!bound) reject(new Error('media WebSocket closed before its bind'));
        if (!this.closed) { this.closed = true; this.onClose(this); }
      };
      ws.onmessage = (e) => {
        const b = new Uint8Array(e.data);
        const c = rtp.classify(b);
        if (c === 'bindack') {
          if (!bound && b[3] === 0 && new DataView(e.data).getUint32(4) === txid) {
            bound = true; clearTimeout(t);
            this.ka = setInterval(() => this.send(rtp.keepalive(rtp.KIND[this.kind], (Math.random() * 2 ** 32) >>> 0)), KEEPALIVE_MS);
            resolve();
          }
          return;
        }
        if (c === 'rtp' || c === 'rtcp') { this.received++; this.onPacket(c, b, this); }
      };
    });
  }
  send(b) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      // The router drops what it cannot send; so does the page when the
      // socket is backed up (a real-time stream must not queue seconds).
      if (this.ws.bufferedAmount > 512 * 1024) return false;
      this.ws.send(b); this.sent++;
      return true;
    }
    return false;
  }
  close() { this.closed = true; clearInterval(this.ka); if (this.ws) this.ws.close(1000); }
}

// Serial runs async jobs one after another (SRTP is async in WebCrypto;
// packets must leave and be decoded in order).
class Serial {
  constructor() { this.p = Promise.resolve(); }
  run(f) { this.p = this.p.then(f).catch((e) => console.warn('openmmr:', e)); return this.p; }
}

// VideoSender encodes a video track as VP8 (software: prefer-hardware is
// unsupported headless) and sends it on link.
export class VideoSender {
  constructor(track, getLink, ssrc, stream, opts = {}) {
    this.track = track; this.getLink = getLink; this.ssrc = ssrc; this.stream = stream;
    this.pz = new rtp.Packetizer(ssrc, rtp.PT_VP8, 90000);
    this.serial = new Serial(); this.paused = false; this.needKey = true; this.frames = 0; this.keyframes = 0;
    this.bitrate = opts.bitrate || 800000; this.stopped = false;
  }
  start() {
    this.enc = new VideoEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength); chunk.copyTo(data);
        if (chunk.type === 'key') this.keyframes++;
        this.frames++;
        const pkts = this.pz.vp8(data, chunk.timestamp);
        this.serial.run(async () => { for (const p of pkts) { const link = this.getLink(); if (link) link.send(await this.stream.seal(p)); } });
      },
      error: (e) => { console.warn('openmmr: video encoder', e); this.configured = false; },
    });
    const proc = new MediaStreamTrackProcessor({ track: this.track });
    this.reader = proc.readable.getReader();
    this.loop();
  }
  async loop() {
    for (;;) {
      const { value: frame, done } = await this.reader.read().catch(() => ({ done: true }));
      if (done || this.stopped) { if (frame) frame.close(); return; }
      try {
        if (this.paused || this.enc.state === 'closed') continue;
        if (!this.configured || frame.displayWidth !== this.w || frame.displayHeight !== this.h) {
          this.w = frame.displayWidth; this.h = frame.displayHeight;
          this.enc.configure({ codec: 'vp8', width: this.w, height: this.h, bitrate: this.bitrate, framerate: 30, latencyMode: 'realtime', hardwareAcceleration: 'prefer-software' });
          this.configured = true; this.needKey = true;
        }
        if (this.enc.encodeQueueSize > 2) continue; // the encoder is behind: skip, do not queue
        const key = this.needKey || this.frames % 300 === 0; // and a keyframe every ~10 s at 30 fps
        this.needKey = false;
        this.enc.encode(frame, { keyFrame: key });
      } finally { frame.close(); }
    }
  }
  requestKeyframe() { this.needKey = true; }
  stop() { this.stopped = true; try { this.reader.cancel(); } catch {} try { this.enc.close(); } catch {} }
}

// AudioSender encodes an audio track as Opus, one 20 ms frame per packet,
// each packet carrying the audio level of its frame (RFC 6464, header
// extension ID 1; docs/PROTOCOL.md RTP "Audio level"): the RMS of the
// captured samples the frame was encoded from, in -dBov. The router reads
// it to pick the active speaker.
export class AudioSender {
  constructor(track, getLink, ssrc, stream) {
    this.track = track; this.getLink = getLink; this.ssrc = ssrc; this.stream = stream;
    this.pz = new rtp.Packetizer(ssrc, rtp.PT_OPUS, 48000);
    this.serial = new Serial(); this.paused = false; this.frames = 0; this.stopped = false;
    this.energy = []; // {start, end (µs), sumSq, n} of captured frames not yet encoded
    this.level = 127; // of the last packet sent
  }
  start() {
    this.enc = new AudioEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength); chunk.copyTo(data);
        this.frames++;
        this.level = this.levelOf(chunk.timestamp, chunk.timestamp + (chunk.duration || 20000));
        const pkts = this.pz.opus(data, chunk.timestamp, this.level);
        this.serial.run(async () => { for (const p of pkts) { const link = this.getLink(); if (link) link.send(await this.stream.seal(p)); } });
      },
      error: (e) => { console.warn('openmmr: audio encoder', e); this.configured = false; },
    });
    const proc = new MediaStreamTrackProcessor({ track: this.track });
    this.reader = proc.readable.getReader();
    this.loop();
  }
  // measure records the energy of a captured frame (first channel).
  measure(data) {
    const n = data.numberOfFrames;
    if (!this.buf || this.buf.length < n) this.buf = new Float32Array(n);
    const ch = this.buf.subarray(0, n);
    data.copyTo(ch, { planeIndex: 0, format: 'f32-planar' });
    let sumSq = 0;
    for (let i = 0; i < n; i++) sumSq += ch[i] * ch[i];
    this.energy.push({ start: data.timestamp, end: data.timestamp + data.duration, sumSq, n });
    if (this.energy.length > 50) this.energy.shift(); // the encoder holds a frame or two, never a second
  }
  // levelOf returns the level of the captured audio in [start, end) (µs)
  // and forgets what ends by then; the previous level if none is known.
  levelOf(start, end) {
    let sumSq = 0, n = 0;
    for (const e of this.energy) if (e.end > start && e.start < end) { sumSq += e.sumSq; n += e.n; }
    this.energy = this.energy.filter((e) => e.end > end);
    return n ? rtp.audioLevel(sumSq, n) : this.level;
  }
  async loop() {
    for (;;) {
      const { value: data, done } = await this.reader.read().catch(() => ({ done: true }));
      if (done || this.stopped) { if (data) data.close(); return; }
      try {
        if (this.paused || this.enc.state === 'closed') { this.energy = []; continue; }
        if (!this.configured) {
          this.enc.configure({ codec: 'opus', sampleRate: data.sampleRate, numberOfChannels: data.numberOfChannels, bitrate: 32000 });
          this.configured = true;
        }
        this.measure(data);
        this.enc.encode(data);
      } finally { data.close(); }
    }
  }
  stop() { this.stopped = true; try { this.reader.cancel(); } catch {} try { this.enc.close(); } catch {} }
}

// JitterBuffer releases items in sequence order; a missing sequence number
// is given up after waitMs (then onLoss is called), so one lost packet
// costs at most waitMs of delay.
export class JitterBuffer {
  constructor(waitMs, onItem, onLoss) {
    this.waitMs = waitMs; this.onItem = onItem; this.onLoss = onLoss;
    this.next = -1; this.q = new Map(); this.since = 0;
  }
  push(seq, item) {
    if (this.next < 0) this.next = seq;
    const d = (seq - this.next) & 0xffff;
    if (d >= 32768) return; // late (already given up or played)
    this.q.set(seq, item);
    if (this.q.size > 512) { this.q.clear(); this.next = seq; this.q.set(seq, item); this.onLoss(); }
    this.drain();
  }
  drain() {
    for (;;) {
      if (this.q.has(this.next)) {
        const it = this.q.get(this.next); this.q.delete(this.next);
        this.next = (this.next + 1) & 0xffff; this.since = 0;
        this.onItem(it);
        continue;
      }
      if (this.q.size === 0) return;
      const now = performance.now();
      if (!this.since) { this.since = now; return; }
      if (now - this.since < this.waitMs) return;
      // give up on the missing one: skip to the oldest held
      let best = -1, bd = 1e9;
      for (const s of this.q.keys()) { const d = (s - this.next) & 0xffff; if (d < bd) { bd = d; best = s; } }
      this.next = best; this.since = 0; this.onLoss();
    }
  }
}

// VideoReceiver: one remote video SSRC: SRTP open (under the live keys of
// ring), jitter buffer, frame assembly (RFC 7741), VP8 decoding, drawing
// on canvas.
export class VideoReceiver {
  constructor(participant, ssrc, ring, canvas, sendPLI) {
    this.p = participant; this.ssrc = ssrc; this.canvas = canvas; this.sendPLI = sendPLI;
    this.open = new RecvStream(participant, ssrc, ring); this.serial = new Serial();
    this.frames = 0; this.keyframes = 0; this.drops = {}; this.waitKey = true; this.lastPLI = 0;
    this.cur = null;
    this.jb = new JitterBuffer(80, (p) => this.assemble(p), () => { this.cur = null; this.needKey('loss'); });
    this.dec = this.newDecoder();
    this.timer = setInterval(() => { this.jb.drain(); if (this.waitKey) this.needKey('waiting'); }, 100);
  }
  newDecoder() {
    const d = new VideoDecoder({
      output: (f) => {
        this.frames++;
        if (this.canvas.width !== f.displayWidth) this.canvas.width = f.displayWidth;
        if (this.canvas.height !== f.displayHeight) this.canvas.height = f.displayHeight;
        this.canvas.getContext('2d').drawImage(f, 0, 0);
        f.close();
      },
      error: (e) => { console.warn('openmmr: video decoder', e); this.dec = this.newDecoder(); this.needKey('decoder'); },
    });
    d.configure({ codec: 'vp8', optimizeForLatency: true });
    return d;
  }
  needKey(why) {
    this.waitKey = true;
    const now = performance.now();
    if (now - this.lastPLI >= 300) { this.lastPLI = now; this.sendPLI(this.ssrc); }
  }
  drop(r) { this.drops[r] = (this.drops[r] || 0) + 1; }
  handle(b) {
    this.serial.run(async () => {
      const o = await this.open.open(b);
      if (o.drop) { this.drop(o.drop); return; }
      const p = rtp.parse(o.pkt);
      if (!p) { this.drop('malformed'); return; }
      this.jb.push(p.seq, p);
    });
  }
  assemble(p) {
    const v = rtp.vp8Payload(p.payload);
    if (!v) { this.drop('malformed'); return; }
    if (v.start) this.cur = { ts: p.ts, parts: [] };
    if (!this.cur || this.cur.ts !== p.ts) { this.cur = null; return; }
    this.cur.parts.push(v.data);
    if (!p.marker) return;
    const len = this.cur.parts.reduce((a, x) => a + x.length, 0);
    const frame = new Uint8Array(len);
    let o = 0;
    for (const x of this.cur.parts) { frame.set(x, o); o += x.length; }
    this.cur = null;
    const key = rtp.isVP8Key(frame);
    if (this.waitKey && !key) return;
    if (key) { this.waitKey = false; this.keyframes++; }
    if (this.dec.state !== 'configured') return;
    this.dec.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp: p.ts * 1e6 / 90000, data: frame }));
  }
  close() { clearInterval(this.timer); try { this.dec.close(); } catch {} }
}

// AudioReceiver: one remote audio SSRC: SRTP open (under the live keys of
// ring), jitter buffer, Opus decoding, Web Audio playback scheduled on a
// small playout delay.
export class AudioReceiver {
  constructor(participant, ssrc, ring, audioCtx) {
    this.p = participant; this.ssrc = ssrc; this.ctx = audioCtx;
    this.open = new RecvStream(participant, ssrc, ring); this.serial = new Serial();
    this.frames = 0; this.drops = {}; this.playhead = 0; this.level = 0;
    this.jb = new JitterBuffer(60, (p) => this.decode(p), () => {});
    this.dec = new AudioDecoder({
      output: (a) => { this.frames++; this.play(a); },
      error: (e) => console.warn('openmmr: audio decoder', e),
    });
    this.dec.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
    this.timer = setInterval(() => this.jb.drain(), 50);
  }
  drop(r) { this.drops[r] = (this.drops[r] || 0) + 1; }
  handle(b) {
    this.serial.run(async () => {
      const o = await this.open.open(b);
      if (o.drop) { this.drop(o.drop); return; }
      const p = rtp.parse(o.pkt);
      if (!p) { this.drop('malformed'); return; }
      this.jb.push(p.seq, p);
    });
  }
  decode(p) {
    if (this.dec.state !== 'configured') return;
    this.dec.decode(new EncodedAudioChunk({ type: 'key', timestamp: p.ts * 1e6 / 48000, data: p.payload }));
  }
  play(a) {
    try {
      const n = a.numberOfFrames;
      const buf = this.ctx.createBuffer(1, n, a.sampleRate);
      const ch = new Float32Array(n);
      a.copyTo(ch, { planeIndex: 0, format: 'f32-planar' });
      let sum = 0; for (let i = 0; i < n; i += 16) sum += ch[i] * ch[i];
      this.level = Math.sqrt(sum / (n / 16));
      buf.copyToChannel(ch, 0);
      const src = this.ctx.createBufferSource();
      src.buffer = buf; src.connect(this.ctx.destination);
      const now = this.ctx.currentTime;
      if (this.playhead < now + 0.02 || this.playhead > now + 0.5) this.playhead = now + 0.06; // 60 ms playout delay
      src.start(this.playhead);
      this.playhead += buf.duration;
    } finally { a.close(); }
  }
  close() { clearInterval(this.timer); try { this.dec.close(); } catch {} }
}

export { SendStream };
