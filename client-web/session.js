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

import { openCamera, cameraError } from './localmedia.js';

const ICE_WAIT_MS = 4000;

const wallClock = () => performance.timeOrigin + performance.now();
const LEVEL_POLL_MS = 200;
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

export class CallSession {
  /**
   * @param {object} o
   * @param {string} o.roomId
   * @param {'call'|'group'} o.kind
   * @param {'audio'|'video'} o.media
   * @param {Array<{id,name,audio,video}>} o.participants everyone else
   * @param {(msg: object) => boolean} o.send a signaling message
   * @param {(what: string) => void} o.onChange something to redraw
   * @param {(text: string) => void} o.onProblem a message for the person
   */
  constructor(o) {
    this.roomId = o.roomId;
    this.kind = o.kind;
    this.media = o.media;
    this.send = o.send;
    this.onChange = o.onChange;
    this.onProblem = o.onProblem;
    /** @type {Map<string, object>} id → participant with its tracks and speaking state */
    this.participants = new Map();
    for (const p of o.participants) this.upsert(p);
    /** mid → {mid, participant_id, kind} from the latest server offer */
    this.trackMap = new Map();
    this.receivers = new Map();
    this.pc = null;
    this.local = null;
    this.audioTx = null;
    this.videoTx = null;
    this.ownOffer = false;
    this.queue = Promise.resolve();
    this.closed = false;
    this.joinedAt = Date.now();
    this.connectedAt = null;
    this.localSpeaking = false;
    this.localSpeakingUntil = 0;
    this.levelTimer = null;
    this.cameraBusy = false;
    /** Offers and answers sent: the tests check the client offers only once. */
    this.offersSent = 0;
    this.answersSent = 0;
    /** Epoch milliseconds of the setup steps, for diagnostics and the tests. */
    this.timings = { start: null, offerSent: null, answerReceived: null, connected: null, firstServerOffer: null };
  }

  /** Runs media steps one at a time, in order. */
  enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      if (this.closed) return;
      console.error('media step failed', err);
      this.onProblem(`The media connection had a problem: ${err && err.message ? err.message : err}`);
    });
    return this.queue;
  }

  /** Starts media with the opened devices (see localmedia.js). */
  start(local) {
    this.timings.start = wallClock();
    this.local = local;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.addEventListener('track', () => this.syncReceivers());
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected' && !this.connectedAt) {
        this.connectedAt = Date.now();
        this.timings.connected = wallClock();
      }
      if (pc.connectionState === 'failed' && !this.closed) {
        this.onProblem('The media connection failed: check that this device can reach the server over UDP.');
      }
      this.onChange('connection');
    });
    if (local.mode === 'listen-only') {
      pc.addTransceiver('audio', { direction: 'recvonly' });
    } else {
      this.audioTx = pc.addTransceiver(local.audioTrack ?? 'audio', { direction: 'sendonly', streams: [local.stream] });
      this.videoTx = pc.addTransceiver(local.videoTrack ?? 'video', { direction: 'sendonly', streams: [local.stream] });
    }
    this.enqueue(async () => {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitForIce(pc);
      if (this.closed) return;
      this.ownOffer = true;
      this.offersSent += 1;
      this.timings.offerSent = wallClock();
      this.send({ type: 'media_offer', room_id: this.roomId, sdp: pc.localDescription.sdp });
    });
    this.levelTimer = setInterval(() => this.pollLevels(), LEVEL_POLL_MS);
  }

  /** A `media_answer` or `media_offer` from the server. */
  handle(msg) {
    if (msg.type === 'media_answer') {
      this.enqueue(async () => {
        if (!this.ownOffer) return;
        this.timings.answerReceived = wallClock();
        await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        this.ownOffer = false;
      });
    } else if (msg.type === 'media_offer') {
      this.enqueue(async () => {
        // Our own offer wins a crossing: the server answers it and offers again.
        if (this.ownOffer) return;
        if (!this.timings.firstServerOffer) this.timings.firstServerOffer = wallClock();
        const pc = this.pc;
        this.trackMap = new Map((msg.tracks ?? []).map((t) => [String(t.mid), t]));
        await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        await waitForIce(pc);
        if (this.closed) return;
        this.answersSent += 1;
        this.send({ type: 'media_answer', room_id: this.roomId, sdp: pc.localDescription.sdp });
        this.syncReceivers();
      });
    }
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
    this.send({ type: 'media_state', room_id: this.roomId, ...this.localState() });
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
          this.onProblem(`Cannot turn the camera on: ${cameraError(err)}`);
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

  async pollLevels() {
    if (this.closed || !this.pc || this.polling) return;
    this.polling = true;
    try {
      await this.readLevels();
    } finally {
      this.polling = false;
    }
  }

  async readLevels() {
    const now = Date.now();
    let changed = false;
    for (const p of this.participants.values()) {
      let level = 0;
      const r = p.audioReceiver;
      if (r) {
        try {
          // The RFC 6464 level of the latest packet: cheap, read every tick.
          const sources = r.getSynchronizationSources();
          const wall = performance.timeOrigin + performance.now();
          for (const s of sources) {
            if (typeof s.audioLevel === 'number' && wall - s.timestamp < 1000) level = Math.max(level, s.audioLevel);
          }
          if (!sources.length || sources.every((s) => typeof s.audioLevel !== 'number')) {
            // No level header extension: fall back to the decoder's level (costlier).
            const stats = await r.getStats();
            stats.forEach((st) => {
              if (st.type === 'inbound-rtp' && typeof st.audioLevel === 'number') level = Math.max(level, st.audioLevel);
            });
          }
        } catch {
          // The receiver went away with a renegotiation.
        }
      }
      if (!p.audio) level = 0;
      p.level = level;
      if (level >= SPEAKING_THRESHOLD) p.speakingUntil = now + SPEAKING_HOLD_MS;
      const speaking = p.speakingUntil > now;
      if (speaking !== p.speaking) {
        p.speaking = speaking;
        changed = true;
      }
    }
    let mine = 0;
    if (this.audioTx && this.localState().audio) {
      try {
        const stats = await this.audioTx.sender.getStats();
        stats.forEach((st) => {
          if (st.type === 'media-source' && typeof st.audioLevel === 'number') mine = Math.max(mine, st.audioLevel);
        });
      } catch {
        // Closed meanwhile.
      }
    }
    if (mine >= SPEAKING_THRESHOLD) this.localSpeakingUntil = now + SPEAKING_HOLD_MS;
    const localSpeaking = this.localSpeakingUntil > now;
    if (localSpeaking !== this.localSpeaking) {
      this.localSpeaking = localSpeaking;
      changed = true;
    }
    if (changed && !this.closed) this.onChange('speaking');
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
    clearInterval(this.levelTimer);
    if (this.pc) this.pc.close();
    if (this.local) for (const t of this.local.stream.getTracks()) t.stop();
    if (this.local && this.local.videoTrack) this.local.videoTrack.stop();
  }
}
