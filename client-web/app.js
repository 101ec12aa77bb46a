// Chorus web client: lobby, ringing, calls and group calls.
//
// The page has four places: the name form, the lobby (who is online), the
// ringing screens (incoming call overlay, outgoing "ringing…") and the call.
// Server messages (docs/protocol.md) change `state`; render functions draw it.
// The call screen is updated in place so video elements keep playing.

import { h, icon, avatar, formatDuration } from './ui.js';
import { Signaling, RESUME_GRACE_MS } from './signaling.js';
import { acquireMedia } from './localmedia.js';
import { CallSession } from './session.js';
import * as ring from './ringtone.js';

const IDENTITY_KEY = 'chorus.identity';
const NAME_KEY = 'chorus.name';
/** How long "Cy declined" and the like stay in the call header. */
const INVITE_NOTE_MS = 8000;
/** Tile size reports wait for layout to settle this long. */
const TILE_SIZE_DEBOUNCE_MS = 250;
/**
 * A call, ring or invite survives a dropped connection while the server may
 * still resume the session. After this long without a connection it is
 * over here too (the server's default grace, plus slack).
 */
const GIVE_UP_MS = RESUME_GRACE_MS + 5000;

const view = document.getElementById('view');
const overlay = document.getElementById('overlay');
const audioSinks = document.getElementById('audio-sinks');
const bannerEl = document.getElementById('banner');

const now = () => performance.timeOrigin + performance.now();

const state = {
  name: localStorage.getItem(NAME_KEY) || '',
  me: null,
  conn: 'idle',
  users: [],
  screen: 'name', // name | lobby | outgoing | connecting | call
  incoming: null, // incoming_call message
  outgoing: null, // { to, media, roomId, status }
  connecting: null, // { title, media } while accept/join/create waits for room_joined
  call: null, // { session, kind, media, title, invites: Map, view }
  notice: null, // { status, detail }
  pending: null, // call | accept | create | join | invite
  pendingRoom: roomFromPath(),
  cancelNextRinging: false,
  media: null, // { promise, used } devices opened for the coming call
  nameError: '',
  connError: '',
  error: '',
  soundBlocked: false,
};

/** Timings for the tests: epoch milliseconds. */
const metrics = {
  callClickAt: null,
  acceptClickAt: null,
  roomJoinedAt: null,
  mediaConnectedAt: null,
  firstRemoteFrameAt: null,
  firstFrames: {},
};

function roomFromPath() {
  const m = location.pathname.match(/^\/call\/([^/?#]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

// ---------------------------------------------------------------- identity

function loadIdentity() {
  try {
    return JSON.parse(localStorage.getItem(IDENTITY_KEY) || 'null');
  } catch {
    return null;
  }
}

const TOKEN_ERRORS = {
  bad_name: 'That name cannot be used: use 1 to 40 characters, without control characters.',
  dev_mode_off: 'This server does not hand out guest sign-ins: open Chorus from the link your organisation gave you.',
};

async function requestToken(name) {
  let res;
  try {
    res = await fetch('/api/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
  } catch {
    throw Object.assign(new Error('Cannot reach the server.'), { permanent: false });
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON: handled below.
  }
  if (!res.ok || !body || !body.token) {
    const code = body && body.code;
    const text = TOKEN_ERRORS[code] || (body && body.message) || `The server refused to sign you in (HTTP ${res.status}).`;
    throw Object.assign(new Error(text), { permanent: res.status >= 400 && res.status < 500, code });
  }
  localStorage.setItem(IDENTITY_KEY, JSON.stringify(body));
  return body.token;
}

async function storedToken() {
  const id = loadIdentity();
  if (id && id.token && id.name === state.name && (!id.expires_at || id.expires_at * 1000 > Date.now() + 60000)) {
    return id.token;
  }
  return requestToken(state.name);
}

// ---------------------------------------------------------------- signaling

const signaling = new Signaling({
  token: storedToken,
  freshToken: () => requestToken(state.name),
  onMessage: (msg) => handleMessage(msg),
  onState: (s, detail) => connectionState(s, detail),
});

function send(msg) {
  if (signaling.send(msg)) return true;
  showError('Not connected to the server right now. Chorus is reconnecting; try again in a moment.');
  return false;
}

/**
 * Requests that end something (hangup, cancel, decline) and cannot wait: when
 * the connection is down but the session may be resumed, they are sent right
 * after the resume. Their "no such call" errors are then expected, and quiet.
 */
const afterResume = [];
let quietUntil = 0;

function sendSoon(msg) {
  if (signaling.send(msg)) return true;
  if (signaling.mayResume()) {
    afterResume.push(msg);
    return true;
  }
  return false;
}

function flushAfterResume() {
  const msgs = afterResume.splice(0);
  for (const m of msgs) signaling.send(m);
  if (msgs.length) quietUntil = Date.now() + 5000;
}

/** A call, a ring either way, or a call being joined. */
function busyHere() {
  return !!(state.call || state.outgoing || state.incoming || state.connecting);
}

let giveUpTimer = null;

function connectionState(s, detail) {
  const was = state.conn;
  state.conn = s;
  if (s === 'online') {
    clearTimeout(giveUpTimer);
    giveUpTimer = null;
    state.me = detail.user;
    if (detail.user.name !== state.name) {
      state.name = detail.user.name;
      localStorage.setItem(NAME_KEY, state.name);
    }
    state.connError = '';
    if (detail.resumed) {
      // The same session: calls and rings go on, the messages sent meanwhile follow.
      flushAfterResume();
      if (state.call) state.call.session.signalingResumed();
    } else {
      // A new session: whatever went on in the old one is over.
      afterResume.length = 0;
      if (busyHere()) dropEverything('Lost the connection to the server');
    }
    if (state.screen === 'name') state.screen = 'lobby';
    render();
    if (state.pendingRoom && !state.call && !state.pending) {
      const room = state.pendingRoom;
      state.pendingRoom = null;
      joinRoom(room);
    }
    return;
  }
  if (s !== 'connecting') state.users = []; // No longer live: show nobody rather than stale rows.
  if (s === 'lost') {
    if (was === 'online') connectionLost();
    state.connError = signaling.wasOnline
      ? 'Connection to the server lost. Reconnecting…'
      : 'Cannot reach the server. Retrying…';
  } else if (s === 'replaced') {
    clearTimeout(giveUpTimer);
    afterResume.length = 0;
    dropEverything('You signed in somewhere else');
    state.connError = 'Chorus is open in another tab or window, so this one was signed out.';
  } else if (s === 'failed') {
    clearTimeout(giveUpTimer);
    afterResume.length = 0;
    dropEverything(null);
    state.screen = 'name';
    state.nameError = detail && detail.message ? detail.message : 'Could not sign in.';
  }
  render();
}

/**
 * The connection dropped. The server keeps the session for a while, so the
 * call (and its media) goes on here too, until the session resumes, or is
 * found gone, or GIVE_UP_MS pass.
 */
function connectionLost() {
  clearTimeout(giveUpTimer);
  giveUpTimer = null;
  if (!busyHere()) return;
  giveUpTimer = setTimeout(() => {
    giveUpTimer = null;
    if (state.conn === 'online' || !busyHere()) return;
    // Should the server still have the session, leave its call when back.
    if (state.call) afterResume.push({ type: 'hangup', room_id: state.call.session.roomId });
    if (state.outgoing && state.outgoing.roomId) afterResume.push({ type: 'cancel', room_id: state.outgoing.roomId });
    if (state.incoming) afterResume.push({ type: 'decline', room_id: state.incoming.room_id });
    dropEverything('Lost the connection to the server');
    render();
  }, GIVE_UP_MS);
}

/** The connection is gone for good: every call and ring ends here too. */
function dropEverything(why) {
  const hadCall = busyHere();
  if (state.call) {
    state.call.session.close();
    clearInterval(state.call.timer);
  }
  state.call = null;
  state.outgoing = null;
  state.incoming = null;
  state.connecting = null;
  state.pending = null;
  releaseMedia();
  ring.stopRing();
  clearAudio();
  resetPath();
  document.body.classList.remove('in-call');
  if (hadCall && why) state.notice = { status: 'ended', detail: `${why}, so the call ended.` };
  if (state.screen !== 'name') state.screen = 'lobby';
}

// ---------------------------------------------------------------- errors

const ERROR_TEXT = {
  bad_json: 'The server could not read a message from this page.',
  unknown_type: 'The server did not understand a request from this page.',
  bad_message: 'The server refused a malformed request from this page.',
  bad_frame: 'The server refused a message from this page.',
  not_authenticated: 'The server asked to sign in again.',
  invalid_token: 'Your sign-in expired; signing in again.',
  already_authenticated: 'This page tried to sign in twice.',
  forbidden: 'You are not allowed to join that call.',
  user_not_found: 'That person is not online any more.',
  cannot_call_self: 'You cannot call yourself.',
  already_in_call: 'You are already in a call.',
  room_not_found: 'That call has ended, or the link is wrong.',
  not_in_room: 'That call is not going on any more.',
  invalid_sdp: 'The media server refused this browser\'s media setup.',
  media_error: 'The media server could not handle that request.',
  replaced: 'Chorus is open in another tab or window.',
  rate_limited: 'That was too many requests in a short time: wait a moment and try again.',
  room_full: 'That call is full.',
  too_many_rooms: 'The server has no room for another call right now: try again later.',
  sdp_too_large: 'This browser\'s media setup was too large for the server.',
  draining: 'The server is restarting, so no new calls can start right now.',
};

let errorTimer = null;
function showError(text) {
  state.error = text;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    state.error = '';
    renderBanner();
  }, 12000);
  renderBanner();
}

function renderBanner() {
  const lines = [state.connError, state.error].filter(Boolean);
  bannerEl.replaceChildren();
  bannerEl.hidden = lines.length === 0;
  bannerEl.dataset.kind = state.connError ? 'connection' : 'error';
  if (!lines.length) return;
  bannerEl.append(h('div', { class: 'banner-text' }, lines.map((l) => h('p', {}, l))));
  if (state.conn === 'replaced') {
    bannerEl.append(h('button', { class: 'banner-action', onclick: () => signaling.restart() }, 'Use here'));
  }
  if (state.error) {
    bannerEl.append(h('button', { class: 'banner-close', 'aria-label': 'Dismiss', onclick: () => { state.error = ''; renderBanner(); } }, icon('close')));
  }
}

/** Which error codes answer which request (errors carry no request id). */
const ERRORS_FOR = {
  call: ['cannot_call_self', 'already_in_call', 'user_not_found', 'bad_message', 'forbidden', 'rate_limited', 'too_many_rooms', 'draining'],
  accept: ['room_not_found', 'not_in_room', 'already_in_call', 'room_full', 'rate_limited', 'draining'],
  create: ['already_in_call', 'forbidden', 'bad_message', 'rate_limited', 'too_many_rooms', 'draining'],
  join: ['room_not_found', 'forbidden', 'already_in_call', 'bad_message', 'room_full', 'rate_limited', 'draining'],
  invite: ['user_not_found', 'not_in_room', 'cannot_call_self', 'already_in_call', 'room_full', 'rate_limited', 'draining'],
};

/** Refusals that concern the media negotiation of the call. */
const MEDIA_ERRORS = ['invalid_sdp', 'media_error', 'sdp_too_large', 'rate_limited'];

function serverError(msg) {
  const code = msg.code;
  const text = ERROR_TEXT[code] || msg.message || 'Something went wrong on the server.';
  if ((code === 'room_not_found' || code === 'not_in_room') && Date.now() < quietUntil && !state.pending) {
    // A hangup (or cancel, decline) sent after a resume, for a call that ended meanwhile.
    return;
  }
  if (code === 'not_in_room' && state.call) {
    // The server no longer has us in this call: it ended while the
    // connection was down (and its call_ended went missing).
    state.pending = null;
    endCall({ status: 'ended', detail: 'The call ended while the connection to the server was interrupted.' });
    return;
  }
  if (state.call && MEDIA_ERRORS.includes(code)) state.call.session.refused(code);
  const pending = state.pending && (ERRORS_FOR[state.pending] || []).includes(code) ? state.pending : null;
  if (pending) state.pending = null;
  if (pending === 'call') state.cancelNextRinging = false;
  if (pending === 'invite' && state.call) {
    // Forget the newest invite: it did not ring.
    const last = [...state.call.invites.keys()].pop();
    if (last) state.call.invites.delete(last);
  }
  if (pending === 'call' && state.outgoing && !state.outgoing.roomId) {
    state.outgoing = null;
    releaseMedia();
    ring.stopRing();
    state.screen = 'lobby';
  } else if ((pending === 'create' || pending === 'join' || pending === 'accept') && state.connecting) {
    state.connecting = null;
    state.incoming = null;
    releaseMedia();
    resetPath();
    state.screen = 'lobby';
  }
  if (code === 'invalid_token' || code === 'replaced') return;
  showError(text);
  render();
}

// ---------------------------------------------------------------- media

function openMedia(video) {
  releaseMedia();
  const entry = { used: false, promise: null };
  entry.promise = acquireMedia(video).then((m) => {
    if (state.media !== entry && !entry.used) {
      for (const t of m.stream.getTracks()) t.stop();
    }
    return m;
  });
  state.media = entry;
  return entry;
}

function releaseMedia() {
  const entry = state.media;
  state.media = null;
  if (entry && !entry.used) {
    entry.promise.then((m) => {
      if (!entry.used) for (const t of m.stream.getTracks()) t.stop();
    });
  }
}

function clearAudio() {
  audioSinks.replaceChildren();
  state.soundBlocked = false;
}

function resetPath() {
  if (location.pathname !== '/') history.replaceState(null, '', '/');
}

// ---------------------------------------------------------------- actions

function startCall(user, media) {
  if (state.call || state.outgoing || state.connecting) return;
  ring.unlockAudio();
  metrics.callClickAt = now();
  state.notice = null;
  state.cancelNextRinging = false;
  state.outgoing = { to: { id: user.id, name: user.name }, media, roomId: null, status: 'calling' };
  state.pending = 'call';
  openMedia(media === 'video');
  if (!send({ type: 'call', to: user.id, media })) {
    state.outgoing = null;
    state.pending = null;
    releaseMedia();
    return;
  }
  state.screen = 'outgoing';
  render();
}

function cancelCall() {
  const out = state.outgoing;
  if (!out) return;
  if (out.roomId) sendSoon({ type: 'cancel', room_id: out.roomId });
  // Not ringing yet: cancel as soon as the server says where it rings.
  else state.cancelNextRinging = true;
  state.outgoing = null;
  state.pending = null;
  releaseMedia();
  ring.stopRing();
  state.notice = { status: 'ended', detail: `You cancelled the call to ${out.to.name}.` };
  state.screen = 'lobby';
  render();
}

function acceptCall() {
  const inc = state.incoming;
  if (!inc) return;
  metrics.acceptClickAt = now();
  ring.stopRing();
  ring.unlockAudio();
  state.notice = null;
  openMedia(inc.media === 'video');
  if (!send({ type: 'accept', room_id: inc.room_id })) {
    releaseMedia();
    return;
  }
  state.pending = 'accept';
  state.incoming = null;
  state.connecting = { title: inc.from.name, id: inc.from.id, media: inc.media, roomId: inc.room_id };
  state.screen = 'connecting';
  render();
}

function declineCall() {
  const inc = state.incoming;
  if (!inc) return;
  sendSoon({ type: 'decline', room_id: inc.room_id });
  state.incoming = null;
  ring.stopRing();
  state.notice = { status: 'declined', detail: `You declined ${inc.from.name}'s call.` };
  render();
}

function newGroupCall() {
  if (state.call || state.outgoing || state.connecting) return;
  ring.unlockAudio();
  state.notice = null;
  openMedia(true);
  if (!send({ type: 'create_room' })) {
    releaseMedia();
    return;
  }
  state.pending = 'create';
  state.connecting = { title: 'New group call', media: 'video' };
  state.screen = 'connecting';
  render();
}

function joinRoom(roomId) {
  if (state.call || state.outgoing || state.connecting) return;
  state.notice = null;
  openMedia(true);
  if (!send({ type: 'join_room', room_id: roomId })) {
    releaseMedia();
    state.pendingRoom = roomId;
    return;
  }
  state.pending = 'join';
  state.connecting = { title: 'Joining the group call', media: 'video' };
  state.screen = 'connecting';
  render();
}

function hangUp() {
  const c = state.call;
  if (!c) return;
  sendSoon({ type: 'hangup', room_id: c.session.roomId });
  endCall({ status: 'ended', detail: callSummary(c, 'You left') });
}

function callSummary(c, prefix) {
  const length = formatDuration(Date.now() - c.session.joinedAt);
  if (c.kind === 'group') return `${prefix} the group call · ${length}`;
  return `Call with ${c.title} · ${length}`;
}

function endCall(notice) {
  const c = state.call;
  if (c) {
    c.session.close();
    clearInterval(c.timer);
  }
  state.call = null;
  state.media = null;
  clearAudio();
  resetPath();
  state.notice = notice;
  state.screen = 'lobby';
  document.body.classList.remove('in-call');
  render();
}

function invite(user) {
  const c = state.call;
  if (!c) return;
  if (!send({ type: 'invite', room_id: c.session.roomId, to: user.id })) return;
  state.pending = 'invite';
  c.invites.set(user.id, { name: user.name, since: Date.now() });
  c.inviteNote = null;
  c.sheetOpen = false;
  renderCall();
}

// ---------------------------------------------------------------- messages

const END_STATUS = {
  declined: 'declined',
  busy: 'busy',
  missed: 'no answer',
  unavailable: 'no answer',
  cancelled: 'ended',
  hangup: 'ended',
  disconnected: 'ended',
  media_failed: 'ended',
  server_shutdown: 'ended',
};

/** `invite_ended`: why someone invited into our call will not join. */
function inviteEndedText(msg) {
  const who = (msg.to && msg.to.name) || 'They';
  switch (msg.reason) {
    case 'declined':
      return `${who} declined.`;
    case 'busy':
      return `${who} is busy.`;
    case 'missed':
      return `${who} did not answer.`;
    case 'cancelled':
      return `The invite to ${who} was cancelled.`;
    case 'disconnected':
    case 'unavailable':
      return `${who} went offline.`;
    case 'server_shutdown':
      return `${who} could not join: the server is restarting.`;
    default:
      return `${who} did not join.`;
  }
}

function endDetail(msg, peer, role) {
  const who = (msg.by && msg.by.name) || peer || 'The other person';
  switch (msg.reason) {
    case 'declined':
      return role === 'caller' ? `${who} declined the call.` : 'You declined the call.';
    case 'busy':
      return `${who} is in another call.`;
    case 'missed':
      return role === 'caller' ? `${peer || who} did not answer.` : `Missed call from ${peer || who}.`;
    case 'unavailable':
      return `${peer || who} is not online.`;
    case 'cancelled':
      return role === 'caller' ? 'The call was cancelled.' : `Missed call from ${peer || who}.`;
    case 'disconnected':
      return `${who} lost their connection, so the call ended.`;
    case 'media_failed':
      return 'The audio and video connection could not be set up, so the call ended.';
    case 'server_shutdown':
      return 'The server is restarting; the call ended.';
    default:
      return null;
  }
}

function handleMessage(msg) {
  switch (msg.type) {
    case 'presence':
      state.users = msg.users || [];
      if (state.screen === 'lobby') renderLobby();
      if (state.call) renderCall();
      break;
    case 'invite_ended':
      onInviteEnded(msg);
      break;
    case 'ringing':
      onRinging(msg);
      break;
    case 'incoming_call':
      onIncoming(msg);
      break;
    case 'call_ended':
      onCallEnded(msg);
      break;
    case 'room_joined':
      onRoomJoined(msg);
      break;
    case 'participant_joined':
      if (state.call && msg.room_id === state.call.session.roomId) {
        state.call.invites.delete(msg.participant.id);
        state.call.session.participantJoined(msg.participant);
        renderCall();
      }
      break;
    case 'participant_left':
      if (state.call && msg.room_id === state.call.session.roomId) {
        state.call.session.participantLeft(msg.participant_id);
      }
      break;
    case 'participant_updated':
      if (state.call && msg.room_id === state.call.session.roomId) {
        state.call.session.participantUpdated(msg.participant);
      }
      break;
    case 'active_speaker':
      // The media node's choice, from everyone's audio levels: highlighted
      // and enlarged until someone else takes over.
      if (state.call && msg.room_id === state.call.session.roomId) {
        state.call.activeSpeaker = msg.participant_id;
        renderCall();
      }
      break;
    case 'room_changed':
      if (state.call && msg.room_id === state.call.session.roomId) {
        state.call.kind = msg.kind;
        state.call.session.kind = msg.kind;
        if (msg.kind === 'group') history.replaceState(null, '', `/call/${encodeURIComponent(msg.room_id)}`);
        renderCall();
      }
      break;
    case 'media_answer':
    case 'media_offer':
      if (state.call && msg.room_id === state.call.session.roomId) state.call.session.handle(msg);
      break;
    case 'video_paused':
      if (state.call && msg.room_id === state.call.session.roomId) state.call.session.videoPaused(msg);
      break;
    case 'publish_layers':
      if (state.call && msg.room_id === state.call.session.roomId) state.call.session.publishLayers(msg);
      break;
    case 'error':
      serverError(msg);
      break;
    default:
      break;
  }
}

function onRinging(msg) {
  if (state.call && msg.room_id === state.call.session.roomId) {
    // Our invite rings at someone's.
    if (state.pending === 'invite') state.pending = null;
    state.call.invites.set(msg.to.id, { name: msg.to.name, since: Date.now() });
    renderCall();
    return;
  }
  if (!state.outgoing) {
    if (state.cancelNextRinging) {
      state.cancelNextRinging = false;
      send({ type: 'cancel', room_id: msg.room_id });
    }
    return;
  }
  if (state.pending === 'call') state.pending = null;
  state.outgoing.roomId = msg.room_id;
  state.outgoing.status = 'ringing';
  ring.startRing('outgoing');
  renderOutgoing();
}

function onInviteEnded(msg) {
  const c = state.call;
  if (!c || msg.room_id !== c.session.roomId) return;
  c.invites.delete(msg.to.id);
  // A busy invitee is answered at once, without ringing.
  if (state.pending === 'invite') state.pending = null;
  c.inviteNote = { text: inviteEndedText(msg), reason: msg.reason, until: Date.now() + INVITE_NOTE_MS };
  renderCall();
}

function onIncoming(msg) {
  if (state.call || state.outgoing || state.connecting) return;
  state.incoming = msg;
  ring.startRing('incoming');
  render();
}

function onCallEnded(msg) {
  if (state.incoming && state.incoming.room_id === msg.room_id) {
    const inc = state.incoming;
    state.incoming = null;
    ring.stopRing();
    state.notice = { status: END_STATUS[msg.reason] || 'ended', detail: endDetail(msg, inc.from.name, 'callee') };
    render();
    return;
  }
  if (state.call && state.call.session.roomId === msg.room_id) {
    const c = state.call;
    if (msg.reason === 'media_failed') showError('The audio and video connection could not be set up, so the call ended.');
    const detail = msg.reason === 'hangup'
      ? (c.kind === 'group' ? callSummary(c, 'You left') : `${(msg.by && msg.by.name) || c.title} hung up · ${formatDuration(Date.now() - c.session.joinedAt)}`)
      : endDetail(msg, c.title, 'in-call');
    endCall({ status: END_STATUS[msg.reason] || 'ended', detail });
    return;
  }
  if (state.outgoing && (!state.outgoing.roomId || state.outgoing.roomId === msg.room_id)) {
    const out = state.outgoing;
    state.outgoing = null;
    if (state.pending === 'call') state.pending = null;
    releaseMedia();
    ring.stopRing();
    state.notice = { status: END_STATUS[msg.reason] || 'ended', detail: endDetail(msg, out.to.name, 'caller') };
    state.screen = 'lobby';
    render();
    return;
  }
  if (state.connecting && (!state.connecting.roomId || state.connecting.roomId === msg.room_id)) {
    const peer = state.connecting.id ? state.connecting.title : null;
    state.connecting = null;
    state.pending = null;
    releaseMedia();
    state.notice = { status: END_STATUS[msg.reason] || 'ended', detail: endDetail(msg, peer, 'callee') };
    state.screen = 'lobby';
    render();
  }
}

async function onRoomJoined(msg) {
  if (state.call) return;
  if (['call', 'accept', 'create', 'join'].includes(state.pending)) state.pending = null;
  metrics.roomJoinedAt = now();
  const out = state.outgoing;
  const connecting = state.connecting;
  state.outgoing = null;
  state.connecting = null;
  state.incoming = null;
  ring.stopRing();
  const others = msg.participants || [];
  const title = msg.kind === 'group'
    ? 'Group call'
    : (out && out.to.name) || (connecting && connecting.title) || (others[0] && others[0].name) || 'Call';
  const session = new CallSession({
    roomId: msg.room_id,
    kind: msg.kind,
    media: msg.media,
    participants: others,
    send: (m) => signaling.send(m),
    online: () => signaling.connected(),
    onChange: (what) => onSessionChange(what),
    onProblem: (text) => showError(text),
  });
  state.call = {
    session,
    kind: msg.kind,
    media: msg.media,
    title,
    invites: new Map(),
    sheetOpen: false,
    timer: null,
    view: null,
    tiles: new Map(),
    local: null,
  };
  if (msg.kind === 'group') history.replaceState(null, '', `/call/${encodeURIComponent(msg.room_id)}`);
  state.screen = 'call';
  render();
  const entry = state.media || openMedia(msg.media === 'video');
  entry.used = true;
  const local = await entry.promise;
  if (!state.call || state.call.session !== session) {
    for (const t of local.stream.getTracks()) t.stop();
    return;
  }
  state.call.local = local;
  if (local.message) showError(local.message);
  session.start(local);
  // The server assumes microphone on and camera as the call type says.
  const mine = session.localState();
  if (mine.audio !== true || mine.video !== (msg.media === 'video')) session.sendState();
  renderCall();
}

function onSessionChange(what) {
  const c = state.call;
  if (!c) return;
  if (what === 'connection' && c.session.pc && c.session.pc.connectionState === 'connected' && !metrics.mediaConnectedAt) {
    metrics.mediaConnectedAt = now();
  }
  if (what === 'speaking') updateSpeaking();
  else renderCall();
}

// ---------------------------------------------------------------- rendering

function pageTitle() {
  if (state.incoming) return `${state.incoming.from.name} is calling – Chorus`;
  if (state.outgoing) return `Calling ${state.outgoing.to.name} – Chorus`;
  if (state.call) return `${state.call.title} – Chorus`;
  return 'Chorus';
}

function render() {
  document.title = pageTitle();
  document.body.dataset.screen = state.screen;
  document.body.classList.toggle('in-call', state.screen === 'call' || state.screen === 'outgoing' || state.screen === 'connecting');
  renderBanner();
  renderTopbar();
  switch (state.screen) {
    case 'name':
      renderName();
      break;
    case 'lobby':
      renderLobby();
      break;
    case 'outgoing':
      renderOutgoing();
      break;
    case 'connecting':
      renderConnecting();
      break;
    case 'call':
      renderCall();
      break;
    default:
      break;
  }
  renderIncoming();
}

function renderTopbar() {
  const who = document.getElementById('whoami');
  who.replaceChildren();
  if (state.me && state.screen !== 'name') {
    who.append(
      h('span', { class: `dot ${state.conn === 'online' ? 'on' : 'off'}`, title: state.conn === 'online' ? 'Connected' : 'Not connected' }),
      h('span', { class: 'me-name' }, state.me.name),
      h('button', { class: 'link-button', 'data-testid': 'change-name', onclick: changeName }, 'Change name'),
    );
  }
}

function changeName() {
  if (state.call || state.outgoing || state.connecting) return;
  state.screen = 'name';
  render();
}

let nameView = null;

function renderName() {
  if (view.dataset.screen === 'name' && nameView) {
    nameView.error.textContent = state.nameError;
    nameView.error.hidden = !state.nameError;
    return;
  }
  view.dataset.screen = 'name';
  const input = h('input', {
    id: 'name-input',
    'data-testid': 'name-input',
    type: 'text',
    maxlength: 40,
    autocomplete: 'nickname',
    required: true,
    placeholder: 'Your name',
    'aria-describedby': 'name-help',
    value: state.name,
  });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: !state.nameError }, state.nameError);
  const form = h(
    'form',
    {
      class: 'name-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        ring.unlockAudio();
        const name = input.value.trim();
        if (!name) {
          state.nameError = 'Type a name first.';
          renderName();
          input.focus();
          return;
        }
        submitName(name);
      },
    },
    h('label', { for: 'name-input', class: 'label' }, 'Your name'),
    h('div', { class: 'row' },
      input,
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'name-submit' }, state.pendingRoom ? 'Join call' : 'Continue')),
    error,
  );
  nameView = { error };
  view.replaceChildren(
    h('section', { class: 'welcome card' },
      h('div', { class: 'logo', 'aria-hidden': 'true' }, icon('phone')),
      h('h1', {}, state.pendingRoom ? 'Join the group call' : 'Welcome to Chorus'),
      h('p', { id: 'name-help', class: 'muted' },
        state.pendingRoom
          ? 'Pick the name the others will see, then you are in.'
          : 'Voice and video calls in your browser. Pick the name others will see.'),
      form),
  );
  setTimeout(() => input.focus(), 0);
}

async function submitName(name) {
  state.nameError = '';
  const changed = name !== state.name;
  state.name = name;
  localStorage.setItem(NAME_KEY, name);
  if (state.conn === 'online' && !changed) {
    state.screen = 'lobby';
    render();
    return;
  }
  state.screen = 'lobby';
  render();
  if (signaling.state === 'idle') signaling.start();
  else signaling.restart({ fresh: changed });
}

function statusNotice() {
  const n = state.notice;
  if (!n) return null;
  return h('div', { class: `notice status-${n.status.replace(/\s+/g, '-')}`, role: 'status' },
    h('div', { class: 'notice-text' },
      h('p', { class: 'call-status', 'data-testid': 'call-status', 'data-status': n.status }, n.status),
      n.detail ? h('p', { class: 'notice-detail' }, n.detail) : null),
    h('button', { class: 'icon-button ghost', 'aria-label': 'Dismiss', onclick: () => { state.notice = null; render(); } }, icon('close')));
}

let lobbyView = null;

function buildLobby() {
  const v = { rows: new Map() };
  v.notice = h('div', { class: 'notice-slot' });
  v.hello = h('h1', {});
  v.group = h('button', { class: 'primary with-icon', 'data-testid': 'new-group-call', onclick: newGroupCall }, icon('group'), 'New group call');
  v.count = h('span', { class: 'count', 'data-testid': 'online-count' });
  v.list = h('ul', { class: 'people', 'aria-label': 'People online' });
  v.emptyTitle = h('p', {});
  v.emptyHelp = h('p', { class: 'muted' }, 'Send this page\'s address to someone, or start a group call and share its link.');
  v.empty = h('div', { class: 'empty' }, v.emptyTitle, v.emptyHelp);
  v.root = h('section', { class: 'lobby' },
    v.notice,
    h('div', { class: 'lobby-head' },
      h('div', {}, v.hello, h('p', { class: 'muted' }, 'Call someone who is online, or start a group call.')),
      v.group),
    h('div', { class: 'card people-card' }, h('h2', {}, 'Online now', v.count), v.list, v.empty));
  return v;
}

function personRow(u) {
  const r = { user: u };
  r.name = h('span', { class: 'name' });
  r.sub = h('span', { class: 'sub' });
  r.audio = h('button', { class: 'round soft', 'data-testid': 'call-audio', onclick: () => startCall(r.user, 'audio') }, icon('phone'));
  r.video = h('button', { class: 'round soft', 'data-testid': 'call-video', onclick: () => startCall(r.user, 'video') }, icon('video'));
  r.avatar = avatar(u.id, u.name);
  r.li = h('li', { class: 'person', 'data-testid': 'online-user', 'data-user-id': u.id },
    r.avatar, h('div', { class: 'who' }, r.name, r.sub), h('div', { class: 'actions' }, r.audio, r.video));
  return r;
}

/** The lobby, updated in place so a presence change never swallows a click. */
function renderLobby() {
  if (state.screen !== 'lobby') return;
  if (!lobbyView || view.dataset.screen !== 'lobby' || !view.contains(lobbyView.root)) {
    lobbyView = buildLobby();
    view.dataset.screen = 'lobby';
    view.replaceChildren(lobbyView.root);
  }
  const v = lobbyView;
  const online = state.conn === 'online';
  v.notice.replaceChildren(...[statusNotice()].filter(Boolean));
  v.hello.textContent = state.me ? `Hi, ${state.me.name}` : 'Chorus';
  v.group.disabled = !online;
  v.count.textContent = String(state.users.length);
  const seen = new Set();
  let prev = null;
  for (const u of state.users) {
    seen.add(u.id);
    let r = v.rows.get(u.id);
    if (!r) {
      r = personRow(u);
      v.rows.set(u.id, r);
    }
    r.user = u;
    r.li.dataset.name = u.name;
    r.li.dataset.busy = u.busy ? 'true' : 'false';
    r.li.classList.toggle('busy', u.busy);
    r.name.textContent = u.name;
    r.sub.textContent = u.busy ? 'In a call' : 'Available';
    for (const [btn, kind] of [[r.audio, 'Voice'], [r.video, 'Video']]) {
      btn.disabled = !online;
      btn.setAttribute('aria-label', `${kind} call ${u.name}`);
      btn.title = `${kind} call ${u.name}`;
    }
    // Keep the server's order (by name) without re-creating rows.
    const want = prev ? prev.nextSibling : v.list.firstChild;
    if (want !== r.li) v.list.insertBefore(r.li, want);
    prev = r.li;
  }
  for (const [id, r] of v.rows) {
    if (!seen.has(id)) {
      r.li.remove();
      v.rows.delete(id);
    }
  }
  v.list.hidden = state.users.length === 0;
  v.empty.hidden = state.users.length > 0;
  v.emptyTitle.textContent = online ? 'Nobody else is online yet.' : state.conn === 'replaced' ? 'Signed out here.' : 'Connecting…';
  v.emptyHelp.hidden = !online;
}

let outgoingStatusEl = null;

function renderOutgoing() {
  if (state.screen !== 'outgoing' || !state.outgoing) return;
  const out = state.outgoing;
  if (view.dataset.screen === 'outgoing' && outgoingStatusEl && view.contains(outgoingStatusEl)) {
    outgoingStatusEl.textContent = out.status;
    outgoingStatusEl.dataset.status = out.status;
    return;
  }
  view.dataset.screen = 'outgoing';
  const status = h('p', { class: 'call-status big', 'data-testid': 'call-status', 'data-status': out.status }, out.status);
  outgoingStatusEl = status;
  const preview = h('video', { class: 'backdrop-video', 'data-testid': 'local-video', autoplay: true, playsinline: true, muted: true, hidden: true });
  preview.muted = true;
  if (state.media && out.media === 'video') {
    state.media.promise.then((m) => {
      if (m.videoTrack && preview.isConnected) {
        preview.srcObject = new MediaStream([m.videoTrack]);
        preview.hidden = false;
      }
    });
  }
  view.replaceChildren(
    h('section', { class: 'ring-screen' },
      preview,
      h('div', { class: 'ring-body' },
        avatar(out.to.id, out.to.name, 'avatar huge pulse'),
        h('h1', {}, out.to.name),
        h('p', { class: 'muted-light' }, out.media === 'video' ? 'Video call' : 'Voice call'),
        status),
      h('div', { class: 'ring-actions' },
        h('div', { class: 'action' },
          h('button', { class: 'round big danger', 'data-testid': 'cancel-call', 'aria-label': 'Cancel call', onclick: cancelCall }, icon('hangup')),
          h('span', {}, 'Cancel')))),
  );
}

function renderConnecting() {
  if (state.screen !== 'connecting' || !state.connecting) return;
  const c = state.connecting;
  view.dataset.screen = 'connecting';
  view.replaceChildren(
    h('section', { class: 'ring-screen' },
      h('div', { class: 'ring-body' },
        c.id ? avatar(c.id, c.title, 'avatar huge') : h('div', { class: 'avatar huge group-avatar' }, icon('group')),
        h('h1', {}, c.title),
        h('p', { class: 'call-status big', 'data-status': 'connecting' }, 'connecting'))),
  );
}

function renderIncoming() {
  const inc = state.incoming;
  if (!inc) {
    overlay.replaceChildren();
    overlay.hidden = true;
    return;
  }
  overlay.hidden = false;
  const others = (inc.participants || []).filter((p) => p.id !== inc.from.id).map((p) => p.name);
  const kind = inc.media === 'video' ? 'video call' : 'voice call';
  const line = others.length ? `Invites you to a ${kind} with ${others.join(', ')}` : `Incoming ${kind}`;
  overlay.replaceChildren(
    h('div', { class: 'incoming', 'data-testid': 'incoming-call', 'data-media': inc.media, 'data-from': inc.from.name, role: 'dialog', 'aria-modal': 'true', 'aria-label': `${inc.from.name}: ${line}` },
      h('div', { class: 'ring-body' },
        avatar(inc.from.id, inc.from.name, 'avatar huge pulse'),
        h('h1', { class: 'caller-name' }, inc.from.name),
        h('p', { class: 'muted-light call-type' }, icon(inc.media === 'video' ? 'video' : 'phone', 'icon small'), line)),
      h('div', { class: 'ring-actions' },
        h('div', { class: 'action' },
          h('button', { class: 'round big danger', 'data-testid': 'decline-call', 'aria-label': 'Decline', onclick: declineCall }, icon('hangup')),
          h('span', {}, 'Decline')),
        h('div', { class: 'action' },
          h('button', { class: 'round big accept', 'data-testid': 'accept-call', 'aria-label': 'Accept', onclick: acceptCall }, icon(inc.media === 'video' ? 'video' : 'phone')),
          h('span', {}, 'Accept')))),
  );
}

// ---------------------------------------------------------------- the call screen

function buildCallView(c) {
  const v = {};
  v.title = h('h1', { class: 'call-title' });
  v.timer = h('span', { class: 'call-timer', 'data-testid': 'call-timer' }, '0:00');
  v.conn = h('span', { class: 'call-conn' });
  v.kind = h('span', { class: 'call-kind' });
  v.invites = h('p', { class: 'invites', 'data-testid': 'invites', 'aria-live': 'polite' });
  v.link = h('a', { class: 'room-link', 'data-testid': 'room-link', target: '_blank', rel: 'noopener' });
  v.copy = h('button', { class: 'chip', 'data-testid': 'copy-link', onclick: () => copyLink(v) }, icon('copy', 'icon small'), h('span', {}, 'Copy link'));
  v.share = h('div', { class: 'share', hidden: true }, h('span', { class: 'share-label' }, 'Invite with this link'), v.link, v.copy);
  v.grid = h('div', { class: 'grid', 'aria-label': 'Participants' });
  v.waiting = h('div', { class: 'waiting', hidden: true });
  v.localVideo = h('video', { 'data-testid': 'local-video', autoplay: true, playsinline: true, muted: true });
  v.localVideo.muted = true;
  v.localAvatar = avatar(state.me ? state.me.id : 'me', state.me ? state.me.name : 'Me', 'avatar medium');
  v.localMuted = h('span', { class: 'muted-badge', hidden: true, title: 'Your microphone is off' }, icon('micOff', 'icon small'), h('span', { class: 'sr-only' }, 'muted'));
  v.self = h('div', { class: 'self', 'data-testid': 'local-tile' }, v.localVideo, v.localAvatar, v.localMuted, h('span', { class: 'self-label' }, 'You'));
  v.sound = h('button', { class: 'chip sound', 'data-testid': 'enable-sound', hidden: true, onclick: enableSound }, icon('volume', 'icon small'), h('span', {}, 'Tap to turn on sound'));
  v.mic = h('button', { class: 'round control', 'data-testid': 'toggle-mic', onclick: () => toggleMic() });
  v.cam = h('button', { class: 'round control', 'data-testid': 'toggle-camera', onclick: () => toggleCamera() });
  v.add = h('button', { class: 'round control', 'data-testid': 'add-person', 'aria-label': 'Add person', title: 'Add person', onclick: () => { c.sheetOpen = !c.sheetOpen; renderCall(); } }, icon('personAdd'));
  v.hangup = h('button', { class: 'round control danger', 'data-testid': 'hangup', 'aria-label': 'Hang up', title: 'Hang up', onclick: hangUp }, icon('hangup'));
  v.sheet = h('div', { class: 'sheet', hidden: true, role: 'dialog', 'aria-label': 'Add someone to the call' });
  v.root = h('section', { class: 'call' },
    h('header', { class: 'call-head' },
      h('div', { class: 'call-heading' }, v.title, h('div', { class: 'call-meta' }, v.kind, v.timer, v.conn)),
      v.share,
      v.invites),
    h('div', { class: 'stage' }, v.grid, v.waiting, v.self, v.sound),
    h('footer', { class: 'controls' }, v.mic, v.cam, v.add, v.hangup),
    v.sheet);
  c.timer = setInterval(() => {
    v.timer.textContent = formatDuration(Date.now() - c.session.joinedAt);
    expireInvites(c);
  }, 1000);
  return v;
}

function copyLink(v) {
  const url = v.link.href;
  const done = () => {
    v.copy.lastChild.textContent = 'Copied';
    setTimeout(() => { v.copy.lastChild.textContent = 'Copy link'; }, 2000);
  };
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(url).then(done, () => showError('Could not copy: select the link and copy it yourself.'));
  } else {
    showError('Could not copy: select the link and copy it yourself.');
  }
}

function expireInvites(c) {
  if (c.inviteNote && c.inviteNote.until < Date.now()) {
    c.inviteNote = null;
    renderCall();
  }
}

function toggleMic() {
  const c = state.call;
  if (!c || !c.local) return;
  c.session.setMic(!c.session.localState().audio);
}

function toggleCamera() {
  const c = state.call;
  if (!c || !c.local) return;
  c.session.setCamera(!c.session.localState().video);
}

function enableSound() {
  for (const el of audioSinks.querySelectorAll('audio')) el.play().catch(() => {});
  state.soundBlocked = false;
  renderCall();
}

function renderCall() {
  const c = state.call;
  if (state.screen !== 'call' || !c) return;
  if (!c.view || view.dataset.screen !== 'call' || !view.contains(c.view.root)) {
    c.view = buildCallView(c);
    c.tiles = new Map();
    view.dataset.screen = 'call';
    view.replaceChildren(c.view.root);
  }
  const v = c.view;
  const s = c.session;
  const people = [...s.participants.values()];
  v.root.dataset.kind = c.kind;
  v.root.dataset.media = c.media;
  v.title.textContent = c.kind === 'group'
    ? `Group call · ${people.length + 1} ${people.length + 1 === 1 ? 'person' : 'people'}`
    : c.title;
  v.kind.textContent = c.media === 'video' ? 'Video call' : 'Voice call';
  const connState = s.pc ? s.pc.connectionState : 'new';
  const iceState = s.pc ? s.pc.iceConnectionState : 'new';
  v.conn.textContent = connState === 'connected' && iceState !== 'disconnected' ? ''
    : iceState === 'disconnected' || (s.connectedAt && connState !== 'closed') ? 'reconnecting…'
      : connState === 'failed' ? 'media failed' : 'connecting…';
  v.conn.dataset.state = connState;
  // Group calls show their link; 1:1 calls get one once they become group calls.
  if (c.kind === 'group') {
    const url = `${location.origin}/call/${encodeURIComponent(s.roomId)}`;
    if (v.link.getAttribute('href') !== url) {
      v.link.href = url;
      v.link.textContent = url;
    }
    v.share.hidden = false;
  } else {
    v.share.hidden = true;
  }
  const ringingNames = [...c.invites.values()].map((i) => i.name);
  const note = c.inviteNote && c.inviteNote.until > Date.now() ? c.inviteNote.text : '';
  v.invites.textContent = [ringingNames.length ? `Ringing ${ringingNames.join(', ')}…` : '', note].filter(Boolean).join(' ');
  v.invites.dataset.reason = note && c.inviteNote.reason ? c.inviteNote.reason : '';
  v.invites.hidden = !v.invites.textContent;
  v.waiting.hidden = people.length > 0;
  v.waiting.textContent = c.kind === 'group' ? 'Waiting for others to join…' : 'Waiting for the other side…';
  renderTiles(c, people);
  renderLocal(c);
  renderControls(c);
  renderSheet(c);
  v.sound.hidden = !state.soundBlocked;
}

function renderLocal(c) {
  const v = c.view;
  const local = c.local;
  const track = local && local.videoTrack && local.videoTrack.readyState === 'live' ? local.videoTrack : null;
  if (track) {
    if (!v.localVideo.srcObject || v.localVideo.srcObject.getVideoTracks()[0] !== track) {
      v.localVideo.srcObject = new MediaStream([track]);
    }
  } else if (v.localVideo.srcObject) {
    v.localVideo.srcObject = null;
  }
  v.self.dataset.video = track ? 'on' : 'off';
  v.self.dataset.speaking = c.session.localSpeaking ? 'true' : 'false';
  v.localMuted.hidden = !local || c.session.localState().audio;
}

function renderControls(c) {
  const v = c.view;
  const s = c.session;
  const ready = !!c.local;
  const mine = s.localState();
  const micOk = ready && s.canUseMic();
  const camOk = ready && s.canUseCamera();
  setToggle(v.mic, mine.audio, micOk, mine.audio ? 'mic' : 'micOff', 'Mute microphone',
    !micOk ? (ready ? 'No microphone: listen-only' : 'Microphone') : mine.audio ? 'Mute microphone' : 'Unmute microphone');
  setToggle(v.cam, mine.video, camOk, mine.video ? 'video' : 'videoOff', 'Camera off',
    !camOk ? 'No camera' : mine.video ? 'Turn camera off' : 'Turn camera on');
  v.add.setAttribute('aria-expanded', c.sheetOpen ? 'true' : 'false');
}

/** A toggle whose pressed state means "device off" (muted, camera off); its name stays put. */
function setToggle(btn, on, enabled, iconName, label, hint) {
  btn.dataset.state = on ? 'on' : 'off';
  btn.setAttribute('aria-pressed', on ? 'false' : 'true');
  btn.setAttribute('aria-label', label);
  btn.title = hint;
  btn.disabled = !enabled;
  btn.classList.toggle('off', !on);
  if (btn.dataset.icon !== iconName) {
    btn.dataset.icon = iconName;
    btn.replaceChildren(icon(iconName));
  }
}

function renderSheet(c) {
  const v = c.view;
  v.sheet.hidden = !c.sheetOpen;
  if (!c.sheetOpen) return;
  const inCall = new Set(c.session.participants.keys());
  const candidates = state.users.filter((u) => !inCall.has(u.id));
  v.sheet.replaceChildren(
    h('div', { class: 'sheet-head' },
      h('h2', {}, 'Add someone'),
      h('button', { class: 'icon-button', 'aria-label': 'Close', onclick: () => { c.sheetOpen = false; renderCall(); } }, icon('close'))),
    candidates.length
      ? h('ul', { class: 'people compact' }, candidates.map((u) =>
        h('li', { class: `person ${u.busy ? 'busy' : ''}`, 'data-testid': 'invite-user', 'data-name': u.name },
          avatar(u.id, u.name),
          h('div', { class: 'who' }, h('span', { class: 'name' }, u.name), h('span', { class: 'sub' }, u.busy ? 'In a call' : 'Available')),
          h('button', { class: 'chip', disabled: c.invites.has(u.id), onclick: () => invite(u) }, c.invites.has(u.id) ? 'Ringing…' : 'Add'))))
      : h('p', { class: 'muted' }, 'Nobody else is online.'));
}

function renderTiles(c, people) {
  const v = c.view;
  const seen = new Set();
  for (const p of people) {
    seen.add(p.id);
    let tile = c.tiles.get(p.id);
    if (!tile) {
      tile = createTile(p);
      c.tiles.set(p.id, tile);
      v.grid.append(tile.root);
    }
    updateTile(c, tile, p);
  }
  for (const [id, tile] of c.tiles) {
    if (!seen.has(id)) {
      tile.root.remove();
      if (tile.audio) tile.audio.remove();
      c.tiles.delete(id);
    }
  }
  v.grid.dataset.count = String(people.length);
  v.root.dataset.count = String(people.length);
  const active = c.activeSpeaker && c.tiles.has(c.activeSpeaker) ? c.activeSpeaker : null;
  v.grid.dataset.active = active ? 'true' : 'false';
  for (const [id, tile] of c.tiles) tile.root.dataset.active = id === active ? 'true' : 'false';
  v.self.dataset.active = state.me && c.activeSpeaker === state.me.id ? 'true' : 'false';
}

function createTile(p) {
  const t = { id: p.id, videoTrack: null, audioTrack: null, hasFrames: false, audio: null };
  t.video = h('video', { 'data-testid': 'remote-video', autoplay: true, playsinline: true, muted: true });
  t.video.muted = true;
  t.avatar = avatar(p.id, p.name, 'avatar large', { 'data-testid': 'remote-avatar' });
  t.name = h('span', { class: 'tile-name' });
  t.muted = h('span', { class: 'muted-badge', 'data-testid': 'remote-muted', title: 'Microphone off', hidden: true }, icon('micOff', 'icon small'), h('span', { class: 'sr-only' }, 'muted'));
  t.poor = h('span', { class: 'poor-connection', 'data-testid': 'poor-connection', role: 'status', hidden: true }, 'Poor connection');
  t.root = h('div', { class: 'tile', 'data-testid': 'remote-tile', 'data-participant-id': p.id },
    t.video, h('div', { class: 'tile-avatar' }, t.avatar), t.poor, h('div', { class: 'tile-label' }, t.muted, t.name));
  t.video.addEventListener('resize', () => markFrames(t));
  watchTileSize(t);
  return t;
}

/** Reports the tile's size (device pixels) so the server picks a fitting layer. */
function watchTileSize(t) {
  if (typeof ResizeObserver === 'undefined') return;
  let timer = null;
  const report = () => {
    timer = null;
    const c = state.call;
    if (!c || !t.root.isConnected) return;
    const r = t.root.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    c.session.setTileSize(t.id, Math.round(r.width * dpr), Math.round(r.height * dpr));
  };
  new ResizeObserver(() => {
    // Coalesce a burst of layout changes (a join reflows every tile).
    if (!timer) timer = setTimeout(report, TILE_SIZE_DEBOUNCE_MS);
  }).observe(t.root);
}

function markFrames(t) {
  if (t.hasFrames || !t.video.videoWidth) return;
  t.hasFrames = true;
  const at = now();
  if (!metrics.firstRemoteFrameAt) metrics.firstRemoteFrameAt = at;
  metrics.firstFrames[t.id] = metrics.firstFrames[t.id] || at;
  if (state.call) renderCall();
}

function updateTile(c, t, p) {
  t.root.dataset.name = p.name;
  t.name.textContent = p.name;
  t.muted.hidden = p.audio;
  t.root.dataset.muted = p.audio ? 'false' : 'true';
  if (p.videoTrack !== t.videoTrack) {
    t.videoTrack = p.videoTrack;
    t.hasFrames = false;
    t.video.srcObject = p.videoTrack ? new MediaStream([p.videoTrack]) : null;
    if (p.videoTrack && t.video.requestVideoFrameCallback) {
      t.video.requestVideoFrameCallback(() => markFrames(t));
    }
  }
  if (p.audioTrack !== t.audioTrack) {
    t.audioTrack = p.audioTrack;
    if (!t.audio) {
      t.audio = h('audio', { autoplay: true, 'data-participant-id': p.id });
      audioSinks.append(t.audio);
    }
    t.audio.srcObject = p.audioTrack ? new MediaStream([p.audioTrack]) : null;
    if (p.audioTrack) {
      t.audio.play().catch(() => {
        state.soundBlocked = true;
        if (c.view) c.view.sound.hidden = false;
      });
    }
  }
  const showVideo = !!(p.video && p.videoTrack && t.hasFrames);
  t.root.dataset.video = showVideo ? 'on' : 'off';
  // The last frame stays on screen while the video is paused for bandwidth.
  t.poor.hidden = !(p.videoPaused && p.video);
  t.root.dataset.poor = t.poor.hidden ? 'false' : 'true';
  t.root.dataset.speaking = p.speaking ? 'true' : 'false';
}

function updateSpeaking() {
  const c = state.call;
  if (!c || !c.view) return;
  for (const p of c.session.participants.values()) {
    const t = c.tiles.get(p.id);
    if (t) t.root.dataset.speaking = p.speaking ? 'true' : 'false';
  }
  c.view.self.dataset.speaking = c.session.localSpeaking ? 'true' : 'false';
}

// ---------------------------------------------------------------- start

window.addEventListener('pointerdown', () => ring.unlockAudio(), { once: true });
window.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && state.call && state.call.sheetOpen) {
    state.call.sheetOpen = false;
    renderCall();
  }
});
window.addEventListener('keydown', () => ring.unlockAudio(), { once: true });

/** A small debug handle for people and for the browser tests. */
window.chorus = {
  get state() {
    return {
      screen: state.screen,
      conn: state.conn,
      me: state.me,
      users: state.users,
      incoming: state.incoming,
      outgoing: state.outgoing,
      call: state.call
        ? {
          roomId: state.call.session.roomId,
          kind: state.call.kind,
          media: state.call.media,
          mode: state.call.local ? state.call.local.mode : null,
          participants: [...state.call.session.participants.values()].map((p) => ({
            id: p.id, name: p.name, audio: p.audio, video: p.video, speaking: p.speaking, level: p.level,
          })),
        }
        : null,
    };
  },
  get pc() {
    return state.call ? state.call.session.pc : null;
  },
  get session() {
    return state.call ? state.call.session : null;
  },
  stats() {
    return state.call ? state.call.session.stats() : Promise.resolve({});
  },
  metrics,
  ringing: () => ring.ringing(),
  audioState: () => ring.audioState(),
  signaling,
  /** Restarts ICE in the current call (a new offer with iceRestart); false without a call. */
  restartIce() {
    return state.call ? state.call.session.restartIce({ now: true }) : false;
  },
  /** Drops the signaling connection as a network outage would, for `offlineMs`; it then resumes. */
  dropConnection({ offlineMs = 0 } = {}) {
    signaling.simulateDrop({ offlineMs });
  },
};

render();
if (state.name) signaling.start();
