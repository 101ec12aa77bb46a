// Active speaker: the media node names who speaks from the audio levels the
// browsers send (RFC 6464); everyone's client highlights that tile and
// makes it larger. The microphones play a steady tone from a file, so who
// is loud is decided by who is muted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  OUTPUT_DIR, startServer, launchBrowser, openPerson, until, expectMedia, screenshot, cleanup, remoteTile,
} from './harness.mjs';

let server;
let browser;

/** A 16-bit mono WAV of a steady 440 Hz tone at -10 dBFS. */
function toneWav(file, seconds = 5, rate = 48000) {
  const n = seconds * rate;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) {
    buf.writeInt16LE(Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  }
  writeFileSync(file, buf);
}

before(async () => {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  const wav = path.join(OUTPUT_DIR, 'tone-440.wav');
  toneWav(wav);
  server = await startServer();
  browser = await launchBrowser([`--use-file-for-fake-audio-capture=${wav}`]);
});

after(async () => {
  await cleanup({ browser, server });
});

const active = (page, name) => remoteTile(page, name).getAttribute('data-active');
const width = (page, name) => remoteTile(page, name).evaluate((t) => t.getBoundingClientRect().width);

test('the one who talks is highlighted and enlarged on everyone\'s screen', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const link = ada.page.getByTestId('room-link');
  await link.waitFor();
  const url = (await link.textContent()).trim();
  const bo = await openPerson(browser, url, 'Bo', { waitFor: 'call' });
  const cy = await openPerson(browser, url, 'Cy', { waitFor: 'call' });
  const [a, b, c] = [ada.page, bo.page, cy.page];
  // Bo and Cy mute: only Ada's tone is loud.
  await b.getByTestId('toggle-mic').click();
  await c.getByTestId('toggle-mic').click();
  await expectMedia(b, ['Ada', 'Cy']);
  await expectMedia(c, ['Ada', 'Bo']);

  for (const [page, who] of [[b, 'Bo'], [c, 'Cy']]) {
    await until(`Ada to be the active speaker on ${who}'s screen`, async () => (await active(page, 'Ada')) === 'true',
      { timeout: 15000, interval: 100 });
  }
  assert.equal(await active(b, 'Cy'), 'false');
  const [big, small] = [await width(b, 'Ada'), await width(b, 'Cy')];
  assert.ok(big > 1.5 * small, `the speaker's tile is larger (${big} vs ${small} px)`);
  assert.equal(await a.getByTestId('local-tile').getAttribute('data-active'), 'true', 'Ada sees that she is the speaker');
  await screenshot(b, 'active-speaker-ada');

  // Turn-taking: Ada mutes, Bo speaks.
  await a.getByTestId('toggle-mic').click();
  await b.getByTestId('toggle-mic').click();
  for (const [page, who] of [[a, 'Ada'], [c, 'Cy']]) {
    await until(`Bo to be the active speaker on ${who}'s screen`, async () => (await active(page, 'Bo')) === 'true',
      { timeout: 15000, interval: 100 });
  }
  assert.equal(await active(c, 'Ada'), 'false', 'only one speaker at a time');
  await screenshot(c, 'active-speaker-bo');
});
