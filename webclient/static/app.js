// openmmr web client: join form, lookup at the web tier, control channel
// over a WebSocket and media over WebTransport or WebSockets on this origin
// (docs/PROTOCOL.md "Web client").
// window.openmmr exposes the page state for people debugging and for the
// browser tests.

import { Control, ControlError } from './control.js';
import { Link, VideoSender, AudioSender, VideoReceiver, AudioReceiver } from './media.js';
import { SendStream, RTCPFlow, hex } from './srtp.js';
import { KeyRing, PAGE_MAX_KEYS } from './keyring.js';
import { WTLink, webTransportURL } from './wt.js';
import * as rtp from './rtp.js';

const $ = (id) => document.getElementById(id);
const wsURL = (path) => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
const SESSION_KEY = 'openmmr.session';
const TRANSPORT_NAMES = { webtransport: 'WebTransport (UDP 443)', websocket: 'WebSocket (TLS 443)', mixed: 'WebTransport and WebSocket' };

const LOOKUP_ERRORS = {
  'wrong-passcode': 'Wrong passcode.',
  'passcode-required': 'This meeting needs a passcode.',
  'meeting-not-found': 'No meeting with that ID.',
  'invalid-meeting-id': 'A meeting ID has 10 or 11 digits.',
  'meeting-ended': 'This meeting has ended.',
  'locked-out': 'Too many wrong attempts: try again later.',
  'rate-limited': 'Too many attempts: try again in a moment.',
};
// E2EE_REFUSED: the web client does not join end-to-end encrypted meetings
// (it would have to hold an X25519 key pair and take part in the E2EE key
// schedule; docs/PROTOCOL.md "Web client").
const E2EE_REFUSED = 'This meeting is end-to-end encrypted: join it with the openmmr app.';
const JOIN_ERRORS = {
  'e2ee': E2EE_REFUSED,
  'public-key-required': E2EE_REFUSED,
  'e2ee-no-viewers': E2EE_REFUSED,
  'meeting-full': 'The meeting is full.',
  'server-full': 'The server is full: try again later.',
  'token-expired': 'Your admission expired: join again.',
  'shutting-down': 'The server is restarting: try again in a moment.',
};

const state = {
  phase: 'idle', // idle, joining, joined, reconnecting, left, error
  transport: '', error: '', meeting: '', name: '', participant: 0, role: '',
  roster: new Map(), // participant ID -> {id, name, streams: {kind: [ssrc]}}
  links: {}, senders: {}, receivers: new Map(), // ssrc -> receiver
  ssrcOwner: new Map(), // ssrc -> {participant, kind}
  muted: { audio: false, video: false }, sharing: false, reconnects: 0, joinedAt: 0,
  activeSpeaker: 0, // participant ID of the last active-speaker event (0: none yet)
  keyErrors: 0, // media keys refused (malformed, or a live ID with another secret)
};
let control = null, joined = null, localStream = null, shareStream = null, audioCtx = null, leaving = false;
// ring: the live meeting keys (keyring.js: keys.Ring's rules), from
// joined.media_key, every media-key event and resumed.media_key; one per
// join, kept across resumes. keyTimer runs ring.advance at its deadline.
let ring = null, keyTimer = 0;
// rtcp: the SRTCP contexts of this participant's flows, per kind, from
// joined.rtcp_secret (docs/PROTOCOL.md "SRTCP transform"); new with every
// joined and resumed (the router switches at once).
let rtcp = null;
const KIND_NUM = { audio: 1, video: 2, content: 3 };

async function setRTCP(j) {
  const secret = hex.dec(j.rtcp_secret);
  const flows = {};
  for (const [k, n] of Object.entries(KIND_NUM)) flows[k] = await RTCPFlow.create(secret, j.participant, n);
  rtcp = flows;
}

// installKey adds a Standard-mode key ({key_id, key: hex}) to the ring.
function installKey(mk) {
  if (!ring) return; // not in a meeting (an event of a channel being closed)
  if (!mk || !mk.key_id || typeof mk.key !== 'string' || !/^[0-9a-f]{64}$/i.test(mk.key)) { state.keyErrors++; return; }
  try {
    ring.install({ id: mk.key_id, secret: hex.dec(mk.key) }, performance.now());
  } catch (e) {
    state.keyErrors++; console.warn('openmmr: media key refused:', e.message);
  }
  advanceKeys();
  showSecurity();
}

// advanceKeys performs what the ring has due and waits for its next deadline.
function advanceKeys() {
  clearTimeout(keyTimer); keyTimer = 0;
  if (!ring) return;
  ring.advance(performance.now());
  const d = ring.deadline();
  if (d !== null) keyTimer = setTimeout(() => { advanceKeys(); showSecurity(); }, Math.max(0, d - performance.now()) + 1);
}

// showSecurity: the header badge says the media is encrypted and under
// which key ID the page sends (Standard mode: the server makes the keys).
function showSecurity() {
  const el = $('security'), k = ring && ring.sendKey();
  el.hidden = !k;
  if (!k) return;
  el.textContent = 'encrypted · key ' + k.id;
  el.dataset.keyId = String(k.id);
}

// checkProtection refuses a meeting the page cannot protect (E2EE, or a
// mode it does not know): it leaves and says why.
async function checkProtection(c, j) {
  if (j.media_protection === 'standard' && j.media_key) return;
  await c.request('leave', {}, 3000).catch(() => {});
  c.close();
  if (j.media_protection === 'e2ee') throw new ControlError('e2ee', E2EE_REFUSED);
  throw new ControlError('protection', 'This meeting uses a media protection the web client does not know (' + j.media_protection + ').');
}

function status(text, bad) { const s = $('status'); s.textContent = text; s.className = bad ? 'bad' : ''; }
function show(view) { for (const v of ['join', 'meeting-view', 'left']) $(v).hidden = v !== view; }
function randSSRC() { return (crypto.getRandomValues(new Uint32Array(1))[0] | 1) >>> 0; }

// ---- join form ----------------------------------------------------------

async function listDevices() {
  const devs = await navigator.mediaDevices.enumerateDevices();
  for (const [sel, kind] of [[$('camera'), 'videoinput'], [$('mic'), 'audioinput']]) {
    const cur = sel.value;
    sel.length = 1;
    devs.filter((d) => d.kind === kind).forEach((d, i) => sel.add(new Option(d.label || `${kind} ${i + 1}`, d.deviceId)));
    if (sel.length > 1) sel.selectedIndex = cur ? [...sel.options].findIndex((o) => o.value === cur) : 1;
    if (sel.selectedIndex < 0) sel.selectedIndex = 1;
  }
}

async function capture() {
  const cam = $('camera').value, mic = $('mic').value;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  if (!cam && !mic) { $('preview').srcObject = null; return; }
  localStream = await navigator.mediaDevices.getUserMedia({
    video: cam ? { deviceId: { exact: cam }, width: 640, height: 480, frameRate: 30 } : false,
    audio: mic ? { deviceId: { exact: mic } } : false,
  });
  $('preview').srcObject = localStream;
}

async function initForm() {
  const m = location.pathname.match(/^\/j\/([0-9 -]+)$/);
  if (m) $('meeting').value = m[1];
  $('name').value = localStorage.getItem('openmmr.name') || '';
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: 30 }, audio: true });
    await listDevices();
    await capture();
  } catch (e) {
    $('join-error').textContent = 'No camera or microphone: you can still join to watch and listen (' + e.name + ').';
  }
  $('camera').onchange = $('mic').onchange = () => capture().catch((e) => { $('join-error').textContent = e.message; });
  $('join-form').onsubmit = (e) => { e.preventDefault(); join().catch(fail); };
  $('rejoin').onclick = () => { show('join'); state.phase = 'idle'; capture().catch(() => {}); };
}

async function lookup(meeting, passcode, name) {
  const r = await fetch('/v1/lookup', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ meeting_id: meeting, passcode, name, capabilities: ['websocket'] }),
  });
  const b = await r.json().catch(() => ({}));
  if (!r.ok) {
    const code = b.error && b.error.code;
    throw new ControlError(code || 'http-' + r.status, LOOKUP_ERRORS[code] || (b.error && b.error.message) || 'Lookup failed (' + r.status + ').');
  }
  return b;
}

function fail(e) {
  const msg = (e instanceof ControlError && (JOIN_ERRORS[e.code] || LOOKUP_ERRORS[e.code])) || e.message || String(e);
  state.error = msg; state.errorCode = e.code || '';
  if (state.phase === 'joined' || state.phase === 'reconnecting') { endMeeting('error', msg); return; }
  state.phase = 'error';
  $('join-error').textContent = msg;
  $('join-button').disabled = false;
  status('');
}

async function join() {
  const meeting = $('meeting').value.replace(/[\s-]/g, '');
  const name = $('name').value.trim();
  localStorage.setItem('openmmr.name', name);
  $('join-error').textContent = ''; $('join-button').disabled = true;
  state.phase = 'joining'; state.error = '';
  status('Looking the meeting up…');
  const lk = await lookup(meeting, $('passcode').value, name);
  if (lk.meeting && lk.meeting.e2ee) throw new ControlError('e2ee', E2EE_REFUSED); // before any connection
  status('Connecting…');
  await connect({ meeting: lk.meeting.id, token: lk.join_token, name });
}

// ---- the meeting --------------------------------------------------------

async function openControl() {
  const c = new Control(wsURL('/v1/ws/control'), onEvent, onControlClosed);
  await c.open();
  const w = await c.hello();
  c.watch(w.body.ping_interval_ms || 10000);
  return c;
}

// connect joins with a token (from the lookup) or resumes a stored session.
async function connect({ meeting, token, name, resume }) {
  state.meeting = meeting; state.name = name; leaving = false;
  const c = await openControl();
  let r;
  try {
    r = resume ? await c.request('resume', { participant: resume.participant, credential: resume.credential })
      : await c.request('join', { meeting, token, name });
  } catch (e) { c.close(); throw e; }
  await checkProtection(c, r.body);
  control = c; joined = r.body;
  ring = new KeyRing({ maxKeys: PAGE_MAX_KEYS }); state.keyErrors = 0;
  installKey(joined.media_key); // the first key: sealed with at once
  state.participant = joined.participant; state.role = joined.role;
  await setRTCP(joined);
  saveSession();
  show('meeting-view');
  state.roster.clear(); state.ssrcOwner.clear();
  for (const e of joined.roster || []) addParticipant(e);
  addLocalTile();
  if (!audioCtx) audioCtx = new AudioContext({ sampleRate: 48000 });
  audioCtx.resume().catch(() => {});
  await openLinks();
  if (resume) { // a reloaded page lost its SRTP state: new SSRCs (docs/PROTOCOL.md, sender keys)
    for (const k of ['audio', 'video', 'content']) await control.request('unpublish', { kind: k }).catch(() => {});
  }
  if (joined.role !== 'viewer') await startSending();
  state.phase = 'joined'; state.joinedAt = Date.now();
  status('In meeting ' + meeting);
}

// saveSession keeps what a reloaded page needs to resume; the grace period
// runs from when the page goes away (pagehide), not from the join.
function saveSession() {
  if (!joined || leaving) return;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({
    meeting: state.meeting, name: state.name, participant: joined.participant, credential: joined.resume,
    until: Date.now() + (joined.grace_ms || 0),
  }));
}
window.addEventListener('pagehide', () => { if (state.phase === 'joined' || state.phase === 'reconnecting') saveSession(); });

// openLinks opens the media links that are not open: over WebTransport
// first, when the server offers it and it has not failed on this page; if
// any WebTransport link fails (UDP blocked: it does not connect within the
// announced timeout, 2 s), every link goes over WebSockets, one transport
// per page.
async function openLinks() {
  const token = hex.dec(joined.media_token);
  const missing = () => ['audio', 'video', 'content'].filter((k) => !state.links[k] || state.links[k].closed);
  const wt = state.wtFailed ? '' : webTransportURL();
  if (wt && missing().length) {
    const want = missing();
    const tried = await Promise.allSettled(want.map(async (k) => {
      const l = new WTLink(wt, k, token, onPacket, onLinkClosed);
      await l.open();
      return l;
    }));
    const bad = tried.find((r) => r.status === 'rejected');
    if (!bad) {
      tried.forEach((r, i) => { state.links[want[i]] = r.value; });
    } else {
      state.wtFailed = true; state.wtError = bad.reason.message;
      console.warn('openmmr: WebTransport failed, media over WebSockets:', state.wtError);
      for (const r of tried) if (r.status === 'fulfilled') r.value.close();
      for (const [k, l] of Object.entries(state.links)) if (l.transport === 'webtransport') { l.close(); delete state.links[k]; }
    }
  }
  await Promise.all(missing().map(async (k) => {
    const l = new Link(wsURL('/v1/ws/media'), k, token, onPacket, onLinkClosed);
    await l.open();
    state.links[k] = l;
  }));
  showTransport();
}

// showTransport says which transport the media links use (the header's
// badge; data-transport is webtransport, websocket or mixed).
function showTransport() {
  const used = new Set(Object.values(state.links).map((l) => l.transport));
  state.transport = used.size > 1 ? 'mixed' : [...used][0] || '';
  const el = $('transport');
  el.textContent = TRANSPORT_NAMES[state.transport] || ''; el.dataset.transport = state.transport; el.hidden = !state.transport;
}

async function startSending() {
  if (!localStream) return;
  const a = localStream.getAudioTracks()[0], v = localStream.getVideoTracks()[0];
  if (a) await startSender('audio', a);
  if (v) await startSender('video', v);
}

async function startSender(kind, track) {
  const ssrc = randSSRC();
  const ss = new SendStream(state.participant, ssrc, () => ring && ring.sendKey());
  const linkKind = kind === 'content' ? 'content' : kind;
  const s = kind === 'audio' ? new AudioSender(track, () => state.links[linkKind], ssrc, ss)
    : new VideoSender(track, () => state.links[linkKind], ssrc, ss, { bitrate: kind === 'content' ? 1200000 : 800000 });
  await control.request('publish', { kind, ssrcs: [ssrc] });
  s.start();
  if (state.senders[kind]) state.senders[kind].stop();
  state.senders[kind] = s;
  if (kind !== 'content') s.paused = state.muted[kind];
}

function stopSender(kind) { const s = state.senders[kind]; if (s) { s.stop(); delete state.senders[kind]; } }

function onLinkClosed(l) {
  if (state.links[l.kind] === l) delete state.links[l.kind];
  if (leaving || state.phase === 'left') return;
  // Reopen with the same token; the router moves the flow to the new stream.
  setTimeout(() => { if (!leaving && state.phase !== 'left' && joined) openLinks().catch(() => {}); }, 500);
}

function onPacket(cls, b, link) {
  if (cls === 'rtcp') { // SRTCP from the router: open with the flow's direction-2 key
    const f = rtcp && rtcp[link.kind];
    if (!f) return;
    f.open(b).then((r) => {
      if (!r.pkt) { state.rtcpDrops = (state.rtcpDrops || 0) + 1; return; }
      for (const ssrc of rtp.keyframeRequests(r.pkt)) {
        for (const s of Object.values(state.senders)) if (s.ssrc === ssrc && s.requestKeyframe) s.requestKeyframe();
      }
    });
    return;
  }
  const ssrc = ((b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11]) >>> 0;
  let r = state.receivers.get(ssrc);
  if (!r) {
    const own = state.ssrcOwner.get(ssrc);
    if (!own) { state.unknownSSRC = (state.unknownSSRC || 0) + 1; return; } // docs: unknown_sender
    r = makeReceiver(own.participant, ssrc, own.kind);
    if (!r) return;
  }
  r.handle(b);
}

function makeReceiver(pid, ssrc, kind) {
  const t = tile(pid);
  let r;
  if (kind === 'audio') r = new AudioReceiver(pid, ssrc, ring, audioCtx);
  else {
    const canvas = kind === 'content' ? t.content() : t.canvas;
    r = new VideoReceiver(pid, ssrc, ring, canvas, (media) => {
      const l = state.links[kind], f = rtcp && rtcp[kind];
      if (l && f) f.seal(rtp.pli(state.senders.video ? state.senders.video.ssrc : 1, media)).then((p) => l.send(p)); // SRTCP to the router
    });
  }
  r.kind = kind;
  state.receivers.set(ssrc, r);
  return r;
}

function addParticipant(e) {
  const p = { id: e.id, name: e.name || e.identity || 'Participant ' + e.id, streams: {} };
  state.roster.set(e.id, p);
  for (const s of e.streams || []) addStreams(e.id, s.kind, s.ssrcs);
  tile(e.id);
}

function addStreams(pid, kind, ssrcs) {
  const p = state.roster.get(pid);
  if (!p) return;
  p.streams[kind] = [...new Set([...(p.streams[kind] || []), ...ssrcs])];
  for (const s of ssrcs) state.ssrcOwner.set(s >>> 0, { participant: pid, kind });
}

function removeStreams(pid, kind, ssrcs) {
  const p = state.roster.get(pid);
  if (!p) return;
  const gone = ssrcs && ssrcs.length ? ssrcs : (p.streams[kind] || []);
  p.streams[kind] = (p.streams[kind] || []).filter((s) => !gone.includes(s));
  for (const s of gone) {
    state.ssrcOwner.delete(s);
    const r = state.receivers.get(s);
    if (r) { r.close(); state.receivers.delete(s); }
  }
  if (kind === 'content') tile(pid).dropContent();
}

function removeParticipant(pid) {
  const p = state.roster.get(pid);
  if (!p) return;
  for (const k of Object.keys(p.streams)) removeStreams(pid, k, null);
  state.roster.delete(pid);
  const el = document.querySelector(`.tile[data-pid="${pid}"]`);
  if (el) el.remove();
  state.tiles.delete(pid);
  if (state.activeSpeaker === pid) state.activeSpeaker = 0; // who speaks next is the next event's
}

function onEvent(type, b) {
  switch (type) {
    case 'participant-joined': addParticipant(b.participant); break;
    case 'participant-left': state.lastLeft = { participant: b.participant, reason: b.reason }; removeParticipant(b.participant); break;
    case 'stream-added': addStreams(b.participant, b.kind, b.ssrcs); break;
    case 'stream-removed': removeStreams(b.participant, b.kind, b.ssrcs); break;
    case 'meeting-ended': endMeeting('ended', 'The host ended the meeting.'); break;
    case 'media-key': installKey(b); break;
    case 'active-speaker': setSpeaker(b.participant); break;
  }
}

// setSpeaker highlights the active speaker's tile (class speaking,
// data-speaking) and no other; an unknown participant is ignored
// (docs/PROTOCOL.md "Active speaker"). Nothing is highlighted before the
// first event.
function setSpeaker(pid) {
  if (pid !== state.participant && !state.roster.has(pid)) return;
  state.activeSpeaker = pid;
  showSpeaker();
}

function showSpeaker() {
  for (const [id, t] of state.tiles) {
    const on = id === state.activeSpeaker;
    t.el.classList.toggle('speaking', on);
    if (on) t.el.dataset.speaking = '1'; else delete t.el.dataset.speaking;
  }
}

// ---- tiles --------------------------------------------------------------

state.tiles = new Map();
function tile(pid) {
  let t = state.tiles.get(pid);
  if (t) return t;
  const el = document.createElement('div');
  el.className = 'tile'; el.dataset.pid = pid;
  const canvas = document.createElement('canvas'); canvas.width = 640; canvas.height = 480;
  const name = document.createElement('span'); name.className = 'name';
  const p = state.roster.get(pid);
  name.textContent = p ? p.name : '';
  el.append(canvas, name);
  $('tiles').append(el);
  t = {
    el, canvas, name,
    content() {
      if (!this.cc) {
        const ce = document.createElement('div'); ce.className = 'tile'; ce.dataset.content = pid;
        this.cc = document.createElement('canvas');
        const n = document.createElement('span'); n.className = 'name'; n.textContent = name.textContent + ' (screen)';
        ce.append(this.cc, n); $('tiles').prepend(ce); this.ce = ce;
      }
      return this.cc;
    },
    dropContent() { if (this.ce) { this.ce.remove(); this.ce = null; this.cc = null; } },
  };
  state.tiles.set(pid, t);
  return t;
}

function addLocalTile() {
  if (state.tiles.has(state.participant)) return;
  const el = document.createElement('div');
  el.className = 'tile'; el.dataset.pid = state.participant; el.dataset.local = '1';
  const v = document.createElement('video'); v.autoplay = true; v.muted = true; v.playsInline = true;
  v.srcObject = localStream;
  const name = document.createElement('span'); name.className = 'name'; name.textContent = state.name + ' (you)';
  el.append(v, name);
  $('tiles').prepend(el);
  state.tiles.set(state.participant, { el, name, content() { return null; }, dropContent() {} });
}

// ---- reconnect, leave ---------------------------------------------------

function onControlClosed(err, c) {
  if (c !== control || leaving || state.phase === 'left') return; // an attempt that never became the channel
  if (state.phase === 'reconnecting') return;
  if (control && control.lastError && control.lastError.fatal && control.lastError.code !== 'replaced') {
    endMeeting('error', JOIN_ERRORS[control.lastError.code] || control.lastError.message);
    return;
  }
  reconnect();
}

// reconnect resumes the control channel within the grace period (the
// participant and its media token stay; docs/PROTOCOL.md §7).
async function reconnect() {
  state.phase = 'reconnecting'; state.reconnects++;
  status('Connection lost: reconnecting…', true);
  const until = Date.now() + Math.max(joined.grace_ms || 0, 1000);
  for (let wait = 200; Date.now() < until && !leaving; wait = Math.min(wait * 2, 2000)) {
    try {
      const c = await openControl();
      const r = await c.request('resume', { participant: joined.participant, credential: joined.resume });
      await checkProtection(c, r.body);
      control = c; joined = r.body; saveSession();
      installKey(joined.media_key); // the keys stay; this is the current one (new if it changed in the gap)
      await setRTCP(joined);
      // Diff the roster: events of the gap are not replayed.
      const now = new Set((joined.roster || []).map((e) => e.id));
      for (const pid of [...state.roster.keys()]) if (!now.has(pid)) removeParticipant(pid);
      for (const e of joined.roster || []) {
        if (!state.roster.has(e.id)) addParticipant(e);
        else for (const s of e.streams || []) addStreams(e.id, s.kind, s.ssrcs);
      }
      await openLinks();
      state.phase = 'joined';
      status('In meeting ' + state.meeting);
      return;
    } catch (e) {
      if (e instanceof ControlError && e.code === 'resume-failed') break;
      if (e instanceof ControlError && (e.code === 'e2ee' || e.code === 'protection')) { endMeeting('error', e.message); return; }
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  if (!leaving) endMeeting('lost', 'The connection was lost and could not be resumed.');
}

function teardown() {
  leaving = true;
  for (const k of Object.keys(state.senders)) stopSender(k);
  for (const l of Object.values(state.links)) l.close();
  state.links = {};
  for (const r of state.receivers.values()) r.close();
  state.receivers.clear();
  if (control) control.close();
  control = null;
  clearTimeout(keyTimer); keyTimer = 0; ring = null; state.activeSpeaker = 0;
  $('security').hidden = true;
  $('tiles').replaceChildren(); state.tiles.clear(); state.roster.clear();
  if (shareStream) { shareStream.getTracks().forEach((t) => t.stop()); shareStream = null; state.sharing = false; }
  sessionStorage.removeItem(SESSION_KEY);
}

function endMeeting(phase, reason) {
  teardown();
  state.phase = phase === 'left' ? 'left' : phase; state.error = phase === 'left' ? '' : reason;
  $('left-title').textContent = phase === 'left' ? 'You left the meeting' : 'Disconnected';
  $('left-reason').textContent = reason || '';
  $('transport').hidden = true;
  show('left'); status('');
}

async function leave() {
  leaving = true;
  if (control) await control.request('leave', {}, 3000).catch(() => {});
  endMeeting('left', '');
}

function toggle(kind) {
  state.muted[kind] = !state.muted[kind];
  const s = state.senders[kind];
  if (s) { s.paused = state.muted[kind]; if (!s.paused && s.requestKeyframe) s.requestKeyframe(); }
  if (localStream) for (const t of (kind === 'audio' ? localStream.getAudioTracks() : localStream.getVideoTracks())) t.enabled = !state.muted[kind];
  const b = kind === 'audio' ? $('mute-audio') : $('mute-video');
  b.setAttribute('aria-pressed', String(state.muted[kind]));
  b.textContent = kind === 'audio' ? (state.muted.audio ? 'Unmute' : 'Mute') : (state.muted.video ? 'Start video' : 'Stop video');
}

async function share() {
  if (state.sharing) {
    stopSender('content');
    await control.request('unpublish', { kind: 'content' }).catch(() => {});
    if (shareStream) shareStream.getTracks().forEach((t) => t.stop());
    shareStream = null; state.sharing = false; $('share').textContent = 'Share screen';
    return;
  }
  shareStream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
  const track = shareStream.getVideoTracks()[0];
  track.onended = () => { if (state.sharing) share().catch(() => {}); };
  await startSender('content', track);
  state.sharing = true; $('share').textContent = 'Stop sharing';
}

// ---- page state for people and tests ------------------------------------

window.openmmr = {
  state,
  stats() {
    const tiles = {};
    for (const [pid, p] of state.roster) tiles[pid] = { name: p.name, video: 0, audio: 0, content: 0, keyframes: 0, drops: {} };
    for (const r of state.receivers.values()) {
      const t = tiles[r.p]; if (!t) continue;
      t[r.kind] += r.frames;
      if (r.keyframes) t.keyframes += r.keyframes;
      for (const [k, n] of Object.entries(r.drops)) t.drops[k] = (t.drops[k] || 0) + n;
    }
    const sent = {};
    for (const [k, s] of Object.entries(state.senders)) sent[k] = { ssrc: s.ssrc, frames: s.frames };
    const links = {};
    for (const [k, l] of Object.entries(state.links)) links[k] = { sent: l.sent, received: l.received, transport: l.transport, bindMs: l.bindMs || 0 };
    const keys = { send: ring && ring.sendKey() ? ring.sendKey().id : 0, live: ring ? ring.live() : [], errors: state.keyErrors || 0 };
    return { keys, activeSpeaker: state.activeSpeaker || 0, phase: state.phase, error: state.error, errorCode: state.errorCode || '', participant: state.participant, transport: state.transport,
      wtError: state.wtError || '', reconnects: state.reconnects, joinedAt: state.joinedAt, lastLeft: state.lastLeft || null, tiles, sent, links, unknownSSRC: state.unknownSSRC || 0 };
  },
  // pixels: mean and standard deviation of the luma of a tile's canvas (a
  // blank or single-colour frame has deviation ~0).
  pixels(pid) {
    const t = state.tiles.get(pid);
    if (!t || !t.canvas) return null;
    const c = t.canvas, d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0, s = 0, s2 = 0;
    for (let i = 0; i < d.length; i += 4 * 97) { const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]; n++; s += y; s2 += y * y; }
    const mean = s / n;
    return { mean, std: Math.sqrt(Math.max(0, s2 / n - mean * mean)), width: c.width, height: c.height };
  },
  leave, toggle, share,
};

$('mute-audio').onclick = () => toggle('audio');
$('mute-video').onclick = () => toggle('video');
$('share').onclick = () => share().catch((e) => status('Screen share: ' + e.message, true));
$('leave').onclick = () => leave();

// A reloaded page resumes its participant (within the grace period) instead
// of joining anew.
async function boot() {
  await initForm();
  const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
  if (s && s.until > Date.now()) {
    state.phase = 'joining';
    status('Rejoining…');
    try {
      await connect({ meeting: s.meeting, name: s.name, resume: { participant: s.participant, credential: s.credential } });
      return;
    } catch (e) {
      sessionStorage.removeItem(SESSION_KEY);
      state.phase = 'idle'; status('');
      show('join');
    }
  }
  state.ready = true;
}
boot().catch(fail);
