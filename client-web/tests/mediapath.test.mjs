// The pure parts of how the client finds its way to the media node
// (mediapath.js) and what it says when none works (texts.js), without a
// browser: `welcome` → RTCPeerConnection settings, a getStats() report →
// the path shown, the answer's SDP → the ports named to the operator.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iceConfigFrom, hasTurn, selectedPath, announcedPorts } from '../mediapath.js';
import { mediaUnreachable, connectionDetail } from '../texts.js';

/** A getStats() report: a Map from id to stats, as browsers return it. */
function report(...entries) {
  return new Map(entries.map((e) => [e.id, e]));
}

const transport = { id: 'T01', type: 'transport', selectedCandidatePairId: 'CP1' };
const local = (protocol, candidateType) => ({ id: 'L1', type: 'local-candidate', protocol, candidateType });
const pair = (rtt) => ({ id: 'CP1', type: 'candidate-pair', localCandidateId: 'L1', remoteCandidateId: 'R1', state: 'succeeded', currentRoundTripTime: rtt });

test('welcome → RTCPeerConnection settings: TURN with credentials, STUN without, junk left out', () => {
  const config = iceConfigFrom({
    type: 'welcome',
    ice_servers: [
      { urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:443?transport=tcp'], username: '1795086400:u-1', credential: 'c2VjcmV0' },
      { urls: ['stun:stun.example.org'], username: null, credential: null },
      { urls: [] },
      { urls: [42] },
      null,
      { urls: 'turn:single.example.org' },
    ],
    ice_transport_policy: 'relay',
  });
  assert.deepEqual(config, {
    iceServers: [
      { urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:443?transport=tcp'], username: '1795086400:u-1', credential: 'c2VjcmV0' },
      { urls: ['stun:stun.example.org'] },
      { urls: ['turn:single.example.org'] },
    ],
    iceTransportPolicy: 'relay',
  });
  assert.equal(hasTurn(config), true);
  // Older servers say nothing: no servers, every path allowed.
  assert.deepEqual(iceConfigFrom({ type: 'welcome' }), { iceServers: [], iceTransportPolicy: 'all' });
  assert.deepEqual(iceConfigFrom({ ice_servers: 'x', ice_transport_policy: 'bogus' }), { iceServers: [], iceTransportPolicy: 'all' });
  assert.equal(hasTurn(iceConfigFrom({ ice_servers: [{ urls: ['stun:stun.example.org'] }] })), false);
});

test('the selected pair says the path: relay by our candidate, else the protocol; RTT in ms', () => {
  assert.deepEqual(selectedPath(report(transport, pair(0.0124), local('udp', 'host'))), { path: 'udp', rttMs: 12 });
  assert.deepEqual(selectedPath(report(transport, pair(0.03), local('tcp', 'host'))), { path: 'tcp', rttMs: 30 });
  // A relay reached over TCP or TLS is still a relay.
  assert.deepEqual(selectedPath(report(transport, pair(0.0451), local('udp', 'relay'))), { path: 'relay', rttMs: 45 });
  assert.deepEqual(selectedPath(report(transport, pair(0.02), local('tcp', 'relay'))), { path: 'relay', rttMs: 20 });
  // Before the first round trip was measured.
  assert.deepEqual(selectedPath(report(transport, pair(undefined), local('udp', 'prflx'))), { path: 'udp', rttMs: null });
  assert.equal(connectionDetail({ path: 'udp', rttMs: null }), 'UDP');
  assert.equal(connectionDetail({ path: 'relay', rttMs: 45 }), 'Relay (TURN) · 45 ms');
});

test('no selected pair yet, or a browser that marks the pair instead of the transport', () => {
  assert.equal(selectedPath(report({ id: 'T01', type: 'transport' }, pair(0.01), local('udp', 'host'))), null);
  assert.equal(selectedPath(report(transport, local('udp', 'host'))), null, 'the named pair is missing');
  assert.equal(selectedPath(report(transport, pair(0.01))), null, 'its local candidate is missing');
  const marked = { ...pair(0.008), selected: true };
  assert.deepEqual(selectedPath(report({ id: 'T01', type: 'transport' }, marked, local('tcp', 'host'))), { path: 'tcp', rttMs: 8 });
  const nominated = { ...pair(0.008), nominated: true };
  assert.deepEqual(selectedPath(report(nominated, local('udp', 'host'))), { path: 'udp', rttMs: 8 });
});

test('the ports named to the operator come from the media node\'s host candidates', () => {
  const sdp = [
    'v=0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111',
    'a=candidate:1 1 udp 2130706175 198.18.7.1 50000 typ host',
    'a=candidate:2 1 tcp 1671430143 198.18.7.1 50000 typ host tcptype passive',
    'm=video 9 UDP/TLS/RTP/SAVPF 96',
    'a=candidate:1 1 udp 2130706175 198.18.7.1 50000 typ host',
    '',
  ].join('\r\n');
  assert.deepEqual(announcedPorts(sdp), { udpPort: 50000, tcpPort: 50000 });
  assert.deepEqual(announcedPorts('a=candidate:1 1 UDP 2130706175 192.0.2.10 50001 typ host\r\n'), { udpPort: 50001, tcpPort: null });
  assert.deepEqual(announcedPorts(''), { udpPort: null, tcpPort: null });
  assert.deepEqual(announcedPorts(undefined), { udpPort: null, tcpPort: null });
});

test('a call that cannot connect: what to try, then what the operator can do', () => {
  const you = 'The call could not connect: your network may block calls. Try another network, such as mobile data.';
  assert.equal(mediaUnreachable({ udpPort: 50000, tcpPort: 50000 }),
    `${you} If it keeps happening, the server's operator can enable TURN (--turn-url) or check that UDP and TCP port 50000 can be reached.`);
  assert.equal(mediaUnreachable({ udpPort: 50000, tcpPort: 443 }),
    `${you} If it keeps happening, the server's operator can enable TURN (--turn-url) or check that UDP port 50000 and TCP port 443 can be reached.`);
  assert.equal(mediaUnreachable({ udpPort: 50000 }),
    `${you} If it keeps happening, the server's operator can enable TURN (--turn-url) or check that UDP port 50000 can be reached.`);
  assert.equal(mediaUnreachable({}),
    `${you} If it keeps happening, the server's operator can enable TURN (--turn-url) or check that its media ports can be reached.`);
  // With TURN configured, TURN is the way that should have worked.
  for (const hint of [{ udpPort: 50000, tcpPort: 50000, turn: true }, { relayOnly: true, turn: true }]) {
    assert.equal(mediaUnreachable(hint), `${you} If it keeps happening, the server's operator can check that its TURN server can be reached.`);
  }
});
