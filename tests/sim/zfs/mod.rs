//! A model of one host's ZFS, for the simulator only: it answers the argv of
//! every `zfs` command the jobs run, with the output formats, messages and exit
//! codes of the real thing, and keeps its state across daemon crashes (it is
//! the disk). Never used outside the simulator (see DESIGN.md, "Tests").
//!
//! What it models, and which real behaviour each follows (OpenZFS 2.3 unless
//! said; "fixture" means core/src/zfs/testdata, captured from real systems;
//! "libzfs" means lib/libzfs/libzfs_sendrecv.c and "kernel" module/zfs/dmu_recv.c
//! of OpenZFS):
//!
//! - Datasets: pools and filesystems in a tree; snapshots and bookmarks with
//!   guid (random, never 0), createtxg (one txg counter per pool, bumped by every
//!   change), creation (the host's wall clock, seconds). A filesystem's data is
//!   one number, `content`: a write changes it, a snapshot records it, a stream
//!   carries it, so a replica can be checked against its origin.
//! - `zfs version`: OpenZFS prints `zfs-2.3.2-…` and `zfs-kmod-2.3.2-…` and exits
//!   0; zfs-fuse has no such command: "unrecognized command 'version'" and its
//!   usage on stderr, exit 2 (fixtures openzfs-version.stdout, zfs-fuse-version.*).
//! - Options each dialect lacks (zfs-fuse: `list -p`, `get -t`, `receive -s/-A`,
//!   `send -n/-v/-P/-t`, bookmarks, `zfs holds`) are refused with "invalid option"
//!   and the usage, exit 2, so a command a dialect cannot run fails as it would.
//! - `zfs get -H -p [-r] -o name,property,value,source [-t …] PROPS DS…`: one row per
//!   dataset and property, in tree order (a filesystem, its snapshots, then its
//!   children); sources `-`, `default`, `local`, `inherited from X`; user
//!   properties and `readonly` inherit; `receive_resume_token` is the token or `-`;
//!   a missing dataset prints "cannot open 'X': dataset does not exist" on stderr,
//!   the others are still listed, exit 1 (fixtures openzfs-get-filesystems,
//!   zfs-fuse-get-filesystems; zfs-fuse without `-t` lists snapshots too).
//! - `zfs list -H -p -r -t snapshot,bookmark -o name,guid,createtxg,creation -s
//!   createtxg ROOT` (fixture openzfs-list-versions); zfs-fuse lists versions
//!   with `zfs get` (fixture zfs-fuse-get-versions).
//! - `zfs create -o p=v… PATH`: "parent does not exist", "dataset already exists".
//!   `zfs set p=v DS`, `zfs inherit p DS`, `zfs snapshot`, `zfs destroy` of one
//!   snapshot or bookmark, `zfs bookmark`, `zfs hold/release/holds`.
//! - `zfs send` full, `-i` (from a snapshot or bookmark) and `-I` (every
//!   snapshot between): a stream of records (see [`stream`]), a few hundred bytes
//!   to some KiB per snapshot, now and then a few hundred KiB; `-I` is a compound
//!   stream of one substream per snapshot, as libzfs makes it. A snapshot being
//!   sent is busy: destroying it fails with "dataset is busy". `send -t TOKEN`
//!   resumes from the token's offset; `send -n -v -P` estimates, `send -n -v -t`
//!   describes a token (fixtures openzfs-send-estimate-*, openzfs-send-token).
//! - `zfs receive -u [-s] [-F] TARGET` (see [`receive`]): checks each substream
//!   when its BEGIN record arrives, in the kernel's order: partial state from
//!   `receive -s` (EBUSY, "contains partially-complete state"), the snapshot name
//!   exists (EEXIST; skipped if it is the very snapshot, as libzfs does), the
//!   incremental source is not a snapshot of the target (ENODEV, "most recent
//!   snapshot of X does not match incremental source"), the target changed since
//!   the source (ETXTBSY); a full stream into an existing filesystem needs `-F`
//!   ("destination 'X' exists / must specify -F") and a filesystem without
//!   snapshots ("destination has snapshots"); an incremental needs the target
//!   ("destination 'X' does not exist"). A substream is applied only when its END
//!   record arrives with the right checksum; earlier substreams of a compound
//!   stream stay applied. A new filesystem exists (inconsistent) from BEGIN on.
//!   On a cut stream (EOF or kill): "checksum mismatch or incomplete stream"; with
//!   `-s` the partial state stays, with a `receive_resume_token` (for a new
//!   filesystem, the inconsistent filesystem stays), without `-s` a new
//!   filesystem is removed again. `-F` with a full stream replaces a filesystem
//!   without snapshots, keeping its local properties (they live on the dsl_dir);
//!   `-F` with an incremental rolls back to the source. `receive -A` discards
//!   partial state. `-u`: nothing is ever mounted in the model anyway.
//! - Failures on demand are not decided here: the simulator injects them (see
//!   `world.rs`), with the messages libzfs prints for ENOSPC and EBUSY.

pub mod command;
#[cfg(test)]
mod fixtures;
pub mod receive;
#[cfg(test)]
mod receive_tests;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenZfs,
    ZfsFuse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
    pub creation: i64,
    pub content: u64,
    pub holds: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
    pub creation: i64,
}

/// What an interrupted `zfs receive -s` left: enough to continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub from_guid: u64,
    pub to_guid: u64,
    /// The sender's `fs@snap`, as the stream named it.
    pub to_name: String,
    pub creation: i64,
    pub content: u64,
    /// Payload bytes of the whole substream, and how many arrived.
    pub total: u64,
    pub received: u64,
    /// Checksum of the payload received so far.
    pub hash: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub guid: u64,
    pub createtxg: u64,
    pub creation: i64,
    /// Locally set properties; inherited and default values are computed.
    pub props: BTreeMap<String, String>,
    /// Oldest first (by createtxg).
    pub snapshots: Vec<Snapshot>,
    pub bookmarks: Vec<Bookmark>,
    pub content: u64,
    pub partial: Option<Partial>,
    /// Created by a full receive that has not completed.
    pub inconsistent: bool,
}

impl Dataset {
    pub fn snapshot(&self, name: &str) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.name == name)
    }

    pub fn newest(&self) -> Option<&Snapshot> {
        self.snapshots.last()
    }
}

/// Where a property value comes from, as `zfs get` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    None,
    Default,
    Local,
    Inherited(String),
}

impl Source {
    pub fn column(&self) -> String {
        match self {
            Source::None => "-".to_owned(),
            Source::Default => "default".to_owned(),
            Source::Local => "local".to_owned(),
            Source::Inherited(from) => format!("inherited from {from}"),
        }
    }
}

/// Content of a filesystem nobody wrote to.
pub const EMPTY_CONTENT: u64 = 0x0e0e_0e0e_0e0e_0e0e;

#[derive(Debug, Clone)]
pub struct Zfs {
    pub flavor: Flavor,
    pub datasets: BTreeMap<String, Dataset>,
    txg: BTreeMap<String, u64>,
    /// Datasets and snapshots that running sends and receives hold.
    busy: BTreeMap<String, u32>,
    /// Bumped by every change, so checks run only when something changed.
    pub generation: u64,
    /// The host's wall clock (seconds), which the world keeps current.
    pub clock: i64,
}

pub fn pool_of(path: &str) -> &str {
    path.split(['/', '@', '#']).next().unwrap_or(path)
}

pub fn parent_of(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

/// `fs@snap` or `fs#mark` split in two.
pub fn split_version(name: &str) -> Option<(&str, char, &str)> {
    let i = name.find(['@', '#'])?;
    let sep = name[i..].chars().next()?;
    Some((&name[..i], sep, &name[i + 1..]))
}

impl Zfs {
    pub fn new(flavor: Flavor) -> Zfs {
        Zfs {
            flavor,
            datasets: BTreeMap::new(),
            txg: BTreeMap::new(),
            busy: BTreeMap::new(),
            generation: 0,
            clock: 0,
        }
    }

    fn next_txg(&mut self, path: &str) -> u64 {
        let t = self.txg.entry(pool_of(path).to_owned()).or_insert(1);
        *t += 1;
        self.generation += 1;
        *t
    }

    pub fn exists(&self, path: &str) -> bool {
        self.datasets.contains_key(path)
    }

    pub fn create_pool(&mut self, name: &str, rng: &mut Rng) {
        let txg = self.next_txg(name);
        self.datasets.insert(name.to_owned(), new_dataset(rng.guid(), txg, self.clock));
    }

    /// `zfs create`: the parent must exist, the path must not.
    pub fn create(
        &mut self,
        path: &str,
        props: &[(String, String)],
        rng: &mut Rng,
    ) -> Result<(), String> {
        let Some(parent) = parent_of(path) else {
            return Err(format!("cannot create '{path}': missing dataset name"));
        };
        if self.exists(path) {
            return Err(format!("cannot create '{path}': dataset already exists"));
        }
        if !self.exists(parent) {
            return Err(format!("cannot create '{path}': parent does not exist"));
        }
        let txg = self.next_txg(path);
        let mut ds = new_dataset(rng.guid(), txg, self.clock);
        ds.props.extend(props.iter().cloned());
        self.datasets.insert(path.to_owned(), ds);
        Ok(())
    }

    pub fn children(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        self.datasets.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
    }

    pub fn is_busy(&self, name: &str) -> bool {
        self.busy.get(name).is_some_and(|n| *n > 0)
    }

    pub fn hold_busy(&mut self, name: &str) {
        *self.busy.entry(name.to_owned()).or_insert(0) += 1;
    }

    pub fn release_busy(&mut self, name: &str) {
        if let Some(n) = self.busy.get_mut(name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.busy.remove(name);
            }
        }
    }

    /// `zfs destroy -r FS`: the filesystem, its snapshots and its children,
    /// unless any of them is busy.
    pub fn destroy_recursive(&mut self, path: &str) -> Result<(), String> {
        if !self.exists(path) {
            return Err(format!("cannot open '{path}': dataset does not exist"));
        }
        let mut all = self.children(path);
        all.push(path.to_owned());
        for fs in &all {
            let snaps = self.datasets[fs].snapshots.iter().map(|s| format!("{fs}@{}", s.name));
            let busy = std::iter::once(fs.clone()).chain(snaps).find(|n| self.is_busy(n));
            if let Some(b) = busy {
                return Err(format!("cannot destroy '{b}': dataset is busy"));
            }
            if self.datasets[fs].snapshots.iter().any(|s| !s.holds.is_empty()) {
                return Err(format!("cannot destroy snapshots of '{fs}': dataset is busy"));
            }
        }
        for fs in all {
            self.datasets.remove(&fs);
        }
        self.generation += 1;
        Ok(())
    }

    /// `zfs destroy fs@snap` or `fs#mark`.
    pub fn destroy_version(&mut self, name: &str) -> Result<(), String> {
        let missing =
            || "could not find any snapshots to destroy; check snapshot names.".to_owned();
        let Some((fs, sep, short)) = split_version(name) else { return Err(missing()) };
        let busy = self.is_busy(name);
        let Some(ds) = self.datasets.get_mut(fs) else {
            return Err(format!("cannot open '{fs}': dataset does not exist"));
        };
        if sep == '#' {
            let before = ds.bookmarks.len();
            ds.bookmarks.retain(|b| b.name != short);
            if ds.bookmarks.len() == before {
                return Err(format!("bookmark '{name}' does not exist"));
            }
        } else {
            let Some(i) = ds.snapshots.iter().position(|s| s.name == short) else {
                return Err(missing());
            };
            if busy || !ds.snapshots[i].holds.is_empty() {
                return Err(format!("cannot destroy snapshot {name}: dataset is busy"));
            }
            ds.snapshots.remove(i);
        }
        self.generation += 1;
        Ok(())
    }

    /// `zfs snapshot fs@name`.
    pub fn snapshot(
        &mut self,
        fs: &str,
        name: &str,
        wall: i64,
        rng: &mut Rng,
    ) -> Result<u64, String> {
        let full = format!("{fs}@{name}");
        let Some(ds) = self.datasets.get(fs) else {
            return Err(format!("cannot open '{fs}': dataset does not exist"));
        };
        if ds.snapshot(name).is_some() {
            return Err(format!("cannot create snapshot '{full}': dataset already exists"));
        }
        if ds.inconsistent {
            return Err(format!("cannot create snapshot '{full}': dataset is busy"));
        }
        let txg = self.next_txg(fs);
        let guid = rng.guid();
        let ds = self.datasets.get_mut(fs).expect("checked above");
        let content = ds.content;
        ds.snapshots.push(Snapshot {
            name: name.to_owned(),
            guid,
            createtxg: txg,
            creation: wall,
            content,
            holds: BTreeSet::new(),
        });
        Ok(guid)
    }

    /// Someone writes to the filesystem.
    pub fn write(&mut self, fs: &str, rng: &mut Rng) {
        if let Some(ds) = self.datasets.get_mut(fs) {
            ds.content = crate::rng::mix(ds.content ^ rng.next_u64());
            self.generation += 1;
        }
    }

    pub fn bookmark(&mut self, snapshot: &str, bookmark: &str) -> Result<(), String> {
        let (Some((fs, '@', snap)), Some((bfs, '#', mark))) =
            (split_version(snapshot), split_version(bookmark))
        else {
            return Err(format!("cannot create bookmark '{bookmark}': invalid argument"));
        };
        if fs != bfs {
            return Err(format!(
                "cannot create bookmark '{bookmark}': bookmark is in a different pool"
            ));
        }
        let Some(ds) = self.datasets.get_mut(fs) else {
            return Err(format!("cannot open '{fs}': dataset does not exist"));
        };
        let Some(s) = ds.snapshot(snap).cloned() else {
            return Err(format!("cannot create bookmark '{bookmark}': snapshot does not exist"));
        };
        if ds.bookmarks.iter().any(|b| b.name == mark) {
            return Err(format!("cannot create bookmark '{bookmark}': bookmark exists"));
        }
        ds.bookmarks.push(Bookmark {
            name: mark.to_owned(),
            guid: s.guid,
            createtxg: s.createtxg,
            creation: s.creation,
        });
        self.generation += 1;
        Ok(())
    }

    pub fn set_prop(&mut self, ds: &str, prop: &str, value: &str) -> Result<(), String> {
        if !is_settable(prop) {
            return Err(format!("cannot set property for '{ds}': invalid property '{prop}'"));
        }
        let Some(d) = self.datasets.get_mut(ds) else {
            return Err(format!("cannot open '{ds}': dataset does not exist"));
        };
        if prop == "readonly" && value != "on" && value != "off" {
            return Err(format!(
                "cannot set property for '{ds}': 'readonly' must be one of 'on | off'"
            ));
        }
        d.props.insert(prop.to_owned(), value.to_owned());
        self.generation += 1;
        Ok(())
    }

    pub fn inherit_prop(&mut self, ds: &str, prop: &str) -> Result<(), String> {
        if !is_settable(prop) {
            return Err(format!("invalid property '{prop}'"));
        }
        let Some(d) = self.datasets.get_mut(ds) else {
            return Err(format!("cannot open '{ds}': dataset does not exist"));
        };
        d.props.remove(prop);
        self.generation += 1;
        Ok(())
    }

    /// A property of a filesystem, with inheritance: user properties and
    /// `readonly` and `mountpoint` inherit; the rest are the dataset's own.
    pub fn fs_prop(&self, path: &str, prop: &str) -> (String, Source) {
        let Some(ds) = self.datasets.get(path) else { return ("-".into(), Source::None) };
        match prop {
            "type" => ("filesystem".into(), Source::None),
            "guid" => (ds.guid.to_string(), Source::None),
            "createtxg" => (ds.createtxg.to_string(), Source::None),
            "creation" => (ds.creation.to_string(), Source::None),
            "receive_resume_token" => match &ds.partial {
                Some(p) => (command::token(p), Source::None),
                None => ("-".into(), Source::None),
            },
            _ => {
                let mut at = Some(path);
                while let Some(p) = at {
                    if let Some(v) = self.datasets.get(p).and_then(|d| d.props.get(prop)) {
                        let source =
                            if p == path { Source::Local } else { Source::Inherited(p.to_owned()) };
                        return (v.clone(), source);
                    }
                    at = parent_of(p);
                }
                match prop {
                    "readonly" => ("off".into(), Source::Default),
                    "mountpoint" => (format!("/{path}"), Source::Default),
                    _ => ("-".into(), Source::None),
                }
            }
        }
    }

    /// A property of a snapshot: user properties inherit from its filesystem.
    pub fn snapshot_prop(&self, fs: &str, snap: &Snapshot, prop: &str) -> (String, Source) {
        match prop {
            "type" => ("snapshot".into(), Source::None),
            "guid" => (snap.guid.to_string(), Source::None),
            "createtxg" => (snap.createtxg.to_string(), Source::None),
            "creation" => (snap.creation.to_string(), Source::None),
            p if p.contains(':') => match self.fs_prop(fs, p) {
                (v, Source::Local) => (v, Source::Inherited(fs.to_owned())),
                other => other,
            },
            _ => ("-".into(), Source::None),
        }
    }
}

pub fn new_dataset(guid: u64, txg: u64, creation: i64) -> Dataset {
    Dataset {
        guid,
        createtxg: txg,
        creation,
        props: BTreeMap::new(),
        snapshots: Vec::new(),
        bookmarks: Vec::new(),
        content: EMPTY_CONTENT,
        partial: None,
        inconsistent: false,
    }
}

/// Properties `zfs set`/`inherit`/`create -o` accept here: user properties and
/// the few native ones zferry touches.
pub fn is_settable(prop: &str) -> bool {
    prop.contains(':') || matches!(prop, "readonly" | "mountpoint" | "canmount")
}

/// Properties `zfs get` knows (besides user properties).
pub fn is_known_prop(prop: &str, flavor: Flavor) -> bool {
    prop.contains(':')
        || matches!(prop, "type" | "guid" | "readonly" | "createtxg" | "creation" | "mountpoint")
        || (prop == "receive_resume_token" && flavor == Flavor::OpenZfs)
}

impl Zfs {
    /// Takes the next txg of `path`'s pool (for receives that add snapshots).
    pub fn txg_for(&mut self, path: &str) -> u64 {
        self.next_txg(path)
    }

    pub fn touch(&mut self) {
        self.generation += 1;
    }
}
