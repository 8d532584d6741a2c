//! `periodic` snapshotting: one snapshot per interval window.
//!
//! Windows are aligned to multiples of the interval since the Unix epoch, so the
//! rhythm survives restarts and is the same on every host (a 1d interval
//! snapshots at 00:00 UTC). zrepl instead syncs to its newest snapshot plus the
//! interval; both avoid drift, and ours needs no memory of the last run.

use std::time::Duration;

use crate::time::WallTime;

/// What a periodic snapshotter should do at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicDue {
    /// No snapshot exists in the current window: take one now.
    pub now: bool,
    /// Start of the next window: when to look again.
    pub next: WallTime,
}

/// Whether a snapshot is due at `now`, given the creation times of the job's
/// existing snapshots (those with its prefix, on any of its filesystems).
///
/// Snapshots dated after `now` are ignored: a snapshot taken while the clock was
/// ahead must not stop snapshotting until the clock catches up with it.
pub fn periodic_due(
    interval: Duration,
    now: WallTime,
    existing: impl IntoIterator<Item = WallTime>,
) -> PeriodicDue {
    // Config intervals are whole, positive seconds; clamp anyway so a zero
    // interval cannot divide by zero or busy-loop.
    let len = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    let start = now.0.saturating_sub(now.0.rem_euclid(len));
    let next = WallTime(start.saturating_add(len));
    let newest = existing.into_iter().filter(|t| *t <= now).max();
    PeriodicDue { now: newest.map_or(true, |t| t.0 < start), next }
}
