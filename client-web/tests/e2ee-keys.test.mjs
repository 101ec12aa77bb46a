// The key schedule of end-to-end encrypted calls, in Node's WebCrypto:
// who can open which frame, wrapped keys, security codes and chat messages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  randomMaterial, randomTag, ratchet, frameKey, newIdentity, exportPublic, importPublic, pairKey, wrapKey, unwrapKey,
} from '../e2ee/keys.js';
import { seal, open, trailerOf, clearBytes, TRAILER_BYTES } from '../e2ee/frame.js';
import { KeyRing } from '../e2ee/ring.js';
import { securityCode, fingerprintDigits } from '../e2ee/code.js';
import { sealChat, openChat } from '../e2ee/chat.js';

const payload = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff).buffer;

async function device(id) {
  const pair = await newIdentity();
  return { id, ...pair, public: await exportPublic(pair.publicKey) };
}

/** A frame `sender` seals with `material` at `index`. */
async function frame(material, tag, index, kind = 'video', type = 'delta') {
  return seal(await frameKey(material), payload(200), clearBytes(kind, type), tag, index);
}

/** Whether a receiver holding `ring` opens `data` (and keeps a ratcheted key when it does). */
async function opens(ring, data) {
  const t = trailerOf(data);
  const found = t && await ring.find(t.tag, t.index);
  if (!found) return false;
  try {
    const plain = await open(found.key, data, t);
    if (found.keep) found.keep();
    return Buffer.from(plain).equals(Buffer.from(payload(200)));
  } catch {
    return false;
  }
}

test('frames keep their clear header, hide the rest and refuse any change', async () => {
  const key = await frameKey(randomMaterial());
  const plain = new Uint8Array(payload(300));
  for (const [kind, type, clear] of [['video', 'key', 10], ['video', 'delta', 3], ['audio', undefined, 1]]) {
    const sealed = new Uint8Array(await seal(key, plain.buffer, clearBytes(kind, type), 7, 1));
    assert.equal(clearBytes(kind, type), clear);
    assert.deepEqual(sealed.subarray(0, clear), plain.subarray(0, clear), `${kind} ${type}: header in the clear`);
    assert.equal(sealed.length, plain.length + 16 + TRAILER_BYTES);
    const body = sealed.subarray(clear, plain.length);
    const same = body.filter((b, i) => b === plain[clear + i]).length;
    assert.ok(same < body.length / 16, `${kind} ${type}: the rest is not the plaintext (${same} bytes equal)`);
    const t = trailerOf(sealed.buffer);
    assert.deepEqual(t, { tag: 7, index: 1, clear });
    assert.deepEqual(new Uint8Array(await open(key, sealed.buffer, t)), plain);
    // A header byte changed on the way: the frame no longer opens.
    const forged = sealed.slice();
    forged[0] ^= 1;
    await assert.rejects(open(key, forged.buffer, t));
  }
  assert.equal(trailerOf(plain.buffer), null, 'a frame in the clear is not taken for an encrypted one');
});

test('a newcomer cannot open frames from before it joined; the others follow the ratchet by themselves', async () => {
  const tag = randomTag();
  const before = randomMaterial();
  const after = await ratchet(before);
  const old = new KeyRing();
  await old.add('ada', { tag, index: 0, material: before });
  const newcomer = new KeyRing();
  await newcomer.add('ada', { tag, index: 1, material: after });
  const oldFrame = await frame(before, tag, 0);
  const newFrame = await frame(after, tag, 1);
  assert.equal(await opens(newcomer, oldFrame), false, 'the newcomer cannot read what came before');
  assert.equal(await opens(newcomer, newFrame), true);
  assert.equal(await opens(old, newFrame), true, 'a member derives the next key itself');
  assert.equal(await opens(old, oldFrame), true, 'and still opens frames in flight');
  // Ratcheting goes forward only, and only a few steps.
  const far = await frame(await ratchet(await ratchet(after)), tag, 3);
  assert.equal(await opens(old, far), true);
  let material = after;
  for (let i = 0; i < 20; i += 1) material = await ratchet(material);
  assert.equal(await opens(old, await frame(material, tag, 21)), false);
});

test('after someone leaves, a page that kept the old key cannot open the new frames', async () => {
  const tag = randomTag();
  const first = randomMaterial();
  const leaver = new KeyRing();
  const stayer = new KeyRing();
  await leaver.add('ada', { tag, index: 4, material: first });
  await stayer.add('ada', { tag, index: 4, material: first });
  const fresh = randomMaterial();
  await stayer.add('ada', { tag, index: 5, material: fresh });
  const next = await frame(fresh, tag, 5);
  assert.equal(await opens(stayer, next), true);
  assert.equal(await opens(leaver, next), false, 'the leaver ratchets its old key and still cannot read');
  assert.equal(await opens(stayer, await frame(first, tag, 4)), true, 'frames still in flight with the old key open');
});

test('a wrapped key opens only for its recipient, in its room', async () => {
  const [ada, bo, cy] = await Promise.all([device('ada'), device('bo'), device('cy')]);
  const room = 'r1';
  const key = { tag: randomTag(), index: 3, material: randomMaterial() };
  const ends = { roomId: room, from: 'ada', to: 'bo' };
  const data = await wrapKey(await pairKey(ada.privateKey, await importPublic(bo.public), room), key, ends);
  const atBo = await pairKey(bo.privateKey, await importPublic(ada.public), room);
  assert.deepEqual(await unwrapKey(atBo, data, ends), key);
  // Cy (the server, anyone) has no way in; nor does it open as for another recipient or room.
  const atCy = await pairKey(cy.privateKey, await importPublic(ada.public), room);
  await assert.rejects(unwrapKey(atCy, data, { ...ends, to: 'cy' }));
  await assert.rejects(unwrapKey(atBo, data, { ...ends, to: 'cy' }));
  const otherRoom = await pairKey(bo.privateKey, await importPublic(ada.public), 'r2');
  await assert.rejects(unwrapKey(otherRoom, data, { ...ends, roomId: 'r2' }));
});

test('the security code is the same on both sides, differs for anyone else and changes with a new key', async () => {
  const [ada, bo, cy] = await Promise.all([device('ada'), device('bo'), device('cy')]);
  const atAda = await securityCode({ id: 'ada', key: ada.public }, { id: 'bo', key: bo.public });
  const atBo = await securityCode({ id: 'bo', key: bo.public }, { id: 'ada', key: ada.public });
  assert.match(atAda, /^\d{60}$/);
  assert.equal(atAda, atBo);
  const withCy = await securityCode({ id: 'ada', key: ada.public }, { id: 'cy', key: cy.public });
  assert.notEqual(withCy, atAda);
  const bo2 = await device('bo');
  const replaced = await securityCode({ id: 'ada', key: ada.public }, { id: 'bo', key: bo2.public });
  assert.notEqual(replaced, atAda);
  assert.equal(replaced.includes(await fingerprintDigits('ada', ada.public)), true, 'Ada\'s half stays');
});

test('a sealed chat message opens with the sender\'s key, or one it ratcheted to, only in its room and from its sender', async () => {
  const key = { tag: randomTag(), index: 3, material: randomMaterial() };
  const ends = { roomId: 'room-1', from: 'u-ada' };
  const sealed = await sealChat(key, { text: 'hello, ünïcode 👋' }, ends);
  assert.ok(!atob(sealed).includes('hello'));
  assert.deepEqual(await openChat([key], sealed, ends), { text: 'hello, ünïcode 👋' });
  // A key the sender moved to when someone joined: the receiver ratchets.
  const next = { tag: key.tag, index: 5, material: await ratchet(await ratchet(key.material)) };
  const later = await sealChat(next, { reaction: '👍' }, ends);
  assert.deepEqual(await openChat([key], later, ends), { reaction: '👍' });
  // Without the sender's key (a newcomer holding only the new one, or
  // another sender's): not yet.
  assert.equal(await openChat([next], sealed, ends), null);
  assert.equal(await openChat([{ ...key, tag: key.tag ^ 1 }], sealed, ends), null);
  // Another room or another sender: refused.
  await assert.rejects(openChat([key], sealed, { roomId: 'room-2', from: 'u-ada' }));
  await assert.rejects(openChat([key], sealed, { roomId: 'room-1', from: 'u-bo' }));
  await assert.rejects(openChat([key], 'AAAA', ends));
});
