// The presence list: the whole list comes in `presence` on sign-in and
// resume, then only what changed in `presence_update` (docs/protocol.md).

/**
 * The presence list after a `presence_update` (docs/protocol.md): the users
 * gone or changed are taken out, the changed and new put in, in the
 * server's order (by name, then id).
 */
export function updatedUsers(users, msg) {
  const gone = new Set(msg.gone || []);
  const changed = msg.users || [];
  for (const u of changed) gone.add(u.id);
  const enc = new TextEncoder();
  return users
    .filter((u) => !gone.has(u.id))
    .concat(changed)
    .map((u) => ({ u, name: enc.encode(u.name), id: enc.encode(u.id) }))
    .sort((a, b) => compareBytes(a.name, b.name) || compareBytes(a.id, b.id))
    .map((e) => e.u);
}

/** Byte order, as the server sorts strings. */
function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}
