// The security code two people compare to know that nobody is in between
// (as WhatsApp's, after Signal's numeric fingerprints): 60 digits, 30 for
// each side's identity key, the lower half first, so both see the same.
// Each half is an iterated SHA-512 of the key and the user id: a different
// key gives different digits, and finding a key with chosen digits costs
// that many hashes per try.

import { fromBase64 } from './keys.js';

const enc = new TextEncoder();
const ITERATIONS = 5200;
const VERSION = new Uint8Array([0, 0]);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** 30 digits for one identity key (base64) of user `id`. */
export async function fingerprintDigits(id, publicKey) {
  const key = fromBase64(publicKey);
  let hash = new Uint8Array(await crypto.subtle.digest('SHA-512', concat(VERSION, key, enc.encode(id))));
  for (let i = 1; i < ITERATIONS; i += 1) {
    hash = new Uint8Array(await crypto.subtle.digest('SHA-512', concat(hash, key)));
  }
  let digits = '';
  for (let chunk = 0; chunk < 6; chunk += 1) {
    let n = 0;
    for (let b = 0; b < 5; b += 1) n = n * 256 + hash[chunk * 5 + b];
    digits += String(n % 100000).padStart(5, '0');
  }
  return digits;
}

/** The 60-digit code of two people: the same on both sides. */
export async function securityCode(a, b) {
  const halves = await Promise.all([fingerprintDigits(a.id, a.key), fingerprintDigits(b.id, b.key)]);
  halves.sort();
  return halves.join('');
}

/** 60 digits as people read them: twelve groups of five. */
export function groupDigits(code) {
  return code.match(/.{1,5}/g).join(' ');
}
