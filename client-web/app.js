// Chorus web client: the entry point. It wires the signaling connection to
// the call flow, draws the page after each change, and leaves cleanly when
// the page goes away.
//
//   state.js       the page's state, `inCall(msg)`, `redraw(part)`, banner errors
//   identity.js    name and access token (localStorage, POST /api/token)
//   connection.js  the signaling connection and how requests go out on it
//   calls.js       the call flow: people's actions and the server's messages
//   screens.js     name form, lobby, ringing screens, incoming call, banner
//   callview.js    the call screen: tiles, controls, the "add someone" sheet
//   session.js     one call's RTCPeerConnection to the media node
//   mediamove.js   the call's media moving to another media node (`media_moved`)
//   negotiation.js what a connection publishes, ICE gathering, codec pinning
//   levels.js      who is speaking, per-person receive statistics
//   e2ee/          end-to-end encryption: identity keys, key schedule, frame worker, security codes
//   texts.js       what the client says: errors, why calls ended

import { state, metrics, setRedraw } from './state.js';
import { signaling, listen } from './connection.js';
import { handleMessage, connectionState, leavePage, returnToPage } from './calls.js';
import {
  renderBanner, renderTopbar, renderName, renderLobby, renderOutgoing, renderConnecting, renderIncoming,
} from './screens.js';
import { renderCall, updateSpeaking, clearCallAudio } from './callview.js';
import * as ring from './ringtone.js';
import { replaceIdentity } from './e2ee/device.js';
import { preparedStats } from './prepare.js';

function pageTitle() {
  if (state.incoming) return `${state.incoming.from.name} is calling – Chorus`;
  if (state.outgoing) return `Calling ${state.outgoing.to.name} – Chorus`;
  if (state.call) return `${state.call.title} – Chorus`;
  return 'Chorus';
}

/** Draws the whole page from `state`. */
function render() {
  document.title = pageTitle();
  document.body.dataset.screen = state.screen;
  document.body.classList.toggle('in-call', state.screen === 'call' || state.screen === 'outgoing' || state.screen === 'connecting');
  if (!state.call) clearCallAudio();
  renderBanner();
  renderTopbar();
  switch (state.screen) {
    case 'name':
      renderName();
      break;
    case 'lobby':
      renderLobby();
      break;
    case 'outgoing':
      renderOutgoing();
      break;
    case 'connecting':
      renderConnecting();
      break;
    case 'call':
      renderCall();
      break;
    default:
      break;
  }
  renderIncoming();
}

const PARTS = {
  call: renderCall,
  lobby: renderLobby,
  outgoing: renderOutgoing,
  speaking: updateSpeaking,
  banner: renderBanner,
};

setRedraw((part) => (PARTS[part] || render)());
listen({ onMessage: handleMessage, onState: connectionState });

window.addEventListener('pointerdown', () => ring.unlockAudio(), { once: true });
window.addEventListener('keydown', () => ring.unlockAudio(), { once: true });
window.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && state.call && state.call.sheetOpen) {
    state.call.sheetOpen = false;
    renderCall();
  }
});
// Leaving the page signs out at once (a clean close), instead of leaving
// the others waiting for a reconnect that will not come.
window.addEventListener('pagehide', () => leavePage());
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) returnToPage();
});

/** A small debug handle for people and for the browser tests. */
window.chorus = {
  get state() {
    return {
      screen: state.screen,
      conn: state.conn,
      me: state.me,
      users: state.users,
      incoming: state.incoming,
      outgoing: state.outgoing,
      call: state.call
        ? {
          roomId: state.call.session.roomId,
          kind: state.call.kind,
          media: state.call.media,
          mode: state.call.local ? state.call.local.mode : null,
          participants: [...state.call.session.participants.values()].map((p) => ({
            id: p.id, name: p.name, audio: p.audio, video: p.video, speaking: p.speaking, level: p.level,
          })),
        }
        : null,
    };
  },
  get pc() {
    return state.call ? state.call.session.pc : null;
  },
  get session() {
    return state.call ? state.call.session : null;
  },
  stats() {
    return state.call ? state.call.session.stats() : Promise.resolve({});
  },
  metrics,
  /** While a call rings: its connection to the media node, made meanwhile (prepare.js). */
  prepared: () => preparedStats(),
  ringing: () => ring.ringing(),
  audioState: () => ring.audioState(),
  signaling,
  /** End-to-end encryption: the call's keys and frame counts, and test hooks. */
  e2ee: {
    /** The worker's frame counts in the current call, or null. */
    stats: () => (state.call && state.call.crypto ? state.call.crypto.stats() : Promise.resolve(null)),
    /** The lock is shown: every stream of the call is encrypted. */
    allEncrypted: () => !!(state.call && state.call.crypto && state.call.crypto.allEncrypted()),
    /** The security code with `id` in the current call (60 digits), or null. */
    codeWith: (id) => (state.call && state.call.crypto ? state.call.crypto.codeWith(id) : Promise.resolve(null)),
    /** From the next call on, take no key from anyone; frames that do not decrypt go to the decoders as they are. */
    withholdKeys(on = true) {
      state.e2eeWithhold = !!on;
    },
    /** From the next call on, keep the first `count` video keyframes received, forwarded and decrypted. */
    tapKeyframes(count = 2) {
      state.e2eeTap = count;
    },
    /** The keyframes kept so far in the current call: [{forwarded, decrypted}] (ArrayBuffers). */
    tapped: () => (state.call && state.call.crypto ? state.call.crypto.tapped() : Promise.resolve([])),
    passUndecryptable(on = true) {
      if (state.call && state.call.crypto) state.call.crypto.passUndecryptable(on);
    },
    /** A new identity key pair, as a new device would have; sign in again to use it. */
    replaceIdentity: () => replaceIdentity().then((id) => id && id.public),
  },
  /** Restarts ICE in the current call (a new offer with iceRestart); false without a call. */
  restartIce() {
    return state.call ? state.call.session.restartIce({ now: true }) : false;
  },
  /**
   * Drops the signaling connection as a network outage would, for
   * `offlineMs`; it then resumes. `code`: handle the drop as if the server
   * had closed with it (1012: a node restarting, retried at once).
   */
  dropConnection({ offlineMs = 0, code = null } = {}) {
    signaling.simulateDrop({ offlineMs, code });
  },
  /**
   * Handles a `media_moved` for the current call, as if the server had sent
   * it: a new media connection offers while the old one plays on. False
   * without a call.
   */
  mediaMoved() {
    if (!state.call) return false;
    handleMessage({ type: 'media_moved', room_id: state.call.session.roomId });
    return true;
  },
};

render();
if (state.name) signaling.start();
