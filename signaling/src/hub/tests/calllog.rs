//! The call log: each way a call ends gives each side the entry a phone
//! would show, to that user only (stored, and sent to their connection
//! when it is up).

use std::time::Instant;

use super::*;
use crate::protocol::{CallLogEntry, CallLogKind};

/// One call log entry: whose, the connection told, kind, peer, reason,
/// answered at.
type Logged = (
    String,
    Option<u64>,
    CallLogKind,
    String,
    Option<EndReason>,
    Option<Instant>,
);

/// The call log entries in `fx`.
fn logs(fx: &[Effect]) -> Vec<Logged> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::CallLog {
                user,
                conn,
                entry: CallLogEntry {
                    kind, peer, reason, ..
                },
                since,
            } => Some((
                user.to_string(),
                conn.map(|c| c.0),
                *kind,
                peer.id.clone(),
                *reason,
                *since,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn an_answered_call_is_logged_for_each_side_as_they_leave_it() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let later = t0 + Duration::from_secs(75);
    let fx = h.handle_message(ConnId(1), ClientMsg::Hangup { room_id: room }, later);
    let mut got = logs(&fx);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                "a".into(),
                Some(1),
                CallLogKind::Outgoing,
                "b".into(),
                None,
                Some(t0)
            ),
            (
                "b".into(),
                Some(2),
                CallLogKind::Incoming,
                "a".into(),
                None,
                Some(t0)
            ),
        ]
    );
}

#[test]
fn unanswered_rings_are_missed_or_declined_for_the_callee_and_outgoing_for_the_caller() {
    let t0 = Instant::now();
    let mut h = two_online();
    // Declined.
    let room = ring(&mut h, t0);
    let fx = h.handle_message(ConnId(2), ClientMsg::Decline { room_id: room }, t0);
    let declined = Some(EndReason::Declined);
    assert_eq!(
        logs(&fx),
        vec![
            (
                "b".into(),
                Some(2),
                CallLogKind::Incoming,
                "a".into(),
                declined,
                None
            ),
            (
                "a".into(),
                Some(1),
                CallLogKind::Outgoing,
                "b".into(),
                declined,
                None
            ),
        ]
    );
    // Not answered in time.
    ring(&mut h, t0);
    let fx = h.handle_tick(t0 + HubConfig::default().ring_timeout);
    let missed = Some(EndReason::Missed);
    assert_eq!(
        logs(&fx),
        vec![
            (
                "b".into(),
                Some(2),
                CallLogKind::Missed,
                "a".into(),
                missed,
                None
            ),
            (
                "a".into(),
                Some(1),
                CallLogKind::Outgoing,
                "b".into(),
                missed,
                None
            ),
        ]
    );
    // Cancelled by the caller.
    let room = ring(&mut h, t0);
    let fx = h.handle_message(ConnId(1), ClientMsg::Cancel { room_id: room }, t0);
    assert_eq!(logs(&fx)[0].2, CallLogKind::Missed);
    assert_eq!(logs(&fx)[0].4, Some(EndReason::Cancelled));
}

#[test]
fn a_call_to_someone_offline_ends_unavailable_and_waits_in_their_log() {
    let t0 = Instant::now();
    let mut h = two_online();
    let call = ClientMsg::Call {
        e2ee: None,
        to: "zed".into(),
        media: CallMedia::Audio,
    };
    let fx = h.handle_message(ConnId(1), call, t0);
    assert_eq!(ended(&fx, 1), Some(EndReason::Unavailable));
    let unavailable = Some(EndReason::Unavailable);
    assert_eq!(
        logs(&fx),
        vec![
            (
                "zed".into(),
                None,
                CallLogKind::Missed,
                "a".into(),
                unavailable,
                None
            ),
            (
                "a".into(),
                Some(1),
                CallLogKind::Outgoing,
                "zed".into(),
                unavailable,
                None
            ),
        ]
    );
    // Nobody is rung, nothing is open: the caller can call again at once.
    assert_eq!(h.counts().rooms, 0);
    assert!(to(&fx, 2).is_empty());
}

#[test]
fn a_busy_callee_finds_the_missed_call_and_an_unanswered_invite_logs_only_for_the_invitee() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = call(&mut h, t0);
    let busy = ClientMsg::Call {
        e2ee: None,
        to: "b".into(),
        media: CallMedia::Audio,
    };
    let fx = h.handle_message(ConnId(3), busy, t0);
    let got = logs(&fx);
    assert_eq!(
        (got[0].0.as_str(), got[0].2, got[0].4),
        ("b", CallLogKind::Missed, Some(EndReason::Busy))
    );
    assert_eq!((got[1].0.as_str(), got[1].2), ("c", CallLogKind::Outgoing));
    // A invites C into the running call; it rings out.
    let invite = ClientMsg::Invite {
        room_id: room,
        to: "c".into(),
    };
    h.handle_message(ConnId(1), invite, t0);
    let fx = h.handle_tick(t0 + HubConfig::default().ring_timeout);
    let missed = Some(EndReason::Missed);
    assert_eq!(
        logs(&fx),
        vec![(
            "c".into(),
            Some(3),
            CallLogKind::Missed,
            "a".into(),
            missed,
            None
        )]
    );
}
