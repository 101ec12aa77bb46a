// The key schedule of end-to-end encrypted calls (docs/security.md). Pure
// WebCrypto: it runs in the page, in the frame worker and in Node (the
// unit tests).
//
// - Each device has a long-term identity key pair (ECDH P-256). Its public
//   half goes to the server in `auth`; the private half never leaves the
//   browser (it is not extractable).
// - Each participant makes its own media key material (32 random bytes) and
//   a random 32-bit sender tag. Frames carry the tag and an 8-bit key index.
// - The material reaches each other member wrapped (AES-GCM) with a key that
//   only the two devices can derive: ECDH of their identity keys, then HKDF
//   bound to the room. The server routes the wrapped key and cannot read it.
// - Someone joins: every sender ratchets its material forward (HKDF, one
//   way) and gives the newcomer only the new one, so the newcomer cannot
//   decrypt what came before. The others derive it themselves.
// - Someone leaves: every sender makes new random material and gives it to
//   those who stay, so the leaver cannot decrypt what comes after.

const enc = new TextEncoder();

/** Bytes of key material. */
export const MATERIAL_BYTES = 32;
/** Key indexes a receiver may ratchet forward by itself to catch up with a sender. */
export const RATCHET_WINDOW = 8;

export function randomMaterial() {
  return crypto.getRandomValues(new Uint8Array(MATERIAL_BYTES));
}

export function randomTag() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

export function toBase64(bytes) {
  let s = '';
  const b = new Uint8Array(bytes);
  for (let i = 0; i < b.length; i += 1) s += String.fromCharCode(b[i]);
  return btoa(s);
}

export function fromBase64(text) {
  const s = atob(text);
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i += 1) b[i] = s.charCodeAt(i);
  return b;
}

async function hkdfBits(material, salt, info, bits = 256) {
  const base = await crypto.subtle.importKey('raw', material, 'HKDF', false, ['deriveBits']);
  const params = { name: 'HKDF', hash: 'SHA-256', salt: enc.encode(salt), info: enc.encode(info) };
  return new Uint8Array(await crypto.subtle.deriveBits(params, base, bits));
}

/** The next material of a sender: one way, so whoever gets it cannot go back. */
export function ratchet(material) {
  return hkdfBits(material, 'chorus ratchet', 'chorus media key ratchet v1');
}

/** The AES-GCM key frames are encrypted with, from key material. */
export async function frameKey(material) {
  const base = await crypto.subtle.importKey('raw', material, 'HKDF', false, ['deriveKey']);
  const params = { name: 'HKDF', hash: 'SHA-256', salt: enc.encode('chorus frame'), info: enc.encode('chorus frame key v1') };
  return crypto.subtle.deriveKey(params, base, { name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt']);
}

/** A new identity key pair; the private key cannot be exported. */
export function newIdentity() {
  return crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
}

/** The public key as sent in `auth` (base64 of the uncompressed point). */
export async function exportPublic(publicKey) {
  return toBase64(await crypto.subtle.exportKey('raw', publicKey));
}

export function importPublic(text) {
  return crypto.subtle.importKey('raw', fromBase64(text), { name: 'ECDH', namedCurve: 'P-256' }, true, []);
}

/**
 * The key two devices wrap media keys with in one room: ECDH of one's
 * private and the other's public identity key, then HKDF bound to the
 * room. Both sides derive the same key; nobody else can.
 */
export async function pairKey(myPrivate, theirPublic, roomId) {
  const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: theirPublic }, myPrivate, 256);
  const base = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  const params = { name: 'HKDF', hash: 'SHA-256', salt: enc.encode(`chorus wrap ${roomId}`), info: enc.encode('chorus key wrap v1') };
  return crypto.subtle.deriveKey(params, base, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

/** What a wrapped key is bound to: it opens only for this room, sender and recipient. */
function boundTo({ roomId, from, to }) {
  return enc.encode(`chorus e2ee_key v1|${roomId}|${from}|${to}`);
}

/**
 * A sender's key `{tag, index, material}` for one recipient, as the
 * `data` of an `e2ee_key` message.
 */
export async function wrapKey(pair, key, ends) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = enc.encode(JSON.stringify({ tag: key.tag, index: key.index, material: toBase64(key.material) }));
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: boundTo(ends) }, pair, plain));
  const out = new Uint8Array(iv.length + sealed.length);
  out.set(iv);
  out.set(sealed, iv.length);
  return toBase64(out);
}

/** Opens an `e2ee_key` message's `data`; throws when it was not made for these ends or is malformed. */
export async function unwrapKey(pair, data, ends) {
  const bytes = fromBase64(data);
  if (bytes.length < 12 + 16) throw new Error('wrapped key too short');
  const plain = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: bytes.subarray(0, 12), additionalData: boundTo(ends) }, pair, bytes.subarray(12));
  const k = JSON.parse(new TextDecoder().decode(plain));
  const material = fromBase64(String(k.material));
  const ok = Number.isInteger(k.tag) && k.tag >= 0 && k.tag <= 0xffffffff
    && Number.isInteger(k.index) && k.index >= 0 && k.index <= 255 && material.length === MATERIAL_BYTES;
  if (!ok) throw new Error('malformed key');
  return { tag: k.tag, index: k.index, material };
}
