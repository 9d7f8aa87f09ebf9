//! When a failed delivery is tried again: exponential backoff with jitter,
//! so that retries of a burst that failed together spread out instead of
//! hitting a recovering receiver at once.

use std::time::Duration;

/// The wait after the first failed attempt.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const LONGEST: Duration = Duration::from_secs(5 * 60);
/// Each wait is drawn within this share either side of its nominal value.
const JITTER: f64 = 0.25;

/// How long to wait after `attempts` failed attempts (1 or more): `FIRST`
/// doubling up to `LONGEST`, give or take `JITTER`.
pub fn after(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    let nominal = FIRST.saturating_mul(1 << doublings).min(LONGEST);
    let spread = 1.0 + JITTER * (2.0 * fastrand::f64() - 1.0);
    nominal.mul_f64(spread).min(LONGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_a_second_to_five_minutes_within_the_jitter() {
        for (attempts, nominal) in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (15, 300.0)] {
            for _ in 0..100 {
                let wait = after(attempts).as_secs_f64();
                assert!(wait >= nominal * (1.0 - JITTER) - 1e-9, "{attempts}: {wait}");
                assert!(
                    wait <= (nominal * (1.0 + JITTER)).min(300.0) + 1e-9,
                    "{attempts}: {wait}"
                );
            }
        }
    }

    #[test]
    fn waits_vary() {
        let waits: std::collections::HashSet<u128> = (0..50).map(|_| after(3).as_micros()).collect();
        assert!(waits.len() > 1);
    }
}
