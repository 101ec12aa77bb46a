// The call screen: header (title, timer, connection, group link, invites),
// a tile per person with their video or avatar, your own picture, the
// controls and the "add someone" sheet. Updated in place, so video and
// audio elements keep playing across changes. Each tile reports its size
// to the media node (`video_size`) so it never gets a larger layer than
// it can show.

import { h, icon, avatar, formatDuration } from './ui.js';
import { state, metrics, now, showError } from './state.js';
import { hangUp, invite, toggleMic, toggleCamera } from './calls.js';
import { buildSecurity, renderSecurity } from './securityview.js';
import { buildChat, renderChat } from './chat.js';
import { toggleScreen, sharer } from './screenshare.js';
import {
  SCREEN_SHARING, screenOf, COPY_FAILED, QUALITY_YOURS_POOR, qualityTheirsPoor, DIRECT_PATH, DIRECT_EXPLAINED, MEDIA_CONNECTING, MEDIA_RECONNECTING, MEDIA_FAILED, TILE_RECONNECTING, connectionDetail, connectionExplained,
} from './texts.js';

/** Tile size reports wait for layout to settle this long. */
const TILE_SIZE_DEBOUNCE_MS = 250;
/** A tile's new video track with no frame by then replaces the old one anyway. */
const SWAP_MAX_MS = 2000;

const view = document.getElementById('view');
const audioSinks = document.getElementById('audio-sinks');

function buildCallView(c) {
  const v = {};
  v.title = h('h1', { class: 'call-title' });
  v.timer = h('span', { class: 'call-timer', 'data-testid': 'call-timer' }, '0:00');
  v.conn = h('span', { class: 'call-conn', 'data-testid': 'call-conn' });
  v.path = h('span', { class: 'call-path', 'data-testid': 'connection-detail', role: 'note', hidden: true });
  v.kind = h('span', { class: 'call-kind' });
  v.invites = h('p', { class: 'invites', 'data-testid': 'invites', 'aria-live': 'polite' });
  v.link = h('a', { class: 'room-link', 'data-testid': 'room-link', target: '_blank', rel: 'noopener' });
  v.copy = h('button', { class: 'chip', 'data-testid': 'copy-link', onclick: () => copyLink(v) }, icon('copy', 'icon small'), h('span', {}, 'Copy link'));
  v.share = h('div', { class: 'share', hidden: true }, h('span', { class: 'share-label' }, 'Invite with this link'), v.link, v.copy);
  v.grid = h('div', { class: 'grid', 'aria-label': 'Participants' });
  v.waiting = h('div', { class: 'waiting', hidden: true });
  v.localVideo = h('video', { 'data-testid': 'local-video', autoplay: true, playsinline: true, muted: true });
  v.localVideo.muted = true;
  v.localAvatar = avatar(state.me ? state.me.id : 'me', state.me ? state.me.name : 'Me', 'avatar medium');
  v.localMuted = h('span', { class: 'muted-badge', hidden: true, title: 'Your microphone is off' }, icon('micOff', 'icon small'), h('span', { class: 'sr-only' }, 'muted'));
  v.selfQuality = qualityBadge('quality-self');
  v.self = h('div', { class: 'self', 'data-testid': 'local-tile' }, v.localVideo, v.localAvatar, v.localMuted, h('span', { class: 'self-label' }, v.selfQuality, 'You'));
  v.qualityNote = h('p', { class: 'quality-note', 'data-testid': 'quality-note', role: 'status', hidden: true });
  v.sound = h('button', { class: 'chip sound', 'data-testid': 'enable-sound', hidden: true, onclick: enableSound }, icon('volume', 'icon small'), h('span', {}, 'Tap to turn on sound'));
  v.mic = h('button', { class: 'round control', 'data-testid': 'toggle-mic', onclick: () => toggleMic() });
  v.cam = h('button', { class: 'round control', 'data-testid': 'toggle-camera', onclick: () => toggleCamera() });
  v.screenBtn = h('button', { class: 'round control', 'data-testid': 'share-screen', onclick: () => toggleScreen() });
  v.screen = buildScreenTile();
  v.add = h('button', { class: 'round control', 'data-testid': 'add-person', 'aria-label': 'Add person', title: 'Add person', onclick: () => { c.sheetOpen = !c.sheetOpen; renderCall(); } }, icon('personAdd'));
  v.hangup = h('button', { class: 'round control danger', 'data-testid': 'hangup', 'aria-label': 'Hang up', title: 'Hang up', onclick: hangUp }, icon('hangup'));
  v.sheet = h('div', { class: 'sheet', hidden: true, role: 'dialog', 'aria-label': 'Add someone to the call' });
  v.security = buildSecurity(() => toggleCodes(c));
  v.chat = buildChat(c, renderCall);
  v.root = h('section', { class: 'call' },
    h('header', { class: 'call-head' },
      h('div', { class: 'call-heading' }, v.title, h('div', { class: 'call-meta' }, v.kind, v.timer, v.conn, v.path)),
      h('div', { class: 'call-privacy' }, v.security.lock, v.security.waiting, v.security.plain),
      v.security.changed,
      v.share,
      v.invites,
      v.qualityNote),
    h('div', { class: 'stage' }, v.screen.root, v.grid, v.waiting, v.self, v.sound, v.chat.burst),
    h('footer', { class: 'controls' }, v.mic, v.cam, v.screenBtn, v.add, v.chat.toggle, v.hangup),
    v.sheet,
    v.chat.panel,
    v.security.codes);
  c.timer = setInterval(() => {
    v.timer.textContent = formatDuration(Date.now() - c.session.joinedAt);
    expireInvites(c);
  }, 1000);
  return v;
}

function toggleCodes(c) {
  c.codesOpen = !c.codesOpen;
  renderCall();
}

function copyLink(v) {
  const url = v.link.href;
  const done = () => {
    v.copy.lastChild.textContent = 'Copied';
    setTimeout(() => { v.copy.lastChild.textContent = 'Copy link'; }, 2000);
  };
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(url).then(done, () => showError(COPY_FAILED));
  } else {
    showError(COPY_FAILED);
  }
}

function expireInvites(c) {
  if (c.inviteNote && c.inviteNote.until < Date.now()) {
    c.inviteNote = null;
    renderCall();
  }
}

/** The call is over: its audio elements go (nothing plays in the lobby). */
export function clearCallAudio() {
  audioSinks.replaceChildren();
  state.soundBlocked = false;
}

function enableSound() {
  for (const el of audioSinks.querySelectorAll('audio')) el.play().catch(() => {});
  state.soundBlocked = false;
  renderCall();
}

/** The call screen, built once per call and then updated in place. */
export function renderCall() {
  const c = state.call;
  if (state.screen !== 'call' || !c) return;
  if (!c.view || view.dataset.screen !== 'call' || !view.contains(c.view.root)) {
    c.view = buildCallView(c);
    c.tiles = new Map();
    view.dataset.screen = 'call';
    view.replaceChildren(c.view.root);
  }
  const v = c.view;
  const s = c.session;
  const people = [...s.participants.values()];
  v.root.dataset.kind = c.kind;
  // Browser to browser, not through the media node (direct.js).
  v.root.dataset.direct = s.direct && s.direct.active() ? 'true' : 'false';
  v.root.dataset.media = c.media;
  v.title.textContent = c.kind === 'group'
    ? `Group call · ${people.length + 1} ${people.length + 1 === 1 ? 'person' : 'people'}`
    : c.title;
  v.kind.textContent = c.media === 'video' ? 'Video call' : 'Voice call';
  const connState = s.pc ? s.pc.connectionState : 'new';
  const iceState = s.pc ? s.pc.iceConnectionState : 'new';
  // A move to another media node reconnects, whatever its new connection is doing.
  v.conn.textContent = s.moving() ? (s.connectedAt ? MEDIA_RECONNECTING : MEDIA_CONNECTING)
    : connState === 'connected' && iceState !== 'disconnected' ? ''
      : iceState === 'disconnected' || (s.connectedAt && connState !== 'closed') ? MEDIA_RECONNECTING
        : connState === 'failed' ? MEDIA_FAILED : MEDIA_CONNECTING;
  v.conn.dataset.state = connState;
  v.conn.dataset.moving = s.moving() ? 'true' : 'false';
  renderPath(v, v.conn.textContent === '' ? s.path : null);
  // Group calls show their link; 1:1 calls get one once they become group calls.
  if (c.kind === 'group') {
    const url = `${location.origin}/call/${encodeURIComponent(s.roomId)}`;
    if (v.link.getAttribute('href') !== url) {
      v.link.href = url;
      v.link.textContent = url;
    }
    v.share.hidden = false;
  } else {
    v.share.hidden = true;
  }
  const ringingNames = [...c.invites.values()].map((i) => i.name);
  const note = c.inviteNote && c.inviteNote.until > Date.now() ? c.inviteNote.text : '';
  v.invites.textContent = [ringingNames.length ? `Ringing ${ringingNames.join(', ')}…` : '', note].filter(Boolean).join(' ');
  v.invites.dataset.reason = note && c.inviteNote.reason ? c.inviteNote.reason : '';
  v.invites.hidden = !v.invites.textContent;
  v.waiting.hidden = people.length > 0;
  v.waiting.textContent = c.kind === 'group' ? 'Waiting for others to join…' : 'Waiting for the other side…';
  renderTiles(c, people);
  renderScreen(c);
  renderLocal(c);
  renderControls(c);
  renderSheet(c);
  renderSecurity(c, v.security, () => toggleCodes(c));
  renderChat(c, v.chat);
  v.sound.hidden = !state.soundBlocked;
}

/** Which way the media goes (UDP, TCP or a relay) and its round trip, while it flows. */
function renderPath(v, path) {
  v.path.hidden = !path;
  if (!path) {
    delete v.path.dataset.path;
    return;
  }
  v.path.dataset.path = path.path;
  // Over a direct connection the media node carries nothing: say so.
  const direct = v.root.dataset.direct === 'true';
  v.path.textContent = direct ? DIRECT_PATH : connectionDetail(path);
  v.path.title = direct ? DIRECT_EXPLAINED : connectionExplained(path);
  v.path.setAttribute('aria-label', v.path.title);
}

function renderLocal(c) {
  const v = c.view;
  const local = c.local;
  const track = local && local.videoTrack && local.videoTrack.readyState === 'live' ? local.videoTrack : null;
  if (track) {
    if (!v.localVideo.srcObject || v.localVideo.srcObject.getVideoTracks()[0] !== track) {
      v.localVideo.srcObject = new MediaStream([track]);
    }
  } else if (v.localVideo.srcObject) {
    v.localVideo.srcObject = null;
  }
  v.self.dataset.video = track ? 'on' : 'off';
  v.self.dataset.speaking = c.session.localSpeaking ? 'true' : 'false';
  v.localMuted.hidden = !local || c.session.localState().audio;
  const mine = c.session.quality.level;
  setQuality(v.selfQuality, mine, 'Your connection');
  // Which side is weak: this page's link first, else whoever's is poor.
  const poor = [...c.session.participants.values()].filter((p) => p.quality === 'poor').map((p) => p.name);
  const note = mine === 'poor' ? QUALITY_YOURS_POOR : poor.length ? qualityTheirsPoor(poor) : '';
  v.qualityNote.hidden = !note;
  v.qualityNote.textContent = note;
  v.qualityNote.dataset.side = mine === 'poor' ? 'self' : poor.length ? 'other' : '';
}

function renderControls(c) {
  const v = c.view;
  const s = c.session;
  const ready = !!c.local;
  const mine = s.localState();
  const micOk = ready && s.canUseMic();
  const camOk = ready && s.canUseCamera();
  setToggle(v.mic, mine.audio, micOk, mine.audio ? 'mic' : 'micOff', 'Mute microphone',
    !micOk ? (ready ? 'No microphone: listen-only' : 'Microphone') : mine.audio ? 'Mute microphone' : 'Unmute microphone');
  setToggle(v.cam, mine.video, camOk, mine.video ? 'video' : 'videoOff', 'Camera off',
    !camOk ? 'No camera' : mine.video ? 'Turn camera off' : 'Turn camera on');
  v.add.setAttribute('aria-expanded', c.sheetOpen ? 'true' : 'false');
  const sharing = s.screen.sharing();
  v.screenBtn.dataset.state = sharing ? 'on' : 'off';
  v.screenBtn.setAttribute('aria-pressed', sharing ? 'true' : 'false');
  v.screenBtn.setAttribute('aria-label', sharing ? 'Stop sharing your screen' : 'Share your screen');
  v.screenBtn.title = v.screenBtn.getAttribute('aria-label');
  v.screenBtn.disabled = !ready || !!c.screenBusy;
  v.screenBtn.classList.toggle('active', sharing);
  const iconName = sharing ? 'screenStop' : 'screenShare';
  if (v.screenBtn.dataset.icon !== iconName) {
    v.screenBtn.dataset.icon = iconName;
    v.screenBtn.replaceChildren(icon(iconName));
  }
}

/** The large tile of a shared screen: someone else's, or a preview of one's own. */
function buildScreenTile() {
  const t = { track: null };
  t.video = h('video', { autoplay: true, playsinline: true, muted: true });
  t.video.muted = true;
  t.label = h('span', { class: 'tile-name' });
  t.stop = h('button', { class: 'chip danger', 'data-testid': 'stop-sharing', onclick: () => toggleScreen() }, icon('screenStop', 'icon small'), h('span', {}, 'Stop sharing'));
  t.root = h('div', { class: 'screen-tile', hidden: true }, t.video, h('div', { class: 'tile-label' }, t.label), t.stop);
  t.sized = '';
  if (typeof ResizeObserver !== 'undefined') {
    new ResizeObserver(() => reportScreenSize(t)).observe(t.root);
  }
  return t;
}

function reportScreenSize(t) {
  const c = state.call;
  if (!c || !t.root.isConnected || !t.owner) return;
  const r = t.root.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  c.session.setTileSize(`${t.owner}/screen`, Math.round(r.width * dpr), Math.round(r.height * dpr));
}

function renderScreen(c) {
  const v = c.view;
  const t = v.screen;
  const who = sharer(c);
  const mine = who === 'me';
  const track = mine ? c.session.screen.track : who ? who.screenTrack : null;
  v.root.dataset.screen = mine ? 'self' : who ? 'remote' : 'none';
  t.root.hidden = !who;
  // Someone else's tile is for the tests' contract; one's own is a preview.
  if (mine) t.root.removeAttribute('data-testid');
  else t.root.setAttribute('data-testid', 'screen-tile');
  t.root.dataset.name = who && !mine ? who.name : '';
  t.label.textContent = mine ? SCREEN_SHARING : who ? screenOf(who.name) : '';
  t.stop.hidden = !mine;
  const owner = who && !mine ? who.id : null;
  if (owner !== t.owner) {
    t.owner = owner;
    reportScreenSize(t);
  }
  if (track !== t.track) {
    t.track = track;
    t.video.srcObject = track ? new MediaStream([track]) : null;
  }
}

/** A toggle whose pressed state means "device off" (muted, camera off); its name stays put. */
function setToggle(btn, on, enabled, iconName, label, hint) {
  btn.dataset.state = on ? 'on' : 'off';
  btn.setAttribute('aria-pressed', on ? 'false' : 'true');
  btn.setAttribute('aria-label', label);
  btn.title = hint;
  btn.disabled = !enabled;
  btn.classList.toggle('off', !on);
  if (btn.dataset.icon !== iconName) {
    btn.dataset.icon = iconName;
    btn.replaceChildren(icon(iconName));
  }
}

function renderSheet(c) {
  const v = c.view;
  v.sheet.hidden = !c.sheetOpen;
  if (!c.sheetOpen) return;
  const inCall = new Set(c.session.participants.keys());
  const candidates = state.users.filter((u) => !inCall.has(u.id));
  v.sheet.replaceChildren(
    h('div', { class: 'sheet-head' },
      h('h2', {}, 'Add someone'),
      h('button', { class: 'icon-button', 'aria-label': 'Close', onclick: () => { c.sheetOpen = false; renderCall(); } }, icon('close'))),
    candidates.length
      ? h('ul', { class: 'people compact' }, candidates.map((u) =>
        h('li', { class: `person ${u.busy ? 'busy' : ''}`, 'data-testid': 'invite-user', 'data-name': u.name },
          avatar(u.id, u.name),
          h('div', { class: 'who' }, h('span', { class: 'name' }, u.name), h('span', { class: 'sub' }, u.busy ? 'In a call' : 'Available')),
          h('button', { class: 'chip', disabled: c.invites.has(u.id), onclick: () => invite(u) }, c.invites.has(u.id) ? 'Ringing…' : 'Add'))))
      : h('p', { class: 'muted' }, 'Nobody else is online.'));
}

function renderTiles(c, people) {
  const v = c.view;
  const seen = new Set();
  for (const p of people) {
    seen.add(p.id);
    let tile = c.tiles.get(p.id);
    if (!tile) {
      tile = createTile(p);
      c.tiles.set(p.id, tile);
      v.grid.append(tile.root);
    }
    updateTile(c, tile, p);
  }
  for (const [id, tile] of c.tiles) {
    if (!seen.has(id)) {
      tile.root.remove();
      if (tile.audio) tile.audio.remove();
      c.tiles.delete(id);
    }
  }
  v.grid.dataset.count = String(people.length);
  v.root.dataset.count = String(people.length);
  const active = c.activeSpeaker && c.tiles.has(c.activeSpeaker) ? c.activeSpeaker : null;
  v.grid.dataset.active = active ? 'true' : 'false';
  for (const [id, tile] of c.tiles) tile.root.dataset.active = id === active ? 'true' : 'false';
  v.self.dataset.active = state.me && c.activeSpeaker === state.me.id ? 'true' : 'false';
}

function createTile(p) {
  const t = { id: p.id, videoTrack: null, audioTrack: null, hasFrames: false, audio: null };
  t.video = tileVideo(t);
  t.video.dataset.testid = 'remote-video';
  t.avatar = avatar(p.id, p.name, 'avatar large', { 'data-testid': 'remote-avatar' });
  t.name = h('span', { class: 'tile-name' });
  t.muted = h('span', { class: 'muted-badge', 'data-testid': 'remote-muted', title: 'Microphone off', hidden: true }, icon('micOff', 'icon small'), h('span', { class: 'sr-only' }, 'muted'));
  t.poor = h('span', { class: 'poor-connection', 'data-testid': 'poor-connection', role: 'status', hidden: true }, 'Poor connection');
  t.reconnecting = h('span', { class: 'poor-connection', 'data-testid': 'tile-reconnecting', role: 'status', hidden: true }, TILE_RECONNECTING);
  t.quality = qualityBadge('quality');
  t.root = h('div', { class: 'tile', 'data-testid': 'remote-tile', 'data-participant-id': p.id },
    t.video, h('div', { class: 'tile-avatar' }, t.avatar), t.poor, t.reconnecting, h('div', { class: 'tile-label' }, t.quality, t.muted, t.name));
  watchTileSize(t);
  return t;
}

function tileVideo(t) {
  const v = h('video', { autoplay: true, playsinline: true, muted: true });
  v.muted = true;
  v.addEventListener('resize', () => markFrames(t));
  return v;
}

/**
 * Puts `track` on the tile. A track that replaces one already showing
 * frames (the call moving between a direct connection and the media node,
 * or to another media node) plays in a second element laid over the
 * first, clear until its first frame; the first goes then. So the picture
 * never goes black while the new track starts.
 */
function showTrack(t, track) {
  if (t.next) {
    t.next.srcObject = null;
    t.next.remove();
    t.next = null;
  }
  const frames = !!t.video.requestVideoFrameCallback;
  if (!track || !t.hasFrames || !frames) {
    t.hasFrames = false;
    t.video.srcObject = track ? new MediaStream([track]) : null;
    if (track && frames) t.video.requestVideoFrameCallback(() => markFrames(t));
    return;
  }
  const next = tileVideo(t);
  next.classList.add('next');
  next.srcObject = new MediaStream([track]);
  t.video.after(next);
  t.next = next;
  const promote = () => {
    if (t.next !== next) return;
    t.next = null;
    t.video.srcObject = null;
    t.video.remove();
    next.classList.remove('next');
    next.dataset.testid = 'remote-video';
    t.video = next;
    if (!next.videoWidth) {
      t.hasFrames = false;
      next.requestVideoFrameCallback(() => markFrames(t));
      if (state.call) renderCall();
    }
  };
  next.requestVideoFrameCallback(promote);
  setTimeout(promote, SWAP_MAX_MS);
}

/** Reports the tile's size (device pixels) so the server picks a fitting layer. */
function watchTileSize(t) {
  if (typeof ResizeObserver === 'undefined') return;
  let timer = null;
  const report = () => {
    timer = null;
    const c = state.call;
    if (!c || !t.root.isConnected) return;
    const r = t.root.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    c.session.setTileSize(t.id, Math.round(r.width * dpr), Math.round(r.height * dpr));
  };
  new ResizeObserver(() => {
    // Coalesce a burst of layout changes (a join reflows every tile).
    if (!timer) timer = setTimeout(report, TILE_SIZE_DEBOUNCE_MS);
  }).observe(t.root);
}

function markFrames(t) {
  if (t.hasFrames || !t.video.videoWidth) return;
  t.hasFrames = true;
  const at = now();
  if (!metrics.firstRemoteFrameAt) metrics.firstRemoteFrameAt = at;
  metrics.firstFrames[t.id] = metrics.firstFrames[t.id] || at;
  if (state.call) renderCall();
}

function updateTile(c, t, p) {
  t.root.dataset.name = p.name;
  t.name.textContent = p.name;
  t.muted.hidden = p.audio;
  t.root.dataset.muted = p.audio ? 'false' : 'true';
  if (p.videoTrack !== t.videoTrack) {
    t.videoTrack = p.videoTrack;
    showTrack(t, p.videoTrack);
  }
  if (p.audioTrack !== t.audioTrack) {
    t.audioTrack = p.audioTrack;
    if (!t.audio) {
      t.audio = h('audio', { autoplay: true, 'data-participant-id': p.id });
      audioSinks.append(t.audio);
    }
    t.audio.srcObject = p.audioTrack ? new MediaStream([p.audioTrack]) : null;
    if (p.audioTrack) {
      t.audio.play().catch(() => {
        state.soundBlocked = true;
        if (c.view) c.view.sound.hidden = false;
      });
    }
  }
  const showVideo = !!(p.video && p.videoTrack && t.hasFrames);
  t.root.dataset.video = showVideo ? 'on' : 'off';
  // The last frame stays on screen while the video is paused for bandwidth,
  // and while the media moves away from a media node that is gone.
  const interrupted = c.session.mediaInterrupted();
  t.reconnecting.hidden = !interrupted;
  t.root.dataset.reconnecting = interrupted ? 'true' : 'false';
  t.poor.hidden = interrupted || !(p.videoPaused && p.video);
  t.root.dataset.poor = t.poor.hidden ? 'false' : 'true';
  t.root.dataset.speaking = p.speaking ? 'true' : 'false';
  setQuality(t.quality, p.quality, `${p.name}'s connection`);
  t.quality.dataset.name = p.name;
}

/** Three bars: how good a connection is (`data-level`). */
function qualityBadge(testid) {
  return h('span', { class: 'quality', 'data-testid': testid, 'data-level': 'good', role: 'img' },
    h('i', {}), h('i', {}), h('i', {}));
}

function setQuality(el, level, whose) {
  const l = level || 'good';
  el.dataset.level = l;
  const text = `${whose} is ${l}`;
  el.setAttribute('aria-label', text);
  el.title = text;
}

/** Only the speaking rings: they change several times a second. */
export function updateSpeaking() {
  const c = state.call;
  if (!c || !c.view) return;
  for (const p of c.session.participants.values()) {
    const t = c.tiles.get(p.id);
    if (t) t.root.dataset.speaking = p.speaking ? 'true' : 'false';
  }
  c.view.self.dataset.speaking = c.session.localSpeaking ? 'true' : 'false';
}

