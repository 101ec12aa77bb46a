// Calls that never start: declined, cancelled, busy, and (with a 3 s ring
// timeout) not answered. Each ends with the right call-status on both sides.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPerson, until, cleanup, onlineUser, screenshot } from './harness.mjs';

let server;
let browser;
let ada;
let bo;
let cy;

before(async () => {
  // A short ring timeout for the no-answer case; the other cases answer at once.
  server = await startServer(['--ring-timeout', '3']);
  browser = await launchBrowser();
  ada = await openPerson(browser, server.url, 'Ada');
  bo = await openPerson(browser, server.url, 'Bo');
  cy = await openPerson(browser, server.url, 'Cy', { viewport: { width: 360, height: 740 } });
  await onlineUser(ada.page, 'Bo').waitFor();
  await onlineUser(ada.page, 'Cy').waitFor();
});

after(async () => {
  await cleanup({ browser, server });
});

async function status(page) {
  return page.getByTestId('call-status').textContent();
}

async function backInLobby(page) {
  await page.getByTestId('new-group-call').waitFor();
  await until('the lobby to list people again', async () => (await page.getByTestId('online-user').count()) > 0);
}

async function ring(caller, callee, media = 'video') {
  await until(`${callee.name} to be available`, async () =>
    (await onlineUser(caller.page, callee.name).getAttribute('data-busy')) === 'false');
  await onlineUser(caller.page, callee.name).getByTestId(media === 'video' ? 'call-video' : 'call-audio').click();
  await until(`${caller.name} to see ringing`, async () => (await status(caller.page)) === 'ringing');
  await callee.page.getByTestId('incoming-call').waitFor();
}

test('declined: the caller sees "declined"', async () => {
  await ring(ada, bo);
  await bo.page.getByTestId('decline-call').click();
  await backInLobby(ada.page);
  assert.equal(await status(ada.page), 'declined');
  assert.match(await ada.page.locator('.notice').textContent(), /Bo declined/);
  await bo.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  assert.equal(await status(bo.page), 'declined');
  assert.equal(await bo.page.evaluate(() => window.chorus.ringing()), null, 'the ring stops');
  await screenshot(ada.page, 'status-declined');
});

test('cancelled: the callee stops ringing and both see "ended"', async () => {
  await ring(ada, bo, 'audio');
  assert.match(await bo.page.getByTestId('incoming-call').textContent(), /voice call/i);
  await ada.page.getByTestId('cancel-call').click();
  await backInLobby(ada.page);
  assert.equal(await status(ada.page), 'ended');
  await bo.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  await until('Bo to see the call ended', async () => (await status(bo.page)) === 'ended');
  assert.match(await bo.page.locator('.notice').textContent(), /Missed call from Ada/);
  assert.equal(await bo.page.evaluate(() => window.chorus.ringing()), null, 'the ring stops');
});

test('busy: calling someone who is being rung says "busy"', async () => {
  await ring(ada, bo);
  await until('Bo to be shown busy to Cy', async () => (await onlineUser(cy.page, 'Bo').getAttribute('data-busy')) === 'true');
  await screenshot(cy.page, 'phone-lobby');
  await onlineUser(cy.page, 'Bo').getByTestId('call-audio').click();
  await until('Cy to see busy', async () => (await status(cy.page)) === 'busy');
  await cy.page.getByTestId('new-group-call').waitFor();
  // Ada's call to Bo is untouched.
  assert.equal(await status(ada.page), 'ringing');
  await ada.page.getByTestId('cancel-call').click();
  await bo.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
});

test('no answer: after the ring timeout the caller sees "no answer"', async () => {
  await ring(ada, cy);
  await screenshot(cy.page, 'phone-incoming-call');
  // The server's ring timeout is 3 s here.
  await until('the ring to time out', async () => (await status(ada.page)) === 'no answer', { timeout: 10000 });
  await backInLobby(ada.page);
  await cy.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  assert.equal(await status(cy.page), 'no answer');
  assert.match(await cy.page.locator('.notice').textContent(), /Missed call from Ada/);
  await screenshot(ada.page, 'status-no-answer');
});

test('server errors are shown in plain words', async () => {
  // A link to a call that does not exist.
  await ada.page.goto(`${server.url}/call/NoSuchRoom`);
  const banner = ada.page.getByTestId('error-banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /That call has ended, or the link is wrong/);
  await ada.page.getByTestId('new-group-call').waitFor();
  assert.equal(new URL(ada.page.url()).pathname, '/');
});
