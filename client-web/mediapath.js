// How a call's media reaches the media node. The browser tries every way at
// once (ICE) and keeps the best that works: straight over UDP, over TCP when
// the network blocks UDP (the media node listens for it too), or through a
// TURN relay when the server names one. This module reads which one the
// browser chose, and what the server offered, from what the browser itself
// reports; nothing here is sent anywhere.

/**
 * The `RTCPeerConnection` settings from a `welcome` (docs/protocol.md):
 * `ice_servers` and `ice_transport_policy`, checked, so that a malformed
 * entry costs that entry only.
 * @returns {{ iceServers: RTCIceServer[], iceTransportPolicy: 'all'|'relay' }}
 */
export function iceConfigFrom(welcome) {
  const servers = Array.isArray(welcome && welcome.ice_servers) ? welcome.ice_servers : [];
  const iceServers = [];
  for (const s of servers) {
    const urls = (Array.isArray(s && s.urls) ? s.urls : [s && s.urls]).filter((u) => typeof u === 'string' && u);
    if (!urls.length) continue;
    const server = { urls };
    // Absent, not null: the browser would take null for the string "null".
    if (typeof s.username === 'string') server.username = s.username;
    if (typeof s.credential === 'string') server.credential = s.credential;
    iceServers.push(server);
  }
  const iceTransportPolicy = welcome && welcome.ice_transport_policy === 'relay' ? 'relay' : 'all';
  return { iceServers, iceTransportPolicy };
}

/** True when `config` names a TURN server (not only STUN). */
export function hasTurn(config) {
  return config.iceServers.some((s) => s.urls.some((u) => /^turns?:/i.test(u)));
}

/**
 * The path of the selected candidate pair in a `getStats()` report, or null
 * while there is none: `path` is `relay` when our side of the pair is a
 * TURN relay, else the pair's transport (`udp` or `tcp`); `rttMs` is the
 * latest ICE round trip in milliseconds (null until one was measured).
 * @returns {{ path: 'udp'|'tcp'|'relay', rttMs: number|null } | null}
 */
export function selectedPath(report) {
  let pair = null;
  report.forEach((s) => {
    if (!pair && s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || null;
  });
  if (!pair) {
    // Browsers that name no selected pair on the transport mark the pair itself.
    report.forEach((s) => {
      if (!pair && s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
    });
  }
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  if (!local) return null;
  const protocol = String(local.protocol || '').toLowerCase();
  let path;
  if (local.candidateType === 'relay') path = 'relay';
  else if (protocol === 'udp' || protocol === 'tcp') path = protocol;
  else return null;
  const rtt = pair.currentRoundTripTime;
  return { path, rttMs: typeof rtt === 'number' && Number.isFinite(rtt) ? Math.round(rtt * 1000) : null };
}

/**
 * The media node's ports as its SDP announces them (its host candidates):
 * what an operator must keep reachable. Null where none is announced.
 * @returns {{ udpPort: number|null, tcpPort: number|null }}
 */
export function announcedPorts(sdp) {
  const out = { udpPort: null, tcpPort: null };
  const re = /^a=candidate:\S+ \d+ (udp|tcp) \d+ \S+ (\d+) typ host/gim;
  for (const m of String(sdp || '').matchAll(re)) {
    const key = m[1].toLowerCase() === 'udp' ? 'udpPort' : 'tcpPort';
    if (out[key] === null) out[key] = Number(m[2]);
  }
  return out;
}
