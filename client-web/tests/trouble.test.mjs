// When things go wrong: a blocked camera (audio-only), a blocked microphone
// (listen-only), and a lost signaling connection (banner with the call kept,
// then a fresh token and a fresh session after the server restarts).

import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPerson, until, stats, expectMedia, screenshot, cleanup, onlineUser, remoteTile,
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

/** Makes getUserMedia refuse the camera (and the microphone too, with `all`). */
function denyDevices(all) {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (all || (constraints && constraints.video)) {
      throw new DOMException('Permission denied', 'NotAllowedError');
    }
    return original(constraints);
  };
}

test('camera blocked: the call goes on with audio only', async () => {
  const ada = await openPerson(browser, server.url, 'Ada', { init: denyDevices });
  const bo = await openPerson(browser, server.url, 'Bo');
  await onlineUser(bo.page, 'Ada').getByTestId('call-video').click();
  await ada.page.getByTestId('accept-call').click();

  const banner = ada.page.getByTestId('error-banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /blocked the camera.*audio only/);
  // Ada hears and sees Bo; Bo hears Ada and sees her avatar.
  await expectMedia(ada.page, ['Bo']);
  await expectMedia(bo.page, ['Ada'], { video: false });
  await until('Bo to see Ada without video', async () => (await remoteTile(bo.page, 'Ada').getAttribute('data-video')) === 'off');
  assert.equal(await ada.page.evaluate(() => window.chorus.state.call.mode), 'audio-only');
  await screenshot(ada.page, 'camera-blocked');

  // Trying the camera again explains why it cannot start.
  await ada.page.getByTestId('toggle-camera').click();
  await until('the camera error', async () => /Cannot turn the camera on/.test(await banner.textContent()));

  await ada.page.getByTestId('hangup').click();
  await bo.page.getByTestId('new-group-call').waitFor();
  await Promise.all([ada.context.close(), bo.context.close()]);
});

test('microphone blocked: listen-only with a recvonly audio transceiver', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const url = (await ada.page.getByTestId('room-link').textContent()).trim();
  const cy = await openPerson(browser, url, 'Cy', { init: () => {
    navigator.mediaDevices.getUserMedia = async () => {
      throw new DOMException('Permission denied', 'NotAllowedError');
    };
  }, waitFor: 'call' });

  const banner = cy.page.getByTestId('error-banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /listen-only/);
  await expectMedia(cy.page, ['Ada']);
  const transceivers = await cy.page.evaluate(() =>
    window.chorus.pc.getTransceivers().map((t) => ({ mid: t.mid, kind: t.receiver.track.kind, direction: t.direction })));
  assert.deepEqual(transceivers[0], { mid: transceivers[0].mid, kind: 'audio', direction: 'recvonly' });
  assert.ok(!transceivers.some((t) => t.direction === 'sendonly' || t.direction === 'sendrecv'), 'Cy publishes nothing');
  assert.ok(await cy.page.getByTestId('toggle-mic').isDisabled());
  assert.ok(await cy.page.getByTestId('toggle-camera').isDisabled());
  // Ada sees Cy muted, as an avatar.
  const cyTile = remoteTile(ada.page, 'Cy');
  await cyTile.getByTestId('remote-muted').waitFor({ state: 'visible' });
  assert.equal(await cyTile.getAttribute('data-video'), 'off');
  const s = await stats(ada.page);
  assert.equal(s.Cy.audio, null, 'nothing is forwarded from a listener');
  await screenshot(cy.page, 'listen-only');

  await cy.page.getByTestId('hangup').click();
  await ada.page.getByTestId('hangup').click();
  await Promise.all([ada.context.close(), cy.context.close()]);
});

test('server lost: banner, call kept, then a fresh session with a new token ends it', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  const bo = await openPerson(browser, server.url, 'Bo');
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(ada.page, 'Bo').waitFor();
  const oldToken = await ada.page.evaluate(() => JSON.parse(localStorage.getItem('chorus.identity')).token);

  // The server goes away (its dev tokens die with it) and comes back on the same port.
  const port = new URL(server.url).port;
  await server.stop({ crash: true });
  for (const p of [ada.page, bo.page]) {
    const banner = p.getByTestId('error-banner');
    await banner.waitFor({ state: 'visible' });
    assert.match(await banner.textContent(), /Connection to the server lost\. Reconnecting/);
    // The call stays on screen while the session might still be resumed.
    assert.equal(await p.evaluate(() => window.chorus.state.screen), 'call');
  }
  await screenshot(ada.page, 'connection-lost');

  // The new server does not know the old session: both sign in afresh
  // (resumed: false), and the call is over.
  server = await startServer([], { listen: `127.0.0.1:${port}` });
  for (const p of [ada.page, bo.page]) {
    await p.getByTestId('new-group-call').waitFor({ timeout: 15000 });
    assert.equal(await p.getByTestId('call-status').textContent(), 'ended');
    assert.match(await p.locator('.notice').textContent(), /Lost the connection to the server, so the call ended/);
  }
  assert.equal(await ada.page.getByTestId('remote-tile').count(), 0);
  await screenshot(ada.page, 'connection-lost-lobby');
  await onlineUser(ada.page, 'Bo').waitFor({ timeout: 15000 });
  await onlineUser(bo.page, 'Ada').waitFor({ timeout: 15000 });
  await ada.page.getByTestId('error-banner').waitFor({ state: 'hidden' });
  const newToken = await ada.page.evaluate(() => JSON.parse(localStorage.getItem('chorus.identity')).token);
  assert.notEqual(newToken, oldToken, 'the refused token was replaced');
  assert.equal(await ada.page.evaluate(() => localStorage.getItem('chorus.name')), 'Ada');

  // And calls work again.
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await expectMedia(bo.page, ['Ada'], { video: false });
  await ada.page.getByTestId('hangup').click();
  await Promise.all([ada.context.close(), bo.context.close()]);
});

test('a reload remembers the name and signs in again', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  await ada.page.reload();
  await ada.page.getByTestId('new-group-call').waitFor();
  assert.equal(await ada.page.getByTestId('name-input').count(), 0);
  await ada.context.close();
});

test('signing in from a second tab signs the first one out; "Use here" takes it back; the lobby is live', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  const bo = await openPerson(browser, server.url, 'Bo');
  await onlineUser(bo.page, 'Ada').waitFor();
  // Same browser profile, same stored token: a second tab.
  const second = await ada.context.newPage();
  await second.goto(server.url);
  await second.getByTestId('new-group-call').waitFor();
  const banner = ada.page.getByTestId('error-banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /open in another tab or window/);
  assert.ok(await ada.page.getByTestId('new-group-call').isDisabled());
  await ada.page.getByRole('button', { name: 'Use here' }).click();
  await ada.page.getByTestId('error-banner').waitFor({ state: 'hidden' });
  await second.getByTestId('error-banner').waitFor({ state: 'visible' });
  await onlineUser(ada.page, 'Bo').waitFor();

  // The lobby is live: a newcomer shows up at once.
  const cy = await openPerson(browser, server.url, 'Cy');
  await onlineUser(ada.page, 'Cy').waitFor();
  await onlineUser(bo.page, 'Cy').waitFor();
  await Promise.all([ada.context.close(), bo.context.close(), cy.context.close()]);
});
