//! The runs: random sessions, and a check that they reach deep states.

use super::*;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hub_survives_random_sessions(
        seed in any::<u64>(),
        ops in ops(),
    ) {
        let mut d = Driver::new(seed);
        for op in &ops {
            d.step(op)?;
        }
        d.finish()?;
    }
}

/// How deep the random sequences go: runs the strategy by hand and prints
/// how often each kind of message was reached (and fails if a central one
/// never is).
#[test]
fn hub_sequences_reach_deep_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (any::<u64>(), ops());
    let mut reached: HashMap<&'static str, usize> = HashMap::new();
    let mut max_pids = 0;
    for _ in 0..200 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let (seed, ops) = tree.current();
        let mut d = Driver::new(seed);
        for op in &ops {
            if d.step(op).is_err() {
                break;
            }
        }
        max_pids = max_pids.max(d.pids.len());
        for (k, v) in d.reached {
            *reached.entry(k).or_default() += v;
        }
    }
    let mut all: Vec<_> = reached.iter().collect();
    all.sort();
    println!("messages reached in 200 sequences: {all:?}; most participants in one: {max_pids}");
    for kind in [
        "room_joined",
        "incoming_call",
        "participant_joined",
        "participant_left",
        "room_changed",
        "call_log",
        "media_offer",
        "media_answer",
        "call_ended",
        "error:room_full",
        "error:rate_limited",
        "error:sdp_too_large",
    ] {
        assert!(reached.contains_key(kind), "never reached {kind}");
    }
    assert!(
        max_pids >= 3,
        "at most {max_pids} participants in a sequence"
    );
}
