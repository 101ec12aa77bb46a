// The screens around a call: the top bar and banner, the name form, the
// lobby (who is online), ringing someone ("calling…", "ringing…"), joining,
// and the incoming-call overlay. The lobby and the outgoing screen are
// updated in place, so a presence change never swallows a click.

import { h, icon, avatar } from './ui.js';
import { state, redraw, clearError } from './state.js';
import { signaling } from './connection.js';
import {
  startCall, cancelCall, acceptCall, declineCall, newGroupCall, changeName, submitName, signOut, setE2ee, setProtectIp,
} from './calls.js';
import { canEncrypt } from './e2ee/device.js';
import { buildCallLog, renderCallLog } from './calllog.js';
import * as ring from './ringtone.js';
import { NAME_MISSING } from './texts.js';

const view = document.getElementById('view');
const overlay = document.getElementById('overlay');
const bannerEl = document.getElementById('banner');

/** The banner: the connection's state, then the latest error. */
export function renderBanner() {
  const error = state.error ? state.error.text : '';
  const lines = [state.connError, error].filter(Boolean);
  bannerEl.replaceChildren();
  bannerEl.hidden = lines.length === 0;
  bannerEl.dataset.kind = state.connError ? 'connection' : 'error';
  if (!lines.length) return;
  bannerEl.append(h('div', { class: 'banner-text' }, lines.map((l) => h('p', {}, l))));
  if (state.conn === 'replaced') {
    bannerEl.append(h('button', { class: 'banner-action', onclick: () => signaling.restart() }, 'Use here'));
  }
  if (error) {
    bannerEl.append(h('button', { class: 'banner-close', 'aria-label': 'Dismiss', onclick: () => clearError() }, icon('close')));
  }
}

export function renderTopbar() {
  const who = document.getElementById('whoami');
  who.replaceChildren();
  if (state.me && state.screen !== 'name') {
    const idle = state.screen === 'lobby';
    who.append(
      h('span', { class: `dot ${state.conn === 'online' ? 'on' : 'off'}`, title: state.conn === 'online' ? 'Connected' : 'Not connected' }),
      h('span', { class: 'me-name' }, state.me.name),
      h('button', { class: 'link-button', 'data-testid': 'change-name', onclick: changeName }, 'Change name'),
      idle ? h('button', { class: 'link-button', 'data-testid': 'sign-out', onclick: signOut }, 'Sign out') : null,
    );
  }
}

let nameView = null;

export function renderName() {
  if (view.dataset.screen === 'name' && nameView) {
    nameView.error.textContent = state.nameError;
    nameView.error.hidden = !state.nameError;
    return;
  }
  view.dataset.screen = 'name';
  const input = h('input', {
    id: 'name-input',
    'data-testid': 'name-input',
    type: 'text',
    maxlength: 40,
    autocomplete: 'nickname',
    required: true,
    placeholder: 'Your name',
    'aria-describedby': 'name-help',
    value: state.name,
  });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: !state.nameError }, state.nameError);
  const form = h(
    'form',
    {
      class: 'name-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        ring.unlockAudio();
        const name = input.value.trim();
        if (!name) {
          state.nameError = NAME_MISSING;
          renderName();
          input.focus();
          return;
        }
        submitName(name);
      },
    },
    h('label', { for: 'name-input', class: 'label' }, 'Your name'),
    h('div', { class: 'row' },
      input,
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'name-submit' }, state.pendingRoom ? 'Join call' : 'Continue')),
    error,
  );
  nameView = { error };
  view.replaceChildren(
    h('section', { class: 'welcome card' },
      h('div', { class: 'logo', 'aria-hidden': 'true' }, icon('phone')),
      h('h1', {}, state.pendingRoom ? 'Join the group call' : 'Welcome to Chorus'),
      h('p', { id: 'name-help', class: 'muted' },
        state.pendingRoom
          ? 'Pick the name the others will see, then you are in.'
          : 'Voice and video calls in your browser. Pick the name others will see.'),
      form),
  );
  setTimeout(() => input.focus(), 0);
}

function statusNotice() {
  const n = state.notice;
  if (!n) return null;
  return h('div', { class: `notice status-${n.status.replace(/\s+/g, '-')}`, role: 'status' },
    h('div', { class: 'notice-text' },
      h('p', { class: 'call-status', 'data-testid': 'call-status', 'data-status': n.status }, n.status),
      n.detail ? h('p', { class: 'notice-detail' }, n.detail) : null),
    h('button', { class: 'icon-button ghost', 'aria-label': 'Dismiss', onclick: () => { state.notice = null; redraw(); } }, icon('close')));
}

let lobbyView = null;

function buildLobby() {
  const v = { rows: new Map() };
  v.notice = h('div', { class: 'notice-slot' });
  v.hello = h('h1', {});
  v.group = h('button', { class: 'primary with-icon', 'data-testid': 'new-group-call', onclick: newGroupCall }, icon('group'), 'New group call');
  v.count = h('span', { class: 'count', 'data-testid': 'online-count' });
  v.list = h('ul', { class: 'people', 'aria-label': 'People online' });
  v.emptyTitle = h('p', {});
  v.emptyHelp = h('p', { class: 'muted' }, 'Send this page\'s address to someone, or start a group call and share its link.');
  v.empty = h('div', { class: 'empty' }, v.emptyTitle, v.emptyHelp);
  v.e2ee = h('input', { type: 'checkbox', 'data-testid': 'e2ee-option', onchange: () => setE2ee(v.e2ee.checked) });
  v.e2eeLabel = h('label', { class: 'option' }, v.e2ee, h('span', {}, 'Encrypt my calls end to end'));
  v.log = buildCallLog(startCall, () => renderLobby());
  v.protectIp = h('input', { type: 'checkbox', 'data-testid': 'protect-ip', onchange: () => setProtectIp(v.protectIp.checked) });
  v.protectIpLabel = h('label', {
    class: 'option', title: 'Calls with one other person go through the server, so they never see your IP address (a little more delay)',
  }, v.protectIp, h('span', {}, 'Protect IP address in calls'));
  v.root = h('section', { class: 'lobby' },
    v.notice,
    h('div', { class: 'lobby-head' },
      h('div', {}, v.hello, h('p', { class: 'muted' }, 'Call someone who is online, or start a group call.')),
      v.group),
    h('div', { class: 'card people-card' }, h('h2', {}, 'Online now', v.count), v.list, v.empty),
    v.log.root,
    v.e2eeLabel,
    v.protectIpLabel);
  return v;
}

function personRow(u) {
  const r = { user: u };
  r.name = h('span', { class: 'name' });
  r.sub = h('span', { class: 'sub' });
  r.audio = h('button', { class: 'round soft', 'data-testid': 'call-audio', onclick: () => startCall(r.user, 'audio') }, icon('phone'));
  r.video = h('button', { class: 'round soft', 'data-testid': 'call-video', onclick: () => startCall(r.user, 'video') }, icon('video'));
  r.avatar = avatar(u.id, u.name);
  r.li = h('li', { class: 'person', 'data-testid': 'online-user', 'data-user-id': u.id },
    r.avatar, h('div', { class: 'who' }, r.name, r.sub), h('div', { class: 'actions' }, r.audio, r.video));
  return r;
}

/** The lobby, updated in place so a presence change never swallows a click. */
export function renderLobby() {
  if (state.screen !== 'lobby') return;
  if (!lobbyView || view.dataset.screen !== 'lobby' || !view.contains(lobbyView.root)) {
    lobbyView = buildLobby();
    view.dataset.screen = 'lobby';
    view.replaceChildren(lobbyView.root);
  }
  const v = lobbyView;
  const online = state.conn === 'online';
  v.notice.replaceChildren(...[statusNotice()].filter(Boolean));
  v.hello.textContent = state.me ? `Hi, ${state.me.name}` : 'Chorus';
  v.group.disabled = !online;
  // Browsers that cannot encrypt frames make plain calls only.
  v.e2ee.checked = state.e2ee && canEncrypt();
  v.e2ee.disabled = !canEncrypt();
  v.protectIp.checked = state.protectIp;
  v.e2eeLabel.title = canEncrypt() ? 'Nobody but the people in a call can see or hear it, the server included' : 'This browser cannot encrypt calls end to end';
  v.count.textContent = String(state.users.length);
  const seen = new Set();
  let prev = null;
  for (const u of state.users) {
    seen.add(u.id);
    let r = v.rows.get(u.id);
    if (!r) {
      r = personRow(u);
      v.rows.set(u.id, r);
    }
    r.user = u;
    r.li.dataset.name = u.name;
    r.li.dataset.busy = u.busy ? 'true' : 'false';
    r.li.classList.toggle('busy', u.busy);
    r.name.textContent = u.name;
    r.sub.textContent = u.busy ? 'In a call' : 'Available';
    for (const [btn, kind] of [[r.audio, 'Voice'], [r.video, 'Video']]) {
      btn.disabled = !online;
      btn.setAttribute('aria-label', `${kind} call ${u.name}`);
      btn.title = `${kind} call ${u.name}`;
    }
    // Keep the server's order (by name) without re-creating rows.
    const want = prev ? prev.nextSibling : v.list.firstChild;
    if (want !== r.li) v.list.insertBefore(r.li, want);
    prev = r.li;
  }
  for (const [id, r] of v.rows) {
    if (!seen.has(id)) {
      r.li.remove();
      v.rows.delete(id);
    }
  }
  v.list.hidden = state.users.length === 0;
  v.empty.hidden = state.users.length > 0;
  v.emptyTitle.textContent = online ? 'Nobody else is online yet.' : state.conn === 'replaced' ? 'Signed out here.' : 'Connecting…';
  v.emptyHelp.hidden = !online;
  renderCallLog(v.log, online);
}

let outgoingStatusEl = null;

/** Ringing someone: their name, "calling" then "ringing", and Cancel. */
export function renderOutgoing() {
  if (state.screen !== 'outgoing' || !state.outgoing) return;
  const out = state.outgoing;
  if (view.dataset.screen === 'outgoing' && outgoingStatusEl && view.contains(outgoingStatusEl)) {
    outgoingStatusEl.textContent = out.status;
    outgoingStatusEl.dataset.status = out.status;
    return;
  }
  view.dataset.screen = 'outgoing';
  const status = h('p', { class: 'call-status big', 'data-testid': 'call-status', 'data-status': out.status }, out.status);
  outgoingStatusEl = status;
  const preview = h('video', { class: 'backdrop-video', 'data-testid': 'local-video', autoplay: true, playsinline: true, muted: true, hidden: true });
  preview.muted = true;
  if (state.media && out.media === 'video') {
    state.media.promise.then((m) => {
      if (m.videoTrack && preview.isConnected) {
        preview.srcObject = new MediaStream([m.videoTrack]);
        preview.hidden = false;
      }
    });
  }
  view.replaceChildren(
    h('section', { class: 'ring-screen' },
      preview,
      h('div', { class: 'ring-body' },
        avatar(out.to.id, out.to.name, 'avatar huge pulse'),
        h('h1', {}, out.to.name),
        h('p', { class: 'muted-light' }, out.media === 'video' ? 'Video call' : 'Voice call'),
        status),
      h('div', { class: 'ring-actions' },
        h('div', { class: 'action' },
          h('button', { class: 'round big danger', 'data-testid': 'cancel-call', 'aria-label': 'Cancel call', onclick: cancelCall }, icon('hangup')),
          h('span', {}, 'Cancel')))),
  );
}

/** Accepted, created or joining: waiting for `room_joined`. */
export function renderConnecting() {
  if (state.screen !== 'connecting' || !state.connecting) return;
  const c = state.connecting;
  view.dataset.screen = 'connecting';
  view.replaceChildren(
    h('section', { class: 'ring-screen' },
      h('div', { class: 'ring-body' },
        c.id ? avatar(c.id, c.title, 'avatar huge') : h('div', { class: 'avatar huge group-avatar' }, icon('group')),
        h('h1', {}, c.title),
        h('p', { class: 'call-status big', 'data-status': 'connecting' }, 'connecting'))),
  );
}

/** Someone rings: the overlay with Decline and Accept, over whatever screen. */
export function renderIncoming() {
  const inc = state.incoming;
  if (!inc) {
    overlay.replaceChildren();
    overlay.hidden = true;
    return;
  }
  overlay.hidden = false;
  const others = (inc.participants || []).filter((p) => p.id !== inc.from.id).map((p) => p.name);
  const kind = inc.media === 'video' ? 'video call' : 'voice call';
  const line = others.length ? `Invites you to a ${kind} with ${others.join(', ')}` : `Incoming ${kind}`;
  overlay.replaceChildren(
    h('div', { class: 'incoming', 'data-testid': 'incoming-call', 'data-media': inc.media, 'data-from': inc.from.name, role: 'dialog', 'aria-modal': 'true', 'aria-label': `${inc.from.name}: ${line}` },
      h('div', { class: 'ring-body' },
        avatar(inc.from.id, inc.from.name, 'avatar huge pulse'),
        h('h1', { class: 'caller-name' }, inc.from.name),
        h('p', { class: 'muted-light call-type' }, icon(inc.media === 'video' ? 'video' : 'phone', 'icon small'), line)),
      h('div', { class: 'ring-actions' },
        h('div', { class: 'action' },
          h('button', { class: 'round big danger', 'data-testid': 'decline-call', 'aria-label': 'Decline', onclick: declineCall }, icon('hangup')),
          h('span', {}, 'Decline')),
        h('div', { class: 'action' },
          h('button', { class: 'round big accept', 'data-testid': 'accept-call', 'aria-label': 'Accept', onclick: acceptCall }, icon(inc.media === 'video' ? 'video' : 'phone')),
          h('span', {}, 'Accept')))),
  );
}
