// The presence list the lobby shows, without a browser: a `presence_update`
// applied to the last list gives what a fresh `presence` would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { updatedUsers } from '../presence.js';

const u = (id, name, busy = false) => ({ id, name, busy });

test('presence_update: new users in the server order, changed ones replaced, gone ones out', () => {
  const list = [u('u-1', 'Ada'), u('u-2', 'Bo'), u('u-3', 'Cy')];
  const after = updatedUsers(list, {
    type: 'presence_update',
    users: [u('u-2', 'Bo', true), u('u-4', 'Ana'), u('u-5', 'Bo')],
    gone: ['u-3'],
  });
  assert.deepEqual(after, [u('u-1', 'Ada'), u('u-4', 'Ana'), u('u-2', 'Bo', true), u('u-5', 'Bo')]);
  assert.deepEqual(list.length, 3, 'the old list is left as it was');
});

test('presence_update: byte order as the server sorts (upper case first, then accents), an unknown gone id ignored', () => {
  const after = updatedUsers([u('u-1', 'bo')], { users: [u('u-2', 'Émile'), u('u-3', 'Zoë'), u('u-4', 'zed')], gone: ['u-9'] });
  assert.deepEqual(after.map((x) => x.name), ['Zoë', 'bo', 'zed', 'Émile']);
  assert.deepEqual(updatedUsers(after, {}), after, 'an empty update changes nothing');
});
