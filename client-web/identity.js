// Who this browser is: the display name and the access token, kept in
// localStorage. In dev mode `POST /api/token` hands out a token for a name
// (docs/protocol.md, "Identity"); the token is reused until it nearly expires.

import { TOKEN_ERRORS, CANNOT_REACH, tokenRefused } from './texts.js';

const IDENTITY_KEY = 'chorus.identity';
const NAME_KEY = 'chorus.name';
const E2EE_KEY = 'chorus.e2ee';
const PROTECT_IP_KEY = 'chorus.protectIp';
/** A token this close to its expiry is not used for a new connection. */
const EXPIRY_MARGIN_MS = 60000;

/** The name used last time on this browser, or ''. */
export function savedName() {
  return localStorage.getItem(NAME_KEY) || '';
}

export function saveName(name) {
  localStorage.setItem(NAME_KEY, name);
}

function loadIdentity() {
  try {
    return JSON.parse(localStorage.getItem(IDENTITY_KEY) || 'null');
  } catch {
    return null;
  }
}

/** Whether new calls from this device are end-to-end encrypted (on unless turned off). */
export function savedE2ee() {
  return localStorage.getItem(E2EE_KEY) !== 'off';
}

export function saveE2ee(on) {
  localStorage.setItem(E2EE_KEY, on ? 'on' : 'off');
}

/** "Protect IP address in calls": calls never connect browser to browser. */
export function savedProtectIp() {
  return localStorage.getItem(PROTECT_IP_KEY) === 'on';
}

export function saveProtectIp(on) {
  localStorage.setItem(PROTECT_IP_KEY, on ? 'on' : 'off');
}

/** Signing out: the next sign-in asks for a new token. The name stays as a suggestion. */
export function forgetToken() {
  localStorage.removeItem(IDENTITY_KEY);
}

/**
 * Asks the server for a token for `name` and stores it. Rejects with an
 * Error in plain words; `permanent` says whether trying again can help.
 */
export async function requestToken(name) {
  let res;
  try {
    res = await fetch('/api/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
  } catch {
    throw Object.assign(new Error(CANNOT_REACH), { permanent: false });
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON: handled below.
  }
  if (!res.ok || !body || !body.token) {
    const code = body && body.code;
    const text = TOKEN_ERRORS[code] || (body && body.message) || tokenRefused(res.status);
    throw Object.assign(new Error(text), { permanent: res.status >= 400 && res.status < 500, code });
  }
  localStorage.setItem(IDENTITY_KEY, JSON.stringify(body));
  return body.token;
}

/** The stored token when it is for `name` and not about to expire; else a new one. */
export async function storedToken(name) {
  const id = loadIdentity();
  if (id && id.token && id.name === name && (!id.expires_at || id.expires_at * 1000 > Date.now() + EXPIRY_MARGIN_MS)) {
    return id.token;
  }
  return requestToken(name);
}
