// A participant who stays in a group call while others come and go: the
// media node's offers to that page stay as large as what it receives at
// once (ended tracks' m-lines are reused), and the newest person's media
// still plays. The Rust test sfu/tests/sdp_growth.rs does 40 in virtual
// time; here Chromium does ten.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPerson, until, expectMedia, screenshot, serverAndBrowser } from './harness.mjs';

const env = serverAndBrowser();
const COMERS = 10;

/** The size of the last description the page received from the server. */
function remoteSdpBytes(page) {
  return page.evaluate(() => window.chorus.pc.remoteDescription.sdp.length);
}

/** m-lines in it. */
function mLines(page) {
  return page.evaluate(() => (window.chorus.pc.remoteDescription.sdp.match(/^m=/gm) || []).length);
}

test(`${COMERS} people come and go while one stays: bounded offers, the newest plays`, async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const link = (await ada.page.getByTestId('room-link').textContent()).trim();

  // The reference: two others in the call at once.
  let previous = await openPerson(env.browser, link, 'P0', { waitFor: 'call' });
  let current = await openPerson(env.browser, link, 'P1', { waitFor: 'call' });
  await expectMedia(ada.page, ['P0', 'P1']);
  const withTwo = await remoteSdpBytes(ada.page);
  const linesWithTwo = await mLines(ada.page);

  const sizes = [];
  for (let n = 2; n < COMERS; n++) {
    // The one before the current leaves, the next comes: never more than
    // two others at once.
    await previous.context.close();
    await until(`P${n - 2} to leave Ada's call`, async () =>
      (await ada.page.locator(`[data-testid="remote-tile"][data-name="P${n - 2}"]`).count()) === 0);
    previous = current;
    current = await openPerson(env.browser, link, `P${n}`, { waitFor: 'call' });
    await expectMedia(ada.page, [`P${n}`]);
    sizes.push(await remoteSdpBytes(ada.page));
  }
  const last = await remoteSdpBytes(ada.page);
  console.log('sdp bytes with two others', withTwo, 'm-lines', linesWithTwo, 'then', JSON.stringify(sizes));
  await screenshot(ada.page, 'churn-stayer');
  assert.ok(await mLines(ada.page) <= linesWithTwo, `m-lines grew: ${await mLines(ada.page)} > ${linesWithTwo}`);
  // Margin for the values that differ between descriptions (ids, ports).
  assert.ok(last <= withTwo * 1.05, `the offer grew from ${withTwo} to ${last} bytes`);
  // The newest person's video and audio play on Ada's page.
  await expectMedia(ada.page, [`P${COMERS - 1}`]);
});
