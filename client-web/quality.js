// How good this page's connection to the media node is: good, fair or
// poor, from what the browser measures both ways every couple of seconds
// (docs/protocol.md, `quality`):
//
// - loss toward us: packets lost among those expected on the stream we
//   receive that lost the most (after retransmissions: audio has none),
//   since the last sample;
// - loss from us: the media node's receiver reports (`fractionLost`);
// - the round trip of the selected candidate pair, and the jitter of what
//   we receive.
//
// A worse level shows at once; a better one only after two samples agree,
// so the badge does not flicker. No DOM here: the Node tests run it.

/** How often a level is measured. */
export const SAMPLE_MS = 2000;

/** Fewer packets than this in a sample say nothing about loss. */
const MIN_PACKETS = 20;

/** Where each level starts: loss (share), round trip and jitter (ms). */
export const THRESHOLDS = {
  poor: { loss: 0.08, rttMs: 500, jitterMs: 100 },
  fair: { loss: 0.02, rttMs: 250, jitterMs: 40 },
};

const RANK = { good: 0, fair: 1, poor: 2 };

/** The level of one sample's figures. */
export function levelOf({ loss = 0, rttMs = 0, jitterMs = 0 }) {
  for (const level of ['poor', 'fair']) {
    const t = THRESHOLDS[level];
    if (loss >= t.loss || rttMs >= t.rttMs || jitterMs >= t.jitterMs) return level;
  }
  return 'good';
}

/** The totals a sample needs from a `getStats()` report. */
export function totalsOf(report) {
  const t = { streams: new Map(), upLoss: 0, rttMs: 0, jitterMs: 0 };
  let pair = null;
  for (const s of report.values()) {
    if (s.type === 'inbound-rtp') {
      t.streams.set(s.ssrc ?? s.id, { lost: Math.max(0, s.packetsLost || 0), received: s.packetsReceived || 0 });
      if (s.kind === 'audio') t.jitterMs = Math.max(t.jitterMs, (s.jitter || 0) * 1000);
    } else if (s.type === 'remote-inbound-rtp') {
      t.upLoss = Math.max(t.upLoss, s.fractionLost || 0);
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId) || pair;
    } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && !pair) {
      pair = s;
    }
  }
  if (pair && pair.currentRoundTripTime) t.rttMs = pair.currentRoundTripTime * 1000;
  return t;
}

export class QualityMeter {
  constructor() {
    this.level = 'good';
    this.prev = null;
    this.at = -Infinity;
    /** Samples in a row that measured better than the level shown. */
    this.better = 0;
    /** The last sample's figures (tests and the tile's tooltip). */
    this.figures = null;
  }

  /** A stats report at `now` (ms): the new level when it changed, else null. */
  sample(report, now) {
    if (now - this.at < SAMPLE_MS) return null;
    this.at = now;
    return this.measure(totalsOf(report));
  }

  /** One sample's totals: the new level when it changed, else null. */
  measure(totals) {
    const prev = this.prev;
    this.prev = totals;
    if (!prev) return null;
    let downLoss = 0;
    for (const [id, now] of totals.streams) {
      const before = prev.streams.get(id);
      if (!before) continue;
      const lost = Math.max(0, now.lost - before.lost);
      const expected = lost + Math.max(0, now.received - before.received);
      if (expected >= MIN_PACKETS) downLoss = Math.max(downLoss, lost / expected);
    }
    const figures = { loss: Math.max(downLoss, totals.upLoss), rttMs: totals.rttMs, jitterMs: totals.jitterMs };
    this.figures = figures;
    const measured = levelOf(figures);
    if (RANK[measured] >= RANK[this.level]) {
      this.better = 0;
      if (measured === this.level) return null;
      this.level = measured;
      return measured;
    }
    this.better += 1;
    if (this.better < 2) return null;
    this.better = 0;
    this.level = measured;
    return measured;
  }
}
