// One call's media: a single RTCPeerConnection to the media node.
//
// Negotiation (docs/protocol.md, "Media negotiation"):
// - after `room_joined` the client offers once what it publishes: a send-only
//   audio transceiver with the microphone and a send-only video transceiver
//   (with the camera, or with no track when the camera is off, so it can be
//   switched on later with replaceTrack and no new offer); a client that
//   publishes nothing offers one recvonly audio transceiver;
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

import { openCamera, cameraError } from './localmedia.js';
import { mediaUnreachable, mediaProblem, cameraProblem } from './texts.js';
import { selectedPath, announcedPorts, hasTurn } from './mediapath.js';

/** The topic of problems with the media connection itself: they go away once it connects. */
export const CONNECTION_PROBLEM = 'media-connection';

const ICE_WAIT_MS = 4000;
/** How long ICE may stay `disconnected` before an ICE restart. */
const ICE_DISCONNECTED_MS = 2000;
/** The least time between two ICE restarts. */
const ICE_RESTART_GAP_MS = 3000;
/** An own offer with no answer for this long is given up and made again. */
const ANSWER_TIMEOUT_MS = 10000;

/**
 * Camera video goes out in three simulcast layers, smallest first (the media
 * node reads them in this order): quarter, half and full resolution. The
 * media node forwards one layer to each person, chosen from that person's
 * bandwidth and the size of the tile it is shown in, and pauses layers
 * nobody receives (`publish_layers`).
 */
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

const wallClock = () => performance.timeOrigin + performance.now();
const STATS_POLL_MS = 200;
/** A new round trip is shown at most this often (a new path at once). */
const RTT_REFRESH_MS = 1000;
const SPEAKING_THRESHOLD = 0.04;
const SPEAKING_HOLD_MS = 600;

function waitForIce(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    // The media node is ICE-lite and learns our address from our checks, so
    // a slow gatherer costs little: send what we have after a while.
    const timer = setTimeout(done, ICE_WAIT_MS);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** `a=fmtp` parameters as a comparable string (order-free). */
function fmtpKey(line) {
  return (line || '').split(';').map((x) => x.trim()).filter(Boolean).sort().join(';');
}

/**
 * Before a re-offer: keeps every forwarded (receive-only) m-line to the codecs
 * already negotiated on it. Left alone, Chrome offers all its codecs there,
 * which changes that m-line's demuxing rules; Chrome then re-checks them
 * against the SSRCs it has learned, and fails the whole offer ("Failed to
 * apply demuxer criteria") if the media node's packets taught it another
 * binding (they carry the publisher's MID header extension).
 */
function pinReceiveCodecs(pc) {
  if (typeof RTCRtpReceiver.getCapabilities !== 'function') return;
  for (const t of pc.getTransceivers()) {
    if (t.mid === null || t.currentDirection !== 'recvonly' || typeof t.setCodecPreferences !== 'function') continue;
    const kind = t.receiver.track.kind;
    const negotiated = t.receiver.getParameters().codecs || [];
    const caps = (RTCRtpReceiver.getCapabilities(kind) || { codecs: [] }).codecs;
    const prefs = [];
    for (const c of negotiated) {
      const mime = c.mimeType.toLowerCase();
      const plain = ['video/rtx', 'video/red', 'video/ulpfec', 'audio/red'].includes(mime);
      const cap = caps.find((k) => k.mimeType.toLowerCase() === mime && k.clockRate === c.clockRate
        && (k.channels || 1) === (c.channels || 1) && (plain || fmtpKey(k.sdpFmtpLine) === fmtpKey(c.sdpFmtpLine)));
      if (cap && !prefs.includes(cap)) prefs.push(cap);
    }
    if (!prefs.some((k) => !/\/(rtx|red|ulpfec)$/i.test(k.mimeType))) continue;
    try {
      t.setCodecPreferences(prefs);
    } catch (err) {
      console.warn('cannot keep the codecs of', t.mid, err);
    }
  }
}

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
   */
  constructor(o) {
    this.roomId = o.roomId;
    this.kind = o.kind;
    this.media = o.media;
    this.send = o.send;
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
    this.receivers = new Map();
    this.pc = null;
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
    /** Epoch milliseconds of the setup steps, for diagnostics and the tests. */
    this.timings = { start: null, offerSent: null, answerReceived: null, connected: null, firstServerOffer: null };
  }

  /** Runs media steps one at a time, in order. */
  enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      if (this.closed) return;
      console.error('media step failed', err);
      this.onProblem(mediaProblem(err));
    });
    return this.queue;
  }

  /** Starts media with the opened devices (see localmedia.js). */
  start(local) {
    this.timings.start = wallClock();
    this.local = local;
    const pc = this.newPeerConnection();
    this.pc = pc;
    pc.addEventListener('track', () => this.syncReceivers());
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') {
        if (!this.connectedAt) {
          this.connectedAt = Date.now();
          this.timings.connected = wallClock();
        }
        // E.g. the first checks failed but an ICE restart got through.
        this.onProblemGone(CONNECTION_PROBLEM);
      }
      if (pc.connectionState === 'failed' && !this.closed && !this.connectedAt) {
        // Never connected: most likely a network that blocks calls.
        this.onProblem(mediaUnreachable(this.reachability()), CONNECTION_PROBLEM);
      }
      this.onChange('connection');
    });
    pc.addEventListener('iceconnectionstatechange', () => this.iceStateChanged());
    if (local.mode === 'listen-only') {
      pc.addTransceiver('audio', { direction: 'recvonly' });
    } else {
      this.audioTx = pc.addTransceiver(local.audioTrack ?? 'audio', { direction: 'sendonly', streams: [local.stream] });
      this.videoTx = pc.addTransceiver(local.videoTrack ?? 'video', {
        direction: 'sendonly',
        streams: [local.stream],
        sendEncodings: SIMULCAST.map((e) => ({ ...e })),
      });
    }
    this.offer();
    this.statsTimer = setInterval(() => this.pollStats(), STATS_POLL_MS);
  }

  newPeerConnection() {
    const base = { bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    try {
      return new RTCPeerConnection({ ...base, ...this.iceConfig() });
    } catch (err) {
      // A TURN URL this browser cannot parse: the direct ways may still work.
      console.warn('ignoring the ICE servers', err);
      return new RTCPeerConnection(base);
    }
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
    this.offerQueued = true;
    this.enqueue(() => this.makeOffer()).finally(() => {
      this.offerQueued = false;
      // Asked for again while this one was on its way (offline: signalingResumed).
      if (this.wantOffer && !this.ownOffer && this.online()) this.offerWhenFree();
    });
  }

  async makeOffer() {
    const pc = this.pc;
    if (!this.wantOffer || this.ownOffer || this.closed) return;
    if (!this.online()) return; // Sent once the connection is back (signalingResumed).
    const iceRestart = this.wantIceRestart && this.offersSent > 0;
    this.wantOffer = false;
    this.wantIceRestart = false;
    if (this.offersSent > 0) pinReceiveCodecs(pc);
    const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {});
    await pc.setLocalDescription(offer);
    await waitForIce(pc);
    if (this.closed) return;
    if (!this.send({ type: 'media_offer', room_id: this.roomId, sdp: pc.localDescription.sdp })) {
      // The connection dropped meanwhile: undo, and offer once it is back.
      await pc.setLocalDescription({ type: 'rollback' });
      this.wantOffer = true;
      if (iceRestart) this.wantIceRestart = true;
      return;
    }
    this.ownOffer = true;
    this.offersSent += 1;
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
    this.enqueue(async () => {
      if (!this.ownOffer) return;
      this.ownOffer = false;
      clearTimeout(this.answerTimer);
      if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
    }).then(() => {
      if (again) this.offer();
    });
  }

  /** The server refused a request (invalid_sdp, media_error, sdp_too_large, rate_limited). */
  refused(code) {
    if (!this.ownOffer) return;
    // Errors name no request: the outstanding offer is the likely one. Only a
    // rate limit is worth another try; a refused SDP would be refused again.
    if (code === 'rate_limited') setTimeout(() => this.giveUpOffer({ again: true }), 1000);
    else this.giveUpOffer();
  }

  /** ICE connection state changed: restart ICE when it stays down. */
  iceStateChanged() {
    const pc = this.pc;
    if (!pc || this.closed) return;
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
      this.enqueue(async () => {
        if (!this.ownOffer) return;
        this.timings.answerReceived = wallClock();
        clearTimeout(this.answerTimer);
        try {
          await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        } finally {
          this.ownOffer = false;
          if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
        }
      }).then(() => this.offerWhenFree());
    } else if (msg.type === 'media_offer') {
      this.enqueue(async () => {
        // Our own offer wins a crossing: the server answers it and offers again.
        if (this.ownOffer) {
          this.offersIgnored += 1;
          return;
        }
        if (!this.timings.firstServerOffer) this.timings.firstServerOffer = wallClock();
        const pc = this.pc;
        this.trackMap = new Map((msg.tracks ?? []).map((t) => [String(t.mid), t]));
        await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        await waitForIce(pc);
        if (this.closed) return;
        // Unsent (connection down): the offer made after the resume repairs it.
        if (this.send({ type: 'media_answer', room_id: this.roomId, sdp: pc.localDescription.sdp })) this.answersSent += 1;
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
      const size = this.tileSizes.get(t.participant_id);
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
    for (const l of msg.layers ?? []) this.wantedLayers.set(l.rid, !!l.active);
    const sender = this.videoTx.sender;
    this.layersQueue = this.layersQueue.then(async () => {
      if (this.closed) return;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      let changed = false;
      for (const e of params.encodings) {
        const want = this.wantedLayers.get(e.rid);
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

  /** Maps every forwarded receiver to its publisher, from the server's `tracks`. */
  syncReceivers() {
    if (!this.pc) return;
    const byPerson = new Map();
    for (const t of this.pc.getTransceivers()) {
      if (t.mid === null || t.currentDirection === 'stopped' || t.direction === 'stopped') continue;
      const info = this.trackMap.get(String(t.mid));
      if (!info) continue;
      const entry = byPerson.get(info.participant_id) ?? {};
      entry[info.kind] = t.receiver;
      byPerson.set(info.participant_id, entry);
    }
    this.receivers = byPerson;
    // Sizes go again for m-lines that are new (or reused for someone else).
    for (const mid of [...this.sizesSent.keys()]) if (!this.trackMap.has(mid)) this.sizesSent.delete(mid);
    this.sendSizes();
    this.applyReceivers();
  }

  applyReceivers() {
    for (const p of this.participants.values()) {
      const r = this.receivers.get(p.id) ?? {};
      p.audioReceiver = r.audio ?? null;
      p.videoReceiver = r.video ?? null;
      p.audioTrack = r.audio ? r.audio.track : null;
      p.videoTrack = r.video ? r.video.track : null;
    }
    this.onChange('tracks');
  }

  upsert(p) {
    const old = this.participants.get(p.id);
    const next = {
      audioTrack: null,
      videoTrack: null,
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
    this.onChange('participants');
  }

  participantUpdated(p) {
    this.upsert(p);
    this.onChange('participants');
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
        await this.videoTx.sender.replaceTrack(null);
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
        await this.videoTx.sender.replaceTrack(track);
        l.stream.addTrack(track);
        l.videoTrack = track;
      }
      this.sendState();
    } finally {
      this.cameraBusy = false;
      this.onChange('local');
    }
  }

  async pollStats() {
    if (this.closed || !this.pc || this.polling) return;
    this.polling = true;
    try {
      await this.readStats();
    } finally {
      this.polling = false;
    }
  }

  /** One stats report for everything read from it: who speaks, and the media's path. */
  async readStats() {
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return; // Closed meanwhile.
    }
    if (this.closed) return;
    this.readLevels(report);
    const path = selectedPath(report);
    const now = Date.now();
    const moved = path?.path !== this.path?.path;
    if (moved || (path?.rttMs !== this.path?.rttMs && now - this.pathShownAt >= RTT_REFRESH_MS)) {
      this.path = path;
      this.pathShownAt = now;
      this.onChange('path');
    }
  }

  /**
   * Who is speaking: the audio energy each track carried since the last
   * read (`totalAudioEnergy` over `totalSamplesDuration`). The level of the
   * latest packet alone would depend on when the read happens: a sound
   * shorter than the interval could be missed every time.
   */
  readLevels(report) {
    const inbound = new Map();
    let source = null;
    report.forEach((st) => {
      if (st.kind !== 'audio') return;
      if (st.type === 'inbound-rtp' && st.trackIdentifier) inbound.set(st.trackIdentifier, st);
      else if (st.type === 'media-source') source = st;
    });
    const now = Date.now();
    let changed = false;
    for (const p of this.participants.values()) {
      const track = p.audioTrack;
      const level = track ? this.levelSince(track.id, inbound.get(track.id)) : 0;
      p.level = p.audio ? level : 0;
      if (p.level >= SPEAKING_THRESHOLD) p.speakingUntil = now + SPEAKING_HOLD_MS;
      const speaking = p.speakingUntil > now;
      if (speaking !== p.speaking) {
        p.speaking = speaking;
        changed = true;
      }
    }
    const mine = this.levelSince('local', source);
    if (this.localState().audio && mine >= SPEAKING_THRESHOLD) this.localSpeakingUntil = now + SPEAKING_HOLD_MS;
    const localSpeaking = this.localSpeakingUntil > now;
    if (localSpeaking !== this.localSpeaking) {
      this.localSpeaking = localSpeaking;
      changed = true;
    }
    if (changed) this.onChange('speaking');
  }

  /** The root mean square level of `stats` (inbound-rtp or media-source) since the last call for `key`. */
  levelSince(key, stats) {
    if (!stats || typeof stats.totalAudioEnergy !== 'number' || typeof stats.totalSamplesDuration !== 'number') return 0;
    const last = this.energySeen.get(key);
    this.energySeen.set(key, { energy: stats.totalAudioEnergy, duration: stats.totalSamplesDuration });
    if (!last) return 0;
    const duration = stats.totalSamplesDuration - last.duration;
    const energy = stats.totalAudioEnergy - last.energy;
    return duration > 0 && energy > 0 ? Math.sqrt(energy / duration) : 0;
  }

  /** Per-person receive statistics (the browser tests read these). */
  async stats() {
    const out = {};
    for (const p of this.participants.values()) {
      const entry = { id: p.id, name: p.name, audio: null, video: null };
      for (const [kind, r] of [['audio', p.audioReceiver], ['video', p.videoReceiver]]) {
        if (!r) continue;
        const report = await r.getStats();
        report.forEach((st) => {
          if (st.type !== 'inbound-rtp') return;
          entry[kind] = {
            packetsReceived: st.packetsReceived ?? 0,
            bytesReceived: st.bytesReceived ?? 0,
            framesDecoded: st.framesDecoded ?? 0,
            frameWidth: st.frameWidth ?? 0,
            frameHeight: st.frameHeight ?? 0,
            audioLevel: st.audioLevel ?? 0,
            totalAudioEnergy: st.totalAudioEnergy ?? 0,
            codec: st.codecId ?? null,
          };
        });
      }
      out[p.name] = entry;
    }
    return out;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.statsTimer);
    clearTimeout(this.answerTimer);
    clearTimeout(this.iceTimer);
    if (this.pc) this.pc.close();
    if (this.local) for (const t of this.local.stream.getTracks()) t.stop();
    if (this.local && this.local.videoTrack) this.local.videoTrack.stop();
  }
}
