// The group grid holds 9 people: one with video and eight listeners whose
// devices are blocked (listen-only), which keeps nine fake cameras and 72
// audio decoders off a small test machine. Tiles appear as people join and
// go as they leave.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openPerson, until, screenshot, stats } from './harness.mjs';

const env = serverAndBrowser();

function noDevices() {
  navigator.mediaDevices.getUserMedia = async () => {
    throw new DOMException('Permission denied', 'NotAllowedError');
  };
}

const NAMES = ['Bo', 'Cy', 'Dee', 'Eli', 'Fay', 'Gus', 'Hal', 'Ivy'];

test('the grid grows to 9 people and shrinks as they leave', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const url = (await ada.page.getByTestId('room-link').textContent()).trim();
  const people = [];
  const columns = [];
  for (const name of NAMES) {
    people.push(await openPerson(env.browser, url, name, { waitFor: 'call', init: noDevices, viewport: { width: 640, height: 480 } }));
    const n = people.length;
    await until(`Ada to have ${n} tiles`, async () => (await ada.page.getByTestId('remote-tile').count()) === n);
    columns.push(await ada.page.locator('.grid').evaluate((g) => getComputedStyle(g).gridTemplateColumns.split(' ').length));
  }
  console.log(`grid columns on a 1100×720 screen for 1..8 remote tiles: ${columns.join(', ')}`);
  assert.deepEqual(columns, [1, 2, 2, 2, 3, 3, 3, 3]);
  assert.match(await ada.page.locator('.call-title').textContent(), /9 people/);

  // The last one in sees all eight others, and Ada's video.
  const last = people[people.length - 1].page;
  await until('Ivy to see 8 tiles', async () => (await last.getByTestId('remote-tile').count()) === 8);
  await until('Ivy to decode Ada\'s video', async () => {
    const s = await stats(last);
    return s.Ada && s.Ada.video && s.Ada.video.framesDecoded > 0;
  }, { timeout: 20000 });
  // Tiles stay inside the screen: nothing is pushed below the controls.
  const fits = await ada.page.evaluate(() => {
    const controls = document.querySelector('.controls').getBoundingClientRect();
    return [...document.querySelectorAll('[data-testid="remote-tile"]')].every((t) => {
      const r = t.getBoundingClientRect();
      return r.bottom <= controls.top + 1 && r.right <= window.innerWidth && r.height > 60;
    });
  });
  assert.ok(fits, 'all 8 tiles fit above the controls');
  await screenshot(ada.page, 'group-of-9');

  for (let i = people.length - 1; i >= 4; i -= 1) {
    await people[i].page.getByTestId('hangup').click();
    await until(`Ada to drop to ${i} tiles`, async () => (await ada.page.getByTestId('remote-tile').count()) === i);
  }
  assert.deepEqual(
    await ada.page.getByTestId('remote-tile').evaluateAll((ts) => ts.map((t) => t.dataset.name)),
    NAMES.slice(0, 4),
  );
});
