//! One participant connection and the tracks it publishes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::change::SdpPendingOffer;
use str0m::media::Mid;

use super::layers::PublishedTrack;
use super::output::{RoomId, TrackKind, Transport};
use super::subscription::{Slot, Subscription};

/// One participant's connection: what it publishes, what it receives and
/// the negotiation and bandwidth state between it and the media node.
pub(super) struct Participant {
    pub(super) room: RoomId,
    pub(super) label: Arc<str>,
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    pub(super) published: Vec<PublishedTrack>,
    /// The m-line its offers named as a shared screen.
    pub(super) screen_mid: Option<Mid>,
    pub(super) subscriptions: Vec<Subscription>,
    /// m-lines of ended subscriptions, to make inactive in the next offer
    /// (or answer).
    pub(super) retiring: Vec<Slot>,
    /// m-lines made inactive in the outstanding offer.
    pub(super) deactivating: Vec<Slot>,
    /// Inactive m-lines, negotiated as such, that a new subscription of
    /// the same kind takes before a new m-line is added: the SDP stays as
    /// large as what is received at once, however many come and go.
    pub(super) idle: Vec<Slot>,
    pub(super) pending: Option<SdpPendingOffer>,
    /// The participant's first offer has been answered, so the media node
    /// may offer.
    pub(super) ready: bool,
    pub(super) connected: bool,
    pub(super) created: Instant,
    pub(super) disconnected_since: Option<Instant>,
    pub(super) rtc_timeout: Instant,
    /// Where its datagrams came from (and ours go), once it passed ICE.
    pub(super) routes: Vec<(Transport, SocketAddr)>,
    /// The token allows sending media; otherwise nothing it sends is
    /// forwarded.
    pub(super) may_publish: bool,
    /// Already in the poll queue (see [`PollQueue`](super::PollQueue)).
    pub(super) queued: bool,
    /// The bandwidth estimate toward it (bits/s), once BWE has one.
    pub(super) estimate: Option<u64>,
    /// When the estimate last changed.
    pub(super) estimate_since: Option<Instant>,
    /// The BWE minimum and desired rates last set.
    pub(super) bwe_rates: (u64, u64),
    /// Its video streams have RTX, so its BWE can probe (pad) upward.
    pub(super) probe_capable: bool,
    /// When the BWE may probe for a higher layer next.
    pub(super) next_probe: Option<Instant>,
    /// Probes asked for so far.
    pub(super) probes: u64,
    /// When a publisher's packet was last up for forwarding to it.
    pub(super) last_media: Option<Instant>,
    /// How much its video send streams' resend buffers keep (`resend.rs`).
    pub(super) resend_age: Duration,
    /// When its estimator was last started again after the connection
    /// sat idle (see `bandwidth.rs`).
    pub(super) idle_restart: Option<Instant>,
    /// Makes the next poll panic, to test isolation.
    #[cfg(test)]
    pub(super) fault: bool,
}

impl Participant {
    pub(super) fn new(
        room: RoomId,
        label: &str,
        mut rtc: Rtc,
        may_publish: bool,
        now: Instant,
    ) -> Self {
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Participant {
            room,
            label: label.into(),
            rtc,
            ufrag,
            published: Vec::new(),
            screen_mid: None,
            subscriptions: Vec::new(),
            retiring: Vec::new(),
            deactivating: Vec::new(),
            idle: Vec::new(),
            pending: None,
            ready: false,
            connected: false,
            created: now,
            disconnected_since: None,
            rtc_timeout: now,
            routes: Vec::new(),
            may_publish,
            queued: false,
            estimate: None,
            estimate_since: None,
            bwe_rates: (0, 0),
            probe_capable: false,
            next_probe: None,
            last_media: None,
            idle_restart: None,
            resend_age: super::resend::MAX_AGE,
            probes: 0,
            #[cfg(test)]
            fault: false,
        }
    }

    /// A negotiation completed: m-lines it made inactive are idle.
    /// m-lines that never came to exist (their offer was withdrawn) are
    /// forgotten.
    pub(super) fn retire(&mut self) {
        let rtc = &self.rtc;
        let ended = self.deactivating.drain(..).chain(self.retiring.drain(..));
        self.idle
            .extend(ended.filter(|slot| rtc.media(slot.mid).is_some()));
    }

    /// The track it publishes on `mid`.
    pub(super) fn track(&self, mid: Mid) -> Option<&PublishedTrack> {
        self.published.iter().find(|t| t.mid == mid)
    }

    /// Its video subscriptions' m-lines that carry media.
    pub(super) fn active_video_mids(&self) -> Vec<Mid> {
        self.subscriptions
            .iter()
            .filter(|s| s.kind == TrackKind::Video)
            .filter_map(|s| s.active_mid())
            .collect()
    }
}
