// Direct 1:1 calls: two browsers connect to each other and the media node
// forwards none of the call's packets; a third person joining moves both
// back to the media node without a visible break, and so does a direct
// path that goes down; "Protect IP address in calls" keeps a call on the
// media node.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverAndBrowser, openPerson, until, expectMedia, screenshot, onlineUser, metric, recordSignaling,
} from './harness.mjs';

const env = serverAndBrowser();
const FORWARDED = 'chorus_media_packets_forwarded_total';

const direct = (page) => page.locator('section.call').getAttribute('data-direct');

/**
 * From now on, the longest time (ms) the picture of `name`'s tile on `page`
 * stood still: between two frames presented by any of its video elements
 * (a new track plays over the old one while it starts), by their
 * presentation times. Frames presented while the page was too busy to run
 * its callbacks count too: such an interval is split evenly among them.
 * Should the media node pause that video for bandwidth (`video_paused`,
 * the tile's "Poor connection"), the measure stops there: the allocation
 * has tests of its own, this one is about the switch.
 */
function watchFrames(page, name) {
  return page.evaluate((who) => {
    const w = { start: performance.now(), last: performance.now(), max: 0, pausedAt: null };
    window.frameGap = w;
    const armed = new WeakSet();
    const tick = (v, seen) => (now, meta) => {
      const frames = seen === null ? 1 : Math.max(1, meta.presentedFrames - seen);
      const end = w.pausedAt === null ? meta.presentationTime : Math.min(meta.presentationTime, w.pausedAt);
      w.max = Math.max(w.max, (end - w.last) / frames);
      w.last = Math.max(w.last, meta.presentationTime);
      v.requestVideoFrameCallback(tick(v, meta.presentedFrames));
    };
    const watch = () => {
      for (const v of document.querySelectorAll(`[data-testid="remote-tile"][data-name="${who}"] video`)) {
        if (armed.has(v)) continue;
        armed.add(v);
        v.requestVideoFrameCallback(tick(v, null));
      }
      const s = window.chorus.session;
      const p = s && [...s.participants.values()].find((x) => x.name === who);
      if (w.pausedAt === null && p && p.videoPaused) w.pausedAt = performance.now();
    };
    watch();
    setInterval(watch, 20);
  }, name);
}

/** `a` video-calls the person `callee`, `b` accepts, and both go direct. */
async function directCall(a, b, callee) {
  await onlineUser(a, callee).getByTestId('call-video').click();
  await b.getByTestId('accept-call').click();
  for (const page of [a, b]) await until('the call to go direct', async () => (await direct(page)) === 'true');
}

test('a 1:1 call goes browser to browser, and back through the media node when a third joins', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada', { direct: true });
  const bo = await openPerson(env.browser, env.server.url, 'Bo', { direct: true });
  const cy = await openPerson(env.browser, env.server.url, 'Cy', { direct: true });
  const [a, b] = [ada.page, bo.page];
  await directCall(a, b, 'Bo');
  await expectMedia(a, ['Bo']);
  await expectMedia(b, ['Ada']);
  // Encrypted all the same, and nothing through the media node.
  for (const page of [a, b]) await page.getByTestId('e2ee-lock').waitFor({ state: 'visible' });
  const before = await metric(env.server, FORWARDED);
  await expectMedia(b, ['Ada']);
  await expectMedia(a, ['Bo']);
  assert.equal(await metric(env.server, FORWARDED), before, 'the media node forwards none of a direct call');
  const timings = await a.evaluate(() => window.chorus.session.direct.timings);
  const joined = await a.evaluate(() => window.chorus.metrics.roomJoinedAt);
  console.log(`# direct connection up ${Math.round(timings.active - joined)} ms after room_joined`);
  await screenshot(a, 'call-direct');

  // Cy is added: both go back through the media node.
  await watchFrames(b, 'Ada');
  await a.getByTestId('add-person').click();
  await a.locator('[data-testid="invite-user"][data-name="Cy"] button').click();
  await cy.page.getByTestId('accept-call').click();
  for (const page of [a, b]) await until('the call to leave the direct connection', async () => (await direct(page)) === 'false');
  // Everyone is heard and sees the others, or, where the media node paused
  // a camera for bandwidth (a busy machine's estimate), its tile says so.
  await expectMedia(b, ['Ada', 'Cy'], { pausedOk: true });
  await expectMedia(a, ['Bo', 'Cy'], { pausedOk: true });
  await expectMedia(cy.page, ['Ada', 'Bo'], { pausedOk: true });
  const { max: gap, pausedAt, start } = await b.evaluate(() => window.frameGap);
  const paused = pausedAt === null ? '' : ` (measured until her video was paused for bandwidth, ${Math.round(pausedAt - start)} ms after the invite)`;
  console.log(`# back to the media node: longest gap in Ada's video on Bo's screen ${Math.round(gap)} ms${paused}`);
  assert.ok(gap < 1000, `Ada's video stood still for ${Math.round(gap)} ms`);
  assert.ok(await metric(env.server, FORWARDED) > before + 100, 'the media node forwards the group call');
  for (const p of [ada, bo, cy]) await p.context.close();
});

test('a direct connection that goes down hands the call back to the media node', async () => {
  const ann = await openPerson(env.browser, env.server.url, 'Ana', { direct: true });
  const ben = await openPerson(env.browser, env.server.url, 'Bob', { direct: true });
  const [a, b] = [ann.page, ben.page];
  await directCall(a, b, 'Bob');
  await expectMedia(a, ['Bob']);
  // Bob's side of the direct path is gone (as when his network changes):
  // his page goes back to the media node, and Ana's notices the path is
  // down and follows.
  await b.evaluate(() => window.chorus.session.direct.lost());
  for (const page of [a, b]) {
    await until('the call to leave the direct path', async () => (await direct(page)) === 'false', { timeout: 20000 });
  }
  const before = await metric(env.server, FORWARDED);
  await expectMedia(a, ['Bob'], { pausedOk: true });
  await expectMedia(b, ['Ana'], { pausedOk: true });
  assert.ok(await metric(env.server, FORWARDED) > before + 50, 'the media node carries the call again');
  await ann.context.close();
  await ben.context.close();
});

test('"Protect IP address in calls" keeps a 1:1 call on the media node', async () => {
  const ann = await openPerson(env.browser, env.server.url, 'Ann', { direct: true });
  const log = { sent: [] };
  const pat = await openPerson(env.browser, env.server.url, 'Pat', {
    direct: true, onPage: (page) => Object.assign(log, recordSignaling(page)),
  });
  const [a, p] = [ann.page, pat.page];
  await p.getByTestId('protect-ip').check();
  await onlineUser(a, 'Pat').getByTestId('call-video').click();
  await p.getByTestId('accept-call').click();
  await expectMedia(a, ['Pat']);
  await expectMedia(p, ['Ann']);
  // Pat neither offers nor answers a direct connection; Ann gives up.
  await until('Ann to give the direct connection up', () => a.evaluate(() => window.chorus.session.direct.state === 'off'), { timeout: 20000 });
  const before = await metric(env.server, FORWARDED);
  await expectMedia(p, ['Ann']);
  assert.ok(await metric(env.server, FORWARDED) > before + 50, 'the media node forwards the call');
  for (const page of [a, p]) assert.equal(await direct(page), 'false');
  assert.equal(log.sent.filter((m) => m.type === 'direct_signal').length, 0, 'Pat sent nothing of their address');
  // The side with the smaller id offers: when that is Ann, Pat left her offer unanswered.
  const [annId, patId] = await Promise.all([a, p].map((page) => until('the sign-in', () => page.evaluate(() => window.chorus.state.me && window.chorus.state.me.id))));
  assert.equal(log.received.some((m) => m.type === 'direct_signal'), annId < patId);
  await ann.context.close();
  await pat.context.close();
});
