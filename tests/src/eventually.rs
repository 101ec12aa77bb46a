//! Waiting for a state that another task or thread brings about.
//!
//! End-to-end tests wait for a message to be handled, a packet forwarded, a
//! participant removed. They look again until it holds or a generous timeout
//! passes, and a timeout says what was awaited and what was seen last. A test that must let time pass on
//! purpose ("nothing arrives for 300 ms") sleeps, and says so.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// The first pause between two looks: a state reached at once costs
/// almost no wait.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between two looks (the pause doubles up to it).
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

/// A state that did not come about in time.
#[derive(Clone)]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    /// How long it was awaited.
    pub waited: Duration,
    /// The last value seen, as `{:?}` shows it.
    pub last_seen: String,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}; last seen: {}",
            self.waited, self.what, self.last_seen
        )
    }
}

// The same as Display, so that `expect` on a wait reads as a sentence.
impl fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for TimedOut {}

/// Looks at `look()` until `done` holds of what it returns, and returns that
/// value; fails after `timeout` with `what` and the last value seen.
pub async fn eventually<T: fmt::Debug>(
    timeout: Duration,
    what: &str,
    mut look: impl FnMut() -> T,
    done: impl FnMut(&T) -> bool,
) -> Result<T, TimedOut> {
    eventually_async(timeout, what, || std::future::ready(look()), done).await
}

/// [`eventually`] for a look that has to wait itself, such as asking the
/// server for its counts.
pub async fn eventually_async<T, F>(
    timeout: Duration,
    what: &str,
    mut look: impl FnMut() -> F,
    mut done: impl FnMut(&T) -> bool,
) -> Result<T, TimedOut>
where
    T: fmt::Debug,
    F: Future<Output = T>,
{
    let start = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let seen = look().await;
        if done(&seen) {
            return Ok(seen);
        }
        if start.elapsed() >= timeout {
            return Err(TimedOut {
                what: what.to_owned(),
                waited: start.elapsed(),
                last_seen: format!("{seen:?}"),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_value_that_holds() {
        let mut looks = 0;
        let seen = eventually(
            Duration::from_secs(1),
            "the third look",
            || {
                looks += 1;
                looks
            },
            |&n| n == 3,
        )
        .await
        .expect("the third look holds");
        assert_eq!((seen, looks), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_says_what_was_awaited_and_what_was_seen_last() {
        let start = tokio::time::Instant::now();
        let err = eventually_async(
            Duration::from_millis(100),
            "the answer",
            || async { 41 },
            |&n| n == 42,
        )
        .await
        .expect_err("41 is never 42");
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(
            (err.what.as_str(), err.last_seen.as_str()),
            ("the answer", "41")
        );
        assert!(
            err.to_string().starts_with("timed out after ")
                && err
                    .to_string()
                    .ends_with(" waiting for the answer; last seen: 41"),
            "{err}"
        );
    }
}
