// In-call chat in Chromium: in an end-to-end encrypted group call of three
// (one on a phone-sized screen) messages and a reaction reach every member
// in one order, the server only ever carries them sealed, the unread count
// shows on a closed chat and clears when it opens, and an over-long
// message gets the error and stays in the box. In a call without
// encryption the same messages go in the clear.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverAndBrowser, openPerson, until, screenshot, onlineUser, remoteTile, recordSignaling,
} from './harness.mjs';

const env = serverAndBrowser();

/** What a page's chat shows: [sender name, text] in order. */
const shown = (page) => page.getByTestId('chat-message').evaluateAll((els) => els.map((e) => [e.dataset.from, e.textContent]));

async function openChat(page) {
  if (!(await page.getByTestId('chat-panel').isVisible())) await page.getByTestId('chat-toggle').click();
  await page.getByTestId('chat-input').waitFor();
}

async function say(page, text) {
  await openChat(page);
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-send').click();
}

test('an encrypted group call: messages and a reaction reach everyone in order, sealed on the wire; unread counts; over-long ones get the error', async () => {
  const logs = {};
  const person = (name, url, opts = {}) => openPerson(env.browser, url, name, { ...opts, onPage: (p) => { logs[name] = recordSignaling(p); } });
  const ada = await person('Ada', env.server.url);
  await ada.page.getByTestId('new-group-call').click();
  const url = (await ada.page.getByTestId('room-link').textContent()).trim();
  const bo = await person('Bo', url, { waitFor: 'call' });
  const cy = await person('Cy', url, { waitFor: 'call', viewport: { width: 360, height: 740 } });
  const pages = { Ada: ada.page, Bo: bo.page, Cy: cy.page };
  for (const [name, page] of Object.entries(pages)) {
    for (const other of Object.keys(pages).filter((n) => n !== name)) await remoteTile(page, other).waitFor();
    // Everyone's keys have come: the lock shows.
    await page.getByTestId('e2ee-lock').waitFor({ state: 'visible', timeout: 20000 });
  }

  await say(ada.page, 'Hello everyone');
  await say(cy.page, 'Hi Ada — ünïcode ✓');
  await openChat(bo.page);
  await bo.page.locator('[data-testid="chat-react"][data-emoji="👍"]').click();
  // Bo closes his chat; Ada writes again: Bo's button counts it.
  await bo.page.getByTestId('chat-toggle').click();
  await say(ada.page, 'Can you all hear me?');
  const want = [['Ada', 'Hello everyone'], ['Cy', 'Hi Ada — ünïcode ✓'], ['Bo', '👍'], ['Ada', 'Can you all hear me?']];
  for (const [name, page] of Object.entries(pages)) {
    await until(`${name} to show the four messages`, async () => (await shown(page)).length === 4);
    assert.deepEqual(await shown(page), want, name);
  }
  await until('Bo\'s unread count', async () => (await bo.page.getByTestId('chat-unread').textContent()) === '1');
  assert.equal(await bo.page.getByTestId('chat-unread').isVisible(), true);
  await screenshot(bo.page, 'chat-unread');
  await bo.page.getByTestId('chat-toggle').click();
  await bo.page.getByTestId('chat-unread').waitFor({ state: 'hidden' });

  // The server carried only sealed messages: no text, no reaction, and none
  // of the words anywhere in the frames.
  for (const [name, log] of Object.entries(logs)) {
    const chats = log.received.filter((m) => m.type === 'chat');
    assert.equal(chats.length, 4, name);
    for (const m of chats) assert.ok(m.sealed && m.text === undefined && m.reaction === undefined, JSON.stringify(m));
    const wire = JSON.stringify([...log.sent, ...log.received]);
    for (const words of ['Hello everyone', 'ünïcode', 'hear me', '👍']) assert.ok(!wire.includes(words), `${name}: "${words}" in the clear`);
    assert.deepEqual(chats.map((m) => m.seq), [1, 2, 3, 4]);
  }

  // Too long: the error, nothing sent, the text kept for shortening.
  const long = 'x'.repeat(1001);
  await say(ada.page, long);
  await ada.page.getByTestId('chat-error').waitFor({ state: 'visible' });
  assert.match(await ada.page.getByTestId('chat-error').textContent(), /at most 1000 characters/);
  assert.equal(await ada.page.getByTestId('chat-input').inputValue(), long);
  assert.equal(logs.Ada.sent.filter((m) => m.type === 'chat').length, 2);
  await screenshot(ada.page, 'chat-desktop');
  await openChat(cy.page);
  await screenshot(cy.page, 'chat-phone');
  await ada.page.getByTestId('chat-input').fill('Short again');
  await ada.page.getByTestId('chat-send').click();
  await ada.page.getByTestId('chat-error').waitFor({ state: 'hidden' });
  await until('Cy to read it', async () => (await shown(cy.page)).at(-1)[1] === 'Short again');
  await Promise.all([ada, bo, cy].map((p) => p.context.close()));
});

test('a call without encryption: messages go in the clear and arrive in order', async () => {
  const logs = {};
  const opts = (name) => ({
    init: () => localStorage.setItem('chorus.e2ee', 'off'),
    onPage: (p) => { logs[name] = recordSignaling(p); },
  });
  const ada = await openPerson(env.browser, env.server.url, 'Ada', opts('Ada'));
  const bo = await openPerson(env.browser, env.server.url, 'Bo', opts('Bo'));
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(ada.page, 'Bo').waitFor();
  await remoteTile(bo.page, 'Ada').waitFor();
  assert.equal(await ada.page.getByTestId('e2ee-off').isVisible(), true);
  await say(ada.page, 'plain one');
  await say(bo.page, 'plain two');
  for (const page of [ada.page, bo.page]) {
    await until('both messages', async () => (await shown(page)).length === 2);
    assert.deepEqual(await shown(page), [['Ada', 'plain one'], ['Bo', 'plain two']]);
  }
  assert.deepEqual(logs.Bo.received.filter((m) => m.type === 'chat').map((m) => m.text), ['plain one', 'plain two']);
  await Promise.all([ada, bo].map((p) => p.context.close()));
});
