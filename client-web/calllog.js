// The call log in the lobby: recent calls, newest first, as the server
// keeps them for this user (docs/protocol.md, `call_log`), with one-click
// call back. Missed calls newer than the last look count on a badge until
// the user marks them seen or calls back.

import { h, icon, avatar, formatDuration } from './ui.js';
import { state } from './state.js';

/** Entries shown. */
const SHOWN = 20;

const seenKey = () => `chorus.callLogSeen.${state.me ? state.me.id : ''}`;

function seenAt() {
  return Number(localStorage.getItem(seenKey())) || 0;
}

/** A `call_log` message: the whole log, or entries to add. */
export function receive(msg) {
  const entries = msg.entries || [];
  if (msg.complete) {
    state.callLog = entries;
    return;
  }
  const known = new Set(state.callLog.map((e) => `${e.id}|${e.kind}`));
  const fresh = entries.filter((e) => !known.has(`${e.id}|${e.kind}`));
  state.callLog = [...fresh, ...state.callLog].sort((a, b) => b.at_ms - a.at_ms);
}

/** Missed calls since the user last looked. */
export function unseenMissed() {
  const since = seenAt();
  return state.callLog.filter((e) => e.kind === 'missed' && e.at_ms > since).length;
}

export function markSeen() {
  const newest = state.callLog.reduce((t, e) => Math.max(t, e.at_ms), 0);
  if (newest > seenAt()) localStorage.setItem(seenKey(), String(newest));
}

/** The other person's name: as the entry has it, else as another entry or the online list has it. */
function nameOf(peer) {
  if (peer.name) return peer.name;
  const entry = state.callLog.find((e) => e.peer.id === peer.id && e.peer.name);
  if (entry) return entry.peer.name;
  const user = state.users.find((u) => u.id === peer.id);
  return user ? user.name : 'Unknown';
}

const KIND_TEXT = { missed: 'Missed', incoming: 'Incoming', outgoing: 'Outgoing' };
const REASON_TEXT = {
  declined: 'declined', busy: 'busy', missed: 'no answer', cancelled: 'cancelled', unavailable: 'not online', disconnected: 'disconnected',
};

function when(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (new Date().toDateString() === d.toDateString()) return time;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

/** What one entry says under the name. */
function describe(e) {
  const what = `${KIND_TEXT[e.kind]} ${e.media === 'video' ? 'video' : 'voice'} call`;
  const how = e.reason ? (e.kind === 'missed' ? null : REASON_TEXT[e.reason] || null) : formatDuration(e.duration_ms);
  return [what, how, when(e.at_ms)].filter(Boolean).join(' · ');
}

/** The lobby's "Recent calls" card; `startCall(user, media)` calls back. */
export function buildCallLog(startCall, rerender) {
  const v = { startCall };
  v.badge = h('button', {
    class: 'badge-button', 'data-testid': 'call-log-unread', hidden: true, title: 'Mark as seen',
    onclick: () => { markSeen(); rerender(); },
  });
  v.list = h('ul', { class: 'people call-log', 'data-testid': 'call-log', 'aria-label': 'Recent calls' });
  v.root = h('div', { class: 'card people-card call-log-card', hidden: true }, h('h2', {}, 'Recent calls', v.badge), v.list);
  return v;
}

export function renderCallLog(v, online) {
  const entries = state.callLog.slice(0, SHOWN);
  v.root.hidden = entries.length === 0;
  const unseen = unseenMissed();
  v.badge.hidden = unseen === 0;
  v.badge.textContent = `${unseen} missed`;
  const since = seenAt();
  v.list.replaceChildren(...entries.map((e) => {
    const name = nameOf(e.peer);
    const back = h('button', {
      class: 'round soft', 'data-testid': 'call-back', disabled: !online,
      'aria-label': `Call ${name} back`, title: `Call ${name} back`,
      onclick: () => { markSeen(); v.startCall({ id: e.peer.id, name }, e.media); },
    }, icon(e.media === 'video' ? 'video' : 'phone'));
    return h('li', {
      class: `person log-${e.kind}`, 'data-testid': 'call-log-entry', 'data-kind': e.kind, 'data-name': name,
      'data-new': e.kind === 'missed' && e.at_ms > since ? 'true' : 'false',
    },
    avatar(e.peer.id, name),
    h('div', { class: 'who' }, h('span', { class: 'name' }, name), h('span', { class: 'sub' }, describe(e))),
    h('div', { class: 'actions' }, back));
  }));
}
