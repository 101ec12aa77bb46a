// What end-to-end encryption and direct calls cost in Chromium: the time
// from "accept" to the first decoded video frame with encryption on and
// off, through the media node and with direct 1:1 calls allowed (and then
// how long the direct connection takes to take over), and the worker's
// CPU time per encrypted and decrypted frame.
//
//   cargo build -p chorus-signaling --bin chorus
//   (cd client-web/tests && npm ci)
//   unshare -n sh -c 'ip link set lo up && exec node benches/browser/e2ee.mjs [calls]'
//
// Prints one JSON report; docs/security.md has the figures of a run.

import {
  startServer, launchBrowser, openPerson, onlineUser, until, cleanup,
} from '../../client-web/tests/harness.mjs';

const CALLS = Number(process.argv[2] || 10);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};

async function oneCall(a, b, callee) {
  await b.evaluate(() => {
    window.chorus.metrics.firstRemoteFrameAt = null;
    window.chorus.metrics.acceptClickAt = null;
  });
  await onlineUser(a, callee).getByTestId('call-video').click();
  await b.getByTestId('accept-call').click();
  const ms = await until('the first frame', () => b.evaluate(() => {
    const m = window.chorus.metrics;
    return m.firstRemoteFrameAt && m.acceptClickAt ? m.firstRemoteFrameAt - m.acceptClickAt : null;
  }), { timeout: 20000, interval: 20 });
  // A few seconds of media for the worker's per-frame cost.
  await new Promise((r) => setTimeout(r, 3000));
  const worker = await b.evaluate(() => window.chorus.e2ee.stats());
  const directMs = await b.evaluate(() => {
    const d = window.chorus.session.direct;
    return d && d.timings.active ? d.timings.active - window.chorus.metrics.roomJoinedAt : null;
  });
  await a.getByTestId('hangup').click();
  await a.getByTestId('new-group-call').waitFor();
  await b.getByTestId('new-group-call').waitFor();
  return { ms, worker, directMs };
}

// More calls a minute than a person rings.
const env = { server: await startServer(['--calls-per-minute', '1000']), browser: await launchBrowser() };
const report = { calls: CALLS };
try {
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  // The modes take turns, so a slower stretch of a shared machine weighs on all alike.
  const modes = [['e2ee_on', true, false], ['e2ee_off', false, false], ['e2ee_on_direct', true, true]];
  const runs = new Map(modes.map(([key]) => [key, []]));
  for (let i = 0; i < CALLS; i += 1) {
    for (const [key, e2ee, direct] of modes) {
      await ada.page.getByTestId('e2ee-option').setChecked(e2ee);
      for (const p of [ada.page, bo.page]) await p.getByTestId('protect-ip').setChecked(!direct);
      runs.get(key).push(await oneCall(ada.page, bo.page, 'Bo'));
    }
  }
  for (const [key, e2ee, direct] of modes) {
    const mine = runs.get(key);
    const ms = mine.map((r) => Math.round(r.ms));
    report[key] = { accept_to_first_frame_ms: { p50: median(ms), max: Math.max(...ms) } };
    if (direct) {
      const up = mine.map((r) => Math.round(r.directMs ?? NaN));
      report[key].direct_up_after_room_joined_ms = { p50: median(up), max: Math.max(...up), direct_calls: up.filter(Number.isFinite).length };
    }
    if (e2ee && !direct) {
      const w = mine.map((r) => r.worker);
      const sum = (f) => w.reduce((n, x) => n + x[f], 0);
      report[key].worker = {
        frames_encrypted: sum('encrypted'),
        frames_decrypted: sum('decrypted'),
        encrypt_us_per_frame: Math.round((1000 * sum('encryptMs')) / sum('encrypted')),
        decrypt_us_per_frame: Math.round((1000 * sum('decryptMs')) / sum('decrypted')),
        failed: sum('failed'),
      };
    }
  }
  report.ratio_on_over_off = Number((report.e2ee_on.accept_to_first_frame_ms.p50 / report.e2ee_off.accept_to_first_frame_ms.p50).toFixed(2));
  console.log(JSON.stringify(report, null, 2));
} finally {
  await cleanup(env);
}
