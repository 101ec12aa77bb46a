//! Chorus benchmarks.
//!
//! - `cargo bench -p chorus-benches` runs the criterion benches in
//!   `benches/`: `forward` measures the SFU core's forward path without
//!   sockets (SRTP unprotect, routing, per-subscriber rewrite and SRTP
//!   protect) for fan-outs of 1, 10 and 100 subscribers.
//! - `chorus-loadgen` ([`load`]) loads a running system and compares Chorus
//!   with Janus VideoRoom and a plain UDP reflector. See docs/benchmarks.md.

pub mod load;
