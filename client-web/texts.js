// What the client says to people: errors, why a call ended, notices.
// Plain functions of the server's messages; no state, no DOM.

import { formatDuration } from './ui.js';

/** `error` codes from the server (docs/protocol.md), in plain words. */
export const ERROR_TEXT = {
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
  chat_too_long: 'A message is at most 1000 characters: shorten it and send it again.',
  rate_limited: 'That was too many requests in a short time: wait a moment and try again.',
  room_full: 'That call is full.',
  too_many_rooms: 'The server has no room for another call right now: try again later.',
  sdp_too_large: 'This browser\'s media setup was too large for the server.',
  draining: 'The server is restarting, so no new calls can start right now.',
  unavailable: 'The server cannot reach the rest of its cluster just now: try again in a moment.',
  e2ee_required: 'That call is end-to-end encrypted, and this browser cannot encrypt calls.',
  screen_taken: 'Someone else is sharing their screen: one screen at a time can be shared.',
  e2ee_unsupported: 'Their app cannot take end-to-end encrypted calls. To call them anyway, turn off "Encrypt my calls end to end" in the lobby.',
};

/** The call header while a 1:1 call goes browser to browser (direct.js). */
export const DIRECT_PATH = 'Direct';
export const DIRECT_EXPLAINED = 'Your browsers are connected to each other: the call does not go through the server';

/** The call screen's word on encryption. */
export const E2EE_ON = 'End-to-end encrypted';
export const E2EE_WAITING = 'Setting up end-to-end encryption…';
export const E2EE_OFF = 'Not end-to-end encrypted: the server can see and hear this call';
export const E2EE_EXPLAINED = 'Only the people in this call can see and hear it: not the server, not its operator. Compare the security code with each person (read the digits out to each other, or scan the QR code): when they match, nobody is in between.';

/** A member's identity key differs from the one this device saw before. */
export function securityCodeChanged(names) {
  return `${names.join(', ')}'s security code changed. Verify it again to be sure this call is private.`;
}

export const UNKNOWN_ERROR = 'Something went wrong on the server.';

/** `POST /api/token` refusals. */
export const TOKEN_ERRORS = {
  bad_name: 'That name cannot be used: use 1 to 40 characters, without control characters.',
  dev_mode_off: 'This server does not hand out guest sign-ins: open Chorus from the link your organisation gave you.',
};

export const CANNOT_REACH = 'Cannot reach the server.';
export const SIGN_IN_FAILED = 'Could not sign in.';

/** The token endpoint answered with an error status (or no token). */
export function tokenRefused(status) {
  return `The server refused to sign you in (HTTP ${status}).`;
}

export const NOT_CONNECTED = 'Not connected to the server right now. Chorus is reconnecting; try again in a moment.';
export const RECONNECTING = 'Connection to the server lost. Reconnecting…';
export const RETRYING = 'Cannot reach the server. Retrying…';
export const REPLACED = 'Chorus is open in another tab or window, so this one was signed out.';
/** Why a call or ring ended here without the server saying so (completed by `endedBecause`). */
export const LOST_CONNECTION = 'Lost the connection to the server';
export const SIGNED_IN_ELSEWHERE = 'You signed in somewhere else';
export const LEFT_PAGE = 'You left the page';
export const QUALITY_YOURS_POOR = 'Your connection is poor: the call may break up. Try moving closer to the Wi-Fi, or turn your camera off.';
export function qualityTheirsPoor(names) {
  return `${names.join(' and ')}'s connection is poor: they may break up. Yours is fine.`;
}
export const CHAT_TOO_LONG = 'A message is at most 1000 characters: shorten it and send it again.';
export const CHAT_WAITING_KEY = '🔒 Waiting for the key to read this message…';
export const CHAT_UNREADABLE = '🔒 This message could not be decrypted.';
export const CALL_LOST_BY_SERVER = 'The server lost this call while one of its nodes restarted. Call again.';
export const ENDED_WHILE_AWAY = 'The call ended while the connection to the server was interrupted.';
export const SCREEN_TAKEN = 'Someone else is sharing their screen: one screen at a time can be shared.';
export const screenTakenBy = (name) => `${name} is sharing their screen. One screen at a time can be shared: ask them to stop first.`;
export const screenProblem = (why) => `Could not share your screen: ${why}`;
export const SCREEN_SHARING = 'You are sharing your screen';
export const screenOf = (name) => `${name}'s screen`;
export const NAME_MISSING = 'Type a name first.';
export const COPY_FAILED = 'Could not copy: select the link and copy it yourself.';

/** Problems of the call's own media connection (session.js). */
export const MEDIA_SETUP_FAILED = 'The audio and video connection could not be set up, so the call ended.';

/** The call's media connection, in the call header while it is not (or no longer) up. */
export const MEDIA_CONNECTING = 'connecting…';
export const MEDIA_RECONNECTING = 'reconnecting…';
export const MEDIA_FAILED = 'media failed';
/** A tile whose media stopped with its media node, until the call's new connection brings it back. */
export const TILE_RECONNECTING = 'Reconnecting…';

/**
 * The media connection never got through: what the person can try, then
 * what the server's operator can do. `udpPort`, `tcpPort`: the media node's ports as it announced them;
 * `turn`: a TURN server was given (it was tried too); `relayOnly`: only TURN
 * may be used.
 */
export function mediaUnreachable({ udpPort = null, tcpPort = null, turn = false, relayOnly = false } = {}) {
  const user = 'The call could not connect: your network may block calls. Try another network, such as mobile data.';
  let operator;
  if (turn || relayOnly) {
    operator = 'check that its TURN server can be reached';
  } else {
    let ports = 'its media ports';
    if (udpPort !== null && udpPort === tcpPort) ports = `UDP and TCP port ${udpPort}`;
    else if (udpPort !== null || tcpPort !== null) {
      ports = [udpPort !== null ? `UDP port ${udpPort}` : '', tcpPort !== null ? `TCP port ${tcpPort}` : ''].filter(Boolean).join(' and ');
    }
    operator = `enable TURN (--turn-url) or check that ${ports} can be reached`;
  }
  return `${user} If it keeps happening, the server's operator can ${operator}.`;
}

/** The path the call's media took (mediapath.js `selectedPath`), in short: "UDP · 12 ms". */
export function connectionDetail(p) {
  const name = { udp: 'UDP', tcp: 'TCP', relay: 'Relay (TURN)' }[p.path];
  return p.rttMs === null ? name : `${name} · ${p.rttMs} ms`;
}

/** The same at more length, for a tooltip and screen readers. */
export function connectionExplained(p) {
  const how = {
    udp: 'Connected straight to the server over UDP.',
    tcp: 'Connected to the server over TCP: this network seems to block UDP.',
    relay: 'Connected through a relay (TURN) server.',
  }[p.path];
  return p.rttMs === null ? how : `${how} Round trip: ${p.rttMs} ms.`;
}

export function mediaProblem(err) {
  return `The media connection had a problem: ${err && err.message ? err.message : err}`;
}

export function cameraProblem(why) {
  return `Cannot turn the camera on: ${why}`;
}

/** `LOST_CONNECTION` and the like, as the notice after a call. */
export function endedBecause(why) {
  return `${why}, so the call ended.`;
}

/** The status word of the notice after a call, by `call_ended` reason. */
export const END_STATUS = {
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

export function endStatus(reason) {
  return END_STATUS[reason] || 'ended';
}

/**
 * Why a call or ring ended, for `role` `caller` (ringing someone),
 * `callee` (being rung) or `in-call`; `peer` is the other person's name.
 */
export function endDetail(msg, peer, role) {
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
      return MEDIA_SETUP_FAILED;
    case 'server_shutdown':
      return 'The server is restarting; the call ended.';
    default:
      return null;
  }
}

/** The notice after leaving a call (`prefix`: "You left"), with its length. */
export function callSummary(call, prefix) {
  const length = formatDuration(Date.now() - call.session.joinedAt);
  if (call.kind === 'group') return `${prefix} the group call · ${length}`;
  return `Call with ${call.title} · ${length}`;
}

/** The notice after the other side hung up a 1:1 call. */
export function hungUp(call, msg) {
  return `${(msg.by && msg.by.name) || call.title} hung up · ${formatDuration(Date.now() - call.session.joinedAt)}`;
}

export function cancelledCall(name) {
  return `You cancelled the call to ${name}.`;
}

export function declinedCall(name) {
  return `You declined ${name}'s call.`;
}

/** `invite_ended`: why someone invited into our call will not join. */
export function inviteEndedText(msg) {
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
