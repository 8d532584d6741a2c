//! zferry beside syncoid on real ZFS (issue 8; DESIGN.md "Tests, in tiers" item 5):
//! one filesystem with many small snapshots, replicated local to local by each tool
//! into its own fresh destination, timed in the same run, so the figures are ratios.
//!
//!     cargo build --release --workspace --bins
//!     cargo bench -p zferry-tests --bench vs_syncoid   # ZFERRY_BENCH_SNAPSHOTS=200, _RUNS=3
//!
//! It skips (exit 0, with the reason) without ZFS or without `syncoid` (Debian package
//! `sanoid`). It never fails on speed, only when a replica is wrong: every run is
//! checked to hold all the source's snapshots, in order, with the source's guids.
//!
//! Bare `zfs send | zfs receive` shell pipelines run beside the tools, cut the way
//! each tool cuts the work (one `-i` per snapshot, as zferry's default
//! `guarantee_resumability` does; one full then one `-I`, as syncoid does): they are
//! the floor that ZFS itself sets, so what lies above them is the tool's own cost.
//! The batched one runs twice: receiving unmounted (`-u`), as zferry always does,
//! and mounted, as syncoid does, since the two may cost ZFS differently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use zferry_tests::zfs::{must, run};
use zferry_tests::{Pool, ZfsEnv};

/// The source dataset under the source pool.
const FS: &str = "data";
const SYNCOID: &str = "syncoid";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    // `cargo test --all-targets` runs bench binaries without `--bench`; minutes of
    // replication there would only slow the test suite down.
    if !std::env::args().any(|a| a == "--bench") {
        println!("vs_syncoid: measures only under `cargo bench`; skipped");
        return ExitCode::SUCCESS;
    }
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vs_syncoid: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How one contender replicates `src` into the fresh, existing dataset `root`.
#[derive(Debug, Clone, Copy)]
enum Tool {
    /// `zferry run` of a local push -> sink job, with this binary and protection.
    Zferry {
        bin: &'static str,
        batched: bool,
    },
    Syncoid,
    /// Bare pipelines: per snapshot (`-i` each) or full + one `-I`; received
    /// unmounted (`-u`, as zferry receives) or mounted (as syncoid receives).
    Floor {
        batched: bool,
        mounted: bool,
    },
}

impl Tool {
    fn label(self) -> String {
        let shape = |batched| if batched { "full + one -I" } else { "one -i per snapshot" };
        match self {
            // zferry chooses the shape itself by protection level and dialect:
            // the label names the configuration, not the shape.
            Tool::Zferry { bin, batched: false } => format!("{bin} (default protection)"),
            Tool::Zferry { bin, batched: true } => format!("{bin} (guarantee_incremental)"),
            Tool::Syncoid => format!("syncoid ({})", shape(true)),
            Tool::Floor { batched, mounted: false } => {
                format!("zfs send|recv ({})", shape(batched))
            }
            Tool::Floor { batched, mounted: true } => {
                format!("zfs send|recv ({}, mounted)", shape(batched))
            }
        }
    }
}

struct Setup {
    src: Pool,
    snaps: Vec<String>,
    bins: PathBuf,
    /// Config files and logs of the zferry runs.
    dir: PathBuf,
}

fn bench() -> Result<()> {
    let env = match ZfsEnv::detect() {
        Ok(env) => env,
        Err(why) => {
            println!("vs_syncoid: SKIPPED: {why}");
            return Ok(());
        }
    };
    let syncoid_version = match run(SYNCOID, &["--version"]) {
        r if r.ok => r.stdout.lines().next().unwrap_or("").trim().to_owned(),
        r => {
            println!(
                "vs_syncoid: SKIPPED: no usable syncoid (Debian package sanoid): {}",
                r.stderr.trim()
            );
            return Ok(());
        }
    };
    let count = env_number("ZFERRY_BENCH_SNAPSHOTS", 200)?;
    let runs = env_number("ZFERRY_BENCH_RUNS", 3)?;
    let bins = zferry_tests::release_bin_dir()?;
    let dir = std::env::temp_dir().join(format!("zferry-vs-syncoid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let tools = [
        Tool::Syncoid,
        Tool::Zferry { bin: "zferry", batched: false },
        Tool::Zferry { bin: "zferry-smol", batched: false },
        Tool::Zferry { bin: "zferry", batched: true },
        Tool::Zferry { bin: "zferry-smol", batched: true },
        Tool::Floor { batched: false, mounted: false },
        Tool::Floor { batched: true, mounted: false },
        Tool::Floor { batched: true, mounted: true },
    ];
    // Declared before the pools so that it is dropped after them: nothing here
    // refers to the directory once the pools are gone.
    let _cleanup = RemoveDir(dir.clone());
    eprintln!("vs_syncoid: making {count} snapshots");
    let src = env.pool_prefixed("zfb", "src");
    src.create(FS);
    let snaps: Vec<String> = (1..=count).map(|i| format!("s{i:04}")).collect();
    for (i, snap) in snaps.iter().enumerate() {
        // A small change per snapshot, so that every incremental carries data.
        src.write(FS, "f", format!("{i}\n").as_bytes());
        src.snapshot(FS, snap);
    }
    let setup = Setup { src, snaps, bins, dir };

    // Round-robin, so that a slow patch of this shared machine hits every tool
    // rather than skewing one ratio; each round starts one tool later, so that no
    // tool always follows the same one (zfs-fuse still frees the last pool's space).
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    for r in 1..=runs {
        for i in 0..tools.len() {
            let t = (i + r - 1) % tools.len();
            let (tool, samples) = (&tools[t], &mut samples[t]);
            eprintln!("vs_syncoid: run {r}/{runs}: {}", tool.label());
            // A fresh pool for every run: zfs-fuse receives measurably slower into
            // a pool that earlier runs have filled.
            let dst = env.pool_prefixed("zfb", "dst");
            let root = dst.path("r");
            must("zfs", &["create", &root]);
            let secs = replicate(&setup, *tool, &root, r)?;
            let replica = replica_path(&setup, *tool, &root);
            verify(&setup, &replica).map_err(|e| format!("{}: {e}", tool.label()))?;
            eprintln!("vs_syncoid: {secs:.2} s, {replica} verified");
            samples.push(secs);
        }
    }

    println!();
    println!(
        "{count} snapshots of one filesystem, local to local, {:?}, {runs} run(s) each",
        env.flavor
    );
    println!("(binaries: {}; {syncoid_version})", setup.bins.display());
    let (base_best, base_median) = (best(&samples[0]), median(&samples[0]));
    println!(
        "{:<38} {:>8} {:>7} {:>8} {:>7}   all runs",
        "wall time", "best", "ratio", "median", "ratio"
    );
    for (tool, s) in tools.iter().zip(&samples) {
        let all: Vec<String> = s.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "{:<38} {:>6.2} s {:>6.2}x {:>6.2} s {:>6.2}x   {}",
            tool.label(),
            best(s),
            best(s) / base_best,
            median(s),
            median(s) / base_median,
            all.join(" ")
        );
    }
    println!(
        "ratio = time / syncoid's time (best to best, median to median): below 1.00 is faster"
    );
    println!("syncoid ran as: {SYNCOID} --no-sync-snap SRC DST (zferry takes no snapshot either)");
    Ok(())
}

/// Runs one replication and returns its wall time in seconds.
fn replicate(setup: &Setup, tool: Tool, root: &str, run_no: usize) -> Result<f64> {
    let src = setup.src.path(FS);
    let mut cmd = match tool {
        Tool::Zferry { bin, batched } => {
            let config = setup.dir.join(format!("{bin}-{batched}-{run_no}.yml"));
            std::fs::write(&config, zferry_config(setup, &src, root, batched))
                .map_err(|e| format!("{}: {e}", config.display()))?;
            let mut c = Command::new(setup.bins.join(bin));
            c.arg("run").arg("--config").arg(&config).arg("push");
            c
        }
        Tool::Syncoid => {
            let mut c = Command::new(SYNCOID);
            c.args(["--no-sync-snap", &src, &format!("{root}/{FS}")]);
            c
        }
        Tool::Floor { batched, mounted } => {
            let script = floor_script(setup, &src, &format!("{root}/{FS}"), batched, mounted);
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        }
    };
    let start = Instant::now();
    let out = cmd.output().map_err(|e| format!("{}: cannot start: {e}", tool.label()))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            tool.label(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(secs)
}

/// A local push -> sink pair in one process, as a zrepl user would write it; nothing
/// pruned (the keep rules keep more than there is).
fn zferry_config(setup: &Setup, src: &str, root: &str, batched: bool) -> String {
    let protection = if batched { "guarantee_incremental" } else { "guarantee_resumability" };
    format!(
        "global:
  control:
    sockpath: {sock}
jobs:
  - name: push
    type: push
    connect:
      type: local
      listener_name: bench
      client_identity: bench
    filesystems:
      \"{src}\": true
    snapshotting:
      type: manual
    conflict_resolution:
      initial_replication: all
    replication:
      protection:
        initial: guarantee_resumability
        incremental: {protection}
    pruning:
      keep_sender:
        - type: last_n
          count: 100000
      keep_receiver:
        - type: last_n
          count: 100000
  - name: sink
    type: sink
    serve:
      type: local
      listener_name: bench
    root_fs: {root}
",
        sock = setup.dir.join("control.sock").display(),
    )
}

fn floor_script(setup: &Setup, src: &str, dst: &str, batched: bool, mounted: bool) -> String {
    let first = &setup.snaps[0];
    let recv = if mounted { "zfs receive" } else { "zfs receive -u" };
    let mut script = format!("set -e\nzfs send {src}@{first} | {recv} {dst}\n");
    if batched {
        if let Some(last) = setup.snaps.get(1..).and_then(<[String]>::last) {
            script += &format!("zfs send -I {src}@{first} {src}@{last} | {recv} {dst}\n");
        }
    } else {
        for w in setup.snaps.windows(2) {
            script += &format!("zfs send -i {src}@{} {src}@{} | {recv} {dst}\n", w[0], w[1]);
        }
    }
    script
}

/// Where each tool puts the replica: zferry's sink maps the sender's path under
/// `root_fs/<client identity>`, the others receive to the name they are given.
fn replica_path(setup: &Setup, tool: Tool, root: &str) -> String {
    match tool {
        Tool::Zferry { .. } => format!("{root}/bench/{}", setup.src.path(FS)),
        Tool::Syncoid | Tool::Floor { .. } => format!("{root}/{FS}"),
    }
}

/// The replica has exactly the source's snapshots, in the same order, with the same
/// guids (names alone would not prove they are the same versions).
fn verify(setup: &Setup, replica: &str) -> Result<()> {
    let want = snapshots_with_guids(&setup.src.path(FS))?;
    let got = snapshots_with_guids(replica)?;
    if want.len() != setup.snaps.len() {
        return Err(format!("the source has {} snapshots, not {}", want.len(), setup.snaps.len()));
    }
    if got != want {
        let missing = want.iter().filter(|v| !got.contains(v)).count();
        let extra = got.iter().filter(|v| !want.contains(v)).count();
        return Err(format!(
            "{replica} differs from the source: {} snapshots, {missing} missing or with another \
             guid, {extra} not on the source",
            got.len()
        ));
    }
    Ok(())
}

/// `(name after @, guid)` of every snapshot of `fs`, oldest first.
fn snapshots_with_guids(fs: &str) -> Result<Vec<(String, String)>> {
    let names =
        run("zfs", &["list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg", "-r", fs]);
    if !names.ok {
        return Err(format!("cannot list the snapshots of {fs}: {}", names.stderr.trim()));
    }
    // One `zfs get` for all guids: a call per snapshot would take longer than the runs.
    let guids = run("zfs", &["get", "-H", "-p", "-r", "-o", "name,value", "guid", fs]);
    if !guids.ok {
        return Err(format!("cannot get the guids under {fs}: {}", guids.stderr.trim()));
    }
    let guids: HashMap<&str, &str> =
        guids.stdout.lines().filter_map(|l| l.split_once('\t')).collect();
    let prefix = format!("{fs}@");
    names
        .stdout
        .lines()
        .filter_map(|full| full.strip_prefix(&prefix).map(|snap| (full, snap)))
        .map(|(full, snap)| match guids.get(full) {
            Some(g) => Ok((snap.to_owned(), (*g).to_owned())),
            None => Err(format!("no guid for {full}")),
        })
        .collect()
}

fn best(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().ok().filter(|n| *n > 0).ok_or(format!("bad {name}: {v:?}")),
        Err(_) => Ok(default),
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new(&self.0));
    }
}
