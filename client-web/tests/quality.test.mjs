// The connection quality a page reports, in Node: levels from loss, round
// trip and jitter; worse at once, better only when two samples agree.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { levelOf, totalsOf, QualityMeter } from '../quality.js';

test('levels from loss, round trip and jitter', () => {
  assert.equal(levelOf({ loss: 0.005, rttMs: 40, jitterMs: 5 }), 'good');
  assert.equal(levelOf({ loss: 0.03 }), 'fair');
  assert.equal(levelOf({ rttMs: 300 }), 'fair');
  assert.equal(levelOf({ loss: 0.15 }), 'poor');
  assert.equal(levelOf({ jitterMs: 150 }), 'poor');
});

/** A stats report: what was received and lost so far, the media node's view of our uplink, the round trip. */
function report({ received, lost, upLoss = 0, rtt = 0.02, jitter = 0.005 }) {
  return new Map([
    ['in-a', { type: 'inbound-rtp', kind: 'audio', ssrc: 1, packetsReceived: received, packetsLost: lost, jitter }],
    // A video stream that loses nothing does not hide the audio's loss.
    ['in-v', { type: 'inbound-rtp', kind: 'video', ssrc: 2, packetsReceived: received * 3, packetsLost: 0 }],
    ['out-a', { type: 'remote-inbound-rtp', fractionLost: upLoss }],
    ['t', { type: 'transport', selectedCandidatePairId: 'p' }],
    ['p', { type: 'candidate-pair', currentRoundTripTime: rtt }],
  ]);
}

test('loss toward us and from us, since the last sample; worse at once, better after two samples', () => {
  const m = new QualityMeter();
  let t = 0;
  const at = (r) => { t += 2000; return m.sample(report(r), t); };
  assert.equal(at({ received: 100, lost: 0 }), null);
  assert.equal(at({ received: 200, lost: 0 }), null, 'good stays good');
  assert.equal(totalsOf(report({ received: 1, lost: 2, rtt: 0.3 })).rttMs, 300);
  // 15 lost of 100 expected: poor at once.
  assert.equal(at({ received: 285, lost: 15 }), 'poor');
  assert.equal(m.level, 'poor');
  // Clean again: one good sample is not enough, two are.
  assert.equal(at({ received: 385, lost: 15 }), null);
  assert.equal(at({ received: 485, lost: 15 }), 'good');
  // The media node losing a tenth of what we send: poor.
  assert.equal(at({ received: 585, lost: 15, upLoss: 0.1 }), 'poor');
  // Too few packets say nothing about loss.
  const quiet = new QualityMeter();
  quiet.measure(totalsOf(report({ received: 0, lost: 0 })));
  assert.equal(quiet.measure(totalsOf(report({ received: 5, lost: 5 }))), null);
  // Samples closer than 2 s are skipped.
  assert.equal(m.sample(report({ received: 10000, lost: 5000 }), t + 100), null);
});
