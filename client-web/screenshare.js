// Screen sharing (docs/protocol.md, "Screen sharing").
//
// The sharer claims the room's one screen with `share_screen` (the server
// refuses a second sharer with `screen_taken`), then sends the screen on a
// send-only video transceiver of its own. Its first share adds that
// transceiver and offers again, naming its m-line as the screen
// (`media_offer`'s `screen`); sharing again later only puts a new track on
// it. Stopping (from the page, or from the browser's own "Stop sharing")
// takes the track off and says `share_screen` off.
//
// The screen goes without simulcast, at its full resolution and a low frame
// rate, with the `detail` content hint (text stays sharp; frames drop first
// when bandwidth is short). The media node pays for a single-layer video
// before any camera, as it does for audio, so a viewer on a weak link keeps
// the screen and loses cameras first.
//
// A 1:1 call that runs browser to browser (direct.js) goes back through the
// media node while a screen is shared.

import { state, redraw, showError } from './state.js';
import { send } from './connection.js';
import { SCREEN_TAKEN, screenTakenBy, screenProblem } from './texts.js';

/** The screen's encoding: full size, a low frame rate. */
const SCREEN_ENCODING = { maxBitrate: 2_000_000, maxFramerate: 15 };
/** What is asked of the browser's capture. */
const CAPTURE = { video: { frameRate: { ideal: 15, max: 30 }, width: { max: 1920 }, height: { max: 1080 } }, audio: false };

/** The sending side of one call session's screen. */
export class ScreenSender {
  constructor(session) {
    this.session = session;
    /** The screen being shared, or null. */
    this.track = null;
    /** Its transceiver on the current connection, or null (never shared there). */
    this.tx = null;
  }

  /** A new connection to the media node (joining, or a media move): the screen goes on it too. */
  attach(pc) {
    this.tx = null;
    if (this.track) this.addTo(pc);
  }

  addTo(pc) {
    this.tx = pc.addTransceiver(this.track, { direction: 'sendonly', sendEncodings: [{ ...SCREEN_ENCODING }] });
    if (this.session.crypto) this.session.crypto.protectSenders(null, this.tx);
  }

  /** The m-line the offer names as the screen, once it has one. */
  mid() {
    return this.tx && this.tx.mid !== null ? String(this.tx.mid) : null;
  }

  sharing() {
    return !!this.track;
  }

  /** Sends `track`: on the transceiver there is, or on a new one (and a new offer). */
  async start(track) {
    const s = this.session;
    if ('contentHint' in track) track.contentHint = 'detail';
    this.track = track;
    if (s.direct) s.direct.leave();
    if (!s.pc) return;
    if (this.tx) {
      await this.tx.sender.replaceTrack(track);
    } else {
      this.addTo(s.pc);
      s.offer();
    }
  }

  /** Stops sending: the transceiver stays, with nothing on it. */
  async stop() {
    const track = this.track;
    this.track = null;
    if (track) track.stop();
    if (this.tx) await this.tx.sender.replaceTrack(null).catch(() => {});
  }
}

/** Who shares a screen in the call now (`null`: nobody); `me` for oneself. */
export function sharer(c) {
  if (c.session.screen.sharing()) return 'me';
  for (const p of c.session.participants.values()) if (p.screen) return p;
  return null;
}

/** The page's "Share screen" button: starts or stops sharing. */
export async function toggleScreen() {
  const c = state.call;
  if (!c || c.screenBusy) return;
  const screen = c.session.screen;
  if (screen.sharing()) {
    await stopSharing(c);
    return;
  }
  const other = sharer(c);
  if (other) {
    showError(screenTakenBy(other.name));
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
    showError(screenProblem('This browser cannot share its screen.'));
    return;
  }
  c.screenBusy = true;
  redraw('call');
  let track;
  try {
    // Within the click: the browser asks what to share.
    const stream = await navigator.mediaDevices.getDisplayMedia(CAPTURE);
    [track] = stream.getVideoTracks();
  } catch (err) {
    c.screenBusy = false;
    // Cancelled in the browser's picker: nothing to say.
    if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') showError(screenProblem(err.message || String(err)));
    redraw('call');
    return;
  }
  c.screenBusy = false;
  if (state.call !== c || c.session.closed || !track) {
    if (track) track.stop();
    return;
  }
  // The browser's own "Stop sharing" ends the track.
  track.addEventListener('ended', () => {
    if (state.call === c && c.session.screen.track === track) stopSharing(c);
  });
  send({ type: 'share_screen', room_id: c.session.roomId, on: true });
  await c.session.screen.start(track);
  redraw('call');
}

async function stopSharing(c) {
  c.screenBusy = true;
  try {
    await c.session.screen.stop();
    send({ type: 'share_screen', room_id: c.session.roomId, on: false });
  } finally {
    c.screenBusy = false;
    redraw('call');
  }
}

/** `screen_taken`: someone else began sharing first; ours stops. */
export function screenRefused(c) {
  c.session.screen.stop().finally(() => redraw('call'));
  const other = sharer(c);
  showError(other && other !== 'me' ? screenTakenBy(other.name) : SCREEN_TAKEN);
}
