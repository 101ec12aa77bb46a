// A 1:1 call's direct connection, browser to browser. The call starts
// through the media node as any call does; meanwhile the two browsers try a
// connection of their own (with the ICE servers of `welcome`, TURN
// included). Once it is up, both play what comes over it and stop sending
// to the media node, which then forwards nothing. When a third person
// joins, both send to the media node again and, once its media plays,
// close the direct connection. A person who protects their IP address
// (the lobby's "Protect IP address in calls") never offers or answers one:
// the other side never learns their address.
//
// The side with the smaller user id offers; the other answers. Both go
// through the server as `direct_signal` messages (docs/protocol.md). An
// encrypted call encrypts its frames on the direct connection too, with the
// same keys.

import { waitForIce } from './negotiation.js';

/**
 * A direct connection not up by then is given up: the call stays on the
 * media node. Trying costs the user nothing (the call plays through the
 * media node meanwhile), so a slow path, a relayed one or a busy machine
 * gets time.
 */
const CONNECT_MS = 10000;
/** A direct connection down this long hands the call back to the media node. */
const DOWN_MS = 2000;
/** Back to the media node: how long to wait for its media before switching anyway. */
const RETURN_MS = 5000;
/** ... and to keep sending directly for the other side, at most. */
const CLOSE_MS = 8000;
const POLL_MS = 50;

export class DirectLink {
  /**
   * @param {import('./session.js').CallSession} session the call
   * @param {object} o
   * @param {string} o.me this user's id
   * @param {string} o.peer the other member's id
   * @param {boolean} o.allowed this person lets the other see their address
   */
  constructor(session, o) {
    this.session = session;
    this.me = o.me;
    this.peer = o.peer;
    this.allowed = o.allowed;
    /** trying | active | returning (playing on while the media node's media comes) | returned (sending on for the other side) | off */
    this.state = this.allowed ? 'trying' : 'off';
    this.pc = null;
    this.audioTx = null;
    this.videoTx = null;
    this.timer = null;
    /** Epoch ms of the steps, for the tests. */
    this.timings = { offered: null, active: null, returned: null };
  }

  /** Local media is ready: the offering side offers; an offer that came first is answered. */
  start() {
    if (this.state !== 'trying') return;
    this.started = true;
    this.timer = setTimeout(() => this.giveUp(), CONNECT_MS);
    if (this.me < this.peer) this.offer().catch((err) => this.giveUp(err));
    if (this.early) this.handle(this.early);
    this.early = null;
  }

  /** A new connection; the offering side adds its audio and video transceivers. */
  newConnection(offering) {
    const s = this.session;
    const pc = s.newPeerConnection();
    if (offering) {
      pc.addTransceiver('audio', { direction: 'sendrecv' });
      pc.addTransceiver('video', { direction: 'sendrecv' });
      this.publish(pc);
    }
    pc.addEventListener('track', (ev) => {
      if (s.crypto) s.crypto.protectReceiver(ev.receiver);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc !== this.pc) return;
      const st = pc.connectionState;
      clearTimeout(this.downTimer);
      if (st === 'connected') this.activate();
      if (st === 'failed') this.lost();
      // A direct path that stays down: the media node takes the call back.
      if (st === 'disconnected') this.downTimer = setTimeout(() => this.lost(), DOWN_MS);
    });
    this.pc = pc;
    return pc;
  }

  /** Puts the microphone and camera on the connection's transceivers (a listener only listens). */
  publish(pc) {
    const s = this.session;
    const local = s.local;
    const [audioTx, videoTx] = ['audio', 'video'].map((kind) =>
      pc.getTransceivers().find((t) => t.receiver.track.kind === kind));
    this.audioTx = audioTx;
    this.videoTx = videoTx;
    for (const [tx, track] of [[audioTx, local.audioTrack], [videoTx, local.videoTrack]]) {
      if (!tx) continue;
      if (local.mode === 'listen-only') {
        tx.direction = 'recvonly';
        continue;
      }
      tx.direction = 'sendrecv';
      tx.sender.setStreams(local.stream);
      if (track) tx.sender.replaceTrack(track).catch(() => {});
    }
    if (s.crypto && local.mode !== 'listen-only') s.crypto.protectSenders(audioTx, videoTx);
    // Receivers decrypt from their first frame on.
    if (s.crypto) for (const r of pc.getReceivers()) s.crypto.protectReceiver(r);
  }

  async offer() {
    const pc = this.newConnection(true);
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    if (pc !== this.pc || this.state !== 'trying') return;
    this.timings.offered = Date.now();
    this.signal({ kind: 'offer', sdp: pc.localDescription.sdp });
  }

  signal(body) {
    this.session.send({ type: 'direct_signal', room_id: this.session.roomId, to: this.peer, data: JSON.stringify(body) });
  }

  /** A `direct_signal` from the other member. */
  async handle(data) {
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      return;
    }
    if (body.kind === 'bye') {
      if (this.state === 'trying') this.giveUp();
      return;
    }
    if (body.kind === 'returned') {
      this.otherReturned();
      return;
    }
    if (this.state !== 'trying') return;
    if (!this.started) {
      // Before the camera and microphone are open: answered once they are.
      this.early = data;
      return;
    }
    try {
      if (body.kind === 'offer' && this.me > this.peer && !this.pc) {
        const pc = this.newConnection(false);
        await pc.setRemoteDescription({ type: 'offer', sdp: String(body.sdp) });
        this.publish(pc);
        await pc.setLocalDescription(await pc.createAnswer());
        await waitForIce(pc);
        if (pc === this.pc && this.state === 'trying') this.signal({ kind: 'answer', sdp: pc.localDescription.sdp });
      } else if (body.kind === 'answer' && this.pc && this.pc.signalingState === 'have-local-offer') {
        await this.pc.setRemoteDescription({ type: 'answer', sdp: String(body.sdp) });
      }
    } catch (err) {
      this.giveUp(err);
    }
  }

  /** The direct connection is up: play its media, and stop sending to the media node. */
  activate() {
    if (this.state !== 'trying') return;
    // A shared screen keeps the call on the media node (screenshare.js).
    if (this.session.screenShared()) {
      this.giveUp();
      return;
    }
    clearTimeout(this.timer);
    this.state = 'active';
    this.timings.active = Date.now();
    this.pauseMediaNode(true);
    this.session.syncReceivers();
  }

  /** Sends to the media node (`pause` false) or not. */
  pauseMediaNode(pause) {
    const s = this.session;
    const local = s.local;
    const senders = [[s.audioTx, local.audioTrack], [s.videoTx, local.videoTrack]];
    for (const [tx, track] of senders) {
      if (tx) tx.sender.replaceTrack(pause ? null : (track ?? null)).catch(() => {});
    }
  }

  /** Not up in time, refused or failed: the call goes on through the media node. */
  giveUp(err) {
    if (this.state !== 'trying') return;
    if (err) console.warn('direct connection given up', err);
    clearTimeout(this.timer);
    this.state = 'off';
    if (this.pc) {
      this.signal({ kind: 'bye' });
      this.pc.close();
    }
    this.pc = null;
    this.session.onChange('connection');
  }

  /** The direct connection failed or stayed down: back to the media node at once. */
  lost() {
    if (this.state === 'trying') {
      this.giveUp();
      return;
    }
    if (this.state !== 'active' && this.state !== 'returning') return;
    this.pauseMediaNode(false);
    this.close();
    this.timings.lost = Date.now();
    if (!this.session.closed) this.session.syncReceivers();
  }

  /** Playing over the direct connection now. */
  active() {
    return this.state === 'active' || this.state === 'returning';
  }

  /** What the other member's tiles play: `{audio, video}` receivers. */
  receivers() {
    const byPerson = new Map();
    if (this.pc) {
      const of = (kind) => this.pc.getReceivers().find((r) => r.track.kind === kind) ?? null;
      byPerson.set(this.peer, { audio: of('audio'), video: of('video') });
    }
    return byPerson;
  }

  /** Puts the camera (or nothing) on the direct video sender. */
  sendVideo(track) {
    return this.videoTx ? this.videoTx.sender.replaceTrack(track) : Promise.resolve();
  }

  /**
   * A third person joined: back to the media node. The direct connection
   * plays on until the media node's video (or, in a voice call, audio) of
   * the other member comes through here, and goes on sending until the
   * other side has switched too (`returned`), so neither sees a gap.
   */
  async leave() {
    const was = this.state;
    clearTimeout(this.timer);
    if (was === 'trying') {
      this.giveUp();
      return;
    }
    if (was !== 'active') return;
    this.state = 'returning';
    this.pauseMediaNode(false);
    this.closeTimer = setTimeout(() => this.close(), CLOSE_MS);
    const deadline = Date.now() + RETURN_MS;
    while (Date.now() < deadline && !this.session.closed && !(await this.mediaNodePlays())) {
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (this.state !== 'returning') return;
    this.state = 'returned';
    this.timings.returned = Date.now();
    if (!this.session.closed) this.session.syncReceivers();
    this.signal({ kind: 'returned' });
    if (this.peerReturned) this.close();
  }

  /** The other side plays the media node's media now: the direct connection can go. */
  otherReturned() {
    this.peerReturned = true;
    if (this.state === 'returned') this.close();
  }

  /** The media node's connection decodes the other member's media. */
  async mediaNodePlays() {
    const r = this.session.currentReceivers().get(this.peer);
    const receiver = r && (r.video || r.audio);
    if (!receiver) return false;
    const before = this.decoded ?? -1;
    let now = 0;
    const stats = await receiver.getStats();
    stats.forEach((st) => {
      if (st.type === 'inbound-rtp') now = r.video ? (st.framesDecoded ?? 0) : (st.packetsReceived ?? 0);
    });
    this.decoded = now;
    return before >= 0 && now > before;
  }

  close() {
    clearTimeout(this.timer);
    clearTimeout(this.closeTimer);
    clearTimeout(this.downTimer);
    this.state = 'off';
    if (this.pc) this.pc.close();
    this.pc = null;
  }
}
