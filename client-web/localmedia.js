// The local camera and microphone, with graceful fallbacks:
// camera and microphone → microphone only ("audio-only") → nothing ("listen-only").

const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
// 960x540 is the smallest size at which browsers send all three simulcast
// layers (240x135, 480x270, 960x540; see session.js).
const VIDEO = { width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 30 }, facingMode: 'user' };

function reason(err, device) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `your browser blocked the ${device}`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `no ${device} was found`;
    case 'NotReadableError':
    case 'AbortError':
      return `the ${device} is in use by another app or could not start`;
    default:
      return `the ${device} could not be opened`;
  }
}

function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/**
 * Opens the devices for a call.
 * @param {boolean} wantVideo a video call (else voice)
 * @returns {Promise<{stream: MediaStream, audioTrack: MediaStreamTrack|null,
 *   videoTrack: MediaStreamTrack|null, mode: 'full'|'audio-only'|'listen-only', message: string|null}>}
 *   never rejects
 */
export async function acquireMedia(wantVideo) {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    return {
      stream: new MediaStream(),
      audioTrack: null,
      videoTrack: null,
      mode: 'listen-only',
      message: 'This page cannot use a microphone or camera (it needs https or localhost), so you joined listen-only: others will not hear you.',
    };
  }
  let videoError = null;
  if (wantVideo) {
    try {
      const stream = await md.getUserMedia({ audio: AUDIO, video: VIDEO });
      return {
        stream,
        audioTrack: stream.getAudioTracks()[0] ?? null,
        videoTrack: stream.getVideoTracks()[0] ?? null,
        mode: 'full',
        message: null,
      };
    } catch (err) {
      videoError = err;
    }
  }
  try {
    const stream = await md.getUserMedia({ audio: AUDIO });
    let message = null;
    if (wantVideo) {
      message = `${capitalize(reason(videoError, 'camera'))}, so you joined with audio only. Allow the camera in your browser's site settings, then turn it on.`;
    }
    return {
      stream,
      audioTrack: stream.getAudioTracks()[0] ?? null,
      videoTrack: null,
      mode: wantVideo ? 'audio-only' : 'full',
      message,
    };
  } catch (err) {
    return {
      stream: new MediaStream(),
      audioTrack: null,
      videoTrack: null,
      mode: 'listen-only',
      message: `${capitalize(reason(err, 'microphone'))}, so you joined listen-only: you can hear the others, they cannot hear you.`,
    };
  }
}

/** Opens the camera alone (turning the camera on later in a call). */
export async function openCamera() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: VIDEO });
  return stream.getVideoTracks()[0];
}

/** Why the camera could not be opened, in plain words. */
export function cameraError(err) {
  return `${capitalize(reason(err, 'camera'))}.`;
}
