// Group calls: three people through the room link (one on a phone-sized
// screen), then a 1:1 call that "add person" turns into a group call.

import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPerson, until, expectMedia, screenshot, cleanup, onlineUser, remoteTile,
} from './harness.mjs';

let server;
let browser;

// A fresh server for each test: closed tabs stay "online" on a server for
// its reconnect grace period, and would show up twice in the next test.
before(async () => {
  browser = await launchBrowser();
});

beforeEach(async () => {
  server = await startServer();
});

afterEach(async () => {
  if (server) await server.stop();
});

after(async () => {
  await cleanup({ browser, server });
});

async function tileNames(page) {
  return page.getByTestId('remote-tile').evaluateAll((tiles) => tiles.map((t) => t.dataset.name).sort());
}

test('group call of 3 via the room link; one leaves and the grids shrink', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const link = ada.page.getByTestId('room-link');
  await link.waitFor();
  const url = (await link.textContent()).trim();
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/call\/[A-Za-z0-9]+$/);
  assert.equal(await link.getAttribute('href'), url);
  assert.equal(ada.page.url(), url, 'the address bar shows the shareable link');
  // Alone in the room, Ada sees her own preview.
  await until('Ada\'s preview', () => ada.page.getByTestId('local-video').evaluate((v) => v.videoWidth > 0));
  await screenshot(ada.page, 'group-alone');

  // Bo opens the link on a desktop, Cy on a phone-sized screen: both are
  // asked for a name first, then join.
  const bo = await openPerson(browser, url, 'Bo', { waitFor: 'call' });
  // Cy's first look at the link on a phone: the name form, then the call.
  const cyContext = await browser.newContext({ viewport: { width: 360, height: 740 } });
  const cyPage = await cyContext.newPage();
  await cyPage.goto(url);
  await cyPage.getByTestId('name-input').waitFor();
  assert.match(await cyPage.getByTestId('name-submit').textContent(), /Join call/);
  await screenshot(cyPage, 'phone-join-by-link');
  await cyPage.getByTestId('name-input').fill('Cy');
  await cyPage.getByTestId('name-submit').click();
  await cyPage.getByTestId('hangup').waitFor();
  const cy = { name: 'Cy', context: cyContext, page: cyPage };
  for (const [p, others] of [[ada, ['Bo', 'Cy']], [bo, ['Ada', 'Cy']], [cy, ['Ada', 'Bo']]]) {
    await until(`${p.name} to see ${others.join(' and ')}`, async () =>
      JSON.stringify(await tileNames(p.page)) === JSON.stringify(others));
  }
  await Promise.all([
    expectMedia(ada.page, ['Bo', 'Cy']),
    expectMedia(bo.page, ['Ada', 'Cy']),
    expectMedia(cy.page, ['Ada', 'Bo']),
  ]);
  assert.equal(await ada.page.getByTestId('remote-tile').count(), 2);
  assert.match(await ada.page.locator('.call-title').textContent(), /3 people/);
  await screenshot(ada.page, 'group-of-3');
  await screenshot(cy.page, 'phone-group-of-3');

  // Cy mutes: the others see it on Cy's tile.
  await cy.page.getByTestId('toggle-mic').click();
  await remoteTile(ada.page, 'Cy').getByTestId('remote-muted').waitFor({ state: 'visible' });
  await remoteTile(bo.page, 'Cy').getByTestId('remote-muted').waitFor({ state: 'visible' });

  // Bo leaves: Ada's and Cy's grids drop to one tile, Bo is back in the lobby.
  await bo.page.getByTestId('hangup').click();
  await bo.page.getByTestId('new-group-call').waitFor();
  assert.equal(new URL(bo.page.url()).pathname, '/');
  for (const [p, other] of [[ada, 'Cy'], [cy, 'Ada']]) {
    await until(`${p.name}'s grid to drop to ${other} alone`, async () =>
      JSON.stringify(await tileNames(p.page)) === JSON.stringify([other]));
  }
  await expectMedia(ada.page, ['Cy'], { audio: false });
  await screenshot(cy.page, 'phone-group-after-leave');

  await ada.page.getByTestId('hangup').click();
  await cy.page.getByTestId('hangup').click();
  await ada.page.getByTestId('new-group-call').waitFor();
  await cy.page.getByTestId('new-group-call').waitFor();
  await Promise.all([ada.context.close(), bo.context.close(), cy.context.close()]);
});

test('"add person" turns a 1:1 call into a group call', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  const bo = await openPerson(browser, server.url, 'Bo');
  const cy = await openPerson(browser, server.url, 'Cy');
  await onlineUser(ada.page, 'Bo').getByTestId('call-video').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(ada.page, 'Bo').waitFor();
  assert.equal(await ada.page.getByTestId('room-link').isVisible(), false, 'a 1:1 call has no link');

  await ada.page.getByTestId('add-person').click();
  await ada.page.locator('[data-testid="invite-user"][data-name="Cy"] button').click();
  await until('Ada to see Cy ringing', async () => /Ringing Cy/.test(await ada.page.locator('.invites').textContent()));
  const incoming = cy.page.getByTestId('incoming-call');
  await incoming.waitFor();
  assert.match(await incoming.textContent(), /Ada/);
  assert.match(await incoming.textContent(), /with Bo/);
  await cy.page.getByTestId('accept-call').click();

  for (const [p, others] of [[ada, ['Bo', 'Cy']], [bo, ['Ada', 'Cy']], [cy, ['Ada', 'Bo']]]) {
    await until(`${p.name} to see ${others.join(' and ')}`, async () =>
      JSON.stringify(await tileNames(p.page)) === JSON.stringify(others));
  }
  await ada.page.getByTestId('room-link').waitFor({ state: 'visible' });
  await bo.page.getByTestId('room-link').waitFor({ state: 'visible' });
  await Promise.all([
    expectMedia(ada.page, ['Bo', 'Cy']),
    expectMedia(bo.page, ['Ada', 'Cy']),
    expectMedia(cy.page, ['Ada', 'Bo']),
  ]);
  assert.equal(await ada.page.locator('.invites').isVisible(), false);

  // Now a group call: Ada leaving does not end it for Bo and Cy.
  await ada.page.getByTestId('hangup').click();
  await until('Bo to see Cy alone', async () => JSON.stringify(await tileNames(bo.page)) === '["Cy"]');
  await until('Cy to see Bo alone', async () => JSON.stringify(await tileNames(cy.page)) === '["Bo"]');
  await Promise.all([ada.context.close(), bo.context.close(), cy.context.close()]);
});
