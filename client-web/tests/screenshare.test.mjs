// Screen sharing in Chromium, in a group call of three (Cy on a phone-sized
// screen): Ada shares a screen and the others decode it larger than the
// cameras, shown large with the cameras in a strip (on the phone it fills
// the stage); a second sharer is told who shares; stopping from the page
// and from the browser's own control both bring the usual layout back.
// A 1:1 call that went browser to browser comes back through the media
// node for the screen. Chromium captures its (headless) screen:
// `--auto-select-desktop-capture-source`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, cleanup, openPerson, until, screenshot, remoteTile, expectMedia, onlineUser,
} from './harness.mjs';

const env = { server: null, browser: null };
before(async () => {
  env.server = await startServer();
  env.browser = await launchBrowser(['--auto-select-desktop-capture-source=Entire screen']);
});
after(() => cleanup(env));

const screenTile = (page, name) => page.locator(`[data-testid="screen-tile"][data-name="${name}"]`);
const layout = (page) => page.locator('section.call').getAttribute('data-screen');

/** The decoded size of a shared screen, or 0 while nothing plays. */
const screenWidth = (page, name) => screenTile(page, name).locator('video').evaluate((v) => v.videoWidth).catch(() => 0);

/** The decoded widths of the cameras on `page`. */
const cameraWidths = (page) => page.getByTestId('remote-video').evaluateAll((vs) => vs.map((v) => v.videoWidth));

async function decodes(page, name) {
  await screenTile(page, name).waitFor({ state: 'visible', timeout: 20000 });
  // Frames rising: it plays, not one frame left over.
  const first = await until(`${name}'s screen to decode`, () => screenTile(page, name).locator('video').evaluate((v) => {
    const q = v.getVideoPlaybackQuality();
    return v.videoWidth > 0 ? q.totalVideoFrames || 1 : 0;
  }), { timeout: 20000 });
  await until(`${name}'s screen to keep playing`, () => screenTile(page, name).locator('video').evaluate(
    (v, n) => v.getVideoPlaybackQuality().totalVideoFrames > n, first), { timeout: 20000 });
}

test('a shared screen: larger than the cameras for everyone, one sharer at a time, stopped from the page or the browser', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const url = (await ada.page.getByTestId('room-link').textContent()).trim();
  const bo = await openPerson(env.browser, url, 'Bo', { waitFor: 'call' });
  const cy = await openPerson(env.browser, url, 'Cy', { waitFor: 'call', viewport: { width: 360, height: 740 } });
  await expectMedia(bo.page, ['Ada', 'Cy']);
  await expectMedia(cy.page, ['Ada', 'Bo']);
  await expectMedia(ada.page, ['Bo', 'Cy']);
  assert.equal(await layout(bo.page), 'none');

  // Ada shares: the others see it large, and decode it larger than any camera.
  await ada.page.getByTestId('share-screen').click();
  await until('Ada\'s page to share', async () => (await layout(ada.page)) === 'self');
  assert.equal(await ada.page.getByTestId('share-screen').getAttribute('aria-pressed'), 'true');
  await decodes(bo.page, 'Ada');
  await decodes(cy.page, 'Ada');
  for (const [who, page] of [['Bo', bo.page], ['Cy', cy.page]]) {
    assert.equal(await layout(page), 'remote', who);
    const screen = await until(`${who}: the screen at its size`, async () => {
      const w = await screenWidth(page, 'Ada');
      return w >= 640 ? w : 0;
    }, { timeout: 20000 });
    const cams = await cameraWidths(page);
    console.log(`${who} decodes Ada's screen ${screen} px wide; cameras ${cams.join(', ')} px`);
    assert.ok(cams.every((w) => w < screen), `${who}: screen ${screen} wider than the cameras ${cams}`);
  }
  // Bo's cameras are in a strip below the screen; on Cy's phone the screen fills the stage.
  const boScreen = await screenTile(bo.page, 'Ada').boundingBox();
  const boTile = await remoteTile(bo.page, 'Cy').boundingBox();
  assert.ok(boScreen.height > 2 * boTile.height && boTile.y > boScreen.y + boScreen.height - 1, JSON.stringify({ boScreen, boTile }));
  const cyScreen = await screenTile(cy.page, 'Ada').boundingBox();
  assert.ok(cyScreen.width >= 340 && !(await remoteTile(cy.page, 'Bo').isVisible()), JSON.stringify(cyScreen));
  await screenshot(bo.page, 'screen-desktop');
  await screenshot(cy.page, 'screen-phone');
  await screenshot(ada.page, 'screen-sharer');

  // Bo may not share over Ada: he is told who shares, and nothing changes.
  await bo.page.getByTestId('share-screen').click();
  await until('Bo to be told', async () => /Ada is sharing their screen/.test(await bo.page.getByTestId('error-banner').textContent()));
  assert.equal(await bo.page.getByTestId('share-screen').getAttribute('aria-pressed'), 'false');
  assert.equal(await layout(cy.page), 'remote');

  // Ada stops from the page: the usual layout comes back everywhere.
  await ada.page.getByTestId('stop-sharing').click();
  for (const page of [ada.page, bo.page, cy.page]) {
    await until('the usual layout', async () => (await layout(page)) === 'none');
  }
  assert.equal(await screenTile(bo.page, 'Ada').isVisible(), false);

  // Now Bo shares, and stops with the browser's own control (its track ends).
  await bo.page.getByTestId('share-screen').click();
  await decodes(ada.page, 'Bo');
  await bo.page.evaluate(() => window.chorus.session.screen.track.dispatchEvent(new Event('ended')));
  for (const page of [ada.page, bo.page, cy.page]) {
    await until('the usual layout after the browser stopped it', async () => (await layout(page)) === 'none');
  }
  assert.equal(await bo.page.getByTestId('share-screen').getAttribute('aria-pressed'), 'false');
  // The call goes on: everyone is heard. (The cameras may be paused for
  // bandwidth a while yet: the screen was paid for first, and on this busy
  // machine the estimate toward Ada may have fallen below what it cost.)
  await expectMedia(ada.page, ['Bo', 'Cy'], { video: false });
});

test('a 1:1 call that went browser to browser comes back through the media node for a shared screen', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada2', { direct: true });
  const bo = await openPerson(env.browser, env.server.url, 'Bo2', { direct: true });
  const direct = (page) => page.locator('section.call').getAttribute('data-direct');
  await onlineUser(ada.page, 'Bo2').getByTestId('call-video').click();
  await bo.page.getByTestId('accept-call').click();
  for (const page of [ada.page, bo.page]) await until('the call to go direct', async () => (await direct(page)) === 'true', { timeout: 20000 });
  await ada.page.getByTestId('share-screen').click();
  await decodes(bo.page, 'Ada2');
  for (const page of [ada.page, bo.page]) await until('the call back on the media node', async () => (await direct(page)) === 'false');
  // Both are heard through the media node (the screen is paid for before
  // the cameras there).
  await expectMedia(bo.page, ['Ada2'], { video: false });
  await expectMedia(ada.page, ['Bo2'], { video: false });
  await ada.page.getByTestId('share-screen').click();
  await until('the usual layout', async () => (await layout(bo.page)) === 'none');
  await ada.context.close();
  await bo.context.close();
});
