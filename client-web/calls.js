// The call flow: what people do (call, answer, hang up, invite) and what
// the server says (docs/protocol.md) change `state`; every change ends with
// `redraw(part)`. Ringing: call → ringing → room_joined | call_ended;
// incoming_call → accept | decline. In a call, the CallSession (session.js)
// owns the media; this module owns who is in the call and why it ended.

import {
  state, metrics, now, inCall, busyHere, redraw, showError, clearError, resetCallMetrics,
} from './state.js';
import { updatedUsers } from './presence.js';
import {
  signaling, send, sendSoon, sendQuietly, sendIfResumed, flushAfterResume, dropAfterResume, expectingStaleErrors,
} from './connection.js';
import { saveName, forgetToken, saveE2ee, saveProtectIp } from './identity.js';
import { RESUME_GRACE_MS } from './signaling.js';
import { acquireMedia } from './localmedia.js';
import { CallSession, CONNECTION_PROBLEM } from './session.js';
import { CallCrypto } from './e2ee/callcrypto.js';
import { DirectLink } from './direct.js';
import { deviceIdentitySync } from './e2ee/device.js';
import { iceConfigFrom } from './mediapath.js';
import * as ring from './ringtone.js';
import * as chat from './chat.js';
import { screenRefused } from './screenshare.js';
import {
  prepareCall, acceptPrepared, preparedMessage, takePrepared, dropPrepared, offerRefusalExpected,
} from './prepare.js';
import * as callLog from './calllog.js';
import * as texts from './texts.js';

/** How long "Cy declined" and the like stay in the call header. */
const INVITE_NOTE_MS = 8000;
/**
 * A call, ring or invite survives a dropped connection while the server may
 * still resume the session. After this long without a connection it is
 * over here too (the server's default grace, plus slack).
 */
const GIVE_UP_MS = RESUME_GRACE_MS + 5000;

/** Which error codes answer which request (errors carry no request id). */
const ERRORS_FOR = {
  call: ['cannot_call_self', 'already_in_call', 'user_not_found', 'bad_message', 'forbidden', 'rate_limited', 'too_many_rooms', 'draining', 'unavailable', 'e2ee_unsupported', 'e2ee_required'],
  accept: ['room_not_found', 'not_in_room', 'already_in_call', 'room_full', 'rate_limited', 'draining', 'unavailable', 'e2ee_required'],
  create: ['already_in_call', 'forbidden', 'bad_message', 'rate_limited', 'too_many_rooms', 'draining', 'unavailable', 'e2ee_required'],
  join: ['room_not_found', 'forbidden', 'already_in_call', 'bad_message', 'room_full', 'rate_limited', 'draining', 'unavailable', 'e2ee_required'],
  invite: ['user_not_found', 'not_in_room', 'cannot_call_self', 'already_in_call', 'room_full', 'rate_limited', 'draining', 'unavailable', 'e2ee_unsupported'],
};

/** Refusals that concern the media negotiation of the call. */
const MEDIA_ERRORS = ['invalid_sdp', 'media_error', 'sdp_too_large', 'rate_limited', 'unavailable'];

/**
 * Signaling that goes out unasked (a call's keys, its session, the call
 * made ready while it rings: prepare.js): a connection that is down says
 * nothing in the banner; false, and each caller copes (a prepared call is
 * dropped and the call connects the usual way when it is answered).
 */
const sendInBackground = (m) => signaling.send(m);

// ---------------------------------------------------------------- devices

/** End-to-end encryption for a call (null when this device cannot encrypt). */
function newCrypto(roomId) {
  const identity = deviceIdentitySync();
  if (!identity) return null;
  return new CallCrypto({
    roomId,
    me: state.me.id,
    identity,
    send: sendInBackground,
    onChange: () => redraw('call'),
    withhold: state.e2eeWithhold,
  });
}

/** Opens camera and microphone ahead of the call (while it rings). */
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
  dropPrepared();
  const entry = state.media;
  state.media = null;
  if (entry && !entry.used) {
    entry.promise.then((m) => {
      if (!entry.used) for (const t of m.stream.getTracks()) t.stop();
    });
  }
}

/**
 * What a new call asks for: end-to-end encryption unless the person turned
 * it off (the server then makes it a plain call, and the call screen says
 * so); without a word the server encrypts whenever this browser can.
 */
function e2eeChoice() {
  return state.e2ee ? {} : { e2ee: false };
}

/** "Protect IP address in calls" on or off (kept on this device); from the next call on. */
export function setProtectIp(on) {
  state.protectIp = !!on;
  saveProtectIp(state.protectIp);
  redraw('lobby');
}

/** Turns end-to-end encryption of new calls on or off (kept on this device). */
export function setE2ee(on) {
  state.e2ee = !!on;
  saveE2ee(state.e2ee);
  redraw('lobby');
}

function resetPath() {
  if (location.pathname !== '/') history.replaceState(null, '', '/');
}

function showRoomPath(roomId) {
  history.replaceState(null, '', `/call/${encodeURIComponent(roomId)}`);
}

// ---------------------------------------------------------------- actions

/** Rings `user` for a voice (`audio`) or video call. */
export function startCall(user, media) {
  if (state.call || state.outgoing || state.connecting) return;
  ring.unlockAudio();
  resetCallMetrics();
  metrics.callClickAt = now();
  state.notice = null;
  state.cancelNextRinging = false;
  state.outgoing = { to: { id: user.id, name: user.name }, media, roomId: null, status: 'calling' };
  state.pending = 'call';
  openMedia(media === 'video');
  if (!send({ type: 'call', to: user.id, media, ...e2eeChoice() })) {
    state.outgoing = null;
    state.pending = null;
    releaseMedia();
    return;
  }
  state.screen = 'outgoing';
  redraw();
}

export function cancelCall() {
  const out = state.outgoing;
  if (!out) return;
  if (out.roomId) sendSoon({ type: 'cancel', room_id: out.roomId });
  // Not ringing yet: cancel as soon as the server says where it rings.
  else state.cancelNextRinging = true;
  state.outgoing = null;
  state.pending = null;
  releaseMedia();
  ring.stopRing();
  state.notice = { status: 'ended', detail: texts.cancelledCall(out.to.name) };
  state.screen = 'lobby';
  redraw();
}

export function acceptCall() {
  const inc = state.incoming;
  if (!inc) return;
  resetCallMetrics();
  metrics.acceptClickAt = now();
  ring.stopRing();
  ring.unlockAudio();
  state.notice = null;
  // Opened while it rang (onIncoming); again if that failed or was let go.
  if (!state.media) openMedia(inc.media === 'video');
  if (!send({ type: 'accept', room_id: inc.room_id })) {
    releaseMedia();
    return;
  }
  acceptPrepared(inc.room_id);
  state.pending = 'accept';
  state.incoming = null;
  state.connecting = { title: inc.from.name, id: inc.from.id, media: inc.media, roomId: inc.room_id };
  state.screen = 'connecting';
  redraw();
}

export function declineCall() {
  const inc = state.incoming;
  if (!inc) return;
  sendSoon({ type: 'decline', room_id: inc.room_id });
  state.incoming = null;
  releaseMedia();
  ring.stopRing();
  state.notice = { status: 'declined', detail: texts.declinedCall(inc.from.name) };
  redraw();
}

export function newGroupCall() {
  if (state.call || state.outgoing || state.connecting) return;
  ring.unlockAudio();
  state.notice = null;
  openMedia(true);
  if (!send({ type: 'create_room', ...e2eeChoice() })) {
    releaseMedia();
    return;
  }
  state.pending = 'create';
  state.connecting = { title: 'New group call', media: 'video' };
  state.screen = 'connecting';
  redraw();
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
  redraw();
}

export function hangUp() {
  const c = state.call;
  if (!c) return;
  sendSoon({ type: 'hangup', room_id: c.session.roomId });
  endCall({ status: 'ended', detail: texts.callSummary(c, 'You left') });
}

/** Rings `user` into the current call. */
export function invite(user) {
  const c = state.call;
  if (!c) return;
  if (!send({ type: 'invite', room_id: c.session.roomId, to: user.id })) return;
  state.pending = 'invite';
  c.invites.set(user.id, { name: user.name, since: Date.now() });
  c.inviteNote = null;
  c.sheetOpen = false;
  redraw('call');
}

export function toggleMic() {
  const c = state.call;
  if (!c || !c.local) return;
  c.session.setMic(!c.session.localState().audio);
}

export function toggleCamera() {
  const c = state.call;
  if (!c || !c.local) return;
  c.session.setCamera(!c.session.localState().video);
}

/** To the name form; the connection stays until a new name is given. */
export function changeName() {
  if (busyHere()) return;
  state.screen = 'name';
  redraw();
}

/** Signs in as `name`: a new name is a new identity, so the old session closes. */
export function submitName(name) {
  state.nameError = '';
  const changed = name !== state.name;
  state.name = name;
  saveName(name);
  state.screen = 'lobby';
  redraw();
  if (state.conn === 'online' && !changed) return;
  if (signaling.state === 'idle') signaling.start();
  else signaling.restart({ fresh: changed });
}

/** Signs out: the server hears a clean close and ends the session at once. */
export function signOut() {
  if (busyHere()) return;
  signaling.close('signed out');
  forgetToken();
  state.me = null;
  state.notice = null;
  state.screen = 'name';
  redraw();
}

/**
 * The page goes away: whatever goes on is left on purpose (hang up,
 * cancel, decline), then the connection closes cleanly, so nobody waits
 * for this page to come back.
 */
export function leavePage() {
  if (state.call) signaling.send({ type: 'hangup', room_id: state.call.session.roomId });
  if (state.outgoing && state.outgoing.roomId) signaling.send({ type: 'cancel', room_id: state.outgoing.roomId });
  if (state.incoming) signaling.send({ type: 'decline', room_id: state.incoming.room_id });
  signaling.close('page closed');
}

/** The page is shown again from the back/forward cache: what it left is over; sign in again. */
export function returnToPage() {
  dropEverything(texts.LEFT_PAGE);
  if (state.name && signaling.state === 'idle') signaling.start();
  redraw();
}

// ---------------------------------------------------------------- ending

function endCall(notice) {
  const c = state.call;
  if (c) {
    c.session.close();
    clearInterval(c.timer);
  }
  state.call = null;
  state.media = null;
  clearError(CONNECTION_PROBLEM);
  resetPath();
  state.notice = notice;
  state.screen = 'lobby';
  redraw();
}

/** The session is gone for good: every call and ring ends here too (`why`: a reason for the notice). */
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
  clearError(CONNECTION_PROBLEM);
  resetPath();
  if (hadCall && why) state.notice = { status: 'ended', detail: texts.endedBecause(why) };
  if (state.screen !== 'name') state.screen = 'lobby';
}

// ---------------------------------------------------------------- the connection

let giveUpTimer = null;

/** The signaling connection changed state (see signaling.js). */
export function connectionState(s, detail) {
  const was = state.conn;
  state.conn = s;
  if (s === 'online') {
    clearTimeout(giveUpTimer);
    giveUpTimer = null;
    state.me = detail.user;
    // Fresh TURN credentials with every welcome, a resumed one included.
    state.ice = iceConfigFrom(detail);
    if (detail.user.name !== state.name) {
      state.name = detail.user.name;
      saveName(state.name);
    }
    state.connError = '';
    if (detail.resumed) {
      // The same session: calls and rings go on, the messages sent meanwhile follow.
      flushAfterResume();
      if (state.call) state.call.session.signalingResumed();
      if (state.call && state.call.crypto) state.call.crypto.resend();
    } else {
      // A new session: whatever went on in the old one is over.
      dropAfterResume();
      if (busyHere()) dropEverything(texts.LOST_CONNECTION);
    }
    if (state.screen === 'name') state.screen = 'lobby';
    redraw();
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
    state.connError = signaling.wasOnline ? texts.RECONNECTING : texts.RETRYING;
  } else if (s === 'replaced') {
    clearTimeout(giveUpTimer);
    dropAfterResume();
    dropEverything(texts.SIGNED_IN_ELSEWHERE);
    state.connError = texts.REPLACED;
  } else if (s === 'failed') {
    clearTimeout(giveUpTimer);
    dropAfterResume();
    dropEverything(null);
    state.screen = 'name';
    state.nameError = detail && detail.message ? detail.message : texts.SIGN_IN_FAILED;
  } else if (s === 'idle') {
    // Closed on purpose (a new name, signing out): nothing to reconnect to.
    clearTimeout(giveUpTimer);
    dropAfterResume();
    state.connError = '';
  }
  redraw();
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
    if (state.call) sendIfResumed({ type: 'hangup', room_id: state.call.session.roomId });
    if (state.outgoing && state.outgoing.roomId) sendIfResumed({ type: 'cancel', room_id: state.outgoing.roomId });
    if (state.incoming) sendIfResumed({ type: 'decline', room_id: state.incoming.room_id });
    dropEverything(texts.LOST_CONNECTION);
    redraw();
  }, GIVE_UP_MS);
}

// ---------------------------------------------------------------- server messages

/** Every server message after `welcome`. */
export function handleMessage(msg) {
  const c = inCall(msg);
  switch (msg.type) {
    case 'presence':
    case 'presence_update':
      state.users = msg.type === 'presence' ? msg.users || [] : updatedUsers(state.users, msg);
      redraw(state.screen === 'lobby' ? 'lobby' : 'call');
      break;
    case 'invite_ended':
      if (c) onInviteEnded(c, msg);
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
      if (c) {
        c.invites.delete(msg.participant.id);
        c.session.participantJoined(msg.participant);
        if (c.crypto) c.crypto.joined(msg.participant);
        // A third person: the call goes back through the media node.
        if (c.session.direct) c.session.direct.leave();
        redraw('call');
      }
      break;
    case 'participant_left':
      if (c) c.session.participantLeft(msg.participant_id);
      if (c && c.crypto) c.crypto.left(msg.participant_id);
      break;
    case 'e2ee_key':
      if (c && c.crypto) c.crypto.receive(msg);
      break;
    case 'direct_signal':
      if (c && c.session.direct && c.session.direct.peer === msg.from) c.session.direct.handle(msg.data);
      break;
    case 'participant_updated':
      if (c) c.session.participantUpdated(msg.participant);
      break;
    case 'active_speaker':
      // The media node's choice, from everyone's audio levels: highlighted
      // and enlarged until someone else takes over.
      if (c) {
        c.activeSpeaker = msg.participant_id;
        redraw('call');
      }
      break;
    case 'room_changed':
      if (c) {
        c.kind = msg.kind;
        c.session.kind = msg.kind;
        if (msg.kind === 'group') showRoomPath(msg.room_id);
        redraw('call');
      }
      break;
    case 'call_log':
      callLog.receive(msg);
      if (state.screen === 'lobby') redraw('lobby');
      break;
    case 'chat':
      if (c) chat.receive(c, msg, () => redraw('call'));
      break;
    case 'call_sync':
      onCallSync(msg);
      break;
    case 'media_answer':
    case 'media_offer':
      // While it rings, for the connection made ready meanwhile (prepare.js).
      if (c) c.session.handle(msg);
      else preparedMessage(msg);
      break;
    case 'media_moved':
      // Another media node took the call over: a new connection there
      // (session.js), while this one plays on. It ends nothing.
      if (c) c.session.mediaMoved();
      break;
    case 'video_paused':
      if (c) c.session.videoPaused(msg);
      else preparedMessage(msg);
      break;
    case 'publish_layers':
      if (c) c.session.publishLayers(msg);
      else preparedMessage(msg);
      break;
    case 'error':
      serverError(msg);
      break;
    default:
      break;
  }
}

function onRinging(msg) {
  const c = inCall(msg);
  if (c) {
    // Our invite rings at someone's.
    if (state.pending === 'invite') state.pending = null;
    c.invites.set(msg.to.id, { name: msg.to.name, since: Date.now() });
    redraw('call');
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
  // The connection to the media node is made ready while it rings (prepare.js).
  if (state.media) prepareCall(msg.room_id, state.media, () => state.ice, state.e2ee ? newCrypto(msg.room_id) : null, sendInBackground, true);
  ring.startRing('outgoing');
  redraw('outgoing');
}

function onInviteEnded(c, msg) {
  c.invites.delete(msg.to.id);
  // A busy invitee is answered at once, without ringing.
  if (state.pending === 'invite') state.pending = null;
  c.inviteNote = { text: texts.inviteEndedText(msg), reason: msg.reason, until: Date.now() + INVITE_NOTE_MS };
  redraw('call');
}

function onIncoming(msg) {
  if (state.call || state.outgoing || state.connecting) return;
  state.incoming = msg;
  ring.startRing('incoming');
  // The camera and microphone open while it rings, so an answer starts at
  // once (as the caller's did when they called); let go unless answered.
  openMedia(msg.media === 'video');
  // ... and the connection to the media node is made ready (prepare.js).
  prepareCall(msg.room_id, state.media, () => state.ice, msg.e2ee ? newCrypto(msg.room_id) : null, sendInBackground, !!msg.early);
  redraw();
}

function onCallEnded(msg) {
  const status = texts.endStatus(msg.reason);
  if (state.incoming && state.incoming.room_id === msg.room_id) {
    const inc = state.incoming;
    state.incoming = null;
    releaseMedia();
    ring.stopRing();
    state.notice = { status, detail: texts.endDetail(msg, inc.from.name, 'callee') };
    redraw();
    return;
  }
  const c = inCall(msg);
  if (c) {
    // Media that never got through: most likely a network that blocks
    // calls. The notice after the call says what may help.
    const unreachable = msg.reason === 'media_failed' && c.session.pc && !c.session.connectedAt;
    if (msg.reason === 'media_failed' && !unreachable) showError(texts.MEDIA_SETUP_FAILED);
    let detail;
    if (unreachable) detail = texts.mediaUnreachable(c.session.reachability());
    else if (msg.reason !== 'hangup') detail = texts.endDetail(msg, c.title, 'in-call');
    else detail = c.kind === 'group' ? texts.callSummary(c, 'You left') : texts.hungUp(c, msg);
    endCall({ status, detail });
    return;
  }
  if (state.outgoing && (!state.outgoing.roomId || state.outgoing.roomId === msg.room_id)) {
    const out = state.outgoing;
    state.outgoing = null;
    if (state.pending === 'call') state.pending = null;
    releaseMedia();
    ring.stopRing();
    state.notice = { status, detail: texts.endDetail(msg, out.to.name, 'caller') };
    state.screen = 'lobby';
    redraw();
    return;
  }
  if (state.connecting && (!state.connecting.roomId || state.connecting.roomId === msg.room_id)) {
    const peer = state.connecting.id ? state.connecting.title : null;
    state.connecting = null;
    state.pending = null;
    releaseMedia();
    state.notice = { status, detail: texts.endDetail(msg, peer, 'callee') };
    state.screen = 'lobby';
    redraw();
  }
}

/**
 * The server's view of our call after a resume or a change of the
 * cluster's coordinator (which may have lost its last moments): a call or
 * ring it does not know ends here; one it has us in that we left is hung up.
 */
function onCallSync(msg) {
  const mine = (state.call && state.call.session.roomId)
    || (state.outgoing && state.outgoing.roomId)
    || (state.incoming && state.incoming.room_id)
    || (state.connecting && state.connecting.roomId)
    || null;
  if (mine && mine !== msg.room_id) {
    onCallEnded({ type: 'call_ended', room_id: mine, reason: 'disconnected' });
    if (state.notice) state.notice.detail = texts.CALL_LOST_BY_SERVER;
    redraw();
  }
  if (msg.room_id && msg.room_id !== mine && !state.pending) {
    sendQuietly({ type: 'hangup', room_id: msg.room_id });
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
  // A call prepared while it rang comes with its connection and its keys.
  const prepared = takePrepared(msg.room_id, !!msg.e2ee);
  const crypto = prepared ? prepared.crypto : msg.e2ee ? newCrypto(msg.room_id) : null;
  if (crypto) crypto.onKey = () => state.call && state.call.crypto === crypto && chat.retry(state.call, () => redraw('call'));
  if (crypto && state.e2eeTap) crypto.tapKeyframes(state.e2eeTap);
  const session = new CallSession({
    crypto,
    roomId: msg.room_id,
    kind: msg.kind,
    media: msg.media,
    participants: others,
    send: sendInBackground,
    online: () => signaling.connected(),
    onChange: (what) => onSessionChange(what),
    onProblem: (text, topic) => showError(text, topic),
    onProblemGone: (topic) => clearError(topic),
    iceConfig: () => state.ice,
    prepared,
  });
  state.call = {
    session,
    crypto,
    e2ee: !!msg.e2ee,
    codesOpen: false,
    kind: msg.kind,
    media: msg.media,
    title,
    invites: new Map(),
    inviteNote: null,
    activeSpeaker: null,
    sheetOpen: false,
    timer: null,
    view: null,
    tiles: new Map(),
    local: null,
  };
  if (msg.kind === 'group') showRoomPath(msg.room_id);
  if (crypto) crypto.start(others);
  // Two people: they try a connection of their own (direct.js).
  if (msg.kind === 'call' && others.length === 1) {
    session.direct = new DirectLink(session, { me: state.me.id, peer: others[0].id, allowed: !state.protectIp });
  }
  state.screen = 'call';
  redraw();
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
  redraw('call');
}

function onSessionChange(what) {
  const c = state.call;
  if (!c) return;
  if (what === 'connection' && c.session.pc && c.session.pc.connectionState === 'connected' && !metrics.mediaConnectedAt) {
    metrics.mediaConnectedAt = now();
  }
  redraw(what === 'speaking' ? 'speaking' : 'call');
}

function serverError(msg) {
  const code = msg.code;
  const text = texts.ERROR_TEXT[code] || msg.message || texts.UNKNOWN_ERROR;
  // The offer sent with an accept that failed: the accept's error said it.
  if (offerRefusalExpected(code)) return;
  if ((code === 'room_not_found' || code === 'not_in_room') && expectingStaleErrors() && !state.pending) {
    // A hangup (or cancel, decline) sent after a resume, for a call that ended meanwhile.
    return;
  }
  if (code === 'not_in_room' && state.call) {
    // The server no longer has us in this call: it ended while the
    // connection was down (and its call_ended went missing).
    state.pending = null;
    endCall({ status: 'ended', detail: texts.ENDED_WHILE_AWAY });
    return;
  }
  if (state.call && code === 'screen_taken') {
    screenRefused(state.call);
    return;
  }
  if (state.call && chat.isChatError(code)) {
    chat.refused(state.call, text, () => redraw('call'));
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
  redraw();
}
