//! Per-device flow control: token buckets that pace how fast the broker reads from a device.
//!
//! A device's connection charges what it has just read (PUBLISH packets and bytes) to its
//! device's buckets; a bucket that goes into debt makes the reader pause until the debt is
//! repaid. Nothing is dropped: while the reader pauses the socket fills, TCP pushes back on the
//! device, and its unacknowledged messages stay on the device. Other connections are not
//! affected, since each reader only ever waits on its own buckets.
//!
//! Buckets are kept per device id rather than per connection, so reconnecting does not refill
//! them. A bucket that has refilled to its burst is indistinguishable from a new one; the
//! reaper forgets those that no connection holds.

use std::time::{Duration, Instant};

/// Which limit made a device wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Throttle {
    Messages,
    Bytes,
}

impl Throttle {
    pub(super) fn label(self) -> &'static str {
        match self {
            Throttle::Messages => "messages",
            Throttle::Bytes => "bytes",
        }
    }
}

/// A token bucket whose balance may go negative (debt), so that a whole read chunk can be
/// charged at once and the average rate still holds.
#[derive(Debug)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// Most tokens saved up while idle.
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: Duration, now: Instant) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let rate = rate as f64;
        let burst = (rate * burst.as_secs_f64()).max(1.0);
        Some(Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// Take `n` tokens; returns how long until the balance is back to zero.
    fn take(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// One device's buckets (messages and bytes per second); either may be unlimited.
#[derive(Debug)]
pub(super) struct DeviceLimiter {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl DeviceLimiter {
    /// `None` if both rates are 0 (unlimited).
    pub(super) fn new(
        messages_per_sec: u64,
        bytes_per_sec: u64,
        burst: Duration,
        now: Instant,
    ) -> Option<Self> {
        let limiter = Self {
            messages: Bucket::new(messages_per_sec, burst, now),
            bytes: Bucket::new(bytes_per_sec, burst, now),
        };
        (limiter.messages.is_some() || limiter.bytes.is_some()).then_some(limiter)
    }

    /// Charge what was just read. Returns how long the reader must pause, and the limit that
    /// asks for the longest pause, if any does.
    pub(super) fn charge(
        &mut self,
        messages: u64,
        bytes: u64,
        now: Instant,
    ) -> Option<(Duration, Throttle)> {
        let by_messages = self
            .messages
            .as_mut()
            .map_or(Duration::ZERO, |b| b.take(messages, now));
        let by_bytes = self
            .bytes
            .as_mut()
            .map_or(Duration::ZERO, |b| b.take(bytes, now));
        if by_messages.is_zero() && by_bytes.is_zero() {
            None
        } else if by_messages >= by_bytes {
            Some((by_messages, Throttle::Messages))
        } else {
            Some((by_bytes, Throttle::Bytes))
        }
    }

    /// True when both buckets are full again (the limiter can be forgotten).
    pub(super) fn is_rested(&mut self, now: Instant) -> bool {
        self.messages.as_mut().is_none_or(|b| b.is_full(now))
            && self.bytes.as_mut().is_none_or(|b| b.is_full(now))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_burst_is_free_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut l = DeviceLimiter::new(100, 0, Duration::from_secs(2), t0).expect("limited");
        // 200 messages of burst pass without a pause.
        assert_eq!(l.charge(200, 1_000_000, t0), None);
        // The next 50 cost half a second.
        let (pause, why) = l.charge(50, 0, t0).expect("throttled");
        assert_eq!(why, Throttle::Messages);
        assert!((pause.as_secs_f64() - 0.5).abs() < 1e-6, "{pause:?}");
        // After that half second the balance is zero: one more costs 10 ms.
        let t1 = t0 + Duration::from_millis(500);
        let (pause, _) = l.charge(1, 0, t1).expect("throttled");
        assert!((pause.as_secs_f64() - 0.01).abs() < 1e-6, "{pause:?}");
        assert!(!l.is_rested(t1));
        assert!(l.is_rested(t1 + Duration::from_secs(3)));
    }

    #[test]
    fn the_longer_pause_names_the_limit() {
        let t0 = Instant::now();
        let mut l = DeviceLimiter::new(1000, 1000, Duration::from_secs(1), t0).expect("limited");
        let (pause, why) = l.charge(10, 3000, t0).expect("throttled");
        assert_eq!(why, Throttle::Bytes);
        assert_eq!(pause, Duration::from_secs(2));
        assert!(DeviceLimiter::new(0, 0, Duration::from_secs(1), t0).is_none());
    }
}
