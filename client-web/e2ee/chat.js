// Chat messages in end-to-end encrypted calls (docs/security.md): each is
// sealed (AES-GCM) with a key derived from the sender's current media key
// material, bound to the room and the sender. The server passes `sealed`
// on and cannot read it. A receiver holds the keys the sender gave it and
// ratchets forward, as the frame worker does, to a key the sender moved to
// when someone joined.

import { ratchet, toBase64, fromBase64, RATCHET_WINDOW } from './keys.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

async function chatKey(material) {
  const base = await crypto.subtle.importKey('raw', material, 'HKDF', false, ['deriveKey']);
  const params = { name: 'HKDF', hash: 'SHA-256', salt: enc.encode('chorus chat'), info: enc.encode('chorus chat key v1') };
  return crypto.subtle.deriveKey(params, base, { name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt']);
}

function boundTo({ roomId, from }) {
  return enc.encode(`chorus chat v1|${roomId}|${from}`);
}

/** `body` (`{text}` or `{reaction}`) sealed with `key` ({tag, index, material}): the `sealed` of a `chat` message. */
export async function sealChat(key, body, ends) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = enc.encode(JSON.stringify(body));
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: boundTo(ends) }, await chatKey(key.material), plain));
  const out = new Uint8Array(5 + iv.length + sealed.length);
  new DataView(out.buffer).setUint32(0, key.tag);
  out[4] = key.index;
  out.set(iv, 5);
  out.set(sealed, 5 + iv.length);
  return toBase64(out);
}

/**
 * Opens `sealed` with one of `keys` (the sender's, as it gave them): the
 * body, or null when no key fits yet. Throws when it is malformed or was
 * not sealed for this room and sender.
 */
export async function openChat(keys, sealed, ends) {
  const bytes = fromBase64(sealed);
  if (bytes.length < 5 + 12 + 16) throw new Error('sealed chat message too short');
  const tag = new DataView(bytes.buffer).getUint32(0);
  const index = bytes[4];
  let material = null;
  for (const k of keys) {
    const ahead = (index - k.index) & 0xff;
    if (k.tag !== tag || ahead > RATCHET_WINDOW) continue;
    material = k.material;
    for (let i = 0; i < ahead; i += 1) material = await ratchet(material);
  }
  if (!material) return null;
  const plain = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: bytes.subarray(5, 17), additionalData: boundTo(ends) }, await chatKey(material), bytes.subarray(17));
  const body = JSON.parse(dec.decode(plain));
  if (typeof body.text === 'string') return { text: body.text };
  if (typeof body.reaction === 'string') return { reaction: body.reaction };
  throw new Error('malformed chat message');
}
