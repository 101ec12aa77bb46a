// The page's state, one object that the call flow (calls.js) changes and
// the screens draw. Nothing here touches the DOM: after a change the flow
// calls `redraw(part)` and the page (app.js) redraws that part.

import { savedName, savedE2ee, savedProtectIp } from './identity.js';

export const state = {
  name: savedName(),
  me: null,
  conn: 'idle', // the signaling connection: idle | connecting | online | lost | replaced | failed
  users: [],
  callLog: [], // call_log entries, newest first (calllog.js)
  screen: 'name', // name | lobby | outgoing | connecting | call
  incoming: null, // incoming_call message
  outgoing: null, // { to, media, roomId, status }
  connecting: null, // { title, id?, media, roomId? } while accept/join/create waits for room_joined
  call: null, // { session, crypto, e2ee, codesOpen, kind, media, title, invites: Map, view, tiles, local, activeSpeaker, inviteNote, sheetOpen, timer }
  notice: null, // { status, detail }
  pending: null, // call | accept | create | join | invite
  pendingRoom: roomFromPath(),
  cancelNextRinging: false,
  media: null, // { promise, used } devices opened for the coming call
  nameError: '',
  connError: '',
  error: null, // { text, topic } shown in the banner
  soundBlocked: false,
  // New calls are end-to-end encrypted (the lobby's switch).
  e2ee: savedE2ee(),
  // 1:1 calls stay on the media node: the other side never sees this address.
  protectIp: savedProtectIp(),
  // Test hook: calls never take the others' keys (docs/security.md).
  e2eeWithhold: false,
  // Test hook: how many received video keyframes each call keeps (e2ee/worker.js).
  e2eeTap: 0,
  // How calls reach the media node, from the latest `welcome` (mediapath.js `iceConfigFrom`).
  ice: { iceServers: [], iceTransportPolicy: 'all' },
};

/** A new call's timings start from nothing. */
export function resetCallMetrics() {
  metrics.roomJoinedAt = null;
  metrics.mediaConnectedAt = null;
  metrics.firstRemoteFrameAt = null;
  metrics.firstFrames = {};
}

/** Timings for the tests: epoch milliseconds. */
export const metrics = {
  callClickAt: null,
  acceptClickAt: null,
  roomJoinedAt: null,
  mediaConnectedAt: null,
  firstRemoteFrameAt: null,
  firstFrames: {},
};

/** Epoch milliseconds, sub-millisecond precise. */
export const now = () => performance.timeOrigin + performance.now();

function roomFromPath() {
  const m = location.pathname.match(/^\/call\/([^/?#]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

/** The current call when `msg` (a server message with `room_id`) is about it, else null. */
export function inCall(msg) {
  const c = state.call;
  return c && msg.room_id === c.session.roomId ? c : null;
}

/** A call, a ring either way, or a call being joined. */
export function busyHere() {
  return !!(state.call || state.outgoing || state.incoming || state.connecting);
}

/** How long an error stays in the banner unless dismissed. */
const ERROR_MS = 12000;
let errorTimer = null;

/**
 * Shows `text` in the banner for a while. A `topic` names a problem that
 * can go away (e.g. the media connection): `clearError(topic)` then takes
 * the text down as soon as it no longer holds.
 */
export function showError(text, topic = null) {
  state.error = { text, topic };
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    state.error = null;
    redraw('banner');
  }, ERROR_MS);
  redraw('banner');
}

/** Takes the banner's error down: any (no topic), or only one about `topic`. */
export function clearError(topic = null) {
  if (!state.error || (topic !== null && state.error.topic !== topic)) return;
  clearTimeout(errorTimer);
  state.error = null;
  redraw('banner');
}

let redrawer = () => {};

/**
 * Redraws `part` of the page: `call`, `lobby`, `outgoing`, `speaking`,
 * `banner`, or everything when no part is named.
 */
export function redraw(part) {
  redrawer(part);
}

/** The page's drawing function (set once by app.js). */
export function setRedraw(fn) {
  redrawer = fn;
}
