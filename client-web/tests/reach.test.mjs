// How calls reach the media node when the network is in the way.
//
// - The browser in a network namespace of its own (netns.mjs) that drops
//   every UDP datagram toward the server: a 1:1 call and a group of three
//   go over ICE-TCP to the media node's passive TCP candidate. The same
//   namespace with nothing dropped is the control: the call goes over UDP.
// - UDP and the media node's TCP port both dropped: the call cannot
//   connect, and the page says what the person and the operator can do.
// - TURN: coturn on loopback and `--force-relay`: the browser uses only
//   the relay, with the credentials the server minted.
//
// Every case checks the `connection-detail` the page shows, media both ways
// (video decoded, audio packets rising), and evidence from outside the page
// (nftables counters, the media node's TCP gauge, coturn's log). Each case
// logs accept → first decoded remote frame; CHORUS_REACH_RUNS=5 repeats the
// 1:1 calls and writes the figures to test-output/reach.json
// (docs/operations.md, "How calls reach the media node").

import { test, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  startServer, launchBrowser, openPerson, until, expectMedia, screenshot, onlineUser, OUTPUT_DIR,
  opened, stopOpened, metric,
} from './harness.mjs';
import { browserNamespace, SERVER_IP } from './netns.mjs';
import { startCoturn } from './coturn.mjs';

const RUNS = Math.max(1, Number(process.env.CHORUS_REACH_RUNS) || 1);
const PHONE = { width: 360, height: 740 };
const TURN_SECRET = 'browser-test-turn-secret';

/** Accept → media connected and → first decoded frame, per path: { path: [{ connected, callee, caller }] }. */
const timings = {};


afterEach(stopOpened);

after(() => {
  const summary = {};
  for (const [p, list] of Object.entries(timings)) {
    if (!list.length) continue;
    const stats = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      const mid = Math.floor(s.length / 2);
      return { median: s.length % 2 ? s[mid] : Math.round((s[mid - 1] + s[mid]) / 2), min: s[0], max: s[s.length - 1], runs: s };
    };
    summary[p] = {};
    for (const key of ['connected', 'callee', 'caller']) summary[p][key] = stats(list.map((t) => t[key]));
    const say = (key) => `${summary[p][key].median} ms (${summary[p][key].min}–${summary[p][key].max})`;
    console.log(`over ${p} (${list.length} runs), medians and ranges after the accept: callee's media connected ${say('connected')},`
      + ` first decoded frame: callee ${say('callee')}, caller ${say('caller')}`);
  }
  mkdirSync(OUTPUT_DIR, { recursive: true });
  writeFileSync(path.join(OUTPUT_DIR, 'reach.json'), `${JSON.stringify(summary, null, 2)}\n`);
});

/** A free TCP port (for the media node's ICE-TCP listener). */
function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * The server on the veth address and a browser inside a namespace that
 * drops UDP toward it (unless `blockUdp` is false), and with
 * `blockMediaTcp` the media node's TCP port too; stopped after the test.
 */
async function blockedSetup({ blockUdp = true, blockMediaTcp = false } = {}) {
  const tcpPort = await freeTcpPort();
  const ns = await browserNamespace({ blockUdp, blockTcpPorts: blockMediaTcp ? [tcpPort] : [] });
  opened('namespace', () => ns.remove());
  const args = ['--public-ip', SERVER_IP, '--tcp-port', String(tcpPort)];
  const server = await startServer(args, { listen: `${SERVER_IP}:0` });
  opened('server', () => server.stop());
  // Not localhost: the camera needs the origin named as secure.
  const browser = await launchBrowser([`--unsafely-treat-insecure-origin-as-secure=${server.url}`], { executablePath: ns.chromium });
  opened('browser', () => browser.close());
  return { ns, server, browser, tcpPort };
}

/** The page's `connection-detail` once media flows: its data-path and text. */
async function shownPath(page, want) {
  const detail = page.getByTestId('connection-detail');
  await until(`the connection detail to say ${want}`, async () => (await detail.getAttribute('data-path')) === want);
  await detail.waitFor({ state: 'visible' });
  return detail.textContent();
}

/**
 * Ada rings Bo (on a phone-sized page), Bo accepts; both decode video and
 * hear audio. Returns both people and accept → first frame on each side.
 */
async function videoCall(browser, url, adaName, boName) {
  const ada = await openPerson(browser, url, adaName);
  const bo = await openPerson(browser, url, boName, { viewport: PHONE });
  await onlineUser(ada.page, boName).getByTestId('call-video').click();
  await bo.page.getByTestId('accept-call').click();
  await expectMedia(bo.page, [adaName], { timeout: 30000 });
  await expectMedia(ada.page, [boName], { timeout: 30000 });
  const mb = await bo.page.evaluate(() => window.chorus.metrics);
  const ma = await ada.page.evaluate(() => window.chorus.metrics);
  const connected = Math.round(mb.mediaConnectedAt - mb.acceptClickAt);
  const callee = Math.round(mb.firstRemoteFrameAt - mb.acceptClickAt);
  const caller = Math.round(ma.firstRemoteFrameAt - mb.acceptClickAt);
  assert.ok(connected > 0 && callee > 0 && caller > 0, `after the accept: connected ${connected} ms, first frames: callee ${callee} ms, caller ${caller} ms`);
  return { ada, bo, connected, callee, caller };
}

async function hangUp(call) {
  await call.ada.page.getByTestId('hangup').click();
  await call.bo.page.getByTestId('new-group-call').waitFor();
  await Promise.all([call.ada.context.close(), call.bo.context.close()]);
}

/**
 * Runs the 1:1 call RUNS times (the caller named `caller` and the run);
 * each run checks the path with `check(call, run)`.
 */
async function repeatedCalls(pathName, browser, url, check, { caller = 'Ada' } = {}) {
  timings[pathName] = [];
  for (let run = 1; run <= RUNS; run += 1) {
    const call = await videoCall(browser, url, `${caller} ${run}`, `Bo ${run}`);
    console.log(`${pathName} run ${run}: after the accept: callee's media connected ${call.connected} ms,`
      + ` first decoded frame: callee ${call.callee} ms, caller ${call.caller} ms`);
    timings[pathName].push({ connected: call.connected, callee: call.callee, caller: call.caller });
    await check(call, run);
    await hangUp(call);
  }
}

/**
 * A resumed session brings fresh TURN credentials: Bo's connection takes
 * them, and his next ICE restart allocates a relay with them.
 */
async function freshCredentials(call, coturn) {
  const b = call.bo.page;
  const username = () => b.evaluate(() => window.chorus.pc.getConfiguration().iceServers[0].username);
  const before = await username();
  await b.evaluate(() => window.chorus.dropConnection({ offlineMs: 1500 }));
  await until('Bo to resume his session', () => b.evaluate(() => window.chorus.signaling.resumes === 1));
  const after = await username();
  assert.ok(Number(after.split(':')[0]) > Number(before.split(':')[0]), `fresh credentials after the resume: ${before} → ${after}`);
  assert.equal(after.split(':')[1], before.split(':')[1]);
  await b.evaluate(() => window.chorus.restartIce());
  await until('coturn to allocate a relay with the fresh credentials', () => coturn.log().includes(`new, realm=<chorus.test>, username=<${after}>`));
  await until('the ICE restart to complete', () => b.evaluate(() =>
    window.chorus.session.iceRestarts === 1 && !window.chorus.session.ownOffer && window.chorus.pc.iceConnectionState === 'connected'));
  await expectMedia(b, [call.ada.name]);
  assert.equal(await b.getByTestId('connection-detail').getAttribute('data-path'), 'relay');
}

test('nothing blocked (control): through the same namespace the call goes over UDP', async () => {
  const { ns, server, browser } = await blockedSetup({ blockUdp: false });
  await repeatedCalls('udp', browser, server.url, async (call) => {
    for (const p of [call.ada.page, call.bo.page]) assert.match(await shownPath(p, 'udp'), /^UDP · \d+ ms$/);
  });
  assert.equal(ns.dropped().udp, 0);
});

test('UDP blocked: a 1:1 video call goes over ICE-TCP, media both ways', async () => {
  const { ns, server, browser } = await blockedSetup();
  await repeatedCalls('tcp', browser, server.url, async (call, run) => {
    for (const p of [call.ada.page, call.bo.page]) assert.match(await shownPath(p, 'tcp'), /^TCP · \d+ ms$/);
    // The media node holds both people's ICE-TCP connections.
    assert.ok(await metric(server, 'chorus_media_tcp_connections') >= 2, 'the media node sees two TCP connections');
    if (run === 1) {
      await screenshot(call.ada.page, 'reach-tcp');
      await screenshot(call.bo.page, 'reach-tcp-phone');
    }
  });
  // UDP was tried and dropped: the call went over TCP because it had to.
  assert.ok(ns.dropped().udp > 0, 'the namespace dropped UDP toward the server');
  assert.ok(await metric(server, 'chorus_media_tcp_accepted_total') >= 2 * RUNS);
});

test('UDP blocked: a group call of three goes over ICE-TCP', async () => {
  const { ns, server, browser } = await blockedSetup();
  const ada = await openPerson(browser, server.url, 'Ada');
  await ada.page.getByTestId('new-group-call').click();
  const link = (await ada.page.getByTestId('room-link').textContent()).trim();
  const bo = await openPerson(browser, link, 'Bo', { waitFor: 'call' });
  const cy = await openPerson(browser, link, 'Cy', { waitFor: 'call', viewport: PHONE });
  const people = [ada, bo, cy];
  const t0 = Date.now();
  for (const p of people) {
    const others = people.filter((o) => o !== p).map((o) => o.name);
    // On a busy machine the bandwidth estimates of three browsers start low
    // (100-200 kbit/s seen), and the media node holds video back until they
    // rise: 20 s has been seen.
    await expectMedia(p.page, others, { timeout: 45000 });
    console.log(`group over TCP: ${p.name} receives everyone ${Date.now() - t0} ms after the third joined`);
    assert.match(await shownPath(p.page, 'tcp'), /^TCP · \d+ ms$/);
  }
  assert.ok(await metric(server, 'chorus_media_tcp_connections') >= 3);
  assert.ok(ns.dropped().udp > 0, 'the namespace dropped UDP toward the server');
  await screenshot(ada.page, 'reach-tcp-group');
  await screenshot(cy.page, 'reach-tcp-group-phone');
  for (const p of people) await p.page.getByTestId('hangup').click();
  await Promise.all(people.map((p) => p.context.close()));
});

test('UDP and the media TCP port blocked: the page says what the person and the operator can do', async () => {
  const { ns, server, browser, tcpPort } = await blockedSetup({ blockMediaTcp: true });
  const ada = await openPerson(browser, server.url, 'Ada', { viewport: PHONE });
  await ada.page.getByTestId('new-group-call').click();
  await ada.page.getByTestId('hangup').waitFor();
  await until('the media node to answer', () => ada.page.evaluate(() => !!window.chorus.session?.timings.answerReceived));
  assert.equal(await ada.page.getByTestId('connection-detail').isVisible(), false, 'no path while nothing gets through');
  // The media node gives up after 20 s without ICE and ends the call (the
  // browser may give up first: the banner says the same meanwhile).
  await ada.page.getByTestId('new-group-call').waitFor({ timeout: 45000 });
  assert.equal(await ada.page.getByTestId('call-status').textContent(), 'ended');
  const text = await ada.page.locator('.notice').textContent();
  assert.match(text, /The call could not connect/);
  assert.match(text, /your network may block calls\. Try another network/);
  assert.match(text, new RegExp(`the server's operator can enable TURN \\(--turn-url\\) or check that UDP port \\d+ and TCP port ${tcpPort} can be reached`));
  await screenshot(ada.page, 'reach-blocked');
  const dropped = ns.dropped();
  assert.ok(dropped.udp > 0 && dropped.tcp > 0, `dropped ${JSON.stringify(dropped)}`);
  await ada.context.close();
});

test('TURN, relay only: the call goes through coturn with the minted credentials', async () => {
  const coturn = await startCoturn(TURN_SECRET);
  opened('coturn', () => coturn.stop());
  const server = await startServer(['--turn-url', coturn.url, '--turn-secret', TURN_SECRET, '--force-relay']);
  opened('server', () => server.stop());
  const browser = await launchBrowser();
  opened('browser', () => browser.close());
  const users = [];
  await repeatedCalls('relay', browser, server.url, async (call, run) => {
    for (const p of [call.ada.page, call.bo.page]) {
      assert.match(await shownPath(p, 'relay'), /^Relay \(TURN\) · \d+ ms$/);
      const config = await p.evaluate(() => {
        const c = window.chorus.pc.getConfiguration();
        return { policy: c.iceTransportPolicy, servers: c.iceServers, me: window.chorus.state.me.id };
      });
      assert.equal(config.policy, 'relay');
      assert.deepEqual(config.servers.map((s) => s.urls).flat(), [coturn.url]);
      assert.match(config.servers[0].username, new RegExp(`^\\d+:${config.me}$`));
      users.push(config.me);
    }
    if (run === 1) {
      await screenshot(call.ada.page, 'reach-relay');
      // The longest path label beside a long name, on a phone.
      await screenshot(call.bo.page, 'reach-relay-phone');
      await freshCredentials(call, coturn);
    }
  }, { caller: 'Adaline Fairweather-Okonkwo' });
  // coturn relayed media both ways for every person, under the name
  // Chorus minted (expiry:user id); it logs that when the allocation ends.
  for (const id of users) {
    await until(`coturn to report what it relayed for ${id}`, () => {
      const re = new RegExp(`peer usage: realm=<chorus\\.test>, username=<\\d+:${id}>, rp=(\\d+), rb=\\d+, sp=(\\d+)`, 'g');
      return [...coturn.log().matchAll(re)].some((m) => Number(m[1]) > 50 && Number(m[2]) > 50);
    });
  }
});
