// In-call chat: text messages and reactions to everyone in the call, in
// the server's order (docs/protocol.md, `chat`), over the signaling
// connection. In an end-to-end encrypted call each is sealed with this
// participant's media key (e2ee/chat.js) and the server cannot read it.
// The panel opens from the controls; messages that come while it is
// closed count as unread on its button.

import { h, icon } from './ui.js';
import { state } from './state.js';
import { send } from './connection.js';
import { CHAT_TOO_LONG, CHAT_UNREADABLE, CHAT_WAITING_KEY } from './texts.js';

/** As the server's `MAX_CHAT_CHARS`. */
export const MAX_CHAT_CHARS = 1000;
/** As the server's `REACTIONS`. */
export const REACTIONS = ['👍', '❤️', '😂', '😮', '👏', '🎉'];
/** How long a reaction shows over the call. */
const BURST_MS = 2500;
/** Errors the server gives a chat message. */
const CHAT_ERRORS = ['chat_too_long', 'rate_limited', 'e2ee_required', 'bad_message'];
/** An error this soon after a chat message went is about it. */
const ERROR_WINDOW_MS = 3000;
let sentAt = 0;

/** True when an error with `code` is the server's answer to a chat message just sent. */
export function isChatError(code) {
  return CHAT_ERRORS.includes(code) && Date.now() - sentAt < ERROR_WINDOW_MS;
}

/** The chat of call `c`: its messages, unread count and panel. */
export function chatOf(c) {
  if (!c.chat) c.chat = { open: false, items: [], unread: 0, error: '', burst: null, changed: true };
  return c.chat;
}

/** A `chat` message from the server (ours included, in the server's order). */
export function receive(c, msg, rerender) {
  const chat = chatOf(c);
  const mine = !!state.me && msg.from.id === state.me.id;
  const item = {
    seq: msg.seq, from: msg.from, mine, text: msg.text ?? null, reaction: msg.reaction ?? null, sealed: msg.sealed ?? null, failed: false,
  };
  let at = chat.items.length;
  while (at > 0 && chat.items[at - 1].seq > item.seq) at -= 1;
  chat.items.splice(at, 0, item);
  if (!mine && !chat.open) chat.unread += 1;
  chat.changed = true;
  if (item.sealed) open(c, item, rerender);
  else shown(c, item, rerender);
  rerender();
}

/** A member's key came: sealed messages that waited for it open now. */
export function retry(c, rerender) {
  for (const item of chatOf(c).items) if (item.sealed && !item.text && !item.reaction && !item.failed) open(c, item, rerender);
}

function open(c, item, rerender) {
  if (!c.crypto) {
    item.failed = true;
    return;
  }
  c.crypto.open(item.from.id, item.sealed).then((body) => {
    if (!body) return;
    item.text = body.text ?? null;
    item.reaction = body.reaction ?? null;
    chatOf(c).changed = true;
    shown(c, item, rerender);
    rerender();
  }, () => {
    item.failed = true;
    chatOf(c).changed = true;
    rerender();
  });
}

/** A reaction shows over the call for a moment. */
function shown(c, item, rerender) {
  if (!item.reaction) return;
  const chat = chatOf(c);
  chat.burst = { text: `${item.mine ? 'You' : item.from.name} ${item.reaction}`, until: Date.now() + BURST_MS };
  setTimeout(rerender, BURST_MS + 50);
}

/** Sends `body` (`{text}` or `{reaction}`); false (with the reason shown) when it cannot go. */
async function post(c, body, rerender) {
  const chat = chatOf(c);
  if (body.text !== undefined) {
    if (!body.text.trim()) return false;
    if ([...body.text].length > MAX_CHAT_CHARS) {
      chat.error = CHAT_TOO_LONG;
      rerender();
      return false;
    }
  }
  chat.error = '';
  const roomId = c.session.roomId;
  const msg = c.crypto
    ? { type: 'chat', room_id: roomId, sealed: await c.crypto.seal(body) }
    : { type: 'chat', room_id: roomId, ...body };
  rerender();
  sentAt = Date.now();
  return send(msg);
}

/** The server refused a chat message (too long, too fast): shown in the panel. */
export function refused(c, text, rerender) {
  const chat = chatOf(c);
  chat.error = text;
  chat.open = true;
  rerender();
}

/** The button that opens the chat, and the panel. */
export function buildChat(c, rerender) {
  const chat = chatOf(c);
  const v = {};
  v.unread = h('span', { class: 'badge', 'data-testid': 'chat-unread', hidden: true });
  v.toggle = h('button', {
    class: 'round control', 'data-testid': 'chat-toggle', 'aria-label': 'Chat', title: 'Chat',
    onclick: () => { chat.open = !chat.open; if (chat.open) chat.unread = 0; rerender(); },
  }, icon('chat'), v.unread);
  v.list = h('ol', { class: 'chat-list', 'aria-live': 'polite' });
  v.error = h('p', { class: 'chat-error', 'data-testid': 'chat-error', role: 'alert', hidden: true });
  v.input = h('textarea', { class: 'chat-input', 'data-testid': 'chat-input', rows: 1, placeholder: 'Message everyone', 'aria-label': 'Message' });
  const submit = async () => {
    const text = v.input.value;
    if (await post(c, { text }, rerender)) v.input.value = '';
  };
  v.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      submit();
    }
  });
  v.send = h('button', { class: 'chip', 'data-testid': 'chat-send', onclick: submit }, 'Send');
  v.reactions = h('div', { class: 'chat-reactions' }, REACTIONS.map((r) =>
    h('button', { class: 'reaction', 'data-testid': 'chat-react', 'data-emoji': r, 'aria-label': `React ${r}`, onclick: () => post(c, { reaction: r }, rerender) }, r)));
  v.panel = h('section', { class: 'chat-panel', 'data-testid': 'chat-panel', role: 'dialog', 'aria-label': 'Chat', hidden: true },
    h('div', { class: 'sheet-head' },
      h('h2', {}, 'Chat'),
      h('button', { class: 'icon-button', 'aria-label': 'Close chat', onclick: () => { chat.open = false; rerender(); } }, icon('close'))),
    v.list, v.reactions, v.error,
    h('div', { class: 'chat-form' }, v.input, v.send));
  v.burst = h('div', { class: 'reaction-burst', 'data-testid': 'reaction-burst', hidden: true });
  return v;
}

/** Brings the chat's button, panel and reaction burst up to date. */
export function renderChat(c, v) {
  const chat = chatOf(c);
  v.unread.hidden = chat.unread === 0;
  v.unread.textContent = String(chat.unread);
  v.toggle.setAttribute('aria-expanded', chat.open ? 'true' : 'false');
  v.toggle.setAttribute('aria-label', chat.unread ? `Chat, ${chat.unread} unread` : 'Chat');
  v.panel.hidden = !chat.open;
  v.error.hidden = !chat.error;
  v.error.textContent = chat.error;
  const burst = chat.burst && chat.burst.until > Date.now() ? chat.burst : null;
  v.burst.hidden = !burst;
  v.burst.textContent = burst ? burst.text : '';
  if (!chat.changed) return;
  chat.changed = false;
  const atEnd = v.list.scrollTop + v.list.clientHeight >= v.list.scrollHeight - 8;
  v.list.replaceChildren(...chat.items.map((item) => {
    const kind = item.reaction ? 'reaction' : 'text';
    const body = item.text ?? item.reaction ?? (item.failed ? CHAT_UNREADABLE : CHAT_WAITING_KEY);
    return h('li', { class: `chat-item ${item.mine ? 'mine' : ''}`, 'data-seq': String(item.seq) },
      h('span', { class: 'chat-from' }, item.mine ? 'You' : item.from.name),
      h('p', {
        class: `chat-text ${kind}`, 'data-testid': 'chat-message', 'data-from': item.from.name, 'data-kind': kind, 'data-sealed': item.sealed ? 'true' : 'false',
      }, body));
  }));
  if (atEnd) v.list.scrollTop = v.list.scrollHeight;
}
