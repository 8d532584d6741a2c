//! Real ZFS for the end-to-end suites: pools on sparse files, made per test and
//! destroyed when the test ends, on whatever ZFS this machine runs.
//!
//! The environment is a parameter, not a fake: on a CI machine it is zfs-fuse
//! (started by `.ci/run`); in the OpenZFS lab (`shared/zfs-lab`) the same test
//! binaries run inside the guest against OpenZFS 2.3. `ZFERRY_TEST_VDEV_DIR` says
//! where pool files go (default /tmp; /scratch in the lab). When no ZFS answers,
//! [`ZfsEnv::detect`] returns `None` with the reason, and tests print it and skip.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Which ZFS implementation answers `zfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// zfs-fuse, pool version 23: no bookmarks, holds, resume, `-p` on list.
    ZfsFuse,
    /// OpenZFS 2.x.
    OpenZfs,
}

#[derive(Debug, Clone)]
pub struct ZfsEnv {
    pub flavor: Flavor,
    vdev_dir: PathBuf,
}

/// The output of a command run for a test, with a message ready for asserts.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(program: &str, args: &[&str]) -> Ran {
    match Command::new(program).args(args).output() {
        Ok(o) => Ran {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        },
        Err(e) => {
            Ran { ok: false, stdout: String::new(), stderr: format!("cannot run {program}: {e}") }
        }
    }
}

/// Runs a command that must succeed; panics with its stderr otherwise.
pub fn must(program: &str, args: &[&str]) -> String {
    let r = run(program, args);
    assert!(r.ok, "`{program} {}` failed: {}", args.join(" "), r.stderr.trim());
    r.stdout
}

static POOLS: AtomicU32 = AtomicU32::new(0);

impl ZfsEnv {
    /// The ZFS of this machine, or why there is none.
    pub fn detect() -> Result<ZfsEnv, String> {
        let list = run("zpool", &["list", "-H"]);
        if !list.ok {
            return Err(format!("no usable ZFS here (`zpool list`: {})", list.stderr.trim()));
        }
        let flavor = if run("zfs", &["version"]).ok { Flavor::OpenZfs } else { Flavor::ZfsFuse };
        let vdev_dir = std::env::var_os("ZFERRY_TEST_VDEV_DIR")
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        Ok(ZfsEnv { flavor, vdev_dir })
    }

    /// A fresh pool on a sparse file; destroyed, with its file, when dropped.
    pub fn pool(&self, tag: &str) -> Pool {
        self.pool_prefixed("zft", tag)
    }

    /// [`ZfsEnv::pool`] under another name prefix: benches use their own, so that
    /// clearing a crashed test run's leftover `zft*` pools never hits a running bench.
    pub fn pool_prefixed(&self, prefix: &str, tag: &str) -> Pool {
        let n = POOLS.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}{}{tag}{n}", std::process::id());
        let file = self.vdev_dir.join(format!("{name}.img"));
        let mountpoint = self.vdev_dir.join(format!("{name}.mnt"));
        must("truncate", &["-s", "256M", file.to_str().unwrap()]);
        must(
            "zpool",
            &["create", "-m", mountpoint.to_str().unwrap(), &name, file.to_str().unwrap()],
        );
        Pool { name, file, mountpoint }
    }
}

/// A test pool. Everything in it is the test's own.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    file: PathBuf,
    mountpoint: PathBuf,
}

impl Pool {
    /// `pool/rel`, or the pool itself for an empty `rel`.
    pub fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{rel}", self.name)
        }
    }

    /// Creates `pool/rel` (and missing parents).
    pub fn create(&self, rel: &str) {
        must("zfs", &["create", "-p", &self.path(rel)]);
    }

    /// Writes a file into the mounted dataset `pool/rel`.
    pub fn write(&self, rel: &str, file: &str, data: &[u8]) {
        let dir = if rel.is_empty() { self.mountpoint.clone() } else { self.mountpoint.join(rel) };
        std::fs::write(dir.join(file), data)
            .unwrap_or_else(|e| panic!("write {}/{file}: {e}", dir.display()));
    }

    pub fn snapshot(&self, rel: &str, snap: &str) {
        must("zfs", &["snapshot", &format!("{}@{snap}", self.path(rel))]);
    }

    /// Snapshot names of `pool/rel`, oldest first.
    pub fn snapshots(&self, rel: &str) -> Vec<String> {
        let fs = self.path(rel);
        let out = run(
            "zfs",
            &["list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg", "-r", &fs],
        );
        if !out.ok {
            return Vec::new();
        }
        out.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{fs}@")).map(str::to_owned))
            .collect()
    }

    /// The guid of `pool/rel@snap`.
    pub fn guid(&self, rel: &str, snap: &str) -> String {
        must(
            "zfs",
            &["get", "-H", "-p", "-o", "value", "guid", &format!("{}@{snap}", self.path(rel))],
        )
        .trim()
        .to_owned()
    }

    pub fn exists(&self, rel: &str) -> bool {
        run("zfs", &["list", "-H", "-o", "name", &self.path(rel)]).ok
    }

    pub fn get(&self, rel: &str, prop: &str) -> String {
        must("zfs", &["get", "-H", "-o", "value", prop, &self.path(rel)]).trim().to_owned()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // zfs-fuse answers "pool is busy" for a few seconds after a receive, even to
        // `destroy -f`; it goes through once the daemon has settled.
        let mut r = run("zpool", &["destroy", "-f", &self.name]);
        for _ in 0..10 {
            if r.ok || !r.stderr.contains("busy") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
            r = run("zpool", &["destroy", "-f", &self.name]);
        }
        if !r.ok {
            eprintln!("warning: could not destroy test pool {}: {}", self.name, r.stderr.trim());
        }
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}
