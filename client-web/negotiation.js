// The pieces of the media negotiation that work on an RTCPeerConnection
// alone (session.js holds the state around them): a new connection, what a
// client publishes
// on a new connection, waiting for ICE gathering before an SDP goes out,
// and keeping forwarded m-lines to their codecs in a re-offer.

const ICE_WAIT_MS = 4000;

/** A connection to the media node with the TURN servers and policy of `iceConfig()`. */
export function newPeerConnection(iceConfig) {
  const base = { bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
  try {
    return new RTCPeerConnection({ ...base, ...iceConfig() });
  } catch (err) {
    // A TURN URL this browser cannot parse: the direct ways may still work.
    console.warn('ignoring the ICE servers', err);
    return new RTCPeerConnection(base);
  }
}

/**
 * Camera video goes out in three simulcast layers, smallest first (the media
 * node reads them in this order): quarter, half and full resolution. The
 * media node forwards one layer to each person, chosen from that person's
 * bandwidth and the size of the tile it is shown in, and pauses layers
 * nobody receives (`publish_layers`).
 */
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Applies the media node's offer `sdp` to `pc` and makes the answer: its SDP. */
export async function answerOffer(pc, sdp) {
  await pc.setRemoteDescription({ type: 'offer', sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  return pc.localDescription.sdp;
}

/**
 * Adds what `local` (localmedia.js) publishes to `pc`: a send-only audio
 * transceiver with the microphone and a send-only video transceiver in
 * simulcast (with the camera, or with no track when it is off, so it can be
 * switched on later with replaceTrack and no new offer); a client that
 * publishes nothing gets one recvonly audio transceiver. `held`: the
 * senders get no track yet (a call that still rings: prepare.js).
 * @returns {{ audioTx: RTCRtpTransceiver|null, videoTx: RTCRtpTransceiver|null }}
 */
export function addPublishing(pc, local, { held = false } = {}) {
  if (local.mode === 'listen-only') {
    pc.addTransceiver('audio', { direction: 'recvonly' });
    return { audioTx: null, videoTx: null };
  }
  const audioTrack = held ? null : local.audioTrack;
  const videoTrack = held ? null : local.videoTrack;
  const audioTx = pc.addTransceiver(audioTrack ?? 'audio', { direction: 'sendonly', streams: [local.stream] });
  preferRed(audioTx);
  const videoTx = pc.addTransceiver(videoTrack ?? 'video', {
    direction: 'sendonly',
    streams: [local.stream],
    sendEncodings: SIMULCAST.map((e) => ({ ...e })),
  });
  return { audioTx, videoTx };
}

/** localStorage key: `off` sends audio without redundancy (a test hook, to compare). */
const AUDIO_RED_KEY = 'chorus.audioRed';

/**
 * Audio goes in RFC 2198 redundancy (RED): each packet carries the one
 * before too, so one lost packet costs no audio. The browser sends RED only
 * when it comes first among the codecs, so it is put first.
 */
function preferRed(tx) {
  try {
    const codecs = RTCRtpReceiver.getCapabilities('audio').codecs;
    const isRed = (c) => c.mimeType.toLowerCase() === 'audio/red';
    const off = localStorage.getItem(AUDIO_RED_KEY) === 'off';
    tx.setCodecPreferences(off ? codecs.filter((c) => !isRed(c)) : [...codecs.filter(isRed), ...codecs.filter((c) => !isRed(c))]);
  } catch (err) {
    console.warn('audio redundancy not set up', err);
  }
}

export function waitForIce(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    // The media node is ICE-lite and learns our address from our checks, so
    // a slow gatherer costs little: send what we have after a while.
    const timer = setTimeout(done, ICE_WAIT_MS);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** `a=fmtp` parameters as a comparable string (order-free). */
function fmtpKey(line) {
  return (line || '').split(';').map((x) => x.trim()).filter(Boolean).sort().join(';');
}

/**
 * Before a re-offer: keeps every forwarded (receive-only) m-line to the codecs
 * already negotiated on it. Left alone, Chrome offers all its codecs there,
 * which changes that m-line's demuxing rules; Chrome then re-checks them
 * against the SSRCs it has learned, and fails the whole offer ("Failed to
 * apply demuxer criteria") if the media node's packets taught it another
 * binding (they carry the publisher's MID header extension).
 */
export function pinReceiveCodecs(pc) {
  if (typeof RTCRtpReceiver.getCapabilities !== 'function') return;
  for (const t of pc.getTransceivers()) {
    if (t.mid === null || t.currentDirection !== 'recvonly' || typeof t.setCodecPreferences !== 'function') continue;
    const kind = t.receiver.track.kind;
    const negotiated = t.receiver.getParameters().codecs || [];
    const caps = (RTCRtpReceiver.getCapabilities(kind) || { codecs: [] }).codecs;
    const prefs = [];
    for (const c of negotiated) {
      const mime = c.mimeType.toLowerCase();
      const plain = ['video/rtx', 'video/red', 'video/ulpfec', 'audio/red'].includes(mime);
      const cap = caps.find((k) => k.mimeType.toLowerCase() === mime && k.clockRate === c.clockRate
        && (k.channels || 1) === (c.channels || 1) && (plain || fmtpKey(k.sdpFmtpLine) === fmtpKey(c.sdpFmtpLine)));
      if (cap && !prefs.includes(cap)) prefs.push(cap);
    }
    if (!prefs.some((k) => !/\/(rtx|red|ulpfec)$/i.test(k.mimeType))) continue;
    try {
      t.setCodecPreferences(prefs);
    } catch (err) {
      console.warn('cannot keep the codecs of', t.mid, err);
    }
  }
}
