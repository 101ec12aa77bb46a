//! Chorus media plane: a selective forwarding unit built on str0m in RTP mode.
//!
//! - [`core`] is sans-IO: it owns one `str0m::Rtc` per participant, routes
//!   datagrams to them and forwards RTP between them. Time and packets are
//!   inputs; datagrams to send and events for the control plane are outputs.
//! - [`io`] drives cores from worker threads that each own one UDP socket,
//!   reading and writing datagrams in batches, and the TCP connections of
//!   their participants (ICE over TCP, one listener per node).
//!
//! A participant's connection carries what it publishes (it offers) and what
//! it receives (the SFU offers, one outstanding offer at a time).

pub mod core;
pub mod io;

pub use crate::core::{
    Command, Event, ParticipantId, RemoveReason, RoomId, Sfu, SfuError, Stats, TrackInfo,
    TrackKind, TrackSource, Transport,
};
pub use crate::io::tcp::{TcpLimits, TcpStats};
pub use crate::io::{IoStats, MediaNode, NodeConfig, WorkerStats};
