// A call's media moving to another media node (`media_moved`: the node it
// was on stopped, or is being restarted). The session (session.js
// `mediaMoved`) makes a new RTCPeerConnection there at once, and every
// media message from then on is about that one. This is the time in
// between: the old connection plays on in the tiles (the old node may
// still forward for a moment) until the new one is ready, then it closes
// and the tiles take the new one's tracks. Tracks are matched to people by
// the user ids in the server's `tracks`, the same on both nodes.
//
// The new connection is ready once ICE (or DTLS too) is up and it brings
// every track the tiles show; or at once when the old connection brings
// nothing any more; or SWAP_WAIT_MS after it came up, since the old node
// stops forwarding to us as soon as the new one connects (someone whose
// own move is not done yet appears once it is).
//
// Meanwhile the call shows "reconnecting…", and, should the old connection
// be down already (its node died), each tile says "Reconnecting…". Nothing
// about the old connection ends the call or shows an error: it is only
// there to fill the gap.

/** After the new connection is up, the tiles wait at most this long for the tracks they show. */
const SWAP_WAIT_MS = 2000;

const wallClock = () => performance.timeOrigin + performance.now();

export class MediaMove {
  /**
   * @param {import('./session.js').CallSession} session
   * @param {{pc: RTCPeerConnection, videoTx: RTCRtpTransceiver|null}} old the connection playing now
   */
  constructor(session, old) {
    this.session = session;
    this.old = old;
    /** When the new connection came up (Date.now()), or null. */
    this.upAt = null;
    this.timer = null;
    this.done = false;
    this.watch = () => {
      this.check();
      if (!this.done) this.session.onChange('connection');
    };
    old.pc.addEventListener('connectionstatechange', this.watch);
    old.pc.addEventListener('iceconnectionstatechange', this.watch);
  }

  /** A second `media_moved` before this one finished: the session made another new connection. */
  restart() {
    clearTimeout(this.timer);
    this.timer = null;
    this.upAt = null;
  }

  /** The old connection still brings media: ICE and DTLS are up. */
  oldDelivering() {
    const pc = this.old.pc;
    return pc.connectionState === 'connected' && !['disconnected', 'failed', 'closed'].includes(pc.iceConnectionState);
  }

  /** The new connection (the session's current one) is up. */
  newUp() {
    const pc = this.session.pc;
    return pc.connectionState === 'connected' || ['connected', 'completed'].includes(pc.iceConnectionState);
  }

  /** Every track the tiles show has come on the new connection too. */
  covered() {
    const s = this.session;
    const now = s.currentReceivers();
    for (const p of s.participants.values()) {
      const was = s.receivers.get(p.id) ?? {};
      const is = now.get(p.id) ?? {};
      if ((was.audio && !is.audio) || (was.video && !is.video)) return false;
    }
    return true;
  }

  /** Hands the tiles over once the new connection is ready (see the top of this file). */
  check() {
    if (this.done || this.session.closed || !this.newUp()) return;
    if (this.upAt === null) {
      this.upAt = Date.now();
      this.session.timings.moveConnected = wallClock();
      this.timer = setTimeout(() => this.finish(), SWAP_WAIT_MS);
    }
    if (!this.oldDelivering() || this.covered()) this.finish();
  }

  /** The new connection takes over: the old one closes, the tiles show the new one's tracks. */
  finish() {
    if (this.done) return;
    const s = this.session;
    this.close();
    s.move = null;
    s.movesFinished += 1;
    s.timings.moveFinished = wallClock();
    // The levels read so far were the old connection's counters.
    s.energySeen.clear();
    s.syncReceivers();
    s.onChange('connection');
  }

  /** Closes the old connection (the call ended, or the move is done). */
  close() {
    this.done = true;
    clearTimeout(this.timer);
    this.old.pc.removeEventListener('connectionstatechange', this.watch);
    this.old.pc.removeEventListener('iceconnectionstatechange', this.watch);
    this.old.pc.close();
  }
}
