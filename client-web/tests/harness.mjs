// Shared helpers for the browser tests: start `chorus`, launch Debian's
// Chromium with fake devices, open people in separate browser contexts,
// wait on conditions (never fixed sleeps) and save screenshots.

import { before, after, afterEach } from 'node:test';
import { spawn } from 'node:child_process';
import { mkdirSync, createWriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const OUTPUT_DIR = path.resolve(here, '..', 'test-output');
const DEFAULT_BIN = path.resolve(here, '..', '..', 'target', 'debug', 'chorus');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/**
 * Starts `chorus` on free ports and resolves once it printed its URL.
 * @param {string[]} extraArgs e.g. ['--ring-timeout', '3']
 */
export function startServer(extraArgs = [], { listen = '127.0.0.1:0' } = {}) {
  const bin = process.env.CHORUS_BIN || DEFAULT_BIN;
  const args = ['--listen', listen, '--udp-port', '0', ...extraArgs];
  const proc = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CHORUS_LOG: process.env.CHORUS_LOG || 'warn' },
  });
  // Never leave a server behind, even when the test process is torn down.
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  proc.once('exit', () => process.removeListener('exit', killOnExit));
  let log = '';
  // CHORUS_TEST_LOG_DIR=dir keeps each server's whole log there (the
  // in-memory copy keeps only the end).
  if (process.env.CHORUS_TEST_LOG_DIR) {
    mkdirSync(process.env.CHORUS_TEST_LOG_DIR, { recursive: true });
    proc.stderr.pipe(createWriteStream(path.join(process.env.CHORUS_TEST_LOG_DIR, `chorus-${proc.pid}.log`)));
  }
  proc.stderr.on('data', (d) => {
    log += d;
    if (log.length > 200000) log = log.slice(-100000);
  });
  const ready = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`chorus did not start in 20 s\n${log}`)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/Chorus is running: open (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`chorus exited (${code ?? signal}) before it was ready\n${log}`));
    });
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${bin}: ${err.message}`));
    });
  });
  return ready.then((url) => ({
    url,
    proc,
    log: () => log,
    /** SIGTERM (SIGKILL after 3 s); `crash` kills at once, like a lost server. */
    async stop({ crash = false } = {}) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill(crash ? 'SIGKILL' : 'SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(t);
    },
  }));
}

/** Launches Chromium; `executablePath`: e.g. a wrapper that runs it in a network namespace (netns.mjs). */
export async function launchBrowser(extraArgs = [], { executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium' } = {}) {
  return chromium.launch({
    executablePath,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    headless: true,
  });
}

/**
 * A person: their own browser context (own localStorage) and page.
 * Opens `url` and, when the name form shows, signs in as `name`.
 * `onPage(page)` runs before the page loads. Their 1:1 calls stay on the
 * media node ("Protect IP address in calls"), which is what most tests
 * look at, unless `direct` (direct.test.mjs).
 */
export async function openPerson(browser, url, name, {
  viewport = { width: 1100, height: 720 }, waitFor = 'lobby', init = null, onPage = null, direct = false,
} = {}) {
  const context = await browser.newContext({ viewport, permissions: ['camera', 'microphone'] });
  if (!direct) await context.addInitScript(() => localStorage.setItem('chorus.protectIp', 'on'));
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  // E.g. to listen to the page's WebSocket frames from the first one on.
  if (onPage) await onPage(page);
  page.on('pageerror', (err) => console.error(`[${name}] page error:`, err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.error(`[${name}] console:`, msg.text());
  });
  await page.goto(url);
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  if (waitFor === 'lobby') await page.getByTestId('new-group-call').waitFor();
  if (waitFor === 'call') await page.getByTestId('hangup').waitFor();
  return { name, context, page };
}

/** Polls `fn` until it returns a truthy value; throws with `what` after `timeout` ms. */
export async function until(what, fn, { timeout = 15000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Per-person receive stats from the page's debug handle (window.chorus). */
export function stats(page) {
  return page.evaluate(() => window.chorus.stats());
}

/**
 * Waits until `page` decodes video from `names` (frames rising, width > 0 in
 * the tile's video element) and receives their audio (packets rising).
 * With `pausedOk`, a video the media node has paused for bandwidth (the
 * tile says "Poor connection") counts as what the user should see: its
 * audio must still flow. On a machine too busy to keep its delay-based
 * estimate up, the allocation may pause a camera for a while; how and
 * when it pauses and resumes has tests of its own.
 */
export async function expectMedia(page, names, { video = true, audio = true, timeout = 20000, pausedOk = false } = {}) {
  // Receive stats, and which tiles say "Poor connection" (`data-poor`).
  const read = () => page.evaluate(async (who) => {
    const s = await window.chorus.stats();
    for (const n of who) {
      const tile = document.querySelector(`[data-testid="remote-tile"][data-name="${n}"]`);
      if (s[n]) s[n].poor = Boolean(tile && tile.dataset.poor === 'true');
    }
    return s;
  }, names);
  const videoOk = (e, rising) => !video || (pausedOk && e.poor) || (e.video && rising(e.video));
  const first = await until(`${names.join(', ')} to send media`, async () => {
    const s = await read();
    const ok = names.every((n) => s[n] && videoOk(s[n], (v) => v.framesDecoded > 0) && (!audio || (s[n].audio && s[n].audio.packetsReceived > 0)));
    return ok ? s : null;
  }, { timeout });
  const last = await until(`${names.join(', ')}: media to keep flowing`, async () => {
    const s = await read();
    const ok = names.every((n) => s[n] && videoOk(s[n], (v) => v.framesDecoded > (first[n].video ? first[n].video.framesDecoded : 0) + 5)
      && (!audio || s[n].audio.packetsReceived > first[n].audio.packetsReceived + 10));
    return ok ? s : null;
  }, { timeout });
  if (video) {
    for (const n of names) {
      if (pausedOk && last[n].poor) continue;
      const tile = page.locator(`[data-testid="remote-tile"][data-name="${n}"]`);
      await until(`${n}'s remote-video to show frames`, () =>
        tile.getByTestId('remote-video').evaluate((v) => v.videoWidth > 0 && v.videoHeight > 0), { timeout });
    }
  }
  return stats(page);
}

export async function screenshot(page, name) {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  const file = path.join(OUTPUT_DIR, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/**
 * One server and one browser for a whole test file: started before its
 * first test, stopped after its last. Returns `{ server, browser }`, filled
 * in by then.
 */
export function serverAndBrowser() {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer();
    env.browser = await launchBrowser();
  });
  // A test that failed half-way leaves its pages open: they go before
  // the next test, which would otherwise share the machine with them.
  afterEach(async () => {
    if (env.browser) for (const c of env.browser.contexts()) await c.close().catch(() => {});
  });
  after(async () => {
    await cleanup(env);
  });
  return env;
}

/** Closes everything that was opened, ignoring what is already gone. */
export async function cleanup({ browser, server }) {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop().catch(() => {});
}

/** A gauge or counter from the server's /metrics (0 when absent). */
export async function metric(server, name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

/** The lobby row of `name` on `page`. */
export function onlineUser(page, name) {
  return page.locator(`[data-testid="online-user"][data-name="${name}"]`);
}

export function remoteTile(page, name) {
  return page.locator(`[data-testid="remote-tile"][data-name="${name}"]`);
}

/**
 * Records the JSON messages `page` sends and receives on the signaling
 * WebSocket (every connection, in order). Attach with openPerson's `onPage`.
 */
export function recordSignaling(page) {
  const log = { sent: [], received: [], sockets: 0 };
  page.on('websocket', (ws) => {
    if (!new URL(ws.url()).pathname.endsWith('/ws')) return;
    log.sockets += 1;
    const add = (list) => (frame) => {
      try {
        list.push(JSON.parse(frame.payload));
      } catch {
        // Not JSON: not ours.
      }
    };
    ws.on('framesent', add(log.sent));
    ws.on('framereceived', add(log.received));
  });
  return log;
}

/** What a test started, stopped in reverse order after it, pass or fail. */
let open = [];

/** Registers something a test started, for `stopOpened`. */
export function opened(what, stop) {
  open.push({ what, stop });
}

/** Stops everything `opened` since the last call, newest first (use as afterEach). */
export async function stopOpened() {
  for (const { what, stop } of open.reverse()) {
    try {
      await stop();
    } catch (err) {
      console.error(`stopping ${what}:`, err.message);
    }
  }
  open = [];
}

/** The local and remote ICE candidates (getStats entries) of the pair the page's media connection uses now. */
export function candidatePair(page) {
  return page.evaluate(async () => {
    const pc = window.chorus.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    let pairId = null;
    report.forEach((s) => {
      byId.set(s.id, s);
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    const pair = byId.get(pairId);
    return pair ? { local: byId.get(pair.localCandidateId) || null, remote: byId.get(pair.remoteCandidateId) || null } : null;
  });
}
