// One end-to-end encrypted call, as the page sees it: its frame worker
// (worker.js), this participant's media key and how it changes as people
// come and go (keys.js), the keys of the others as they arrive in
// `e2ee_key` messages, and each member's security code (code.js).

import { randomMaterial, randomTag, ratchet, importPublic, pairKey, wrapKey, unwrapKey } from './keys.js';
import { sealChat, openChat } from './chat.js';
import { securityCode } from './code.js';
import { noteIdentityKey } from './device.js';

/**
 * After someone leaves, a new key goes to those who stay; frames use it
 * this long after, once it has reached them (frames in between still use
 * the old key, which the leaver has).
 */
const SWITCH_AFTER_MS = 1000;

export class CallCrypto {
  /**
   * @param {object} o
   * @param {string} o.roomId
   * @param {string} o.me this user's id
   * @param {{privateKey: CryptoKey, public: string}} o.identity this device's identity (device.js)
   * @param {(msg: object) => boolean} o.send a signaling message
   * @param {() => void} o.onChange what the call screen shows changed
   * @param {boolean} [o.withhold] test hook: never take the others' keys
   */
  constructor(o) {
    this.roomId = o.roomId;
    this.me = o.me;
    this.identity = o.identity;
    this.send = o.send;
    this.onChange = o.onChange;
    this.withhold = !!o.withhold;
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.worker.onmessage = ({ data }) => this.fromWorker(data);
    this.key = { tag: randomTag(), index: 0, material: randomMaterial() };
    this.worker.postMessage({ type: 'send-key', ...this.key });
    /** id → { id, name, key (identity, base64), pair: Promise<CryptoKey>, received, changed } */
    this.peers = new Map();
    this.queue = Promise.resolve();
    /** Counts key changes: a delayed switch to an older key is skipped. */
    this.generation = 0;
    this.senders = new WeakSet();
    this.receivers = new WeakSet();
    /** The connection's senders encrypt. */
    this.sending = false;
    this.statsWaiting = new Map();
    this.statsId = 0;
    this.closed = false;
  }

  /** Runs key steps one at a time, in order. */
  run(step) {
    this.queue = this.queue.then(step).catch((err) => console.warn('end-to-end encryption:', err));
    return this.queue;
  }

  /**
   * Every frame a connection's audio and video transceivers send is
   * encrypted from now on (either may be null: a listener sends nothing).
   */
  protectSenders(audioTx, videoTx) {
    if (this.closed) return;
    for (const [tx, kind] of [[audioTx, 'audio'], [videoTx, 'video']]) {
      if (!tx || this.senders.has(tx.sender)) continue;
      tx.sender.transform = new RTCRtpScriptTransform(this.worker, { operation: 'encrypt', kind });
      this.senders.add(tx.sender);
    }
    this.sending = true;
  }

  /** Every frame `receiver` gets is decrypted from now on. */
  protectReceiver(receiver) {
    if (!receiver || this.receivers.has(receiver) || this.closed) return;
    receiver.transform = new RTCRtpScriptTransform(this.worker, { operation: 'decrypt', kind: receiver.track.kind });
    this.receivers.add(receiver);
  }

  /** The people already in the call: each gets this participant's key. */
  start(participants) {
    for (const p of participants) this.addPeer(p);
    const peers = [...this.peers.values()];
    this.run(() => Promise.all(peers.map((p) => this.sendKeyTo(p))));
  }

  addPeer(p) {
    if (!p.identity_key || p.id === this.me) return null;
    const peer = {
      id: p.id,
      name: p.name,
      key: p.identity_key,
      pair: importPublic(p.identity_key).then((pub) => pairKey(this.identity.privateKey, pub, this.roomId)),
      received: false,
      /** The keys it sent, newest last (chat messages name theirs). */
      keys: [],
      changed: noteIdentityKey(p.id, p.identity_key),
      code: null,
    };
    // Its rejection surfaces where it is awaited.
    peer.pair.catch(() => {});
    this.peers.set(p.id, peer);
    this.onChange();
    return peer;
  }

  /**
   * Someone joined: this participant's key moves one step forward (the
   * newcomer gets only the new one; the others derive it themselves).
   */
  joined(p) {
    const peer = this.addPeer(p);
    if (!peer) return;
    this.run(async () => {
      this.key = { tag: this.key.tag, index: (this.key.index + 1) & 0xff, material: await ratchet(this.key.material) };
      this.generation += 1;
      this.worker.postMessage({ type: 'send-key', ...this.key });
      await this.sendKeyTo(peer);
    });
  }

  /** Someone left: a new key for those who stay, used once it reached them. */
  left(id) {
    if (!this.peers.delete(id)) return;
    this.worker.postMessage({ type: 'forget', from: id });
    this.onChange();
    this.run(async () => {
      const key = { tag: this.key.tag, index: (this.key.index + 1) & 0xff, material: randomMaterial() };
      this.key = key;
      this.generation += 1;
      const generation = this.generation;
      await Promise.all([...this.peers.values()].map((p) => this.sendKeyTo(p)));
      setTimeout(() => {
        if (this.generation === generation && !this.closed) this.worker.postMessage({ type: 'send-key', ...key });
      }, SWITCH_AFTER_MS);
    });
  }

  async sendKeyTo(peer) {
    const data = await wrapKey(await peer.pair, this.key, { roomId: this.roomId, from: this.me, to: peer.id });
    if (this.peers.get(peer.id) !== peer) return;
    this.send({ type: 'e2ee_key', room_id: this.roomId, to: peer.id, data });
  }

  /** The signaling connection resumed: keys sent meanwhile may be lost, so everyone gets the current one again. */
  resend() {
    const peers = [...this.peers.values()];
    this.run(() => Promise.all(peers.map((p) => this.sendKeyTo(p))));
  }

  /** An `e2ee_key` message: another member's key. */
  receive(msg) {
    const peer = this.peers.get(msg.from);
    if (!peer || this.withhold) return;
    this.run(async () => {
      const key = await unwrapKey(await peer.pair, msg.data, { roomId: this.roomId, from: msg.from, to: this.me });
      this.worker.postMessage({ type: 'receive-key', from: msg.from, ...key });
      peer.keys = [...peer.keys.slice(-3), key];
      if (this.onKey) this.onKey(msg.from);
      if (!peer.received) {
        peer.received = true;
        this.onChange();
      }
    });
  }

  /** A chat message (`{text}` or `{reaction}`) sealed with this participant's current key. */
  seal(body) {
    return sealChat(this.key, body, { roomId: this.roomId, from: this.me });
  }

  /**
   * Opens a member's sealed chat message: `{text}` or `{reaction}`, or null
   * while their key has not come (try again when it does: `onKey`).
   */
  open(from, sealed) {
    const keys = from === this.me ? [this.key] : (this.peers.get(from) || { keys: [] }).keys;
    return openChat(keys, sealed, { roomId: this.roomId, from });
  }

  /** True when everything sent is encrypted and every other member's key is here. */
  allEncrypted() {
    if (this.closed || !this.sending) return false;
    return [...this.peers.values()].every((p) => p.received);
  }

  /** Members whose identity key differs from the one this device saw before. */
  changedPeers() {
    return [...this.peers.values()].filter((p) => p.changed);
  }

  /** The 60-digit security code with member `id` (cached). */
  async codeWith(id) {
    const peer = this.peers.get(id);
    if (!peer) return null;
    if (!peer.code) peer.code = securityCode({ id: this.me, key: this.identity.public }, { id: peer.id, key: peer.key });
    return peer.code;
  }

  /**
   * Test hook: the first `count` video keyframes received, each as the
   * media node forwarded it and as decrypted: `[{forwarded, decrypted}]`
   * (ArrayBuffers), once they came.
   */
  tapKeyframes(count) {
    this.worker.postMessage({ type: 'tap', count });
  }

  tapped() {
    return this.ask('tapped');
  }

  /** Test hook: frames that do not decrypt go to the decoder as they are. */
  passUndecryptable(on) {
    this.worker.postMessage({ type: 'pass-undecryptable', on });
  }

  /** The worker's counts: frames encrypted, decrypted, failed, and the time spent. */
  stats() {
    return this.ask('stats');
  }

  /** Asks the worker (`stats` or `tapped`); resolves with its reply (null once closed). */
  ask(type) {
    this.statsId += 1;
    const id = this.statsId;
    return new Promise((resolve) => {
      this.statsWaiting.set(id, resolve);
      this.worker.postMessage({ type, id });
    });
  }

  fromWorker(data) {
    const resolve = this.statsWaiting.get(data.id);
    this.statsWaiting.delete(data.id);
    if (resolve) resolve(data.type === 'tapped' ? data.frames : data.counts);
  }

  close() {
    this.closed = true;
    this.worker.terminate();
    for (const resolve of this.statsWaiting.values()) resolve(null);
    this.statsWaiting.clear();
  }
}
