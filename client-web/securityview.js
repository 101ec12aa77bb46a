// The call screen's word on privacy: a lock while every stream of the call
// is end-to-end encrypted, a plain "not end-to-end encrypted" otherwise,
// the security codes to compare with each member (digits and a QR code),
// and a notice when a member's identity key changed since this device
// last saw it.

import { h, icon } from './ui.js';
import { groupDigits } from './e2ee/code.js';
import { qrSvg } from './e2ee/qr.js';
import { E2EE_ON, E2EE_WAITING, E2EE_OFF, E2EE_EXPLAINED, securityCodeChanged } from './texts.js';

/** The elements, made once per call screen; `onToggle` opens or closes the codes. */
export function buildSecurity(onToggle) {
  const v = {};
  v.lock = h('button', {
    class: 'e2ee-lock', 'data-testid': 'e2ee-lock', hidden: true, title: 'Verify the security codes', onclick: onToggle,
  }, icon('lock', 'icon small'), h('span', {}, E2EE_ON));
  v.waiting = h('span', { class: 'e2ee-waiting', 'data-testid': 'e2ee-waiting', hidden: true }, E2EE_WAITING);
  v.plain = h('span', { class: 'e2ee-off', 'data-testid': 'e2ee-off', hidden: true }, E2EE_OFF);
  v.changed = h('p', { class: 'e2ee-changed', 'data-testid': 'security-code-changed', role: 'alert', hidden: true });
  v.codes = h('div', { class: 'sheet codes', 'data-testid': 'security-codes', hidden: true, role: 'dialog', 'aria-label': 'Security codes' });
  v.codesFor = '';
  return v;
}

/** Updates them from the call `c` (calls.js `state.call`); `onToggle` closes the codes. */
export function renderSecurity(c, v, onToggle) {
  const crypto = c.crypto;
  const all = !!(crypto && crypto.allEncrypted());
  v.lock.hidden = !all;
  v.waiting.hidden = !crypto || all;
  v.plain.hidden = c.e2ee;
  const changed = crypto ? crypto.changedPeers() : [];
  v.changed.hidden = changed.length === 0;
  v.changed.textContent = changed.length ? securityCodeChanged(changed.map((p) => p.name)) : '';
  v.codes.hidden = !(c.codesOpen && crypto);
  if (v.codes.hidden) {
    v.codesFor = '';
    return;
  }
  const peers = [...crypto.peers.values()];
  const key = peers.map((p) => p.id).join(',');
  if (v.codesFor === key) return;
  v.codesFor = key;
  v.codes.replaceChildren(
    h('div', { class: 'sheet-head' },
      h('h2', {}, 'Security codes'),
      h('button', { class: 'icon-button', 'aria-label': 'Close', onclick: onToggle }, icon('close'))),
    h('p', { class: 'muted' }, E2EE_EXPLAINED),
    peers.length
      ? h('ul', { class: 'codes-list' }, peers.map((p) => {
        const digits = h('code', { class: 'code', 'data-testid': 'security-code', 'data-participant-id': p.id }, '…');
        const qr = h('div', { class: 'qr', 'data-testid': 'security-qr', 'data-participant-id': p.id });
        crypto.codeWith(p.id).then((code) => {
          if (!code) return;
          digits.textContent = groupDigits(code);
          qr.replaceChildren(qrSvg(code, { px: 148 }));
        });
        return h('li', { 'data-name': p.name }, h('span', { class: 'name' }, p.name), digits, qr);
      }))
      : h('p', { class: 'muted' }, 'Nobody else is in the call yet.'));
}
