//! Chorus control plane: presence, ringing, rooms and SDP brokering between
//! browsers and the media plane, over one WebSocket per client.
//!
//! - [`protocol`]: the wire messages (the `chorus-protocol` crate).
//! - [`hub`]: the call and room state machine, pure and unit-tested, and the
//!   task that owns it.
//! - `connection`: one WebSocket, from sign-in to the closing handshake.
//! - [`media_plane`]: the seam to the media plane ([`media_plane::MediaPlane`]).
//! - [`server`]: the HTTP routes and startup.
//! - [`auth`]: access tokens. [`config`]: flags, environment, config file.
//!   [`turn`]: TURN credentials. [`tls`]: certificates.
//!
//! A client's message goes from its connection to the hub task, which hands
//! it to the [`hub::Hub`] and carries out the effects: messages to
//! connections, commands to the media plane. The media plane's events come
//! back to the hub task the same way.

pub mod acme;
pub mod auth;
mod calllog;
pub mod cluster;
pub mod config;
mod connection;
pub mod hub;
pub mod media_plane;
mod metrics;
mod redirect;
pub mod server;
pub mod tls;
pub mod turn;
mod web;

/// The wire messages, from the `chorus-protocol` crate.
pub use chorus_protocol as protocol;
