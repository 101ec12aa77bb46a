// The call log in Chromium: a call and its length are listed on both
// sides; a call to someone who closed their page ends "not online" and
// waits in their log, which shows it with a badge when they come back and
// calls back with one click; nobody else ever sees it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverAndBrowser, openPerson, until, screenshot, onlineUser, remoteTile,
} from './harness.mjs';

const env = serverAndBrowser();

/** A page's call log: [kind, name, what it says] per entry, newest first. */
const entries = (page) => page.getByTestId('call-log-entry').evaluateAll((els) => els.map((e) => [e.dataset.kind, e.dataset.name, e.querySelector('.sub').textContent]));

const entry = (page, kind, name) => page.locator(`[data-testid="call-log-entry"][data-kind="${kind}"][data-name="${name}"]`);

test('calls are logged on both sides; a call missed while offline shows up with a badge and calls back in one click', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  const a = ada.page;
  // A call of a couple of seconds.
  await onlineUser(a, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(a, 'Bo').waitFor();
  await until('two seconds of call', async () => (await a.getByTestId('call-timer').textContent()) >= '0:02');
  await a.getByTestId('hangup').click();
  await entry(a, 'outgoing', 'Bo').waitFor();
  await entry(bo.page, 'incoming', 'Ada').waitFor();
  const [[, , said]] = await entries(a);
  assert.match(said, /^Outgoing voice call · 0:0[2-9] · \d\d:\d\d/);

  // Bo closes his page: he is offline. Ada calls him back from her log.
  await bo.page.close({ runBeforeUnload: true });
  await onlineUser(a, 'Bo').waitFor({ state: 'detached' });
  await entry(a, 'outgoing', 'Bo').getByTestId('call-back').click();
  await until('Ada to be told Bo is not online', async () => /not online/.test(await a.locator('.notice').textContent()));
  await until('Ada\'s log to list the unanswered call', async () => (await entries(a))[0][2].startsWith('Outgoing voice call · not online'));

  // Cy, someone else, sees none of it.
  const cy = await openPerson(env.browser, env.server.url, 'Cy');
  await onlineUser(cy.page, 'Ada').waitFor();
  assert.equal(await cy.page.getByTestId('call-log').isVisible(), false);
  assert.deepEqual(await entries(cy.page), []);

  // Bo opens the page again (the same browser: the same user): the missed
  // call is there, marked, with a badge.
  const b = await bo.context.newPage();
  await b.goto(env.server.url);
  await b.getByTestId('new-group-call').waitFor();
  const missed = entry(b, 'missed', 'Ada');
  await missed.waitFor();
  assert.equal(await missed.getAttribute('data-new'), 'true');
  assert.equal(await b.getByTestId('call-log-unread').textContent(), '1 missed');
  assert.deepEqual((await entries(b)).map(([k, n]) => [k, n]), [['missed', 'Ada'], ['incoming', 'Ada']]);
  await screenshot(b, 'call-log');

  // One click calls Ada back; she answers.
  await missed.getByTestId('call-back').click();
  await a.getByTestId('incoming-call').waitFor();
  await b.getByTestId('call-log-unread').waitFor({ state: 'hidden' });
  await a.getByTestId('accept-call').click();
  await remoteTile(b, 'Ada').waitFor();
  await b.getByTestId('hangup').click();
  await entry(a, 'incoming', 'Bo').waitFor();
  await Promise.all([ada, bo, cy].map((p) => p.context.close()));
});
