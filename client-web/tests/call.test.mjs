// A 1:1 video call driven only through the UI: ring, accept, media both
// ways, mute, camera off and on, hang up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  serverAndBrowser, openPerson, until, stats, expectMedia, screenshot, onlineUser, remoteTile, OUTPUT_DIR,
} from './harness.mjs';

const env = serverAndBrowser();

test('1:1 video call: ring, accept, media both ways, mute, camera, hang up', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  const a = ada.page;
  const b = bo.page;

  // The lobby lists the other person live.
  await onlineUser(a, 'Bo').waitFor();
  await onlineUser(b, 'Ada').waitFor();
  await screenshot(a, 'lobby');

  await onlineUser(a, 'Bo').getByTestId('call-video').click();
  await until('Ada to see "ringing"', async () => (await a.getByTestId('call-status').textContent()) === 'ringing');
  const incoming = b.getByTestId('incoming-call');
  await incoming.waitFor();
  assert.match(await incoming.textContent(), /Ada/);
  assert.match(await incoming.textContent(), /video call/i);
  assert.equal(await b.evaluate(() => window.chorus.ringing()), 'incoming', 'the callee hears the ring tone');
  assert.equal(await a.evaluate(() => window.chorus.ringing()), 'outgoing', 'the caller hears the ring-back tone');
  await screenshot(b, 'incoming-call');
  await screenshot(a, 'outgoing-ringing');

  // Both sides connect to the media node while it rings, and are offered
  // each other's audio and video, but nothing is sent before the answer.
  for (const p of [a, b]) {
    await until('the connection to be made while it rings', async () => {
      const s = await p.evaluate(() => window.chorus.prepared());
      return s && s.connection === 'connected' && s.receivers === 2;
    });
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const p of [a, b]) {
    const s = await p.evaluate(() => window.chorus.prepared());
    const { audioSent, videoSent, audioReceived, videoReceived } = s;
    assert.deepEqual(
      { audioSent, videoSent, audioReceived, videoReceived },
      { audioSent: 0, videoSent: 0, audioReceived: 0, videoReceived: 0 },
      'nothing is seen or heard before the answer',
    );
  }

  await b.getByTestId('accept-call').click();
  await remoteTile(a, 'Bo').waitFor();
  await remoteTile(b, 'Ada').waitFor();
  assert.equal(await b.evaluate(() => window.chorus.ringing()), null, 'the ring stops on accept');

  await expectMedia(b, ['Ada']);
  await expectMedia(a, ['Bo']);
  const mb = await b.evaluate(() => window.chorus.metrics);
  const ma = await a.evaluate(() => window.chorus.metrics);
  const calleeMs = Math.round(mb.firstRemoteFrameAt - mb.acceptClickAt);
  const callerMs = Math.round(ma.firstRemoteFrameAt - mb.acceptClickAt);
  console.log(`join-to-first-frame: accept click → first decoded remote frame: callee ${calleeMs} ms, caller ${callerMs} ms`
    + ` (room_joined +${Math.round(mb.roomJoinedAt - mb.acceptClickAt)} ms, media connected +${Math.round(mb.mediaConnectedAt - mb.acceptClickAt)} ms)`);
  const tb = await b.evaluate(() => window.chorus.session.timings);
  const rel = (t) => (t ? `+${Math.round(t - mb.acceptClickAt)}` : '-');
  console.log(`callee setup after accept (ms): devices open & media start ${rel(tb.start)}, offer sent ${rel(tb.offerSent)},`
    + ` answer ${rel(tb.answerReceived)}, ICE+DTLS connected ${rel(tb.connected)}, first server offer ${rel(tb.firstServerOffer)},`
    + ` first frame ${rel(mb.firstRemoteFrameAt)}`);
  assert.ok(calleeMs > 0 && callerMs > 0);
  // On loopback nothing blocks UDP: the media goes straight over it.
  for (const p of [a, b]) {
    const detail = p.getByTestId('connection-detail');
    await until('the connection detail', async () => (await detail.getAttribute('data-path')) === 'udp');
    assert.match(await detail.textContent(), /^UDP · \d+ ms$/);
  }
  await until('the call timer to run', async () => (await a.getByTestId('call-timer').textContent()) !== '0:00');
  await screenshot(a, 'call-1to1');
  await screenshot(b, 'call-1to1-callee');

  // Mute on Ada shows on Bo's tile for Ada, and unmuting clears it.
  const adaOnBo = remoteTile(b, 'Ada');
  assert.equal(await adaOnBo.getByTestId('remote-muted').isVisible(), false);
  await a.getByTestId('toggle-mic').click();
  await adaOnBo.getByTestId('remote-muted').waitFor({ state: 'visible' });
  assert.equal(await a.getByTestId('toggle-mic').getAttribute('data-state'), 'off');
  await a.getByTestId('toggle-mic').click();
  await adaOnBo.getByTestId('remote-muted').waitFor({ state: 'hidden' });

  // Camera off: Bo sees Ada's avatar; on again: frames flow again. No new client offer.
  await a.getByTestId('toggle-camera').click();
  await until('Ada\'s tile to show her avatar', async () => (await adaOnBo.getAttribute('data-video')) === 'off');
  assert.ok(await adaOnBo.getByTestId('remote-avatar').isVisible());
  assert.equal(await a.getByTestId('local-tile').getAttribute('data-video'), 'off');
  await a.getByTestId('toggle-camera').click();
  await until('Ada\'s tile to show video again', async () => (await adaOnBo.getAttribute('data-video')) === 'on');
  const before = (await stats(b)).Ada.video.framesDecoded;
  await until('frames from the new camera track', async () => (await stats(b)).Ada.video.framesDecoded > before + 10);
  assert.equal(await a.evaluate(() => window.chorus.session.offersSent), 1, 'the client offers once per call');
  assert.equal(await b.evaluate(() => window.chorus.session.offersSent), 1, 'the client offers once per call');

  // Ada hangs up: both are back in the lobby and see that the call ended.
  await a.getByTestId('hangup').click();
  await a.getByTestId('new-group-call').waitFor();
  await b.getByTestId('new-group-call').waitFor();
  assert.equal(await a.getByTestId('call-status').textContent(), 'ended');
  assert.equal(await b.getByTestId('call-status').textContent(), 'ended');
  assert.equal(await b.getByTestId('remote-tile').count(), 0);
  await onlineUser(a, 'Bo').waitFor();
  await until('Bo to be shown available again', async () => (await onlineUser(a, 'Bo').getAttribute('data-busy')) === 'false');
  await screenshot(b, 'lobby-after-call');
});

/** The middle value. */
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

test('call start: accept → first decoded remote frame, over 10 calls (figures in test-output/call-start.json)', async () => {
  const ada = await openPerson(env.browser, env.server.url, 'Ada5');
  const bo = await openPerson(env.browser, env.server.url, 'Bo5');
  const a = ada.page;
  const b = bo.page;
  const runs = [];
  for (let i = 0; i < 10; i += 1) {
    await until('Bo5 to be available', async () => (await onlineUser(a, 'Bo5').getAttribute('data-busy')) === 'false');
    await onlineUser(a, 'Bo5').getByTestId('call-video').click();
    await b.getByTestId('incoming-call').waitFor();
    // A person takes a moment to answer: what can be prepared while it
    // rings is.
    await new Promise((r) => setTimeout(r, 700));
    await b.getByTestId('accept-call').click();
    const { ma, mb } = await until('both to decode the other\'s video', async () => {
      const [xa, xb] = await Promise.all([a, b].map((p) => p.evaluate(() => window.chorus.metrics)));
      return xa.firstRemoteFrameAt && xb.firstRemoteFrameAt ? { ma: xa, mb: xb } : null;
    }, { interval: 50 });
    // The callee's steps, after the accept click.
    const tb = await b.evaluate(() => window.chorus.session.timings);
    const after = (t) => (t ? Math.round(t - mb.acceptClickAt) : null);
    runs.push({
      callee_ms: Math.round(mb.firstRemoteFrameAt - mb.acceptClickAt),
      caller_ms: Math.round(ma.firstRemoteFrameAt - mb.acceptClickAt),
      room_joined_ms: after(mb.roomJoinedAt),
      devices_ms: after(tb.start),
      offer_sent_ms: after(tb.offerSent),
      answer_ms: after(tb.answerReceived),
      media_connected_ms: after(tb.connected),
      first_server_offer_ms: after(tb.firstServerOffer),
      answer_arrived_ms: after(tb.answerArrived),
      server_offer_arrived_ms: after(tb.serverOfferArrived),
      server_offer_answered_ms: after(tb.serverOfferAnswered),
    });
    await a.getByTestId('hangup').click();
    await b.getByTestId('new-group-call').waitFor();
  }
  const fig = {
    calls: runs.length,
    callee_p50_ms: median(runs.map((r) => r.callee_ms)),
    caller_p50_ms: median(runs.map((r) => r.caller_ms)),
    callee_max_ms: Math.max(...runs.map((r) => r.callee_ms)),
    media_connected_p50_ms: median(runs.map((r) => r.media_connected_ms)),
    runs,
  };
  console.log(`call start figures ${JSON.stringify(fig)}`);
  mkdirSync(OUTPUT_DIR, { recursive: true });
  writeFileSync(path.join(OUTPUT_DIR, 'call-start.json'), `${JSON.stringify(fig, null, 2)}\n`);
  assert.equal(runs.length, 10);
  for (const r of runs) assert.ok(r.callee_ms > 0 && r.caller_ms > 0, JSON.stringify(r));
  await Promise.all([ada, bo].map((p) => p.context.close()));
});
