//! Chorus control plane: presence, ringing, rooms and SDP brokering between
//! browsers and the media node, over one WebSocket per client.
//!
//! - [`protocol`]: the wire messages (public: tests and benches use them).
//! - [`hub`]: the call and room state machine, pure and unit-tested.
//! - [`server`]: axum routes, WebSocket connections and the hub task.
//! - [`auth`]: access tokens. [`config`]: flags, environment, config file.

pub mod auth;
pub mod config;
pub mod hub;
mod metrics;
pub mod server;
pub mod tls;
mod web;

/// The wire messages, from the `chorus-protocol` crate.
pub use chorus_protocol as protocol;
