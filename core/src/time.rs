//! Time as plain values: the core never reads a clock.

use std::time::Duration;

/// A point on a monotonic clock, in nanoseconds since an arbitrary origin chosen by
/// the driver. All arithmetic saturates, so a skewed or zero origin cannot panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

/// Wall-clock time as seconds since the Unix epoch. Kept apart from [`Instant`]
/// because only snapshot names and pruning need it, and it may jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallTime(pub i64);

/// What the driver tells the core about "now": both clocks, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    pub mono: Instant,
    pub wall: WallTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let max = Instant::from_nanos(u64::MAX);
        assert_eq!(max + Duration::from_secs(1), max);
        assert_eq!(
            Instant::ZERO.saturating_since(max),
            Duration::ZERO,
            "an earlier instant minus a later one is zero, not a panic"
        );
        assert_eq!(
            Instant::from_nanos(5).saturating_since(Instant::from_nanos(2)),
            Duration::from_nanos(3)
        );
        assert_eq!(Instant::ZERO + Duration::MAX, max);
    }
}
