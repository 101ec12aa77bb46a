// One call's media: a single RTCPeerConnection to the media node (two for
// a moment while the media moves to another node, see mediamove.js).
//
// Negotiation (docs/protocol.md, "Media negotiation"):
// - after `room_joined` (or, for a 1:1 call, while it rang: prepare.js,
//   whose connection the session takes over) the client offers once what
//   it publishes (see negotiation.js `addPublishing`);
// - the media node then offers what it forwards (`media_offer` with `tracks`)
//   whenever that changes, and the client answers each offer.
// SDP is sent complete: ICE gathering is awaited before sending.
//
// The client offers again only to repair things, and never while an offer of
// its own is outstanding (a server offer that crosses it is ignored: the
// media node answers ours, then offers again):
// - ICE restart: when ICE stays `disconnected` for ICE_DISCONNECTED_MS, or
//   goes `failed`, a new offer with `iceRestart` (also `restartIce()`);
// - after the signaling connection resumed: messages to or from the media
//   node may have been lost with the old socket, so a new offer brings both
//   sides back in step (with an ICE restart if ICE is down too);
// - when a sent offer got no answer in ANSWER_TIMEOUT_MS, or was refused.
//
// `media_moved` (the media node stopped, or is being restarted): a new
// connection publishes the same tracks and offers as on joining; every
// media message from then on is about it. The old one only plays on until
// the new one is ready (mediamove.js). Each negotiation step is bound to
// the connection it began on, and one that was replaced meanwhile sends
// nothing and fails quietly.

import { openCamera, cameraError } from './localmedia.js';
import { mediaUnreachable, mediaProblem, cameraProblem } from './texts.js';
import { announcedPorts, hasTurn } from './mediapath.js';
import { addPublishing, pinReceiveCodecs, newPeerConnection, answerOffer } from './negotiation.js';
import { handOver } from './prepare.js';
import { MediaMove } from './mediamove.js';
import { readStats, receiveStats } from './levels.js';
import { QualityMeter } from './quality.js';
import { ScreenSender } from './screenshare.js';

/** The topic of problems with the media connection itself: they go away once it connects. */
export const CONNECTION_PROBLEM = 'media-connection';

/** How long ICE may stay `disconnected` before an ICE restart. */
const ICE_DISCONNECTED_MS = 2000;
/** The least time between two ICE restarts. */
const ICE_RESTART_GAP_MS = 3000;
/** An own offer with no answer for this long is given up and made again. */
const ANSWER_TIMEOUT_MS = 10000;

const wallClock = () => performance.timeOrigin + performance.now();
const STATS_POLL_MS = 200;

export class CallSession {
  /**
   * @param {object} o
   * @param {string} o.roomId
   * @param {'call'|'group'} o.kind
   * @param {'audio'|'video'} o.media
   * @param {Array<{id,name,audio,video}>} o.participants everyone else
   * @param {(msg: object) => boolean} o.send a signaling message (false: not connected)
   * @param {() => boolean} [o.online] the signaling connection is up
   * @param {(what: string) => void} o.onChange something to redraw
   * @param {(text: string, topic?: string) => void} o.onProblem a message for the person
   *   (with a topic: it holds until `onProblemGone(topic)`)
   * @param {(topic: string) => void} o.onProblemGone the problem about `topic` went away
   * @param {() => {iceServers: RTCIceServer[], iceTransportPolicy: string}} [o.iceConfig]
   *   TURN servers and policy from the latest `welcome` (mediapath.js `iceConfigFrom`)
   * @param {object} [o.prepared] the connection prepared while the call rang, its offer
   *   sent (prepare.js)
   */
  constructor(o) {
    this.prepared = o.prepared || null;
    /** End-to-end encryption of the call's frames (e2ee/callcrypto.js), or null. */
    this.crypto = o.crypto || null;
    /** A 1:1 call's direct connection (direct.js), set by the call flow, or null. */
    this.direct = null;
    this.roomId = o.roomId;
    this.kind = o.kind;
    this.media = o.media;
    this.send = o.send;
    /** This page's connection quality (quality.js), sent when it changes. */
    this.quality = new QualityMeter();
    /** The screen this page shares (screenshare.js). */
    this.screen = new ScreenSender(this);
    this.online = o.online || (() => true);
    this.onChange = o.onChange;
    this.onProblem = o.onProblem;
    this.onProblemGone = o.onProblemGone || (() => {});
    this.iceConfig = o.iceConfig || (() => ({ iceServers: [], iceTransportPolicy: 'all' }));
    /** The way media takes to the media node, as last shown (mediapath.js `selectedPath`). */
    this.path = null;
    this.pathShownAt = 0;
    /** @type {Map<string, object>} id → participant with its tracks and speaking state */
    this.participants = new Map();
    for (const p of o.participants) this.upsert(p);
    /** mid → {mid, participant_id, kind} from the latest server offer */
    this.trackMap = new Map();
    /** participant id → [width, height] of its tile, in device pixels */
    this.tileSizes = new Map();
    /** mid → the size last reported for it ("WxH") */
    this.sizesSent = new Map();
    /** rid → active, as the media node last asked */
    this.wantedLayers = new Map();
    this.layersQueue = Promise.resolve();
    /** participant id → {audio, video} receivers whose tracks the tiles show */
    this.receivers = new Map();
    /** The connection all negotiation is about (the newest one). */
    this.pc = null;
    /** While the media moves: the old connection, playing on until the new one is ready (mediamove.js). */
    this.move = null;
    this.local = null;
    this.audioTx = null;
    this.videoTx = null;
    /** An own offer was sent and its answer has not come yet. */
    this.ownOffer = false;
    /** A (new) own offer should be made as soon as none is outstanding. */
    this.wantOffer = false;
    /** ... and it should restart ICE. */
    this.wantIceRestart = false;
    this.offerQueued = false;
    this.answerTimer = null;
    this.iceTimer = null;
    this.lastIceRestart = 0;
    /** Own offers sent on the current connection (the first one restarts nothing). */
    this.linkOffers = 0;
    /** A media_state could not be sent: send it again when connected. */
    this.stateUnsent = false;
    this.queue = Promise.resolve();
    this.closed = false;
    this.joinedAt = Date.now();
    this.connectedAt = null;
    this.localSpeaking = false;
    this.localSpeakingUntil = 0;
    /** Audio energy and duration last read, per track id ('local' for the microphone). */
    this.energySeen = new Map();
    this.statsTimer = null;
    this.cameraBusy = false;
    /** Offers and answers sent: the tests check the client offers only once. */
    this.offersSent = 0;
    this.answersSent = 0;
    this.iceRestarts = 0;
    /** Server offers ignored because they crossed an own offer. */
    this.offersIgnored = 0;
    /** `media_moved` handled, and moves finished (the new connection took over). */
    this.moves = 0;
    this.movesFinished = 0;
    /** Epoch milliseconds of the setup steps, for diagnostics and the tests. */
    this.timings = { start: null, offerSent: null, answerReceived: null, connected: null, firstServerOffer: null };
  }

  /**
   * Runs media steps one at a time, in order. A step belongs to the current
   * connection (its argument): should the media move before it runs, it is
   * skipped, and its errors after that are nobody's concern.
   */
  enqueue(step) {
    const pc = this.pc;
    this.queue = this.queue.then(() => (this.closed || pc !== this.pc ? undefined : step(pc))).catch((err) => {
      if (this.closed || pc !== this.pc) return;
      console.error('media step failed', err);
      this.onProblem(mediaProblem(err));
    });
    return this.queue;
  }

  /** Starts media with the opened devices (see localmedia.js). */
  start(local) {
    this.timings.start = wallClock();
    this.local = local;
    const early = this.prepared;
    this.prepared = null;
    this.connect(early);
    if (early) handOver(this, early, local);
    else this.offer();
    if (this.direct) this.direct.start();
    this.statsTimer = setInterval(() => this.pollStats(), STATS_POLL_MS);
  }

  /**
   * A new connection to the media node, publishing `this.local`: it becomes
   * the current one, with its own step queue (see `enqueue`).
   */
  connect(early = null) {
    const pc = early ? early.pc : this.newPeerConnection();
    pc.addEventListener('track', (ev) => {
      if (this.crypto) this.crypto.protectReceiver(ev.receiver);
      if (pc === this.pc) this.syncReceivers();
    });
    pc.addEventListener('connectionstatechange', () => this.connectionChanged(pc));
    pc.addEventListener('iceconnectionstatechange', () => this.iceStateChanged(pc));
    const { audioTx, videoTx } = early ? early.tx : addPublishing(pc, this.local);
    if (this.crypto) this.crypto.protectSenders(audioTx, videoTx);
    this.screen.attach(pc);
    this.pc = pc;
    this.audioTx = audioTx;
    this.videoTx = videoTx;
    // A new connection to the media node while the call goes direct sends nothing.
    if (this.direct && this.direct.state === 'active') this.direct.pauseMediaNode(true);
    this.queue = Promise.resolve();
  }

  /**
   * `media_moved`: the call's media is on another media node now. A new
   * connection offers there as on joining, and from now on every media
   * message is about it; the old one plays on until the new one is ready
   * (mediamove.js). A move still unfinished is abandoned: its new
   * connection closes, the one playing stays.
   */
  mediaMoved() {
    // Not started yet: the first offer goes to the new media node anyway.
    if (this.closed || !this.pc) return;
    this.moves += 1;
    this.timings.moveStarted = wallClock();
    const current = { pc: this.pc, videoTx: this.videoTx };
    // An unfinished move's new connection goes; the one playing stays.
    if (this.move) current.pc.close();
    // What was negotiated on the old connection means nothing on the new one.
    clearTimeout(this.answerTimer);
    clearTimeout(this.iceTimer);
    this.answerTimer = null;
    this.iceTimer = null;
    this.ownOffer = false;
    this.wantOffer = false;
    this.wantIceRestart = false;
    this.offerQueued = false;
    this.lastIceRestart = 0;
    this.linkOffers = 0;
    this.trackMap = new Map();
    this.sizesSent = new Map();
    this.wantedLayers = new Map();
    this.path = null;
    for (const p of this.participants.values()) p.videoPaused = false;
    this.connect();
    if (this.move) this.move.restart();
    else this.move = new MediaMove(this, current);
    this.offer();
    this.onChange('connection');
  }

  /** A move is under way: the call's media is reconnecting. */
  moving() {
    return !!this.move;
  }

  /** The media moves and the old connection, once up, brings nothing any more (its node is gone). */
  mediaInterrupted() {
    return !!this.move && !!this.connectedAt && !this.move.oldDelivering();
  }

  newPeerConnection() {
    return newPeerConnection(this.iceConfig);
  }

  /**
   * Takes the TURN servers and policy of the latest `welcome` (a resumed
   * session brings fresh credentials): gathering after the next ICE restart
   * uses them; the path in use stays as it is.
   */
  useIceConfig() {
    if (this.closed || !this.pc) return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), ...this.iceConfig() });
    } catch (err) {
      console.warn('cannot change the ICE servers', err);
    }
  }

  /** What `mediaUnreachable` says to try: the media node's ports, and whether TURN was there too. */
  reachability() {
    const config = this.iceConfig();
    const sdp = this.pc && this.pc.remoteDescription ? this.pc.remoteDescription.sdp : '';
    return { ...announcedPorts(sdp), turn: hasTurn(config), relayOnly: config.iceTransportPolicy === 'relay' };
  }

  /** Asks for a new own offer (with an ICE restart when `iceRestart`). */
  offer({ iceRestart = false } = {}) {
    if (this.closed || !this.pc) return;
    this.wantOffer = true;
    if (iceRestart) this.wantIceRestart = true;
    this.offerWhenFree();
  }

  /** Makes the wanted offer once no own offer is outstanding. */
  offerWhenFree() {
    if (!this.wantOffer || this.ownOffer || this.offerQueued || this.closed) return;
    const pc = this.pc;
    this.offerQueued = true;
    this.enqueue(() => this.makeOffer(pc)).finally(() => {
      // Replaced meanwhile (the media moved): the new connection makes its own.
      if (pc !== this.pc) return;
      this.offerQueued = false;
      // Asked for again while this one was on its way (offline: signalingResumed).
      if (this.wantOffer && !this.ownOffer && this.online()) this.offerWhenFree();
    });
  }

  async makeOffer(pc) {
    if (!this.wantOffer || this.ownOffer || this.closed) return;
    if (!this.online()) return; // Sent once the connection is back (signalingResumed).
    const iceRestart = this.wantIceRestart && this.linkOffers > 0;
    this.wantOffer = false;
    this.wantIceRestart = false;
    if (this.linkOffers > 0) pinReceiveCodecs(pc);
    const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {});
    await pc.setLocalDescription(offer);
    // No wait for our candidates: the media node is ICE-lite and learns our
    // address from our connectivity checks (a peer-reflexive candidate),
    // through TURN or over TCP alike; gathering would only delay the call.
    if (this.closed) return;
    if (pc !== this.pc) {
      // The media moved meanwhile: this connection only plays on, as it was.
      await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      return;
    }
    const screen = this.screen.mid() ?? undefined;
    if (!this.send({ type: 'media_offer', room_id: this.roomId, sdp: pc.localDescription.sdp, screen })) {
      // The connection dropped meanwhile: undo, and offer once it is back.
      await pc.setLocalDescription({ type: 'rollback' });
      this.wantOffer = true;
      if (iceRestart) this.wantIceRestart = true;
      return;
    }
    this.ownOffer = true;
    this.offersSent += 1;
    this.linkOffers += 1;
    if (iceRestart) {
      this.iceRestarts += 1;
      this.lastIceRestart = Date.now();
      this.timings.iceRestartSent = wallClock();
    }
    if (!this.timings.offerSent) this.timings.offerSent = wallClock();
    this.armAnswerTimer();
  }

  armAnswerTimer() {
    clearTimeout(this.answerTimer);
    this.answerTimer = setTimeout(() => {
      if (!this.ownOffer || this.closed) return;
      // Offline: signalingResumed() looks again.
      if (this.online()) this.giveUpOffer({ again: true });
    }, ANSWER_TIMEOUT_MS);
  }

  /**
   * Forgets the outstanding own offer (no answer came, or the server
   * refused it) and, with `again`, makes a new one.
   */
  giveUpOffer({ again = false } = {}) {
    const pc = this.pc;
    this.enqueue(async () => {
      if (!this.ownOffer) return;
      this.ownOffer = false;
      clearTimeout(this.answerTimer);
      if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
    }).then(() => {
      if (again && pc === this.pc) this.offer();
    });
  }

  /**
   * The server refused a request (invalid_sdp, media_error, sdp_too_large,
   * rate_limited, unavailable).
   */
  refused(code) {
    if (!this.ownOffer) return;
    // Errors name no request: the outstanding offer is the likely one. Only a
    // rate limit, or a server that could not reach its cluster for a moment,
    // is worth another try; a refused SDP would be refused again.
    const pc = this.pc;
    if (code === 'rate_limited' || code === 'unavailable') {
      setTimeout(() => {
        if (pc === this.pc) this.giveUpOffer({ again: true });
      }, 1000);
    } else {
      this.giveUpOffer();
    }
  }

  /** Connection state (ICE and DTLS) of `pc` changed. */
  connectionChanged(pc) {
    // An old connection while the media moves: mediamove.js watches it.
    if (pc !== this.pc || this.closed) return;
    if (pc.connectionState === 'connected') {
      if (!this.connectedAt) {
        this.connectedAt = Date.now();
        this.timings.connected = wallClock();
      }
      // E.g. the first checks failed but an ICE restart got through.
      this.onProblemGone(CONNECTION_PROBLEM);
    }
    if (pc.connectionState === 'failed' && !this.connectedAt) {
      // Never connected: most likely a network that blocks calls.
      this.onProblem(mediaUnreachable(this.reachability()), CONNECTION_PROBLEM);
    }
    if (this.move) this.move.check();
    this.onChange('connection');
  }

  /** ICE connection state of `pc` changed: restart ICE when it stays down. */
  iceStateChanged(pc) {
    if (!pc || pc !== this.pc || this.closed) return;
    const s = pc.iceConnectionState;
    if (s === 'connected' || s === 'completed') {
      clearTimeout(this.iceTimer);
      this.iceTimer = null;
    } else if (s === 'disconnected' && !this.iceTimer) {
      this.iceTimer = setTimeout(() => {
        this.iceTimer = null;
        if (['disconnected', 'failed'].includes(pc.iceConnectionState)) this.restartIce();
      }, ICE_DISCONNECTED_MS);
    } else if (s === 'failed' && this.connectedAt) {
      clearTimeout(this.iceTimer);
      this.iceTimer = null;
      this.restartIce();
    }
    if (this.move) this.move.check();
    this.onChange('connection');
  }

  /**
   * Restarts ICE (a new offer with new credentials); true when one is on its
   * way. Without `now`, at most one every ICE_RESTART_GAP_MS.
   */
  restartIce({ now = false } = {}) {
    if (this.closed || !this.pc) return false;
    const wait = this.lastIceRestart + ICE_RESTART_GAP_MS - Date.now();
    if (wait > 0 && !now) {
      // Just restarted: look again a little later.
      if (!this.iceTimer) {
        this.iceTimer = setTimeout(() => {
          this.iceTimer = null;
          if (['disconnected', 'failed'].includes(this.pc.iceConnectionState)) this.restartIce();
        }, wait);
      }
      return true;
    }
    this.offer({ iceRestart: true });
    return true;
  }

  /**
   * The signaling connection resumed its session. Messages to or from the
   * media node may have been lost with the old socket: send what failed,
   * and offer again so both sides are in step (restarting ICE if it is down).
   */
  signalingResumed() {
    if (this.closed || !this.pc) return;
    this.useIceConfig();
    if (this.stateUnsent) this.sendState();
    if (this.ownOffer) {
      // Its answer may still come among the buffered messages: wait for it.
      this.armAnswerTimer();
      return;
    }
    const ice = this.pc.iceConnectionState;
    this.offer({ iceRestart: ice === 'disconnected' || ice === 'failed' });
  }

  /** A `media_answer` or `media_offer` from the server. */
  handle(msg) {
    if (msg.type === 'media_answer') {
      if (!this.timings.answerArrived) this.timings.answerArrived = wallClock();
      this.enqueue(async (pc) => {
        if (!this.ownOffer) return;
        this.timings.answerReceived = wallClock();
        clearTimeout(this.answerTimer);
        try {
          await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        } finally {
          if (pc === this.pc) {
            this.ownOffer = false;
            if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
          }
        }
      }).then(() => this.offerWhenFree());
    } else if (msg.type === 'media_offer') {
      if (!this.timings.serverOfferArrived) this.timings.serverOfferArrived = wallClock();
      this.enqueue(async (pc) => {
        // Our own offer wins a crossing: the server answers it and offers again.
        if (this.ownOffer) {
          this.offersIgnored += 1;
          return;
        }
        if (!this.timings.firstServerOffer) this.timings.firstServerOffer = wallClock();
        this.trackMap = new Map((msg.tracks ?? []).map((t) => [String(t.mid), t]));
        const sdp = await answerOffer(pc, msg.sdp);
        // Moved meanwhile: the new connection gets offers of its own.
        if (this.closed || pc !== this.pc) return;
        // Unsent (connection down): the offer made after the resume repairs it.
        if (this.send({ type: 'media_answer', room_id: this.roomId, sdp })) {
          this.answersSent += 1;
          if (!this.timings.serverOfferAnswered) this.timings.serverOfferAnswered = wallClock();
        }
        else this.wantOffer = true;
        this.syncReceivers();
      });
    }
  }

  /**
   * The tile of `participantId` is shown at this size (device pixels; 0x0
   * when hidden): the media node never sends a layer much larger.
   */
  setTileSize(participantId, width, height) {
    this.tileSizes.set(participantId, [width, height]);
    this.sendSizes();
  }

  sendSizes() {
    for (const [mid, t] of this.trackMap) {
      if (t.kind !== 'video') continue;
      const size = this.tileSizes.get(t.source === 'screen' ? `${t.participant_id}/screen` : t.participant_id);
      if (!size) continue;
      const key = `${size[0]}x${size[1]}`;
      if (this.sizesSent.get(mid) === key) continue;
      const ok = this.send({ type: 'video_size', room_id: this.roomId, mid, width: size[0], height: size[1] });
      if (ok) this.sizesSent.set(mid, key);
    }
  }

  /** `publish_layers`: send only the simulcast layers someone receives. */
  publishLayers(msg) {
    if (!this.videoTx || String(this.videoTx.mid) !== String(msg.mid)) return;
    const wanted = this.wantedLayers;
    for (const l of msg.layers ?? []) wanted.set(l.rid, !!l.active);
    const tx = this.videoTx;
    const sender = tx.sender;
    this.layersQueue = this.layersQueue.then(async () => {
      // A connection replaced meanwhile (the media moved) sends as it was.
      if (this.closed || tx !== this.videoTx) return;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      let changed = false;
      for (const e of params.encodings) {
        const want = wanted.get(e.rid);
        if (want !== undefined && e.active !== want) {
          e.active = want;
          changed = true;
        }
      }
      if (changed) await sender.setParameters(params);
      this.onChange('layers');
    }).catch((err) => console.warn('could not change the sent layers', err));
  }

  /** `video_paused`: a video we receive stopped (or came back) for bandwidth. */
  videoPaused(msg) {
    const info = this.trackMap.get(String(msg.mid));
    const p = info && this.participants.get(info.participant_id);
    if (!p) return;
    p.videoPaused = !!msg.paused;
    this.onChange('tracks');
  }

  /**
   * The current connection's forwarded receivers by publisher (id →
   * {audio, video}), from the server's `tracks`.
   */
  currentReceivers() {
    const byPerson = new Map();
    if (!this.pc) return byPerson;
    for (const t of this.pc.getTransceivers()) {
      if (t.mid === null || t.currentDirection === 'stopped' || t.direction === 'stopped') continue;
      const info = this.trackMap.get(String(t.mid));
      if (!info) continue;
      const entry = byPerson.get(info.participant_id) ?? {};
      entry[info.source === 'screen' ? 'screen' : info.kind] = t.receiver;
      byPerson.set(info.participant_id, entry);
    }
    return byPerson;
  }

  /**
   * Maps every forwarded receiver to its publisher. While the media moves,
   * the tiles keep the old connection's until the new one takes over.
   */
  syncReceivers() {
    if (!this.pc) return;
    // Sizes go again for m-lines that are new (or reused for someone else).
    for (const mid of [...this.sizesSent.keys()]) if (!this.trackMap.has(mid)) this.sizesSent.delete(mid);
    this.sendSizes();
    if (this.move) {
      this.move.check();
      return;
    }
    this.receivers = this.direct && this.direct.active() ? this.direct.receivers() : this.currentReceivers();
    this.applyReceivers();
  }

  applyReceivers() {
    for (const p of this.participants.values()) {
      const r = this.receivers.get(p.id) ?? {};
      p.audioReceiver = r.audio ?? null;
      p.videoReceiver = r.video ?? null;
      p.audioTrack = r.audio ? r.audio.track : null;
      p.videoTrack = r.video ? r.video.track : null;
      p.screenTrack = r.screen ? r.screen.track : null;
    }
    this.onChange('tracks');
  }

  upsert(p) {
    const old = this.participants.get(p.id);
    const next = {
      audioTrack: null,
      videoTrack: null,
      screenTrack: null,
      audioReceiver: null,
      videoReceiver: null,
      level: 0,
      videoPaused: false,
      speaking: false,
      speakingUntil: 0,
      ...old,
      id: p.id,
      name: p.name,
      audio: p.audio,
      video: p.video,
      quality: p.quality || (old && old.quality) || 'good',
      screen: !!p.screen,
    };
    this.participants.set(p.id, next);
    return next;
  }

  participantJoined(p) {
    this.upsert(p);
    this.applyReceivers();
    this.onChange('participants');
  }

  participantLeft(id) {
    this.participants.delete(id);
    if (this.move) this.move.check();
    this.onChange('participants');
  }

  participantUpdated(p) {
    this.upsert(p);
    // A screen goes through the media node: so does the rest of the call.
    if (p.screen && this.direct) this.direct.leave();
    this.onChange('participants');
  }

  /** Someone in the call (this page included) shares a screen. */
  screenShared() {
    return this.screen.sharing() || [...this.participants.values()].some((p) => p.screen);
  }

  /** What we publish, as `media_state` says it. */
  localState() {
    const l = this.local;
    return {
      audio: !!(l && l.audioTrack && l.audioTrack.enabled && l.audioTrack.readyState === 'live'),
      video: !!(l && l.videoTrack && l.videoTrack.readyState === 'live'),
    };
  }

  canUseMic() {
    return !!(this.local && this.local.audioTrack);
  }

  canUseCamera() {
    return !!this.videoTx;
  }

  sendState() {
    this.stateUnsent = !this.send({ type: 'media_state', room_id: this.roomId, ...this.localState() });
  }

  /** Mutes or unmutes the microphone (no renegotiation). */
  setMic(on) {
    if (!this.canUseMic()) return;
    this.local.audioTrack.enabled = on;
    this.sendState();
    this.onChange('local');
  }

  /**
   * Turns the camera off (the track stops, the sender sends nothing) or on
   * (a new camera track replaces the empty one). No renegotiation either way.
   */
  async setCamera(on) {
    if (!this.videoTx || this.cameraBusy) return;
    this.cameraBusy = true;
    try {
      const l = this.local;
      if (!on) {
        await this.sendVideo(null);
        if (l.videoTrack) {
          l.stream.removeTrack(l.videoTrack);
          l.videoTrack.stop();
        }
        l.videoTrack = null;
      } else if (!l.videoTrack) {
        let track;
        try {
          track = await openCamera();
        } catch (err) {
          this.onProblem(cameraProblem(cameraError(err)));
          return;
        }
        if (this.closed) {
          track.stop();
          return;
        }
        await this.sendVideo(track);
        l.stream.addTrack(track);
        l.videoTrack = track;
      }
      this.sendState();
    } finally {
      this.cameraBusy = false;
      this.onChange('local');
    }
  }

  /**
   * Puts `track` (null: nothing) on every video sender: the current
   * connection's, and the old one's while the media moves. A move that
   * begins meanwhile brings a new sender, so they are looked at again.
   */
  async sendVideo(track) {
    if (this.direct) await this.direct.sendVideo(track);
    // Over a direct connection, the media node gets nothing.
    const want = this.direct && this.direct.state === 'active' ? null : track;
    for (let round = 0; round < 3; round += 1) {
      const current = this.videoTx && this.videoTx.sender;
      const senders = [current, this.move && this.move.old.videoTx && this.move.old.videoTx.sender];
      const stale = senders.filter((s) => s && s.track !== want);
      if (!stale.length) return;
      await Promise.all(stale.map((s) => s.replaceTrack(want).catch((err) => {
        // An old connection closed meanwhile does not matter.
        if (s === current) throw err;
      })));
    }
  }

  async pollStats() {
    if (this.closed || !this.pc || this.polling) return;
    this.polling = true;
    try {
      await readStats(this);
    } finally {
      this.polling = false;
    }
  }

  /** Per-person receive statistics (the browser tests read these). */
  stats() {
    return receiveStats(this.participants.values());
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.statsTimer);
    clearTimeout(this.answerTimer);
    clearTimeout(this.iceTimer);
    if (this.move) this.move.close();
    if (this.pc) this.pc.close();
    if (this.direct) this.direct.close();
    if (this.crypto) this.crypto.close();
    this.screen.stop();
    if (this.local) for (const t of this.local.stream.getTracks()) t.stop();
    if (this.local && this.local.videoTrack) this.local.videoTrack.stop();
  }
}
