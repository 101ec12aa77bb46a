// This device's identity key pair, kept in IndexedDB (the private key is
// not extractable: a page can use it, nobody can read it out), and the
// identity keys of the people this device has been in calls with, to
// notice when one changes ("security code changed").

import { newIdentity, exportPublic } from './keys.js';

const DB = 'chorus';
const STORE = 'keys';
const SEEN_KEY = 'chorus.identityKeys';

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function inStore(mode, fn) {
  return openDb().then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => {
      db.close();
      resolve(req.result);
    };
    tx.onerror = () => reject(tx.error);
  }));
}

/** Frames can be encrypted in this browser. */
export function canEncrypt() {
  return typeof RTCRtpScriptTransform !== 'undefined' && typeof indexedDB !== 'undefined' && !!globalThis.crypto?.subtle;
}

let identity = null;

/**
 * This device's identity `{ privateKey, publicKey, public }` (`public`:
 * base64, as sent in `auth`), made on first use; null when this browser
 * cannot encrypt or keep it.
 */
export async function deviceIdentity() {
  if (identity || !canEncrypt()) return identity;
  try {
    let pair = await inStore('readonly', (s) => s.get('identity'));
    if (!pair) {
      pair = await newIdentity();
      await inStore('readwrite', (s) => s.put(pair, 'identity'));
    }
    identity = { privateKey: pair.privateKey, publicKey: pair.publicKey, public: await exportPublic(pair.publicKey) };
  } catch (err) {
    console.warn('no identity key: calls from this browser cannot be end-to-end encrypted', err);
    identity = null;
  }
  return identity;
}

/** This device's identity once loaded (`deviceIdentity`), else null. */
export function deviceIdentitySync() {
  return identity;
}

/** The identity key of this device as sent in `auth`, once loaded. */
export function devicePublicKey() {
  return identity ? identity.public : null;
}

/** Makes a new identity key pair (as a new device would have); the next sign-in sends it. */
export async function replaceIdentity() {
  identity = null;
  await inStore('readwrite', (s) => s.delete('identity'));
  return deviceIdentity();
}

function seenKeys() {
  try {
    return JSON.parse(localStorage.getItem(SEEN_KEY) || '{}');
  } catch {
    return {};
  }
}

/**
 * Records `key` as the identity key of user `id`; true when a different
 * one was recorded before (their security code changed).
 */
export function noteIdentityKey(id, key) {
  const seen = seenKeys();
  const changed = !!seen[id] && seen[id] !== key;
  seen[id] = key;
  localStorage.setItem(SEEN_KEY, JSON.stringify(seen));
  return changed;
}
