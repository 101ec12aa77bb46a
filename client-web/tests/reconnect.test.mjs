// Reconnecting: a dropped signaling connection resumes its session (the
// other side never sees anyone leave, media goes on), an ICE restart brings
// media back over new ICE credentials, and invites that do not work out say
// so in plain words while the call goes on.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPerson, until, stats, expectMedia, screenshot, cleanup, onlineUser, remoteTile, recordSignaling,
  candidatePair,
} from './harness.mjs';

let server;
let browser;
/** Everyone opened by the running test: closed after it, pass or fail. */
let people = [];

async function person(name, opts) {
  const p = await openPerson(browser, server.url, name, opts);
  people.push(p);
  return p;
}

// A fresh server for each test (some need their own flags): closed tabs stay
// "online" on a server for its reconnect grace period.
before(async () => {
  browser = await launchBrowser();
});

afterEach(async () => {
  await Promise.all(people.map((p) => p.context.close().catch(() => {})));
  people = [];
  if (server) await server.stop();
  server = null;
});

after(async () => {
  await cleanup({ browser, server });
});

/** Ada calls Bo (video), Bo accepts, media flows both ways. */
async function videoCall(ada, bo) {
  await onlineUser(ada.page, 'Bo').getByTestId('call-video').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(ada.page, 'Bo').waitFor();
  await remoteTile(bo.page, 'Ada').waitFor();
  await Promise.all([expectMedia(ada.page, ['Bo']), expectMedia(bo.page, ['Ada'])]);
}

const ufragOf = (sdp) => (sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];

/** The ICE username fragment of the candidate pair the connection is using now. */
async function selectedUfrag(page) {
  const pair = await candidatePair(page);
  return pair && pair.local ? pair.local.usernameFragment || null : null;
}

test('signaling drops mid-call: it resumes, the other side never sees a leave, media goes on', async () => {
  server = await startServer();
  let adaLog;
  let boLog;
  const ada = await person('Ada', { onPage: (p) => { adaLog = recordSignaling(p); } });
  const bo = await person('Bo', { onPage: (p) => { boLog = recordSignaling(p); } });
  const a = ada.page;
  const b = bo.page;
  await videoCall(ada, bo);
  const firstWelcome = adaLog.received.find((m) => m.type === 'welcome');
  assert.equal(firstWelcome.resumed, false);
  assert.ok(firstWelcome.resume_token, 'welcome carries a resume token');
  await a.evaluate(() => { window.chorus.pc.mark = 'the same connection'; });

  // Bo's page notes any moment it does not show Ada in the call.
  await b.evaluate(() => {
    window.sawAdaGone = [];
    window.adaWatch = setInterval(() => {
      const st = window.chorus.state;
      const tile = document.querySelector('[data-testid="remote-tile"][data-name="Ada"]');
      if (st.screen !== 'call' || !st.call || !st.call.participants.some((p) => p.name === 'Ada') || !tile) {
        window.sawAdaGone.push({ at: Date.now(), screen: st.screen });
      }
    }, 50);
  });
  const boReceivedBefore = boLog.received.length;

  // Ada's connection drops, and the network stays away for 3 s.
  const droppedAt = Date.now();
  await a.evaluate(() => window.chorus.dropConnection({ offlineMs: 3000 }));
  const banner = a.getByTestId('error-banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /Connection to the server lost\. Reconnecting/);
  // Ada's call stays up meanwhile.
  assert.equal(await a.evaluate(() => window.chorus.state.screen), 'call');
  assert.ok(await remoteTile(a, 'Bo').isVisible());
  await screenshot(a, 'call-reconnecting');

  // While Ada is away Bo mutes: the server keeps that for Ada.
  await b.getByTestId('toggle-mic').click();

  await until('Ada to resume her session', () =>
    a.evaluate(() => window.chorus.state.conn === 'online' && window.chorus.signaling.resumes === 1), { timeout: 15000 });
  const resumeMs = Date.now() - droppedAt;
  await banner.waitFor({ state: 'hidden' });
  const auths = adaLog.sent.filter((m) => m.type === 'auth');
  assert.equal(auths.length, 2);
  assert.equal(auths[1].resume, firstWelcome.resume_token, 'the second auth resumes with the token from welcome');
  const welcomes = adaLog.received.filter((m) => m.type === 'welcome');
  assert.equal(welcomes[1].resumed, true);
  assert.equal(adaLog.sockets, 2);

  // The message sent meanwhile arrives after the resume: Bo shows muted at Ada's.
  await remoteTile(a, 'Bo').getByTestId('remote-muted').waitFor({ state: 'visible' });
  await b.getByTestId('toggle-mic').click();
  await remoteTile(a, 'Bo').getByTestId('remote-muted').waitFor({ state: 'hidden' });

  // Same call, same RTCPeerConnection; media both ways, video and audio.
  assert.equal(await a.evaluate(() => window.chorus.state.screen), 'call');
  assert.equal(await a.evaluate(() => window.chorus.pc.mark), 'the same connection');
  const [sa, sb] = await Promise.all([expectMedia(a, ['Bo']), expectMedia(b, ['Ada'])]);
  assert.ok(sa.Bo.audio.totalAudioEnergy > 0 && sb.Ada.audio.totalAudioEnergy > 0, 'both hear sound');
  // After a resume the client offers once more (lost media messages are
  // repaired that way); no ICE restart was needed.
  const session = await a.evaluate(() => ({ offers: window.chorus.session.offersSent, restarts: window.chorus.session.iceRestarts }));
  assert.deepEqual(session, { offers: 2, restarts: 0 });

  // Bo never saw Ada leave: not on screen, and not on the wire.
  const gone = await b.evaluate(() => {
    clearInterval(window.adaWatch);
    return window.sawAdaGone;
  });
  assert.deepEqual(gone, [], 'Bo always showed Ada in the call');
  const boMeanwhile = boLog.received.slice(boReceivedBefore);
  assert.ok(!boMeanwhile.some((m) => m.type === 'participant_left' || m.type === 'call_ended'), 'no leave and no end sent to Bo');
  for (const m of boMeanwhile.filter((x) => x.type === 'presence')) {
    assert.ok(m.users.some((u) => u.name === 'Ada' && u.busy), 'Ada stays online and busy for Bo');
  }
  for (const m of boMeanwhile.filter((x) => x.type === 'presence_update')) {
    assert.ok(!m.users.some((u) => u.name === 'Ada' && !u.busy) && !m.gone.includes(firstWelcome.user.id), 'Ada never shown gone or free to Bo');
  }
  console.log(`signaling drop with 3 s outage: resumed after ${resumeMs} ms`);
  await screenshot(a, 'call-after-resume');

  await a.getByTestId('hangup').click();
  await b.getByTestId('new-group-call').waitFor();
  assert.equal(await b.getByTestId('call-status').textContent(), 'ended');
});

test('ICE restart: a new offer with new credentials, media keeps flowing both ways', async () => {
  server = await startServer();
  let adaLog;
  const ada = await person('Ada', { onPage: (p) => { adaLog = recordSignaling(p); } });
  const bo = await person('Bo');
  const a = ada.page;
  const b = bo.page;
  await videoCall(ada, bo);
  // A call that has run for a while (a re-offer early in a call is the easy case).
  await until('Ada to have decoded 150 frames from Bo', async () => (await stats(a)).Bo.video.framesDecoded > 150);
  const before = await a.evaluate(() => ({
    local: window.chorus.pc.localDescription.sdp,
    remote: window.chorus.pc.remoteDescription.sdp,
  }));
  const usedBefore = await selectedUfrag(a);
  assert.equal(usedBefore, ufragOf(before.local));

  const restartAt = Date.now();
  assert.equal(await a.evaluate(() => window.chorus.restartIce()), true);
  await until('the restart offer to be answered', () => a.evaluate(() => {
    const s = window.chorus.session;
    return s.iceRestarts === 1 && !s.ownOffer && s.pc.signalingState === 'stable';
  }));
  const answeredMs = Date.now() - restartAt;
  const after = await a.evaluate(() => ({
    local: window.chorus.pc.localDescription.sdp,
    remote: window.chorus.pc.remoteDescription.sdp,
  }));
  assert.notEqual(ufragOf(after.local), ufragOf(before.local), 'new local ICE credentials');
  assert.notEqual(ufragOf(after.remote), ufragOf(before.remote), 'the media node answered with new credentials');

  // On the wire: a second media_offer, with the new credentials.
  const offers = adaLog.sent.filter((m) => m.type === 'media_offer');
  assert.equal(offers.length, 2, 'a second client offer was sent');
  assert.equal(ufragOf(offers[1].sdp), ufragOf(after.local));
  assert.notEqual(ufragOf(offers[1].sdp), ufragOf(offers[0].sdp));

  // Media flows over the new ICE session: the candidate pair in use has the
  // new credentials, and frames keep being decoded on both sides.
  await until('the connection to use the new ICE credentials', async () => (await selectedUfrag(a)) === ufragOf(after.local));
  const usedMs = Date.now() - restartAt;
  await Promise.all([expectMedia(a, ['Bo']), expectMedia(b, ['Ada'])]);
  assert.equal(await a.evaluate(() => window.chorus.pc.iceConnectionState), 'connected');
  assert.equal(await b.evaluate(() => window.chorus.session.offersSent), 1, 'Bo did not renegotiate');
  console.log(`ICE restart: answered after ${answeredMs} ms, new candidate pair in use after ${usedMs} ms`);

  // The automatic trigger: ICE reported `disconnected` (faked here: nothing
  // on this machine can cut UDP) restarts ICE after 2 s on its own.
  await a.evaluate(() => {
    const pc = window.chorus.pc;
    Object.defineProperty(pc, 'iceConnectionState', { configurable: true, get: () => 'disconnected' });
    pc.dispatchEvent(new Event('iceconnectionstatechange'));
  });
  const downAt = Date.now();
  await until('the call to show "reconnecting…"', async () => (await a.locator('.call-conn').textContent()) === 'reconnecting…');
  await until('an automatic ICE restart', () => a.evaluate(() => window.chorus.session.iceRestarts === 2), { timeout: 10000 });
  const autoMs = Date.now() - downAt;
  assert.ok(autoMs >= 1900, `no restart before ICE was down for 2 s (${autoMs} ms)`);
  await a.evaluate(() => {
    delete window.chorus.pc.iceConnectionState;
  });
  await until('the automatic restart to be answered', () => a.evaluate(() => {
    const s = window.chorus.session;
    return !s.ownOffer && s.pc.signalingState === 'stable' && s.pc.iceConnectionState === 'connected';
  }));
  const third = await a.evaluate(() => window.chorus.pc.localDescription.sdp);
  await until('the connection to use the third ICE credentials', async () => (await selectedUfrag(a)) === ufragOf(third));
  await Promise.all([expectMedia(a, ['Bo']), expectMedia(b, ['Ada'])]);
  assert.equal(await a.evaluate(() => window.chorus.session.iceRestarts), 2);
  console.log(`automatic ICE restart after ${autoMs} ms of "disconnected"`);

  await a.getByTestId('hangup').click();
  await b.getByTestId('new-group-call').waitFor();
});

test('invites that fail say why in plain words; the call goes on', async () => {
  // A short ring timeout for the "did not answer" case (long enough that a
  // slow machine still declines before it).
  server = await startServer(['--ring-timeout', '6']);
  const ada = await person('Ada');
  const bo = await person('Bo');
  const cy = await person('Cy');
  const dee = await person('Dee');
  const a = ada.page;
  await onlineUser(a, 'Dee').waitFor();
  await videoCall(ada, bo);
  const invites = a.getByTestId('invites');

  async function inviteFrom(name) {
    if (!(await a.getByTestId('invite-user').first().isVisible())) await a.getByTestId('add-person').click();
    const button = a.locator(`[data-testid="invite-user"][data-name="${name}"] button`);
    await until(`${name} to be invitable`, () => button.isEnabled());
    await button.click();
  }

  async function callGoesOn() {
    assert.equal(await a.evaluate(() => window.chorus.state.screen), 'call');
    assert.equal(await bo.page.evaluate(() => window.chorus.state.screen), 'call');
    assert.ok(await remoteTile(a, 'Bo').isVisible());
    await Promise.all([expectMedia(a, ['Bo']), expectMedia(bo.page, ['Ada'])]);
  }

  // Declined.
  await inviteFrom('Cy');
  await until('Ada to see Cy ringing', async () => /Ringing Cy/.test(await invites.textContent()));
  await cy.page.getByTestId('incoming-call').waitFor();
  await cy.page.getByTestId('decline-call').click();
  await until('Ada to read "Cy declined."', async () => (await invites.textContent()) === 'Cy declined.');
  assert.equal(await invites.getAttribute('data-reason'), 'declined');
  await screenshot(a, 'invite-declined');
  await callGoesOn();

  // Busy: Cy is in a call with Dee (a call, not a ring, which would time out).
  await onlineUser(cy.page, 'Dee').getByTestId('call-audio').click();
  await dee.page.getByTestId('accept-call').click();
  await remoteTile(cy.page, 'Dee').waitFor();
  await inviteFrom('Cy');
  await until('Ada to read "Cy is busy."', async () => (await invites.textContent()) === 'Cy is busy.');
  assert.equal(await invites.getAttribute('data-reason'), 'busy');
  assert.equal(await cy.page.getByTestId('incoming-call').count(), 0, 'a busy invitee is not rung');
  assert.equal(await cy.page.evaluate(() => window.chorus.state.screen), 'call', 'Cy\'s own call is untouched');
  await cy.page.getByTestId('hangup').click();
  await dee.page.getByTestId('new-group-call').waitFor();
  await callGoesOn();

  // Not answered (the server's ring timeout is 6 s here).
  await until('Dee to be free again', () => a.evaluate(() => window.chorus.state.users.some((u) => u.name === 'Dee' && !u.busy)));
  await inviteFrom('Dee');
  await dee.page.getByTestId('incoming-call').waitFor();
  await until('Ada to read "Dee did not answer."', async () => (await invites.textContent()) === 'Dee did not answer.', { timeout: 15000 });
  await dee.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  await callGoesOn();
  // The note goes away after a while; the call header is clean again.
  await invites.waitFor({ state: 'hidden', timeout: 15000 });

  await a.getByTestId('hangup').click();
  await bo.page.getByTestId('new-group-call').waitFor();
});

test('an ICE restart offer that crosses a server offer wins; the server answers, then offers again', async () => {
  server = await startServer();
  // Ada's WebSocket goes through a route that can hold her media offers.
  const hold = { active: false, held: [], offersToAda: 0, upstream: null };
  const ada = await person('Ada', {
    onPage: (p) => p.routeWebSocket(/\/ws$/, (ws) => {
      const upstream = ws.connectToServer();
      hold.upstream = upstream;
      ws.onMessage((m) => {
        if (hold.active && JSON.parse(m).type === 'media_offer') hold.held.push(m);
        else upstream.send(m);
      });
      upstream.onMessage((m) => {
        if (JSON.parse(m).type === 'media_offer') hold.offersToAda += 1;
        ws.send(m);
      });
    }),
  });
  const bo = await person('Bo');
  const cy = await person('Cy');
  const a = ada.page;
  await onlineUser(a, 'Cy').waitFor();
  await videoCall(ada, bo);

  // Ada restarts ICE; her offer is held on the way.
  hold.active = true;
  await a.evaluate(() => window.chorus.restartIce());
  await until('the restart offer to be held', () => hold.held.length === 1);
  const offersBefore = hold.offersToAda;

  // Meanwhile Cy joins: the media node offers Ada Cy's tracks, and Ada,
  // with her own offer outstanding, ignores that offer.
  await a.getByTestId('add-person').click();
  await a.locator('[data-testid="invite-user"][data-name="Cy"] button').click();
  await cy.page.getByTestId('accept-call').click();
  await until('Ada to ignore the crossing server offer', () => a.evaluate(() => window.chorus.session.offersIgnored === 1));
  assert.equal(hold.offersToAda, offersBefore + 1);

  // Now the restart offer arrives: the media node drops its own offer,
  // answers, and offers Cy's tracks again; Ada answers that one.
  hold.active = false;
  for (const m of hold.held.splice(0)) hold.upstream.send(m);
  await until('the restart to be answered and the new offer answered', () => a.evaluate(() => {
    const s = window.chorus.session;
    return s.iceRestarts === 1 && !s.ownOffer && s.pc.signalingState === 'stable' && s.offersIgnored === 1;
  }));
  await until('a server offer after the restart', () => hold.offersToAda >= offersBefore + 2);
  await Promise.all([
    expectMedia(a, ['Bo', 'Cy']),
    expectMedia(bo.page, ['Ada', 'Cy']),
    expectMedia(cy.page, ['Ada', 'Bo']),
  ]);
  assert.equal(await a.evaluate(() => window.chorus.session.offersSent), 2);
});

test('in the lobby: a dropped connection resumes, and the others keep seeing the person online', async () => {
  server = await startServer();
  let adaLog;
  const ada = await person('Ada', { onPage: (p) => { adaLog = recordSignaling(p); } });
  const bo = await person('Bo');
  await onlineUser(bo.page, 'Ada').waitFor();
  await onlineUser(ada.page, 'Bo').waitFor();
  await bo.page.evaluate(() => {
    window.adaMissing = 0;
    window.adaWatch = setInterval(() => {
      if (!document.querySelector('[data-testid="online-user"][data-name="Ada"]')) window.adaMissing += 1;
    }, 50);
  });
  await ada.page.evaluate(() => window.chorus.dropConnection({ offlineMs: 2000 }));
  await ada.page.getByTestId('error-banner').waitFor({ state: 'visible' });
  await until('Ada to resume', () => ada.page.evaluate(() => window.chorus.state.conn === 'online' && window.chorus.signaling.resumes === 1));
  await ada.page.getByTestId('error-banner').waitFor({ state: 'hidden' });
  await onlineUser(ada.page, 'Bo').waitFor();
  assert.equal(adaLog.received.filter((m) => m.type === 'welcome').at(-1).resumed, true);
  assert.equal(await bo.page.evaluate(() => {
    clearInterval(window.adaWatch);
    return window.adaMissing;
  }), 0, 'Bo never saw Ada go offline');
  // And she can still call.
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('incoming-call').waitFor();
  await ada.page.getByTestId('cancel-call').click();
  await bo.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
});

test('a resumed page is set right by call_sync: a lost call_ended ends its ring, a lost hang-up is sent again', async () => {
  server = await startServer();
  // Ada's WebSocket goes through a route that loses the messages named in
  // `lose` (as a cluster coordinator that dies may lose its last moments).
  const lose = { toPage: null, fromPage: null, lost: [] };
  const ada = await person('Ada', {
    onPage: (p) => p.routeWebSocket(/\/ws$/, (ws) => {
      const upstream = ws.connectToServer();
      ws.onMessage((m) => {
        if (JSON.parse(m).type === lose.fromPage) lose.lost.push(JSON.parse(m));
        else upstream.send(m);
      });
      upstream.onMessage((m) => {
        if (JSON.parse(m).type === lose.toPage) lose.lost.push(JSON.parse(m));
        else ws.send(m);
      });
    }),
  });
  const bo = await person('Bo');
  const a = ada.page;
  const b = bo.page;
  await onlineUser(b, 'Ada').waitFor();
  const resumed = async (n) => {
    await a.evaluate(() => window.chorus.dropConnection({ offlineMs: 300 }));
    await until('Ada to resume', () => a.evaluate((k) => window.chorus.state.conn === 'online' && window.chorus.signaling.resumes === k, n));
  };

  // Bo rings Ada and cancels; the call_ended to Ada is lost: she rings on.
  lose.toPage = 'call_ended';
  await onlineUser(b, 'Ada').getByTestId('call-audio').click();
  await a.getByTestId('incoming-call').waitFor();
  await b.getByTestId('cancel-call').click();
  await until('the call_ended to Ada to be lost', () => lose.lost.length === 1);
  assert.equal(await a.getByTestId('incoming-call').count(), 1);
  lose.toPage = null;
  // After a resume the server's call_sync names no call: the ring ends.
  await resumed(1);
  await a.getByTestId('incoming-call').waitFor({ state: 'detached', timeout: 5000 });
  assert.equal(await a.getByTestId('call-status').textContent(), 'ended');
  // Her ringing connection may have answered a media_offer (Bo's tracks
  // gone) while the socket was down: that is no error of hers to show.
  assert.equal(await a.getByTestId('error-banner').isVisible(), false, 'no error shown to Ada after the first resume');

  // Ada calls Bo; her hang-up is lost: Bo stays in the call alone.
  await onlineUser(a, 'Bo').getByTestId('call-audio').click();
  await b.getByTestId('accept-call').click();
  await remoteTile(a, 'Bo').waitFor();
  lose.fromPage = 'hangup';
  // Her media connection is not closed either (as when its closing never
  // reaches the media node): otherwise the media node would end the call
  // for Bo on its own, sooner or later, and only the hang-up may.
  await a.evaluate(() => { RTCPeerConnection.prototype.close = () => {}; });
  await a.getByTestId('hangup').click();
  await a.getByTestId('new-group-call').waitFor();
  await until('the hang-up to be lost', () => lose.lost.length === 2);
  assert.equal(await b.getByTestId('hangup').count(), 1, 'Bo is still in the call');
  lose.fromPage = null;
  // After a resume the server names the call Ada left: she hangs it up
  // again, quietly, and Bo's call ends.
  await resumed(2);
  await b.getByTestId('new-group-call').waitFor({ timeout: 5000 });
  assert.equal(await b.getByTestId('call-status').textContent(), 'ended');
  await screenshot(a, 'resumed-after-lost-hangup');
  assert.equal(await a.getByTestId('error-banner').isVisible(), false, 'no error shown to Ada');
});

test('back after the grace period: a fresh session, the call is over on both sides', async () => {
  server = await startServer(['--reconnect-grace', '2']);
  const ada = await person('Ada');
  const bo = await person('Bo');
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(ada.page, 'Bo').waitFor();
  await expectMedia(bo.page, ['Ada'], { video: false });

  await ada.page.evaluate(() => window.chorus.dropConnection({ offlineMs: 4000 }));
  // Bo learns it when the grace period is over, not before.
  await bo.page.getByTestId('new-group-call').waitFor({ timeout: 10000 });
  assert.match(await bo.page.locator('.notice').textContent(), /Ada lost their connection, so the call ended/);
  // Ada is told when she is back and finds her session gone.
  await ada.page.getByTestId('new-group-call').waitFor({ timeout: 15000 });
  assert.equal(await ada.page.evaluate(() => window.chorus.signaling.freshSignIns), 2);
  assert.equal(await ada.page.getByTestId('call-status').textContent(), 'ended');
  assert.match(await ada.page.locator('.notice').textContent(), /Lost the connection to the server, so the call ended/);
  await ada.page.getByTestId('error-banner').waitFor({ state: 'hidden' });
  await onlineUser(ada.page, 'Bo').waitFor();
  await onlineUser(bo.page, 'Ada').waitFor();
  await screenshot(ada.page, 'resume-too-late');
});

test('server shutdown: new calls are refused while it drains, then running calls end in plain words', async () => {
  server = await startServer(['--drain-timeout', '5']);
  const ada = await person('Ada');
  const bo = await person('Bo');
  const cy = await person('Cy');
  await onlineUser(cy.page, 'Ada').waitFor();
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(ada.page, 'Bo').waitFor();

  const exited = new Promise((r) => server.proc.once('exit', r));
  server.proc.kill('SIGTERM');
  // Draining: a new call is refused, in plain words.
  await until('Cy to be told the server is restarting', async () => {
    await onlineUser(cy.page, 'Ada').getByTestId('call-audio').click();
    const banner = cy.page.getByTestId('error-banner');
    return (await banner.isVisible()) && /The server is restarting, so no new calls can start right now/.test(await banner.textContent());
  }, { timeout: 5000, interval: 300 });
  await cy.page.getByTestId('new-group-call').waitFor();
  // The running call ends when the drain time is up.
  for (const p of [ada.page, bo.page]) {
    await p.getByTestId('new-group-call').waitFor({ timeout: 10000 });
    assert.equal(await p.getByTestId('call-status').textContent(), 'ended');
    assert.match(await p.locator('.notice').textContent(), /The server is restarting; the call ended\./);
  }
  await screenshot(ada.page, 'server-shutdown');
  await exited;
});
