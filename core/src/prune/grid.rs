//! The retention grid: a sieve that thins snapshots out as they age.
//!
//! What zrepl documents (docs/configuration/prune.rst, "Policy grid"), and what
//! this implements:
//!
//! - The grid is anchored at the youngest snapshot that matches the rule's regex,
//!   not at the wall clock: the first bucket's young edge is that snapshot's
//!   creation time, and the buckets follow each other back in time. So a grid
//!   never thins out the history of a filesystem that stopped getting snapshots.
//! - Buckets are closed at the young end and open at the old end: measured as age
//!   behind the anchor, bucket i holds ages in [start_i, end_i). A snapshot on a
//!   boundary belongs to the older bucket.
//! - A bucket with keep=K keeps its K *oldest* snapshots ("newer snapshots are
//!   destroyed first"); keep=all keeps all of them.
//! - Snapshots older than the last bucket are not kept by the grid.
//!
//! One addition for clock trouble: a snapshot whose creation time is after `now`
//! (taken while a clock was ahead, or received from a host whose clock is) is
//! kept by the grid and does not become the anchor; the anchor is the youngest
//! matching snapshot not in the future. While clocks are sane this is exactly
//! zrepl's rule, since no snapshot is younger than now.

use std::collections::BTreeMap;

use super::rules::age_key;
use crate::config::{GridInterval, GridKeep};
use crate::time::WallTime;
use crate::zfs::FilesystemVersion;

/// Which of `snaps` (already filtered by the rule's regex) the grid keeps.
pub(super) fn keeps(
    grid: &[GridInterval],
    snaps: &[&FilesystemVersion],
    now: WallTime,
) -> Vec<bool> {
    let mut keep: Vec<bool> = snaps.iter().map(|s| s.creation > now.0).collect();
    let Some(anchor) = snaps.iter().map(|s| s.creation).filter(|&c| c <= now.0).max() else {
        return keep;
    };

    // Old edges of the buckets, as ages behind the anchor. i128: 100,000 intervals
    // of the longest duration the config accepts still fit.
    let ends: Vec<i128> = grid
        .iter()
        .scan(0i128, |end, g| {
            *end += i128::from(g.length.as_secs());
            Some(*end)
        })
        .collect();

    let mut buckets: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in snaps.iter().enumerate() {
        if s.creation > now.0 {
            continue;
        }
        let age = i128::from(anchor) - i128::from(s.creation);
        let bucket = ends.partition_point(|&end| end <= age);
        if bucket < ends.len() {
            buckets.entry(bucket).or_default().push(i);
        }
    }

    for (bucket, mut members) in buckets {
        let take = match grid[bucket].keep {
            GridKeep::All => members.len(),
            GridKeep::Count(k) => k as usize,
        };
        members.sort_by_key(|&i| age_key(snaps[i]));
        for &i in members.iter().take(take) {
            keep[i] = true;
        }
    }
    keep
}
