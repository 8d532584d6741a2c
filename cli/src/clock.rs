//! The one place that reads the OS clocks and turns them into core's [`Now`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zferry_core::time::{Instant, Now, WallTime};

#[derive(Debug, Clone)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: std::time::Instant::now() }
    }

    pub fn now(&self) -> Now {
        let mono = self.origin.elapsed().as_nanos();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        Now {
            mono: Instant::from_nanos(u64::try_from(mono).unwrap_or(u64::MAX)),
            wall: WallTime(wall),
        }
    }

    /// How long from now until `deadline`; zero if it has passed.
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_since(self.now().mono)
    }
}
