// Simulcast as people see it: the camera goes out in three layers; what a
// person receives follows the size of the tile and the bandwidth of their
// link; layers nobody receives are paused at the sender.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPerson, until, expectMedia, screenshot, cleanup, onlineUser, remoteTile,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer(['--workers', '1']);
  browser = await launchBrowser();
});

after(async () => {
  if (process.env.SIMULCAST_LOG) console.log(server.log().split('\n').filter((l) => /layer/.test(l)).join('\n'));
  await cleanup({ browser, server });
});

/** The received video's current frame width and the layer stats. */
function inbound(page) {
  return page.evaluate(async () => {
    const stats = await window.chorus.pc.getStats();
    for (const s of stats.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        return { width: s.frameWidth || 0, height: s.frameHeight || 0, frames: s.framesDecoded || 0, freezes: s.freezeCount || 0, keyframes: s.keyFramesDecoded || 0 };
      }
    }
    return { width: 0, height: 0, frames: 0, freezes: 0, keyframes: 0 };
  });
}

/** rid → {active, width} of what the page sends. */
function outbound(page) {
  return page.evaluate(async () => {
    const session = window.chorus.session;
    const params = session.videoTx.sender.getParameters();
    const active = Object.fromEntries(params.encodings.map((e) => [e.rid, e.active]));
    const sent = {};
    for (const s of (await window.chorus.pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video') sent[s.rid] = { width: s.frameWidth || 0, bytes: s.bytesSent };
    }
    return { active, sent };
  });
}

test('simulcast: the tile size picks the layer and unused layers pause', async () => {
  const ada = await openPerson(browser, server.url, 'Ada');
  const bo = await openPerson(browser, server.url, 'Bo');
  const a = ada.page;
  const b = bo.page;
  await onlineUser(a, 'Bo').getByTestId('call-video').click();
  await b.getByTestId('incoming-call').waitFor();
  await b.getByTestId('accept-call').click();
  await remoteTile(b, 'Ada').waitFor();
  await expectMedia(b, ['Ada']);
  await expectMedia(a, ['Bo']);

  const sending = await until('Ada to send three layers', async () => {
    const o = await outbound(a);
    return Object.keys(o.sent).length === 3 ? o : null;
  });
  console.log('Ada sends', JSON.stringify(sending));
  const big = await until('Bo to receive the full layer in a large tile', async () => {
    const s = await inbound(b);
    return s.width >= 900 ? s : null;
  }, { timeout: 20000 });
  console.log('large tile', JSON.stringify(big));
  await screenshot(b, 'simulcast-large-tile');

  // Bo's window shrinks: Ada's tile is small, so is the layer.
  await b.setViewportSize({ width: 360, height: 300 });
  const t0 = Date.now();
  const small = await until('Bo to receive a small layer', async () => {
    const s = await inbound(b);
    return s.width > 0 && s.width <= 480 ? s : null;
  }, { timeout: 15000 });
  console.log(`small tile after ${Date.now() - t0} ms`, JSON.stringify(small));
  await screenshot(b, 'simulcast-small-tile');
  // Nobody receives the full layer now: Ada's browser stops encoding it.
  const paused = await until('the full layer to pause at Ada', async () => {
    const o = await outbound(a);
    return o.active.f === false ? o : null;
  }, { timeout: 15000 });
  console.log('Ada sends', JSON.stringify(paused));

  // Larger again: the full layer comes back.
  await b.setViewportSize({ width: 1100, height: 720 });
  const t1 = Date.now();
  // The estimate followed the small layer down: probes bring it back up.
  await until('Bo to receive the full layer again', async () => (await inbound(b)).width >= 900, { timeout: 45000 });
  console.log(`large tile again after ${Date.now() - t1} ms`);
  assert.equal((await outbound(a)).active.f, true);
  const end = await inbound(b);
  console.log('end', JSON.stringify(end));
});
