//! When to try a failed delivery again (PURE: the time and the randomness are
//! passed in).
//!
//! After the n-th failed attempt the next one waits a random time in
//! `[d/2, d]`, where `d = min(max_backoff, initial_backoff · 2^(n-1))`
//! ("equal jitter": it spreads a burst of events that failed together, yet
//! always backs off at least half the nominal step). Nothing is retried past
//! `max_age` after the event was created (or re-queued by `events retry`):
//! the last attempt is made at that deadline at the latest, and when it fails
//! too the event is dead, kept with its last error.

use std::time::Duration;

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Step after the first failure.
    pub initial_backoff: Duration,
    /// Largest step.
    pub max_backoff: Duration,
    /// Retries stop this long after the event's age origin.
    pub max_age: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this Unix time (milliseconds).
    RetryAt(u64),
    /// Give up: keep the event as dead.
    Dead,
}

/// Milliseconds since the Unix epoch (the outbox's time unit).
pub trait MillisClock: Send + Sync + 'static {
    /// Now.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemMillis;

impl MillisClock for SystemMillis {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// The nominal step after `failed` failed attempts (`failed >= 1`).
    pub fn step(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(40);
        let step = self.initial_backoff.saturating_mul(1u32 << doublings.min(31));
        let step = if doublings > 31 { self.max_backoff } else { step };
        step.min(self.max_backoff)
    }

    /// The jittered wait after `failed` failed attempts; `jitter` in `[0, 1)`
    /// picks the point in `[step/2, step]`.
    pub fn delay(&self, failed: u32, jitter: f64) -> Duration {
        let step = ms(self.step(failed));
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let half = step / 2;
        let extra = ((step - half) as f64 * jitter) as u64;
        Duration::from_millis(half + extra.min(step - half))
    }

    /// After the `failed`-th failed attempt at `now_ms`, for an event whose age
    /// counts from `age_from_ms`.
    pub fn after_failure(&self, now_ms: u64, age_from_ms: u64, failed: u32, jitter: f64) -> Next {
        let deadline = age_from_ms.saturating_add(ms(self.max_age));
        if now_ms >= deadline {
            return Next::Dead;
        }
        let at = now_ms.saturating_add(ms(self.delay(failed, jitter)));
        Next::RetryAt(at.min(deadline))
    }
}

/// A uniform value in `[0, 1)` from the OS random source (for the jitter).
pub fn random_jitter() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    struct TestClock(std::sync::atomic::AtomicU64);

    impl MillisClock for TestClock {
        fn now_ms(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn policy() -> Policy {
        Policy {
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn steps_double_up_to_the_cap() {
        let p = policy();
        let steps: Vec<u64> = (1..=10).map(|n| p.step(n).as_secs()).collect();
        assert_eq!(steps, vec![5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(p.step(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn jitter_stays_within_half_step_and_step() {
        let p = policy();
        for failed in 1..=50 {
            let step = p.step(failed);
            for j in [0.0, 1e-9, 0.25, 0.5, 0.999_999, 1.0, f64::NAN, -3.0, 7.0] {
                let d = p.delay(failed, j);
                assert!(
                    d >= step / 2 && d <= step,
                    "failed={failed} j={j}: {d:?} vs {step:?}"
                );
                assert!(d <= p.max_backoff);
            }
        }
        // Real randomness: spread over the interval, inside the bounds.
        let ds: Vec<Duration> = (0..200).map(|_| p.delay(3, random_jitter())).collect();
        assert!(ds
            .iter()
            .all(|d| *d >= Duration::from_secs(10) && *d <= Duration::from_secs(20)));
        assert!(ds.iter().min() != ds.iter().max(), "no spread");
    }

    #[test]
    fn retries_stop_at_max_age_with_a_last_attempt_at_the_deadline() {
        let p = policy();
        let clock = TestClock(std::sync::atomic::AtomicU64::new(1_000_000));
        let created = clock.now_ms();
        let deadline = created + 3_600_000;
        let mut failed = 0;
        let mut attempts_at = vec![];
        loop {
            failed += 1;
            let now = clock.now_ms();
            attempts_at.push(now);
            match p.after_failure(now, created, failed, 0.5) {
                Next::RetryAt(at) => {
                    assert!(at > now && at <= deadline, "{at}");
                    clock.0.store(at, std::sync::atomic::Ordering::SeqCst);
                }
                Next::Dead => break,
            }
        }
        assert_eq!(
            *attempts_at.last().unwrap(),
            deadline,
            "the last attempt is at the deadline"
        );
        assert!(attempts_at.windows(2).all(|w| w[1] - w[0] <= 600_000));
        assert!(failed > 5 && failed < 20, "{failed}");
        // A re-queued event counts its age from the retry.
        assert_eq!(p.after_failure(deadline, created, 1, 0.0), Next::Dead);
        assert!(matches!(
            p.after_failure(deadline, deadline, 1, 0.0),
            Next::RetryAt(_)
        ));
    }
}
