// Leaving on purpose: closing the page hangs up what was going on; signing
// out and taking another name close the signaling connection cleanly (code
// 1000, as the page does when it goes away), and such a close is never
// taken for a drop.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openPerson, until, onlineUser, remoteTile, recordSignaling } from './harness.mjs';

const env = serverAndBrowser();

/**
 * Sends `page`'s signaling WebSocket through the test, which records how
 * the page closes it (code and reason) and passes everything on. The
 * page's own close comes first; the route may report the socket's end
 * after it (1006).
 */
function watchCloses(page) {
  const log = { sockets: 0, closes: [] };
  return page.routeWebSocket(/\/ws$/, (ws) => {
    log.sockets += 1;
    const upstream = ws.connectToServer();
    ws.onClose((code, reason) => {
      log.closes.push({ code, reason });
      upstream.close({ code, reason });
    });
  }).then(() => log);
}

test('closing the page hangs up at once', async () => {
  // No route on Ada's socket here: a routed socket goes through the test
  // and back, which a closing page does not wait for.
  const ada = await openPerson(env.browser, env.server.url, 'Ada');
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  await onlineUser(ada.page, 'Bo').getByTestId('call-audio').click();
  await bo.page.getByTestId('accept-call').click();
  await remoteTile(bo.page, 'Ada').waitFor();

  await ada.page.close({ runBeforeUnload: true });
  // Bo is told that Ada hung up; nobody waits out the reconnect grace (20 s)
  // for her to come back.
  await bo.page.getByTestId('new-group-call').waitFor({ timeout: 5000 });
  assert.equal(await bo.page.getByTestId('call-status').textContent(), 'ended');
  assert.match(await bo.page.locator('.notice').textContent(), /Ada hung up/);
  await Promise.all([ada.context.close(), bo.context.close()]);
});

test('signing out closes cleanly, forgets the token and does not reconnect; signing in again is a new session', async () => {
  let socket;
  let signalingLog;
  const ada = await openPerson(env.browser, env.server.url, 'Ada', {
    onPage: async (p) => {
      signalingLog = recordSignaling(p);
      socket = await watchCloses(p);
    },
  });
  const a = ada.page;
  await a.getByTestId('sign-out').click();
  await a.getByTestId('name-input').waitFor();
  await until('the sign-out to close the connection', () => socket.closes.length > 0);
  assert.deepEqual(socket.closes[0], { code: 1000, reason: 'signed out' });
  assert.equal(await a.evaluate(() => window.chorus.state.conn), 'idle');
  assert.equal(await a.evaluate(() => localStorage.getItem('chorus.identity')), null, 'the token is forgotten');
  assert.equal(await a.getByTestId('name-input').inputValue(), 'Ada', 'the name stays as a suggestion');
  assert.equal(await a.getByTestId('error-banner').isVisible(), false, 'signing out is no connection problem');

  // The same name again: a new token, a new session, on the second socket
  // (none was opened in between, as a reconnect would have).
  await a.getByTestId('name-submit').click();
  await a.getByTestId('new-group-call').waitFor();
  await until('Ada to be online again', () => a.evaluate(() => window.chorus.state.conn === 'online'));
  assert.equal(socket.sockets, 2);
  const welcomes = signalingLog.received.filter((m) => m.type === 'welcome');
  assert.deepEqual(welcomes.map((w) => w.resumed), [false, false]);
  assert.equal(signalingLog.sent.filter((m) => m.type === 'auth' && m.resume).length, 0, 'no resume after signing out');
  await ada.context.close();
});

test('a new name closes the old session cleanly and signs in as the new one', async () => {
  let socket;
  const ada = await openPerson(env.browser, env.server.url, 'Ada', { onPage: async (p) => { socket = await watchCloses(p); } });
  const bo = await openPerson(env.browser, env.server.url, 'Bo');
  const a = ada.page;
  await a.getByTestId('change-name').click();
  await a.getByTestId('name-input').fill('Ada Lovelace');
  await a.getByTestId('name-submit').click();
  await until('the old session to close', () => socket.closes.length > 0);
  assert.deepEqual(socket.closes[0], { code: 1000, reason: 'signing in again' });
  await onlineUser(bo.page, 'Ada Lovelace').waitFor();
  assert.equal(socket.sockets, 2);
  assert.equal(await a.evaluate(() => window.chorus.state.me.name), 'Ada Lovelace');
  await Promise.all([ada.context.close(), bo.context.close()]);
});
