//! The seam between the control plane and the media plane.
//!
//! The hub decides, the media plane carries the media. Commands go one way,
//! as [`chorus_sfu::Command`]s through [`MediaPlane::send`]; events come
//! back as [`chorus_sfu::Event`]s on a channel ([`MediaEvents`]) that the
//! hub task reads. Today the media plane is the in-process
//! [`chorus_sfu::MediaNode`]; a media node in another process, reached
//! through the cluster's messaging, is another implementation of
//! [`MediaPlane`] with its own event channel, and nothing else changes.

use std::fmt;

use chorus_sfu::{Command, Event, MediaNode, TcpStats, WorkerStats};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

/// The media plane's events, in order per participant.
pub type MediaEvents = mpsc::UnboundedReceiver<Event>;

/// The media plane cannot take commands any more (its node stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaUnavailable;

impl fmt::Display for MediaUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the media node is gone")
    }
}

impl std::error::Error for MediaUnavailable {}

/// Where the hub's media commands go.
pub trait MediaPlane: Send + Sync {
    /// Hands `command` to the media node that serves its participant (an
    /// offer for a new participant places it). Never waits: commands for one
    /// participant are carried out in the order sent, and what they lead to
    /// comes back as events.
    fn send(&self, command: Command) -> Result<(), MediaUnavailable>;

    /// Each media worker's counters, for `/metrics`; `None` if the media
    /// plane does not answer.
    fn worker_stats(&self) -> BoxFuture<'_, Option<Vec<WorkerStats>>>;

    /// The ICE-TCP listener's counters, if the media plane has one.
    fn tcp_stats(&self) -> Option<TcpStats>;
}

impl MediaPlane for MediaNode {
    fn send(&self, command: Command) -> Result<(), MediaUnavailable> {
        if MediaNode::send(self, command) {
            Ok(())
        } else {
            Err(MediaUnavailable)
        }
    }

    fn worker_stats(&self) -> BoxFuture<'_, Option<Vec<WorkerStats>>> {
        Box::pin(MediaNode::worker_stats(self))
    }

    fn tcp_stats(&self) -> Option<TcpStats> {
        self.tcp_addr().map(|_| MediaNode::tcp_stats(self))
    }
}

/// A media plane that records commands, for tests of what reaches it.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordingMedia {
    sent: std::sync::Mutex<Vec<Command>>,
}

#[cfg(test)]
impl RecordingMedia {
    /// The commands sent so far.
    pub(crate) fn take(&self) -> Vec<Command> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
impl MediaPlane for RecordingMedia {
    fn send(&self, command: Command) -> Result<(), MediaUnavailable> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
        Ok(())
    }

    fn worker_stats(&self) -> BoxFuture<'_, Option<Vec<WorkerStats>>> {
        Box::pin(async { Some(vec![WorkerStats::default()]) })
    }

    fn tcp_stats(&self) -> Option<TcpStats> {
        None
    }
}
