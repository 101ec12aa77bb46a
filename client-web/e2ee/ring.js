// What a receiver keeps of each sender's keys: a few indexes back (frames
// still in flight after a switch decrypt), and the way forward by ratchet
// (after someone joins, senders move on before any message could reach
// the others). A ratcheted key is kept only once a frame decrypts with it.

import { frameKey, ratchet, RATCHET_WINDOW } from './keys.js';

/** Indexes kept per sender. */
const KEPT = 16;

export class KeyRing {
  constructor() {
    /** tag → { from, keys: Map(index → { material, key }), latest } */
    this.rings = new Map();
  }

  /** A key `{tag, index, material}` of sender `from` (a new tag replaces the sender's old one). */
  async add(from, { tag, index, material }) {
    for (const [t, r] of this.rings) if (r.from === from && t !== tag) this.rings.delete(t);
    const ring = this.rings.get(tag) ?? { from, keys: new Map(), latest: index };
    this.rings.set(tag, ring);
    remember(ring, index, material, await frameKey(material));
  }

  /** Forgets everything of sender `from`. */
  forget(from) {
    for (const [t, r] of this.rings) if (r.from === from) this.rings.delete(t);
  }

  /**
   * The key for a frame `{tag, index}`: `{ key, keep? }`, where `keep()`
   * records a ratcheted key once it worked; null when there is none.
   */
  async find(tag, index) {
    const ring = this.rings.get(tag);
    if (!ring) return null;
    const known = ring.keys.get(index);
    if (known) return { key: known.key };
    const ahead = (index - ring.latest) & 0xff;
    if (ahead === 0 || ahead > RATCHET_WINDOW) return null;
    let material = ring.keys.get(ring.latest).material;
    for (let i = 0; i < ahead; i += 1) material = await ratchet(material);
    const key = await frameKey(material);
    return { key, keep: () => remember(ring, index, material, key) };
  }
}

function remember(ring, index, material, key) {
  ring.keys.set(index, { material, key });
  ring.latest = index;
  for (const i of [...ring.keys.keys()]) {
    if (((index - i) & 0xff) >= KEPT) ring.keys.delete(i);
  }
}
