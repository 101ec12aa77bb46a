//! Chorus benchmarks.
//!
//! `cargo bench -p chorus-benches` runs the criterion benches in `benches/`:
//! `forward` measures the SFU core's forward path without sockets (SRTP
//! unprotect, routing, per-subscriber rewrite and SRTP protect) for fan-outs
//! of 1, 10 and 50 subscribers.
