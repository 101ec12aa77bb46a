//! SDP negotiation between a participant and the media node.
//!
//! Each connection has one offerer per direction of change: the client
//! offers what it publishes, the media node offers what it forwards. The
//! media node never has more than one offer outstanding per participant,
//! and a client offer that crosses one of its offers wins: the media node
//! withdraws its own and offers again after answering (it is the "polite"
//! peer).
//!
//! A subscription that ends leaves its m-line behind, made inactive; the
//! next subscription of the same kind takes it over (with its stream's
//! numbering) before a new m-line is added, so a participant's SDP is as
//! large as the most it has received at once, not as everything that ever
//! came and went.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, Mid, Rid, Rids};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc};
use tracing::info;

use super::participant::Participant;
use super::subscription::{Negotiation, Subscription};
use super::{INITIAL_ESTIMATE, Sfu};
use crate::core::output::{Event, ParticipantId, RoomId, SfuError, TrackInfo, TrackKind};

/// The longest m-line id taken from a client (str0m's own are short).
const MAX_MID_LEN: usize = 32;

/// The header extension of transport-wide congestion control (TWCC).
const TWCC_EXTENSION_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// A client's offer, as [`Command::Offer`](super::Command::Offer) brings it.
pub(super) struct ClientOffer<'a> {
    pub(super) label: &'a str,
    pub(super) may_publish: bool,
    pub(super) sdp: &'a str,
    /// The m-line of a shared screen.
    pub(super) screen: Option<&'a str>,
}

impl Sfu {
    /// A client offer: the first one joins `room`; later ones renegotiate
    /// what the client publishes. The answer comes out as [`Event::Answer`].
    pub(super) fn accept_offer(
        &mut self,
        now: Instant,
        room: RoomId,
        id: ParticipantId,
        offer: ClientOffer<'_>,
    ) -> Result<(), SfuError> {
        let ClientOffer {
            label,
            may_publish,
            sdp,
            screen,
        } = offer;
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let is_new = !self.participants.contains_key(&id);
        if is_new {
            // Bandwidth estimation needs transport-wide congestion control
            // feedback from the client; without it str0m's BWE and pacer
            // would only cost time per packet.
            let bwe = sdp.contains(TWCC_EXTENSION_URI).then_some(INITIAL_ESTIMATE);
            let mut rtc = Rtc::builder()
                .set_ice_lite(true)
                .set_rtp_mode(true)
                // Audio redundancy (RFC 2198) is offered and passed through:
                // a lost packet's audio comes with the next one.
                .enable_opus(true, true)
                .enable_bwe(bwe)
                .build(now);
            let candidate = Candidate::host(self.local_addr, "udp")
                .map_err(|e| SfuError::InvalidSdp(format!("local candidate: {e}")))?;
            rtc.add_local_candidate(candidate);
            if let Some(addr) = self.tcp_addr {
                let candidate = Candidate::builder()
                    .tcp()
                    .host(addr)
                    .tcptype(TcpType::Passive)
                    .build()
                    .map_err(|e| SfuError::InvalidSdp(format!("local candidate: {e}")))?;
                rtc.add_local_candidate(candidate);
            }
            let p = Participant::new(room.clone(), label, rtc, may_publish, now);
            self.participants.insert(id, p);
        }
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant)?;
        if p.room != room {
            return Err(SfuError::WrongRoom);
        }
        // Named before str0m reports the m-line, so it is published as a
        // screen; a track published once keeps what it was.
        if let Some(mid) = screen.filter(|m| !m.is_empty() && m.len() <= MAX_MID_LEN) {
            p.screen_mid = Some(Mid::from(mid));
        }
        // A crossing client offer replaces our outstanding one; its tracks
        // are offered again afterwards.
        if p.pending.take().is_some() {
            withdraw_offer(p);
        }
        // m-lines of ended subscriptions go inactive in this answer.
        let mut api = p.rtc.sdp_api();
        for slot in &p.retiring {
            api.set_direction(slot.mid, Direction::Inactive);
        }
        drop(api);
        let answer = match p.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                if is_new {
                    self.participants.remove(&id);
                }
                return Err(SfuError::InvalidSdp(e.to_string()));
            }
        };
        p.ready = true;
        p.retire();
        // An ICE restart in the offer gives us new credentials.
        let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != p.ufrag {
            let old = std::mem::replace(&mut p.ufrag, ufrag.clone());
            self.by_ufrag.remove(&old);
        }
        self.by_ufrag.insert(ufrag, id);
        let answer = without_trickle(answer.to_sdp_string());
        let offered = received_media(&p.rtc, &answer);
        self.events.push_back(Event::Answer {
            participant: id,
            sdp: answer,
        });
        if is_new {
            self.join_room(id, &room);
        }
        // Published now, not when str0m reports them (`MediaAdded`, held
        // back until DTLS is up): the others are offered these tracks while
        // this connection is still being set up.
        for (mid, kind, rids) in offered {
            self.publish(id, mid, kind, rids);
        }
        self.negotiate.push(id);
        self.wake(id);
        Ok(())
    }

    /// Adds a new participant to its room and subscribes it to everything
    /// already published there.
    fn join_room(&mut self, id: ParticipantId, room: &RoomId) {
        let members = self.rooms.entry(room.clone()).or_default();
        let existing: Vec<ParticipantId> = members.clone();
        members.push(id);
        let mut wanted = Vec::new();
        for other in existing {
            if let Some(o) = self.participants.get(&other) {
                for t in &o.published {
                    wanted.push(Subscription::new(other, &o.label, t));
                }
            }
        }
        if let Some(p) = self.participants.get_mut(&id) {
            p.subscriptions.extend(wanted);
        }
        info!(participant = %id, %room, "participant joined media");
    }

    /// The client's answer to the outstanding offer.
    pub(super) fn accept_answer(&mut self, id: ParticipantId, sdp: &str) -> Result<(), SfuError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant)?;
        let pending = p.pending.take().ok_or(SfuError::NoPendingOffer)?;
        if let Err(e) = p.rtc.sdp_api().accept_answer(pending, answer) {
            // The offer is gone either way: offer again from the current state.
            withdraw_offer(p);
            self.negotiate.push(id);
            return Err(SfuError::InvalidSdp(e.to_string()));
        }
        let connected = p.connected;
        for s in &mut p.subscriptions {
            if s.negotiation == Negotiation::Offered {
                s.negotiation = Negotiation::Active;
                s.pt_map = None;
            }
        }
        p.retire();
        self.negotiate.push(id);
        self.wake(id);
        // A new subscriber needs a picture at once. Before DTLS completes a
        // keyframe could not reach it: it is asked for on connect instead.
        if connected {
            self.start_video(id);
        }
        Ok(())
    }

    /// Makes an offer if subscriptions changed and none is outstanding.
    pub(super) fn offer_if_needed(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if !p.ready || p.pending.is_some() {
            return;
        }
        let wanted = p
            .subscriptions
            .iter()
            .any(|s| s.negotiation == Negotiation::Wanted);
        if !wanted && p.retiring.is_empty() {
            return;
        }
        // Wanted subscriptions take idle m-lines of their kind first. Only
        // m-lines already negotiated inactive are idle, so each one taken
        // changes direction and the client sees the change in this offer.
        for s in &mut p.subscriptions {
            if s.negotiation != Negotiation::Wanted || s.mid.is_some() {
                continue;
            }
            if let Some(i) = p.idle.iter().position(|slot| slot.kind == s.kind) {
                s.take_slot(p.idle.swap_remove(i));
            }
        }
        let mut api = p.rtc.sdp_api();
        for slot in &p.retiring {
            api.set_direction(slot.mid, Direction::Inactive);
        }
        p.deactivating.append(&mut p.retiring);
        for s in &mut p.subscriptions {
            if s.negotiation != Negotiation::Wanted {
                continue;
            }
            match s.mid {
                Some(mid) => api.set_direction(mid, Direction::SendOnly),
                None => {
                    let track_id = format!("{}-{}", s.source_label, s.source_mid);
                    s.mid = Some(api.add_media(
                        s.kind.into(),
                        Direction::SendOnly,
                        Some(s.source_label.to_string()),
                        Some(track_id),
                        None,
                    ));
                }
            }
            s.negotiation = Negotiation::Offered;
        }
        let Some((offer, pending)) = api.apply() else {
            // Nothing str0m must negotiate (m-lines already inactive).
            withdraw_offer(p);
            p.retire();
            return;
        };
        p.pending = Some(pending);
        let tracks = p
            .subscriptions
            .iter()
            .filter_map(|s| {
                s.mid().map(|mid| TrackInfo {
                    mid: mid.to_string(),
                    publisher: s.source_label.to_string(),
                    kind: s.kind,
                    source: s.what,
                })
            })
            .collect();
        self.events.push_back(Event::Offer {
            participant: id,
            sdp: without_trickle(offer.to_sdp_string()),
            tracks,
        });
        self.wake(id);
    }
}

/// An offer of ours that will not be answered: what it offered is wanted
/// again. m-lines it added do not exist; idle m-lines it took over go back
/// to inactive, so the next offer changes them again.
fn withdraw_offer(p: &mut Participant) {
    let mut taken_over = Vec::new();
    for s in &mut p.subscriptions {
        if s.negotiation != Negotiation::Offered {
            continue;
        }
        s.negotiation = Negotiation::Wanted;
        match s.mid {
            Some(mid) if p.rtc.media(mid).is_some() => taken_over.push(mid),
            _ => s.mid = None,
        }
    }
    let mut api = p.rtc.sdp_api();
    for mid in taken_over {
        api.set_direction(mid, Direction::Inactive);
    }
}

/// The m-lines of `answer` on which the media node receives, with their
/// kind and simulcast layers (lowest first, as the client listed them).
fn received_media(rtc: &Rtc, answer: &str) -> Vec<(Mid, TrackKind, Vec<Rid>)> {
    answer
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .filter_map(|mid| rtc.media(Mid::from(mid)))
        .filter(|m| m.direction().is_receiving())
        .map(|m| {
            let rids = match m.rids_rx() {
                Rids::Specific(rids) => rids.clone(),
                _ => Vec::new(),
            };
            (m.mid(), m.kind().into(), rids)
        })
        .collect()
}

/// Signaling carries whole descriptions, never trickled candidates: an
/// offer or answer must not invite the client to wait for more.
fn without_trickle(sdp: String) -> String {
    if !sdp.contains("a=ice-options:trickle") {
        return sdp;
    }
    sdp.split_inclusive('\n')
        .filter(|line| line.trim_end() != "a=ice-options:trickle")
        .collect()
}
