// The page's one signaling connection (signaling.js) and how requests go
// out on it: at once, or — for requests that end something — right after
// a resume when the connection is down.

import { Signaling } from './signaling.js';
import { storedToken, requestToken } from './identity.js';
import { deviceIdentity, devicePublicKey } from './e2ee/device.js';
import { state, showError } from './state.js';
import { NOT_CONNECTED } from './texts.js';

/** After a resume, "no such call" errors are expected for this long (see `sendSoon`). */
const QUIET_AFTER_RESUME_MS = 5000;

const listeners = { message: () => {}, state: () => {} };

export const signaling = new Signaling({
  // The identity key is loaded before the first `auth`, which carries it.
  token: () => deviceIdentity().then(() => storedToken(state.name)),
  freshToken: () => deviceIdentity().then(() => requestToken(state.name)),
  identityKey: () => devicePublicKey(),
  onMessage: (msg) => listeners.message(msg),
  onState: (s, detail) => listeners.state(s, detail),
});

/** Where server messages and connection states go (set once by app.js). */
export function listen({ onMessage, onState }) {
  listeners.message = onMessage;
  listeners.state = onState;
}

/** Sends a request now; when not connected, says so in the banner and returns false. */
export function send(msg) {
  if (signaling.send(msg)) return true;
  showError(NOT_CONNECTED);
  return false;
}

/**
 * Requests that end something (hangup, cancel, decline) and cannot wait: when
 * the connection is down but the session may be resumed, they are sent right
 * after the resume. Their "no such call" errors are then expected, and quiet.
 */
const afterResume = [];
let quietUntil = 0;

/** Sends `msg` now, or right after a resume; false when neither can happen. */
export function sendSoon(msg) {
  if (signaling.send(msg)) return true;
  if (!signaling.mayResume()) return false;
  afterResume.push(msg);
  return true;
}

/** Sends `msg` now, for a call that may have ended meanwhile: its "no such call" error is quiet. */
export function sendQuietly(msg) {
  if (signaling.send(msg)) quietUntil = Date.now() + QUIET_AFTER_RESUME_MS;
}

/** Sends `msg` should the session ever resume (a server may keep it longer than the default grace). */
export function sendIfResumed(msg) {
  afterResume.push(msg);
}

/** The session resumed: send what waited for it. */
export function flushAfterResume() {
  const msgs = afterResume.splice(0);
  for (const m of msgs) signaling.send(m);
  if (msgs.length) quietUntil = Date.now() + QUIET_AFTER_RESUME_MS;
}

/** The session is gone: what waited for it concerns nothing any more. */
export function dropAfterResume() {
  afterResume.length = 0;
}

/** True while errors about calls that ended meanwhile are expected (after `flushAfterResume`). */
export function expectingStaleErrors() {
  return Date.now() < quietUntil;
}
