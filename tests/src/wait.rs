//! Waiting for a publisher's media to arrive at a peer.

use std::time::Duration;

use crate::peer::{Kind, Peer, RemoteTrackStats, summarize};
use crate::signal::Error;

/// How much of a publisher's media to wait for.
#[derive(Debug, Clone, Copy)]
pub struct RemoteMedia {
    /// Audio packets (50 per second).
    pub audio_packets: u64,
    /// Intact video frames (30 per second).
    pub video_frames: u64,
}

/// A publisher's tracks as one peer received them.
#[derive(Debug, Clone)]
pub struct Received {
    /// The audio track.
    pub audio: RemoteTrackStats,
    /// The video track.
    pub video: RemoteTrackStats,
}

impl Received {
    /// One line about the video track.
    pub fn video_summary(&self) -> String {
        summarize(&self.video)
    }
}

/// The most active track of `kind` whose msid stream id is `publisher`.
pub fn track_from<'a>(
    tracks: &'a [RemoteTrackStats],
    publisher: &str,
    kind: Kind,
) -> Option<&'a RemoteTrackStats> {
    tracks
        .iter()
        .filter(|t| t.stream_id == publisher && t.kind == kind)
        .max_by_key(|t| t.packets)
}

/// Audio packets from `publisher` that any of `peers` received (a person's
/// connections before and after their call moved, say).
pub fn audio_packets_from<'a>(peers: impl IntoIterator<Item = &'a Peer>, publisher: &str) -> u64 {
    peers
        .into_iter()
        .map(|p| {
            let tracks = p.received();
            track_from(&tracks, publisher, Kind::Audio).map_or(0, |t| t.packets)
        })
        .sum()
}

/// Waits until `peer` has received `need` of `publisher`'s audio and video.
pub async fn wait_for(
    peer: &Peer,
    publisher: &str,
    need: RemoteMedia,
    timeout: Duration,
) -> Result<Received, Error> {
    let done = |tracks: &[RemoteTrackStats]| {
        let audio = track_from(tracks, publisher, Kind::Audio).map(|t| t.packets);
        let video = track_from(tracks, publisher, Kind::Video).map(|t| t.frames_ok);
        audio.unwrap_or(0) >= need.audio_packets && video.unwrap_or(0) >= need.video_frames
    };
    let tracks = peer
        .wait_for_received(timeout, done)
        .await
        .map_err(|e| format!("waiting for {publisher}'s media: {e}"))?;
    let audio = track_from(&tracks, publisher, Kind::Audio).ok_or("no audio")?;
    let video = track_from(&tracks, publisher, Kind::Video).ok_or("no video")?;
    Ok(Received {
        audio: audio.clone(),
        video: video.clone(),
    })
}
