// The control channel (docs/PROTOCOL.md "Control channel") over the
// WebSocket /v1/ws/control: one JSON message per text message.

export class ControlError extends Error {
  constructor(code, message, fatal) { super(message || code); this.code = code; this.fatal = !!fatal; }
}

export class Control {
  // onEvent(type, body) gets events; onClose(err, control) once when the
  // socket ends (not after close()).
  constructor(url, onEvent, onClose) {
    this.url = url; this.onEvent = onEvent; this.onClose = onClose;
    this.id = 0; this.pending = new Map(); this.closed = false; this.last = performance.now();
  }
  open(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, 'openmmr-control.v1');
      this.ws = ws;
      const t = setTimeout(() => { ws.close(); reject(new ControlError('timeout', 'control channel did not open')); }, timeoutMs);
      ws.onopen = () => { clearTimeout(t); resolve(); };
      ws.onerror = () => {};
      ws.onclose = (e) => { clearTimeout(t); reject(this.ended(`control channel closed (${e.code}${e.reason ? ' ' + e.reason : ''})`)); };
      ws.onmessage = (e) => this.receive(e.data);
    });
  }
  // ended runs once when the channel ends: pending requests fail and
  // onClose is told (unless close() was called).
  ended(why) {
    clearInterval(this.watchdog);
    const err = new ControlError('closed', why);
    for (const [, p] of this.pending) p.reject(err);
    this.pending.clear();
    if (!this.closed) { this.closed = true; this.onClose(err, this); }
    return err;
  }
  // watch closes the socket when the server has been silent for 2.5 ping
  // intervals: a dead path that TCP has not noticed yet (the page then
  // resumes over a new WebSocket).
  watch(pingMs) {
    this.watchdog = setInterval(() => {
      if (performance.now() - this.last > 2.5 * pingMs && this.ws) {
        // Do not wait for a closing handshake over a dead path.
        this.ws.onclose = null; this.ws.close(4000, 'server silent');
        this.ended('the server went silent');
      }
    }, 1000);
  }
  receive(data) {
    this.last = performance.now();
    let m;
    try { m = JSON.parse(data); } catch { return; }
    const body = m.body || {};
    if (m.type === 'ping') { this.send({ type: 'pong', id: m.id, body: {} }); return; }
    if (m.id && this.pending.has(m.id) && m.type !== 'ping') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.type === 'error') p.reject(new ControlError(body.code, body.message, body.fatal));
      else p.resolve({ type: m.type, body });
      return;
    }
    if (m.type === 'error') { this.lastError = new ControlError(body.code, body.message, body.fatal); return; }
    this.onEvent(m.type, body);
  }
  send(m) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m)); }
  request(type, body, timeoutMs = 10000) {
    this.id = (this.id % 0xfffffffe) + 1;
    const id = this.id;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.pending.delete(id); reject(new ControlError('timeout', type + ' timed out')); }, timeoutMs);
      this.pending.set(id, { resolve: (v) => { clearTimeout(t); resolve(v); }, reject: (e) => { clearTimeout(t); reject(e); } });
      this.send({ type, id, body });
    });
  }
  hello() { return this.request('hello', { versions: [1], software: 'openmmr-web/1', capabilities: ['resume'] }); }
  close() { this.closed = true; clearInterval(this.watchdog); if (this.ws) this.ws.close(1000); }
}
