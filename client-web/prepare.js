// A 1:1 call connects to the media node while it rings, on both sides, as
// a phone call does: with the devices opened for the ring, the connection,
// what it publishes and its offer are made and the offer goes at once
// (someone rung into a running call sends it right behind `accept`). The
// server places each side on the media node before the answer (its
// `early` participants), and the media node's answer and its offer of the
// other side's tracks are handled here, so by the time the call is
// answered the connection is up and already receives the other's tracks.
// `room_joined` then hands it to the call session (session.js `start`),
// which starts sending. Nothing is sent before: the senders hold no track
// until then, so neither side is seen or heard before the answer. A ring
// that ends otherwise closes it.

import { addPublishing, newPeerConnection, answerOffer } from './negotiation.js';

/**
 * The prepared call, or null: `{ roomId, crypto, send, early, pc, tx,
 * sdp, sent, closed, awaitingAnswer, tracks, answers, later, queue,
 * timings, handedOver }`; `early`: its offer may go before the answer.
 */
let prepared = null;
/** An early offer went out for a call that then ended: its refusal is expected. */
let refusalExpected = false;

const wallClock = () => performance.timeOrigin + performance.now();

/**
 * Prepares the call in `roomId` with the devices `media` (calls.js
 * `openMedia`), the ICE servers of `iceConfig` and, for an encrypted call,
 * its `crypto` (e2ee/callcrypto.js): the browser encrypts only with a
 * transform that was on its senders before the offer. `send` is the
 * signaling send (false when it could not go).
 */
export function prepareCall(roomId, media, iceConfig, crypto, send, early) {
  dropPrepared();
  const p = {
    roomId, crypto, send, early, pc: null, tx: null, sdp: null, sent: false, closed: false,
    awaitingAnswer: false, tracks: [], answers: 0, later: [], queue: Promise.resolve(), timings: {},
  };
  prepared = p;
  media.promise.then(async (local) => {
    if (p.closed) return;
    const pc = newPeerConnection(iceConfig);
    p.pc = pc;
    p.tx = addPublishing(pc, local, { held: true });
    if (crypto) {
      crypto.protectSenders(p.tx.audioTx, p.tx.videoTx);
      // Until the session takes over (it protects what comes after).
      pc.addEventListener('track', (ev) => { if (!p.handedOver) crypto.protectReceiver(ev.receiver); });
    }
    await pc.setLocalDescription(await pc.createOffer());
    if (p.closed) return;
    p.sdp = pc.localDescription.sdp;
    if (p.early) sendOffer(p);
  }).catch((err) => {
    console.warn('could not prepare the call', err);
    dropPrepared(p);
  });
}

function sendOffer(p) {
  p.sent = p.send({ type: 'media_offer', room_id: p.roomId, sdp: p.sdp });
  p.timings.offerSent = wallClock();
  if (!p.sent) dropPrepared(p);
  else p.awaitingAnswer = true;
}

/**
 * The callee accepted (after sending `accept`): the offer of an invite
 * into a running call, which may not connect before, goes now (the server
 * handles a client's messages in order, so it finds them in the call), or
 * as soon as it is made.
 */
export function acceptPrepared(roomId) {
  const p = prepared;
  if (!p || p.roomId !== roomId || p.closed) return;
  p.early = true;
  if (p.sdp && !p.sent) sendOffer(p);
}

/**
 * A media message while the call rings: true if it is the prepared call's.
 * `media_answer` and `media_offer` are handled (in order); `publish_layers`
 * and `video_paused` are kept for the call session (`later`).
 */
export function preparedMessage(msg) {
  const p = prepared;
  if (!p || p.roomId !== msg.room_id || !p.sent || p.closed) return false;
  if (msg.type !== 'media_answer' && msg.type !== 'media_offer') {
    p.later.push(msg);
    return true;
  }
  const arrived = msg.type === 'media_answer' ? 'answerArrived' : 'serverOfferArrived';
  if (!p.timings[arrived]) p.timings[arrived] = wallClock();
  p.queue = p.queue.then(() => negotiate(p, msg)).catch((err) => {
    console.warn('could not connect the call while it rang', err);
    dropPrepared(p);
  });
  return true;
}

async function negotiate(p, msg) {
  if (p.closed) return;
  const pc = p.pc;
  if (msg.type === 'media_answer') {
    if (!p.awaitingAnswer) return;
    p.timings.answerReceived = wallClock();
    await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    p.awaitingAnswer = false;
    return;
  }
  // The own offer wins a crossing: the media node answers it and offers again.
  if (p.awaitingAnswer) return;
  if (!p.timings.firstServerOffer) p.timings.firstServerOffer = wallClock();
  p.tracks = msg.tracks ?? [];
  const sdp = await answerOffer(pc, msg.sdp);
  if (p.closed) return;
  if (!p.send({ type: 'media_answer', room_id: p.roomId, sdp })) {
    dropPrepared(p);
    return;
  }
  p.answers += 1;
  if (!p.timings.serverOfferAnswered) p.timings.serverOfferAnswered = wallClock();
}

/**
 * `room_joined` of the answered call (`e2ee`: encrypted): its prepared
 * connection, for the call session to take over once `queue` (what was
 * under way) is done, or null.
 */
export function takePrepared(roomId, e2ee) {
  const p = prepared;
  if (!p || p.roomId !== roomId || !p.sent || p.closed || e2ee !== !!p.crypto) {
    dropPrepared();
    return null;
  }
  prepared = null;
  return p;
}

/**
 * While it rings (for the tests): the prepared connection's state, the
 * tracks it was offered, and the audio packets and video frames it has
 * sent and received so far (the media node's bandwidth probes are neither),
 * or null.
 */
export async function preparedStats() {
  const p = prepared;
  if (!p || !p.pc) return null;
  const media = { audioSent: 0, videoSent: 0, audioReceived: 0, videoReceived: 0 };
  for (const r of (await p.pc.getStats()).values()) {
    if (r.type === 'outbound-rtp' && r.kind === 'audio') media.audioSent += r.packetsSent ?? 0;
    if (r.type === 'outbound-rtp' && r.kind === 'video') media.videoSent += r.framesSent ?? 0;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') media.audioReceived += r.packetsReceived ?? 0;
    if (r.type === 'inbound-rtp' && r.kind === 'video') media.videoReceived += r.framesReceived ?? 0;
  }
  return { connection: p.pc.connectionState, receivers: p.tracks.length, ...media };
}

/**
 * `session` (session.js, starting with the devices `local`) takes over the
 * connection `early` made while the call rang: its senders get their
 * tracks now, and once what was under way is done the session has the
 * tracks it was offered, an answer still to come and the connection's
 * state so far.
 */
export function handOver(session, early, local) {
  early.handedOver = true;
  for (const [tx, track] of [[early.tx.audioTx, local.audioTrack], [early.tx.videoTx, local.videoTrack]]) {
    if (tx && track) tx.sender.replaceTrack(track).catch((err) => console.warn('could not start sending', err));
  }
  session.offersSent += 1;
  session.linkOffers += 1;
  session.queue = early.queue.then(() => {
    const pc = early.pc;
    if (session.closed || pc !== session.pc) return;
    Object.assign(session.timings, early.timings);
    session.answersSent += early.answers;
    session.trackMap = new Map(early.tracks.map((t) => [String(t.mid), t]));
    if (early.awaitingAnswer) {
      session.ownOffer = true;
      session.armAnswerTimer();
    }
    session.connectionChanged(pc);
    session.iceStateChanged(pc);
    session.syncReceivers();
    for (const msg of early.later) {
      if (msg.type === 'publish_layers') session.publishLayers(msg);
      else if (msg.type === 'video_paused') session.videoPaused(msg);
    }
  });
}

/** The ring ended, or the accept failed: the prepared connection closes. */
export function dropPrepared(which = prepared) {
  if (!which) return;
  which.closed = true;
  if (which.sent) refusalExpected = true;
  if (which.pc) which.pc.close();
  if (which.crypto) which.crypto.close();
  if (prepared === which) prepared = null;
}

/**
 * An error that refuses an early offer or answer: the call did not happen
 * (once after it ended), or it ended before this page heard (its
 * `call_ended` comes, or `call_sync` after a resume says so). The prepared
 * connection, if any, closes: an answered call would connect anew.
 */
export function offerRefusalExpected(code) {
  if (code !== 'not_in_room' && code !== 'room_not_found') return false;
  if (prepared && prepared.sent) {
    dropPrepared();
    refusalExpected = false;
    return true;
  }
  if (!refusalExpected) return false;
  refusalExpected = false;
  return true;
}
