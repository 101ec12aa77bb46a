//! Test support for Chorus: WebRTC client peers and synthetic media.
//!
//! [`Peer`] is a browser-like `webrtc` 0.21 client; [`media`] has the Opus tone source and
//! sink, [`dominant_frequency`] and the self-checking synthetic video frames. A test waits
//! for a state with [`eventually`]. [`group_call`] and [`churn`] are the long scenarios that
//! both the end-to-end tests (nothing leaks) and the benches (how fast, how much) run.

pub mod churn;
pub mod cluster;
pub mod direct;
pub mod eventually;
pub mod group_call;
pub mod media;
pub mod peer;
pub mod process;
pub mod relay;
pub mod scenario;
pub mod signal;
pub mod wait;

pub use eventually::{TimedOut, eventually, eventually_async};
pub use media::{
    FrameError, OpusSink, ToneEncoder, VideoFrame, dominant_frequency, encode_video_frame,
    parse_video_frame,
};
pub use peer::{Kind, Peer, PeerConfig, PeerError, RemoteTrackStats};
