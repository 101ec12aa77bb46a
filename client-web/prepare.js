// A 1:1 call is prepared on both sides while it rings: the connection to
// the media node, what it publishes and its offer, made with the devices
// opened for the ring. The callee sends the offer right behind `accept`
// (the server handles a client's messages in order, so the offer finds the
// callee in the room); the caller sends it as soon as `room_joined` says
// the call was answered. Either way nothing is left to create then, and
// the call session takes this connection over (session.js `start`). A
// ring that ends otherwise closes it.

import { addPublishing } from './negotiation.js';
import { newPeerConnection } from './session.js';

/** The prepared call: `{ roomId, crypto, pc, tx, local, sdp, sent, closed }`, or null. */
let prepared = null;
/** An early offer went out for a call whose accept then failed: its refusal is expected. */
let refusalExpected = false;

/**
 * Prepares the call in `roomId` with the devices `media` (calls.js
 * `openMedia`), the ICE servers of `iceConfig` and, for an encrypted call,
 * its `crypto` (e2ee/callcrypto.js): the browser encrypts only with a
 * transform that was on its senders before the offer.
 */
export function prepareCall(roomId, media, iceConfig, crypto) {
  dropPrepared();
  const p = { roomId, crypto, pc: null, tx: null, local: null, sdp: null, sent: false, closed: false };
  prepared = p;
  media.promise.then(async (local) => {
    if (p.closed) return;
    const pc = newPeerConnection(iceConfig);
    p.pc = pc;
    p.local = local;
    p.tx = addPublishing(pc, local);
    if (crypto) crypto.protectSenders(p.tx.audioTx, p.tx.videoTx);
    await pc.setLocalDescription(await pc.createOffer());
    if (p.closed) return;
    p.sdp = pc.localDescription.sdp;
  }).catch((err) => {
    console.warn('could not prepare the call', err);
    dropPrepared(p);
  });
}

/**
 * Accepting: sends the prepared offer (after `accept`) if it is ready.
 * `send` is the signaling send; false when it could not go.
 */
export function sendPreparedOffer(roomId, send) {
  const p = prepared;
  if (!p || p.roomId !== roomId || !p.sdp || p.closed) {
    dropPrepared();
    return false;
  }
  p.sent = send({ type: 'media_offer', room_id: roomId, sdp: p.sdp });
  p.sentAt = performance.timeOrigin + performance.now();
  if (!p.sent) dropPrepared();
  return p.sent;
}

/**
 * `room_joined` of the answered call (`e2ee`: encrypted): its prepared
 * connection with the offer sent (now, by `send`, for the caller), for the
 * call session to take over, or null.
 */
export function takePrepared(roomId, e2ee, send) {
  const p = prepared;
  if (p && !p.sent && p.roomId === roomId && e2ee === !!p.crypto) sendPreparedOffer(roomId, send);
  if (!p || p.roomId !== roomId || !p.sent || p.closed || e2ee !== !!p.crypto) {
    dropPrepared();
    return null;
  }
  prepared = null;
  return p;
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

/** An error that refuses an early offer of a call that did not happen (once). */
export function offerRefusalExpected(code) {
  if (!refusalExpected || (code !== 'not_in_room' && code !== 'room_not_found')) return false;
  refusalExpected = false;
  return true;
}
