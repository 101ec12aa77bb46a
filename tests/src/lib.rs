//! Test support for Chorus: WebRTC client peers and synthetic media.
//!
//! [`Peer`] is a browser-like `webrtc` 0.21 client; [`media`] has the Opus tone source and
//! sink, [`dominant_frequency`] and the self-checking synthetic video frames.

pub mod direct;
pub mod media;
pub mod peer;
pub mod relay;
pub mod scenario;
pub mod signal;
pub mod wait;

pub use media::{
    FrameError, OpusSink, ToneEncoder, VideoFrame, dominant_frequency, encode_video_frame,
    parse_video_frame,
};
pub use peer::{Kind, Peer, PeerConfig, PeerError, RemoteTrackStats};
