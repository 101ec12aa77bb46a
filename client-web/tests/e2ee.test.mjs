// End-to-end encrypted calls in Chromium: media decodes on every side with
// the lock shown, the security codes match, a page without the keys gets
// packets it cannot decode, and a changed identity key is pointed out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  serverAndBrowser, openPerson, until, stats, expectMedia, screenshot, onlineUser, remoteTile, OUTPUT_DIR,
} from './harness.mjs';

const env = serverAndBrowser();

const workerStats = (page) => page.evaluate(() => window.chorus.e2ee.stats());

/** The user id of the person on `page`, once signed in. */
const myId = (page) => until('the sign-in', () => page.evaluate(() => window.chorus.state.me && window.chorus.state.me.id));

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

/**
 * Each kept keyframe decoded (WebCodecs' VP8 decoder) as the media node
 * forwarded it and once decrypted: whether each gives a picture, how far
 * apart the two are (mean absolute difference of their RGB values, 0 to
 * 255; 255 when the forwarded frame gives none), and whether the clear
 * header is the same in both.
 */
function decodeTapped(page) {
  return page.evaluate(async () => {
    const picture = (data) => new Promise((resolve) => {
      let pixels = null;
      const d = new VideoDecoder({
        output: (f) => {
          const c = new OffscreenCanvas(f.displayWidth, f.displayHeight);
          const ctx = c.getContext('2d');
          ctx.drawImage(f, 0, 0);
          pixels = ctx.getImageData(0, 0, c.width, c.height).data;
          f.close();
        },
        error: () => {},
      });
      d.configure({ codec: 'vp8' });
      d.decode(new EncodedVideoChunk({ type: 'key', timestamp: 0, data }));
      d.flush().then(() => resolve(pixels), () => resolve(pixels));
    });
    const distance = (x, y) => {
      if (!x || !y || x.length !== y.length) return null;
      let sum = 0;
      for (let i = 0; i < x.length; i += 4) {
        sum += Math.abs(x[i] - y[i]) + Math.abs(x[i + 1] - y[i + 1]) + Math.abs(x[i + 2] - y[i + 2]);
      }
      return sum / ((x.length / 4) * 3);
    };
    const out = [];
    for (const f of await window.chorus.e2ee.tapped()) {
      const head = (b) => [...new Uint8Array(b, 0, 10)].join(',');
      const [forwarded, decrypted] = [await picture(f.forwarded), await picture(f.decrypted)];
      out.push({
        forwarded: !!forwarded,
        decrypted: !!decrypted,
        distance: forwarded ? distance(forwarded, decrypted) : 255,
        sameHeader: head(f.forwarded) === head(f.decrypted),
        startCode: [...new Uint8Array(f.forwarded, 3, 3)].map((x) => x.toString(16)).join(''),
      });
    }
    return out;
  });
}

test('a 1:1 call is end-to-end encrypted: both sides decode, show the lock and the same security code', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  const [a, b] = [ada.page, bo.page];
  await b.evaluate(() => window.chorus.e2ee.tapKeyframes(2));
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
  // What the media node forwarded decodes (VP8 decoders conceal errors) to
  // nothing like the picture; past the clear header it needs (a keyframe's
  // start code and size stay readable) it is ciphertext. Decrypted, it is
  // the picture.
  const tapped = await decodeTapped(b);
  assert.ok(tapped.length >= 1, 'a keyframe was kept');
  for (const t of tapped) {
    console.log(t.forwarded
      ? `# a forwarded keyframe decodes to a picture ${t.distance.toFixed(1)} away from the decrypted one (mean RGB difference)`
      : '# a forwarded keyframe does not decode; decrypted, it does');
    assert.ok(t.decrypted, JSON.stringify(t));
    assert.ok(t.distance > 40, `the forwarded frame shows the picture: ${JSON.stringify(t)}`);
    assert.ok(t.sameHeader && t.startCode === '9d12a', JSON.stringify(t));
  }
  const ids = await Promise.all([a, b].map(myId));
  const codes = [await shownCode(a, ids[1]), await shownCode(b, ids[0])];
  assert.equal(codes[0], codes[1]);
  await screenshot(a, 'call-e2ee-codes');
  // The QR code next to it holds the same digits (read by zbarimg from a screenshot).
  const file = path.join(OUTPUT_DIR, 'security-qr.png');
  await b.locator(`[data-testid="security-qr"][data-participant-id="${ids[0]}"]`).screenshot({ path: file });
  const scanned = execFileSync('zbarimg', ['-q', '--raw', file], { encoding: 'utf8' }).trim();
  assert.equal(scanned, codes[0]);
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

test('a group of 3 is encrypted end to end and stays so when one leaves', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada3');
  const a = ada.page;
  await a.getByTestId('new-group-call').click();
  const link = a.getByTestId('room-link');
  await link.waitFor();
  const url = (await link.textContent()).trim();
  const bo = await openPerson(env.browser, url, 'Bo3', { waitFor: 'call' });
  const cy = await openPerson(env.browser, url, 'Cy3', { waitFor: 'call' });
  const people = [[a, ['Bo3', 'Cy3']], [bo.page, ['Ada3', 'Cy3']], [cy.page, ['Ada3', 'Bo3']]];
  for (const [page, others] of people) await expectMedia(page, others);
  for (const [page] of people) await page.getByTestId('e2ee-lock').waitFor({ state: 'visible' });
  // One code per member, each the same on the member's own screen.
  const ids = {};
  for (const [page, name] of [[a, 'Ada3'], [bo.page, 'Bo3'], [cy.page, 'Cy3']]) {
    ids[name] = await myId(page);
  }
  assert.equal(await shownCode(a, ids.Bo3), await shownCode(bo.page, ids.Ada3));
  assert.equal(await shownCode(a, ids.Cy3), await shownCode(cy.page, ids.Ada3));
  assert.notEqual(await shownCode(a, ids.Bo3), await shownCode(a, ids.Cy3));
  await screenshot(a, 'group-e2ee-codes');
  // Cy leaves: Ada and Bo switch to new keys and go on seeing each other.
  await cy.page.getByTestId('hangup').click();
  await until('Cy to leave Ada\'s grid', async () => (await remoteTile(a, 'Cy3').count()) === 0);
  const before = await Promise.all([a, bo.page].map(workerStats));
  await new Promise((r) => setTimeout(r, 2500)); // past the key switch (1 s after the new key went out)
  await expectMedia(a, ['Bo3']);
  await expectMedia(bo.page, ['Ada3']);
  const after = await Promise.all([a, bo.page].map(workerStats));
  for (const i of [0, 1]) {
    assert.ok(after[i].decrypted > before[i].decrypted + 50, JSON.stringify([before[i], after[i]]));
    assert.equal(after[i].failed, before[i].failed, 'no frame failed across the key switch');
  }
  for (const p of [ada, bo, cy]) await p.context.close();
});

test('the next call shows "security code changed" when a contact\'s identity key changed', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ava');
  const bo = await openPerson(env.browser, env.server.url, 'Ben');
  const [a, b] = [ada.page, bo.page];
  const benId = await myId(b);
  await call(a, b, 'Ben');
  await a.getByTestId('e2ee-lock').waitFor({ state: 'visible' });
  const code = await shownCode(a, benId);
  assert.equal(await a.getByTestId('security-code-changed').isVisible(), false, 'a first call: nothing to compare with');
  await a.getByTestId('hangup').click();
  await a.getByTestId('new-group-call').waitFor();
  // Ben's device gets a new identity key (as a new phone would) and signs in again.
  await b.evaluate(() => window.chorus.e2ee.replaceIdentity());
  await b.reload();
  await b.getByTestId('new-group-call').waitFor();
  await until('Ben to be online again', () => onlineUser(a, 'Ben').isVisible());
  await call(a, b, 'Ben');
  await a.getByTestId('security-code-changed').waitFor({ state: 'visible' });
  assert.match(await a.getByTestId('security-code-changed').textContent(), /Ben's security code changed/);
  assert.notEqual(await shownCode(a, benId), code);
  await screenshot(a, 'call-e2ee-code-changed');
  await ada.context.close();
  await bo.context.close();
});

test('with encryption turned off the call says plainly that it is not end-to-end encrypted', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Abe');
  const bo = await openPerson(env.browser, env.server.url, 'Bea');
  const [a, b] = [ada.page, bo.page];
  await a.getByTestId('e2ee-option').uncheck();
  await call(a, b, 'Bea');
  await expectMedia(a, ['Bea']);
  await expectMedia(b, ['Abe']);
  for (const page of [a, b]) {
    await page.getByTestId('e2ee-off').waitFor({ state: 'visible' });
    assert.equal(await page.getByTestId('e2ee-lock').isVisible(), false);
    assert.equal(await workerStats(page), null, 'no frame worker in a plain call');
  }
  await screenshot(b, 'call-not-e2ee');
  await ada.context.close();
  await bo.context.close();
});
