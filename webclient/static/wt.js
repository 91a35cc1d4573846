// WebTransport media links (docs/PROTOCOL.md "Web client", WebTransport):
// one session per media kind at this page's origin over HTTP/3 (UDP, the
// same port number as the page's TLS port), one packet per datagram: a
// Bind (resent until its BindAck: datagrams may be lost), keepalives, RTP
// and RTCP both ways. WTLink has media.js Link's interface, so the rest of
// the page does not know which transport a link uses.

import * as rtp from './rtp.js';

const WT_TIMEOUT_MS = 2000; // unless the server says: a blocked UDP port costs this much before the WebSocket fallback
const BIND_RESEND_MS = 250; // Bind retransmission until the BindAck
const BIND_TIMEOUT_MS = 5000; // the router's bind timeout
const KEEPALIVE_MS = 15000; // docs/PROTOCOL.md: at least every 15 s
const MAX_PENDING = 512; // datagrams handed to the browser and not yet taken: beyond, drop (real time must not queue)

// webTransportURL is the session URL the server announces (a meta tag of
// the page; empty: WebTransport is off there), or '' when this browser has
// no WebTransport.
export function webTransportURL() {
  const m = document.querySelector('meta[name="openmmr-webtransport"]');
  const path = m ? m.content : '';
  if (!path || typeof WebTransport === 'undefined' || location.protocol !== 'https:') return '';
  return 'https://' + location.host + path;
}

// webTransportTimeout is the announced connect timeout in ms.
function webTransportTimeout() {
  const m = document.querySelector('meta[name="openmmr-webtransport"]');
  const t = m ? parseInt(m.dataset.timeoutMs, 10) : NaN;
  return t > 0 ? t : WT_TIMEOUT_MS;
}

export class WTLink {
  constructor(url, kind, token, onPacket, onClose) {
    this.url = url; this.kind = kind; this.token = token; this.onPacket = onPacket; this.onClose = onClose;
    this.transport = 'webtransport';
    this.sent = 0; this.received = 0; this.dropped = 0; this.pending = 0; this.closed = false; this.opened = false;
  }

  // open connects (within timeoutMs) and binds; it rejects, with nothing
  // left open and onClose not called, when either fails.
  async open(timeoutMs = webTransportTimeout()) {
    const wt = new WebTransport(this.url, { requireUnreliable: true });
    this.wt = wt;
    wt.ready.catch(() => {}); // told through the race below
    wt.closed.then(() => this.ended(), () => this.ended());
    const closedEarly = wt.closed.then(() => { throw new Error('WebTransport session closed before its bind'); },
      (e) => { throw new Error('WebTransport session failed before its bind: ' + e.message); });
    closedEarly.catch(() => {}); // only its race below listens
    let timer;
    const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`WebTransport did not connect within ${timeoutMs} ms`)), timeoutMs); });
    try {
      await Promise.race([wt.ready, late]);
    } catch (e) {
      this.fail();
      throw e;
    } finally { clearTimeout(timer); }
    this.maxDatagram = wt.datagrams.maxDatagramSize;
    this.writer = wt.datagrams.writable.getWriter();
    const reader = wt.datagrams.readable.getReader();
    const txid = (Math.random() * 2 ** 32) >>> 0;
    let bound;
    const acked = new Promise((resolve) => { bound = resolve; });
    this.readLoop(reader, txid, bound);
    const bind = await rtp.bind(rtp.KIND[this.kind], txid, this.token); // signed with WebCrypto (async)
    const resend = setInterval(() => this.write(bind), BIND_RESEND_MS);
    this.write(bind);
    const t0 = performance.now();
    try {
      await Promise.race([acked, closedEarly,
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('media bind timed out')), BIND_TIMEOUT_MS); })]);
    } catch (e) {
      this.fail();
      throw e;
    } finally { clearInterval(resend); clearTimeout(timer); }
    this.bindMs = performance.now() - t0;
    this.opened = true;
    this.ka = setInterval(() => this.send(rtp.keepalive(rtp.KIND[this.kind], (Math.random() * 2 ** 32) >>> 0)), KEEPALIVE_MS);
  }

  async readLoop(reader, txid, bound) {
    try {
      for (;;) {
        const { value: b, done } = await reader.read();
        if (done) return;
        const c = rtp.classify(b);
        if (c === 'bindack') {
          if (b[3] === 0 && new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(4) === txid) bound();
          continue;
        }
        if (c === 'rtp' || c === 'rtcp') { this.received++; this.onPacket(c, b, this); }
      }
    } catch { /* the session ended: wt.closed says so */ }
  }

  write(b) {
    if (this.pending >= MAX_PENDING) { this.dropped++; return false; }
    this.pending++;
    this.writer.write(b).then(() => { this.pending--; }, () => { this.pending--; });
    return true;
  }

  send(b) {
    if (this.closed || !this.opened) return false;
    if (!this.write(b)) return false;
    this.sent++;
    return true;
  }

  // fail closes a link that never opened, without telling onClose.
  fail() { this.closed = true; try { this.wt.close(); } catch { /* already closed */ } }

  // ended runs when the session ends: onClose is told once, unless the
  // link never opened or was closed by close().
  ended() {
    clearInterval(this.ka);
    if (!this.closed && this.opened) { this.closed = true; this.onClose(this); }
    this.closed = true;
  }

  close() { this.closed = true; clearInterval(this.ka); try { this.wt.close({ closeCode: 0, reason: 'leaving' }); } catch { /* already closed */ } }
}
