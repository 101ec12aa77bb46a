// The frame worker of an end-to-end encrypted call: every sender's and
// receiver's encoded frames pass through here (`RTCRtpScriptTransform`).
// Outgoing frames are encrypted with this participant's current key;
// incoming ones are decrypted with the key their trailer names, from the
// keys the page handed over (`postMessage`). Nothing leaves in the clear:
// without a key an outgoing frame is dropped, and an incoming frame that
// does not decrypt is dropped too (a test hook passes it on undecrypted,
// to show that it cannot be decoded).

import { seal, open, trailerOf, clearBytes } from './frame.js';
import { frameKey } from './keys.js';
import { KeyRing } from './ring.js';

/** This participant's key: { tag, index, key }. */
let sending = null;
const ring = new KeyRing();
let passUndecryptable = false;
/** Test hook: the next video keyframes received, as forwarded and as decrypted. */
const tap = { wanted: 0, frames: [] };
const counts = {
  encrypted: 0, decrypted: 0, failed: 0, noKey: 0, notEncrypted: 0, encryptMs: 0, decryptMs: 0, bytesIn: 0,
};

self.onmessage = async ({ data }) => {
  switch (data.type) {
    case 'send-key':
      sending = { tag: data.tag, index: data.index, key: await frameKey(data.material) };
      break;
    case 'receive-key':
      await ring.add(data.from, data);
      break;
    case 'forget':
      ring.forget(data.from);
      break;
    case 'pass-undecryptable':
      passUndecryptable = !!data.on;
      break;
    case 'tap':
      tap.wanted = data.count;
      break;
    case 'tapped':
      self.postMessage({ type: 'tapped', id: data.id, frames: tap.frames });
      break;
    case 'stats':
      self.postMessage({ type: 'stats', id: data.id, counts: { ...counts } });
      break;
    default:
      break;
  }
};

async function encrypt(frame, controller, kind) {
  if (!sending) return;
  const t0 = performance.now();
  frame.data = await seal(sending.key, frame.data, clearBytes(kind, frame.type), sending.tag, sending.index);
  counts.encryptMs += performance.now() - t0;
  counts.encrypted += 1;
  controller.enqueue(frame);
}

async function decrypt(frame, controller, kind) {
  counts.bytesIn += frame.data.byteLength;
  const tapped = kind === 'video' && frame.type === 'key' && tap.frames.length < tap.wanted ? frame.data.slice(0) : null;
  const trailer = trailerOf(frame.data);
  if (!trailer) {
    counts.notEncrypted += 1;
    if (passUndecryptable) controller.enqueue(frame);
    return;
  }
  const t0 = performance.now();
  const found = await ring.find(trailer.tag, trailer.index);
  if (!found) {
    counts.noKey += 1;
    if (passUndecryptable) controller.enqueue(frame);
    return;
  }
  try {
    frame.data = await open(found.key, frame.data, trailer);
  } catch {
    counts.failed += 1;
    if (passUndecryptable) controller.enqueue(frame);
    return;
  }
  if (found.keep) found.keep();
  if (tapped) tap.frames.push({ forwarded: tapped, decrypted: frame.data.slice(0) });
  counts.decryptMs += performance.now() - t0;
  counts.decrypted += 1;
  controller.enqueue(frame);
}

self.onrtctransform = (event) => {
  const t = event.transformer;
  const { operation, kind } = t.options;
  const transform = new TransformStream({
    transform: operation === 'encrypt' ? (f, c) => encrypt(f, c, kind) : (f, c) => decrypt(f, c, kind),
  });
  t.readable.pipeThrough(transform).pipeTo(t.writable).catch(() => {});
};
