// A voice-only call: audio both ways, avatar tiles instead of video, and the
// camera can still be switched on mid-call without a new client offer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverAndBrowser, openPerson, until, stats, expectMedia, screenshot, onlineUser, remoteTile,
} from './harness.mjs';

const env = serverAndBrowser();

test('voice call carries audio and shows avatar tiles', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo', { viewport: { width: 360, height: 740 } });
  const a = ada.page;
  const b = bo.page;
  await onlineUser(a, 'Bo').getByTestId('call-audio').click();
  const incoming = b.getByTestId('incoming-call');
  await incoming.waitFor();
  assert.match(await incoming.textContent(), /voice call/i);
  assert.equal(await incoming.getAttribute('data-media'), 'audio');
  await b.getByTestId('accept-call').click();

  await expectMedia(a, ['Bo'], { video: false });
  await expectMedia(b, ['Ada'], { video: false });
  for (const [page, other] of [[a, 'Bo'], [b, 'Ada']]) {
    const tile = remoteTile(page, other);
    assert.equal(await tile.getAttribute('data-video'), 'off');
    assert.ok(await tile.getByTestId('remote-avatar').isVisible(), `${other}'s avatar shows`);
    assert.equal(await tile.getByTestId('remote-video').isVisible(), false);
    assert.equal(await page.getByTestId('local-tile').getAttribute('data-video'), 'off');
    assert.equal(await page.getByTestId('toggle-camera').getAttribute('data-state'), 'off');
  }
  // The remote audio is loud enough to light the speaking ring at some point
  // (Chromium's fake microphone beeps).
  await until('Ada to be shown speaking on Bo\'s screen', async () =>
    (await remoteTile(b, 'Ada').getAttribute('data-speaking')) === 'true', { timeout: 10000, interval: 50 });
  const s = await stats(b);
  assert.equal(s.Ada.video ? s.Ada.video.framesDecoded : 0, 0, 'no video in a voice call');
  await screenshot(a, 'call-voice');
  await screenshot(b, 'phone-call-voice');

  // Switching the voice call to video: no renegotiation by the client.
  await a.getByTestId('toggle-camera').click();
  await until('Bo to see Ada\'s video', async () => (await remoteTile(b, 'Ada').getAttribute('data-video')) === 'on');
  await expectMedia(b, ['Ada']);
  assert.equal(await a.evaluate(() => window.chorus.session.offersSent), 1);
  await a.getByTestId('toggle-camera').click();
  await until('Bo to see Ada\'s avatar again', async () => (await remoteTile(b, 'Ada').getAttribute('data-video')) === 'off');

  await b.getByTestId('hangup').click();
  await a.getByTestId('new-group-call').waitFor();
  await b.getByTestId('new-group-call').waitFor();
  assert.equal(await a.getByTestId('call-status').textContent(), 'ended');
});
