// Ring tones made with WebAudio: no audio files.
//
// `incoming`: a soft two-note chime repeated every 2.4 s (the callee).
// `outgoing`: a ring-back tone, 425 Hz for 1 s every 4 s (the caller).
//
// Browsers only start an AudioContext after a user gesture; `unlockAudio()`
// is called on the first click or key press so a later incoming call can ring.

let ctx = null;
let current = null;

function context() {
  if (!ctx) {
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    ctx = new Ctor();
  }
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  return ctx;
}

/** Call from a user gesture so the context may start. */
export function unlockAudio() {
  try {
    context();
  } catch {
    // No audio: ringing stays visual only.
  }
}

function tone(ac, out, freq, start, duration, peak) {
  const osc = ac.createOscillator();
  const gain = ac.createGain();
  osc.type = 'sine';
  osc.frequency.value = freq;
  gain.gain.setValueAtTime(0, start);
  gain.gain.linearRampToValueAtTime(peak, start + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, start + duration);
  osc.connect(gain).connect(out);
  osc.start(start);
  osc.stop(start + duration + 0.05);
}

const PATTERNS = {
  incoming: {
    period: 2.4,
    play(ac, out, t) {
      // A rising major third, twice, like a gentle marimba.
      tone(ac, out, 659.25, t, 0.45, 0.35);
      tone(ac, out, 830.61, t + 0.18, 0.6, 0.3);
      tone(ac, out, 659.25, t + 0.9, 0.45, 0.35);
      tone(ac, out, 830.61, t + 1.08, 0.6, 0.3);
    },
  },
  outgoing: {
    period: 4,
    play(ac, out, t) {
      const osc = ac.createOscillator();
      const gain = ac.createGain();
      osc.frequency.value = 425;
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(0.12, t + 0.03);
      gain.gain.setValueAtTime(0.12, t + 1.0);
      gain.gain.linearRampToValueAtTime(0, t + 1.05);
      osc.connect(gain).connect(out);
      osc.start(t);
      osc.stop(t + 1.1);
    },
  },
};

/** Starts ringing with the named pattern (stopping any other). */
export function startRing(kind) {
  stopRing();
  const pattern = PATTERNS[kind];
  let ac;
  try {
    ac = context();
  } catch {
    ac = null;
  }
  current = { kind, timer: null, out: null };
  if (!ac || !pattern) return;
  const out = ac.createGain();
  out.gain.value = 1;
  out.connect(ac.destination);
  current.out = out;
  let next = ac.currentTime + 0.05;
  const schedule = () => {
    // Keep one period scheduled ahead; the timer may be throttled.
    while (next < ac.currentTime + pattern.period) {
      pattern.play(ac, out, next);
      next += pattern.period;
    }
  };
  schedule();
  current.timer = setInterval(schedule, 500);
}

/** Stops any ring tone at once. */
export function stopRing() {
  if (!current) return;
  clearInterval(current.timer);
  if (current.out) {
    try {
      current.out.gain.cancelScheduledValues(0);
      current.out.gain.value = 0;
      current.out.disconnect();
    } catch {
      // Already gone.
    }
  }
  current = null;
}

/** Which tone is playing: `incoming`, `outgoing` or null (tests read this). */
export function ringing() {
  return current ? current.kind : null;
}

/** The audio context's state, for tests and diagnostics. */
export function audioState() {
  return ctx ? ctx.state : 'none';
}
