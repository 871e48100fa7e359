//! The fleet's virtual clock.
//!
//! Time runs at real speed while any device waits for the network (an acknowledgement, a
//! connection), and jumps ahead to the next thing that is due (a heartbeat, a scenario step,
//! a resend) when none does. So "offline for three hours" takes as long as it takes to queue
//! a dozen heartbeats, while everything that touches the broker and the server happens in
//! real time. Devices stamp events (`t`) with the virtual wall clock, which starts in the past
//! and never runs ahead of the real one (the server refuses events from the future).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Shared by every device of a fleet.
#[derive(Debug)]
pub struct VirtualClock {
    started: Instant,
    start_unix_ms: i64,
    leaped_ms: AtomicU64,
}

impl VirtualClock {
    /// A clock whose wall time starts at `start_unix_ms`.
    pub fn starting_at(start_unix_ms: i64) -> Self {
        VirtualClock {
            started: Instant::now(),
            start_unix_ms,
            leaped_ms: AtomicU64::new(0),
        }
    }

    /// Virtual milliseconds since the start (the devices' monotonic clock).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + self.leaped_ms.load(Ordering::Relaxed)
    }

    /// The virtual wall clock, ms since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        self.start_unix_ms + self.now_ms() as i64
    }

    /// Jumps ahead by up to `ms`, never past the real wall clock; returns the jump made.
    pub fn leap(&self, ms: u64) -> u64 {
        let headroom = real_unix_ms().saturating_sub(self.unix_ms()).max(0) as u64;
        let ms = ms.min(headroom);
        self.leaped_ms.fetch_add(ms, Ordering::Relaxed);
        ms
    }

    /// The virtual wall time at virtual monotonic `ms`.
    pub fn unix_at(&self, ms: u64) -> i64 {
        self.start_unix_ms + ms as i64
    }
}

/// The real wall clock, ms since the Unix epoch.
pub fn real_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The latest 02:00 UTC such that `span_ms` after it is still before `before_unix_ms`: the
/// fleet's start, so that the night scenario's door opens at 03:00 device time.
pub fn aligned_start(before_unix_ms: i64, span_ms: u64) -> i64 {
    const DAY: i64 = 86_400_000;
    const TWO_AM: i64 = 2 * 3_600_000;
    let latest = before_unix_ms - span_ms as i64;
    let day_start = latest.div_euclid(DAY) * DAY;
    let candidate = day_start + TWO_AM;
    if candidate <= latest {
        candidate
    } else {
        candidate - DAY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaps_but_never_past_real_time() {
        let now = real_unix_ms();
        let clock = VirtualClock::starting_at(now - 3_600_000);
        assert_eq!(clock.leap(1_000_000), 1_000_000);
        assert!(clock.now_ms() >= 1_000_000);
        let rest = clock.leap(10_000_000);
        assert!(
            rest <= 2_600_000 + 1_000,
            "capped at the real clock: {rest}"
        );
        assert!(clock.unix_ms() <= real_unix_ms());
    }

    #[test]
    fn start_is_two_am_utc_and_early_enough() {
        let before = 1_795_000_000_000; // 2026-11-18T...Z
        let start = aligned_start(before, 2 * 3_600_000);
        assert_eq!(start.rem_euclid(86_400_000), 2 * 3_600_000);
        assert!(start + 2 * 3_600_000 <= before);
        assert!(before - start < 86_400_000 + 2 * 3_600_000);
    }
}
