// What the browser's own statistics say about a call's incoming media:
// who is speaking (the green ring), and per-person receive counters.
// session.js reads a `getStats()` report every 200 ms and hands it here.

import { selectedPath } from './mediapath.js';

const SPEAKING_THRESHOLD = 0.04;
const SPEAKING_HOLD_MS = 600;
/** A new round trip is shown at most this often (a new path at once). */
const RTT_REFRESH_MS = 1000;

/**
 * Who is speaking: the audio energy each track carried since the last
 * read (`totalAudioEnergy` over `totalSamplesDuration`). The level of the
 * latest packet alone would depend on when the read happens: a sound
 * shorter than the interval could be missed every time.
 */
export function readLevels(session, report) {
  const inbound = new Map();
  let source = null;
  report.forEach((st) => {
    if (st.kind !== 'audio') return;
    if (st.type === 'inbound-rtp' && st.trackIdentifier) inbound.set(st.trackIdentifier, st);
    else if (st.type === 'media-source') source = st;
  });
  const now = Date.now();
  let changed = false;
  for (const p of session.participants.values()) {
    const track = p.audioTrack;
    const level = track ? levelSince(session.energySeen, track.id, inbound.get(track.id)) : 0;
    p.level = p.audio ? level : 0;
    if (p.level >= SPEAKING_THRESHOLD) p.speakingUntil = now + SPEAKING_HOLD_MS;
    const speaking = p.speakingUntil > now;
    if (speaking !== p.speaking) {
      p.speaking = speaking;
      changed = true;
    }
  }
  const mine = levelSince(session.energySeen, 'local', source);
  if (session.localState().audio && mine >= SPEAKING_THRESHOLD) session.localSpeakingUntil = now + SPEAKING_HOLD_MS;
  const localSpeaking = session.localSpeakingUntil > now;
  if (localSpeaking !== session.localSpeaking) {
    session.localSpeaking = localSpeaking;
    changed = true;
  }
  if (changed) session.onChange('speaking');
}

/**
 * The root mean square level of `stats` (inbound-rtp or media-source) since
 * the last call for `key`; `seen` keeps what each key last read.
 */
function levelSince(seen, key, stats) {
  if (!stats || typeof stats.totalAudioEnergy !== 'number' || typeof stats.totalSamplesDuration !== 'number') return 0;
  const last = seen.get(key);
  seen.set(key, { energy: stats.totalAudioEnergy, duration: stats.totalSamplesDuration });
  if (!last) return 0;
  const duration = stats.totalSamplesDuration - last.duration;
  const energy = stats.totalAudioEnergy - last.energy;
  return duration > 0 && energy > 0 ? Math.sqrt(energy / duration) : 0;
}

/** Per-person receive statistics (the browser tests read these). */
export async function receiveStats(participants) {
  const out = {};
  for (const p of participants) {
    const entry = { id: p.id, name: p.name, audio: null, video: null };
    for (const [kind, r] of [['audio', p.audioReceiver], ['video', p.videoReceiver]]) {
      if (!r) continue;
      let report;
      try {
        report = await r.getStats();
      } catch {
        continue; // Its connection closed meanwhile (the media moved).
      }
      report.forEach((st) => {
        if (st.type !== 'inbound-rtp') return;
        entry[kind] = {
          packetsReceived: st.packetsReceived ?? 0,
          bytesReceived: st.bytesReceived ?? 0,
          framesDecoded: st.framesDecoded ?? 0,
          frameWidth: st.frameWidth ?? 0,
          frameHeight: st.frameHeight ?? 0,
          audioLevel: st.audioLevel ?? 0,
          totalAudioEnergy: st.totalAudioEnergy ?? 0,
          codec: st.codecId ?? null,
        };
      });
    }
    out[p.name] = entry;
  }
  return out;
}

/**
 * One stats report of a call session for everything read from it: who
 * speaks, how good the connection is, and the media's path.
 */
export async function readStats(session) {
  const pc = session.pc;
  // While the media moves, the tiles play the old connection's tracks:
  // their levels are in its report.
  // Over a direct connection (direct.js), in its report.
  const direct = session.direct && session.direct.active() ? session.direct.pc : null;
  const playing = direct || (session.move ? session.move.old.pc : pc);
  let report;
  let levels;
  try {
    report = await pc.getStats();
    levels = playing === pc ? report : await playing.getStats();
  } catch {
    return; // Closed meanwhile.
  }
  if (session.closed || pc !== session.pc) return;
  readLevels(session, levels);
  const level = session.quality.sample(levels, Date.now());
  if (level) {
    session.send({ type: 'quality', room_id: session.roomId, level });
    session.onChange('quality');
  }
  const path = selectedPath(report);
  const now = Date.now();
  const moved = path?.path !== session.path?.path;
  if (moved || (path?.rttMs !== session.path?.rttMs && now - session.pathShownAt >= RTT_REFRESH_MS)) {
    session.path = path;
    session.pathShownAt = now;
    session.onChange('path');
  }
}
