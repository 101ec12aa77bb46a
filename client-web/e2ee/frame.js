// One encrypted media frame (docs/security.md, "Frames"):
//
//   clear header | AES-GCM ciphertext and tag | IV (12) | sender tag (4) | key index (1) | clear length (1) | 0xCE
//
// The clear header is what the media node must read to forward: 1 byte of
// Opus (its TOC), 10 bytes of a VP8 key frame and 3 of a delta frame (the
// frame tag, and on key frames the start code and size). The RTP header
// and the VP8 payload descriptor are outside the frame and stay readable
// anyway. The clear header and the trailer's tag, index and length are
// authenticated as additional data, so none of them can be changed.

/** Bytes after the ciphertext. */
export const TRAILER_BYTES = 12 + 4 + 1 + 1 + 1;
/** The last byte of every encrypted frame. */
export const MARK = 0xce;
const TAG_BYTES = 16;

/** Bytes left in the clear at the start of a frame. */
export function clearBytes(kind, frameType) {
  if (kind === 'audio') return 1;
  return frameType === 'key' ? 10 : 3;
}

function additionalData(header, tag, index, clear) {
  const ad = new Uint8Array(header.length + 6);
  ad.set(header);
  new DataView(ad.buffer).setUint32(header.length, tag);
  ad[header.length + 4] = index;
  ad[header.length + 5] = clear;
  return ad;
}

/** Encrypts `data` (an ArrayBuffer) with `key`; `tag` and `index` name the key. */
export async function seal(key, data, clear, tag, index) {
  const bytes = new Uint8Array(data);
  const n = Math.min(clear, bytes.length);
  const header = bytes.subarray(0, n);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: additionalData(header, tag, index, n) }, key, bytes.subarray(n)));
  const out = new Uint8Array(n + sealed.length + TRAILER_BYTES);
  out.set(header);
  out.set(sealed, n);
  let at = n + sealed.length;
  out.set(iv, at);
  at += 12;
  new DataView(out.buffer).setUint32(at, tag);
  out[at + 4] = index;
  out[at + 5] = n;
  out[at + 6] = MARK;
  return out.buffer;
}

/** The key a frame names, or null for a frame that is not encrypted this way. */
export function trailerOf(data) {
  const bytes = new Uint8Array(data);
  if (bytes.length < TRAILER_BYTES + TAG_BYTES || bytes[bytes.length - 1] !== MARK) return null;
  const at = bytes.length - TRAILER_BYTES + 12;
  const clear = bytes[at + 5];
  if (clear + TRAILER_BYTES + TAG_BYTES > bytes.length) return null;
  return { tag: new DataView(bytes.buffer, bytes.byteOffset).getUint32(at), index: bytes[at + 4], clear };
}

/** Decrypts a frame (with its trailer from `trailerOf`); throws when the key is wrong or the frame was changed. */
export async function open(key, data, trailer) {
  const bytes = new Uint8Array(data);
  const { tag, index, clear } = trailer;
  const end = bytes.length - TRAILER_BYTES;
  const header = bytes.subarray(0, clear);
  const iv = bytes.subarray(end, end + 12);
  const plain = new Uint8Array(await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv, additionalData: additionalData(header, tag, index, clear) }, key, bytes.subarray(clear, end)));
  const out = new Uint8Array(clear + plain.length);
  out.set(header);
  out.set(plain, clear);
  return out.buffer;
}
