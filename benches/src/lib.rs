//! Chorus benchmarks.
//!
//! - `cargo bench -p chorus-benches --bench forward` (criterion) measures
//!   the SFU core's forward path without sockets (SRTP unprotect, routing,
//!   per-subscriber rewrite and SRTP protect) for fan-outs of 1, 10 and 100
//!   subscribers.
//! - `--bench calls`, `--bench soak`, `--bench churn` take the end-to-end
//!   figures (call set-up times, memory and loss over a long call, offers
//!   answered under join/leave churn) that tests only check for leaks.
//! - `chorus-loadgen` ([`load`]) loads a running system and compares Chorus
//!   with Janus VideoRoom and a plain UDP reflector. See docs/benchmarks.md.

pub mod load;
