//! Planning cost: 10,000 filesystems with 1,000 snapshots each, the receiver 10
//! snapshots behind on each, planned one filesystem at a time as a job does. Also
//! one filesystem at growing sizes, to show the cost per version stays flat
//! (no quadratic step). Prints time and peak memory (VmHWM).
//!
//! Run: cargo bench -p zferry-core --bench plan

use std::hint::black_box;
use std::time::Instant;

use zferry_core::plan::steps::{plan, Plan, ReplicationPolicy};
use zferry_core::zfs::{FilesystemVersion, VersionKind};

fn history(fs: u64, snapshots: u64) -> Vec<FilesystemVersion> {
    (0..snapshots)
        .map(|i| FilesystemVersion {
            kind: VersionKind::Snapshot,
            name: format!("zferry_{i:06}"),
            guid: fs * 10_000_000 + i + 1,
            createtxg: i + 1,
            creation: 1_700_000_000 + i as i64,
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Plans one filesystem whose receiver lags `behind` snapshots; returns the
/// steps and the time `plan` took (building the lists is not counted: a job gets
/// them from `zfs list` output).
fn plan_one(
    fs: u64,
    snapshots: u64,
    behind: u64,
    policy: &ReplicationPolicy,
) -> (usize, std::time::Duration) {
    let sender = history(fs, snapshots);
    let receiver = sender[..(snapshots - behind) as usize].to_vec();
    let start = Instant::now();
    let planned = plan(black_box(&sender), black_box(&receiver), None, policy);
    let took = start.elapsed();
    match planned {
        Ok(Plan::Steps(steps)) => (steps.len(), took),
        other => panic!("unexpected plan for fs {fs}: {other:?}"),
    }
}

fn main() {
    let policy = ReplicationPolicy::default();
    let (filesystems, snapshots) = (10_000u64, 1_000u64);
    let mut steps = 0;
    let mut total = std::time::Duration::ZERO;
    for fs in 0..filesystems {
        let (n, took) = plan_one(fs, snapshots, 10, &policy);
        steps += n;
        total += took;
    }
    let versions = filesystems * snapshots * 2;
    println!("plan: {filesystems} filesystems x {snapshots} snapshots (sender and receiver), {steps} steps");
    println!(
        "  planning took {:.2} s in all, {:.0} ns per version, peak RSS {:.1} MiB",
        total.as_secs_f64(),
        total.as_nanos() as f64 / versions as f64,
        peak_rss_mib()
    );
    println!("one filesystem, growing (cost per version should stay flat):");
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let (_, t) = plan_one(1, n, 10, &policy);
        println!(
            "  {n:>9} snapshots: {:>8.2} ms, {:>6.0} ns per version",
            t.as_secs_f64() * 1e3,
            t.as_nanos() as f64 / (2 * n) as f64
        );
    }
    println!("  peak RSS {:.1} MiB", peak_rss_mib());
}
