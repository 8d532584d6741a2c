//! A running `zfs receive`: reads the stream as its bytes arrive, checks each
//! substream at its BEGIN record and applies it at its END record (see the
//! model's doc comment in `mod.rs` for which real behaviour each rule follows).

use std::collections::VecDeque;

use super::command::{token, Outcome, ReceiveArgs};
use super::stream::{Begin, Item, Parser};
use super::{new_dataset, parent_of, Partial, Snapshot, Zfs};
use crate::rng::{Rng, FNV_START};

/// How the current substream lands on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landing {
    /// A full stream that created the target (inconsistent until END).
    NewFs,
    /// A full stream with -F into an existing filesystem without snapshots.
    Replace,
    /// Onto the target's snapshot with this guid.
    Incremental { rollback_to: Option<u64> },
    /// The snapshot exists already: consume and ignore (libzfs).
    Skip,
}

#[derive(Debug)]
struct Current {
    begin: Begin,
    landing: Landing,
    hash: u64,
    received: u64,
}

#[derive(Debug)]
pub struct Receive {
    args: ReceiveArgs,
    parser: Parser,
    current: Option<Current>,
    /// Substreams left in a compound stream (`None`: a single stream).
    package: Option<u32>,
    started: bool,
    /// The target is held busy while a substream lands on it.
    holding: bool,
    pub done: Option<Outcome>,
    /// A full stream was applied: the target is a new replica.
    pub created: bool,
}

fn what(begin: Option<&Begin>) -> &'static str {
    match begin {
        Some(b) if b.resuming => "cannot receive resume stream",
        Some(b) if b.from_guid == 0 => "cannot receive new filesystem stream",
        Some(_) => "cannot receive incremental stream",
        None => "cannot receive",
    }
}

impl Receive {
    pub fn new(args: ReceiveArgs) -> Receive {
        Receive {
            args,
            parser: Parser::default(),
            current: None,
            package: None,
            started: false,
            holding: false,
            done: None,
            created: false,
        }
    }

    fn fail(&mut self, zfs: &mut Zfs, message: String) {
        self.release(zfs);
        self.done = Some(Outcome::fail(1, message));
    }

    fn release(&mut self, zfs: &mut Zfs) {
        if self.holding {
            zfs.release_busy(&self.args.target);
            self.holding = false;
        }
    }

    /// Reads what it can from `stdin`; returns true if it consumed anything.
    pub fn consume(&mut self, zfs: &mut Zfs, stdin: &mut VecDeque<u8>, rng: &mut Rng) -> bool {
        let before = stdin.len();
        while self.done.is_none() {
            let item = match self.parser.next(stdin) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    let msg = format!("{}: {e}", what(self.current.as_ref().map(|c| &c.begin)));
                    self.fail(zfs, msg);
                    break;
                }
            };
            self.started = true;
            self.item(zfs, item, rng);
        }
        stdin.len() != before
    }

    fn item(&mut self, zfs: &mut Zfs, item: Item, rng: &mut Rng) {
        let bad = |r: &mut Receive, zfs: &mut Zfs| {
            r.fail(zfs, "cannot receive: invalid stream (bad magic number)".to_owned())
        };
        match item {
            Item::Package(n) if self.package.is_none() && self.current.is_none() => {
                self.package = Some(n)
            }
            Item::Begin(b) if self.current.is_none() => match self.begin(zfs, &b, rng) {
                Ok(landing) => {
                    let (hash, received) = match (&landing, b.resuming) {
                        (Landing::Skip, _) | (_, false) => (FNV_START, 0),
                        (_, true) => {
                            let p =
                                zfs.datasets[&self.args.target].partial.clone().expect("checked");
                            (p.hash, p.received)
                        }
                    };
                    self.current = Some(Current { begin: b, landing, hash, received });
                }
                Err(e) => self.fail(zfs, e),
            },
            Item::Data(bytes) if self.current.is_some() => {
                let c = self.current.as_mut().expect("checked");
                c.hash = crate::rng::fnv(c.hash, &bytes);
                c.received += bytes.len() as u64;
            }
            Item::End(checksum) if self.current.is_some() => {
                let c = self.current.take().expect("checked");
                if c.landing != Landing::Skip && (c.hash != checksum || c.received != c.begin.total)
                {
                    let msg =
                        format!("{}: checksum mismatch or incomplete stream", what(Some(&c.begin)));
                    self.current = Some(c);
                    return self.interrupt(zfs, Some(msg));
                }
                self.commit(zfs, c);
                match &mut self.package {
                    None => self.done = Some(Outcome::ok(Vec::new())),
                    Some(n) => *n = n.saturating_sub(1),
                }
            }
            Item::PackageEnd if self.package.is_some() && self.current.is_none() => {
                self.done = Some(Outcome::ok(Vec::new()));
            }
            _ => bad(self, zfs),
        }
    }

    /// dmu_recv_begin's checks, in the kernel's order; on success the target is
    /// held, and a new filesystem exists (inconsistent).
    fn begin(&mut self, zfs: &mut Zfs, b: &Begin, rng: &mut Rng) -> Result<Landing, String> {
        let target = self.args.target.clone();
        let w = what(Some(b));
        if zfs.is_busy(&target) {
            return Err(format!("{w}: dataset is busy"));
        }
        let partially = |t: &str| {
            format!(
                "{w}: destination {t} contains partially-complete state from \"zfs receive -s\"."
            )
        };
        let landing = if b.resuming {
            let Some(ds) = zfs.datasets.get(&target) else {
                return Err(format!("{w}: destination '{target}' does not exist"));
            };
            match &ds.partial {
                Some(p) if p.to_guid == b.to_guid && p.received == b.offset => {}
                Some(_) => {
                    return Err(format!(
                        "{w}: kernel modules must be upgraded to receive this stream."
                    ))
                }
                None => {
                    return Err(format!("{w}: destination {target} has no resumable receive state"))
                }
            }
            if ds.inconsistent {
                Landing::NewFs
            } else if b.from_guid == 0 {
                Landing::Replace
            } else {
                Landing::Incremental { rollback_to: None }
            }
        } else if b.from_guid == 0 {
            match zfs.datasets.get(&target) {
                Some(ds) => {
                    if !self.args.force {
                        return Err(format!(
                            "{w}: destination '{target}' exists\nmust specify -F to overwrite it"
                        ));
                    }
                    if let Some(s) = ds.snapshots.first() {
                        return Err(format!("{w}: destination has snapshots (eg. {target}@{})\nmust destroy them to overwrite it", s.name));
                    }
                    if ds.partial.is_some() {
                        return Err(partially(&target));
                    }
                    Landing::Replace
                }
                None => {
                    let parent = parent_of(&target).unwrap_or("");
                    if !zfs.exists(parent) {
                        return Err(format!("cannot open '{parent}': dataset does not exist\n{w}: unable to restore to destination"));
                    }
                    let txg = zfs.txg_for(&target);
                    let mut ds = new_dataset(rng.guid(), txg, zfs.clock);
                    ds.inconsistent = true;
                    zfs.datasets.insert(target.clone(), ds);
                    Landing::NewFs
                }
            }
        } else {
            let Some(ds) = zfs.datasets.get(&target) else {
                return Err(format!("{w}: destination '{target}' does not exist"));
            };
            if ds.partial.is_some() {
                return Err(partially(&target));
            }
            if let Some(existing) = ds.snapshot(b.snapshot_name()) {
                if existing.guid == b.to_guid {
                    return Ok(Landing::Skip);
                }
                return Err(format!(
                    "cannot restore to {target}@{}: destination already exists",
                    b.snapshot_name()
                ));
            }
            let Some(pos) = ds.snapshots.iter().position(|s| s.guid == b.from_guid) else {
                return Err(format!(
                    "{w}: most recent snapshot of {target} does not\nmatch incremental source"
                ));
            };
            let unmodified = ds.content == ds.snapshots[pos].content;
            if self.args.force {
                Landing::Incremental { rollback_to: Some(b.from_guid) }
            } else if unmodified {
                // The kernel checks the head against the source, not that the
                // source is the newest snapshot.
                Landing::Incremental { rollback_to: None }
            } else {
                return Err(format!(
                    "{w}: destination {target} has been modified\nsince most recent snapshot"
                ));
            }
        };
        zfs.hold_busy(&target);
        self.holding = true;
        zfs.touch();
        Ok(landing)
    }

    fn commit(&mut self, zfs: &mut Zfs, c: Current) {
        self.release(zfs);
        if c.landing == Landing::Skip {
            return;
        }
        let target = self.args.target.clone();
        let txg = zfs.txg_for(&target);
        let Some(ds) = zfs.datasets.get_mut(&target) else { return };
        let snap = Snapshot {
            name: c.begin.snapshot_name().to_owned(),
            guid: c.begin.to_guid,
            createtxg: txg,
            creation: c.begin.creation,
            content: c.begin.content,
            holds: Default::default(),
        };
        match c.landing {
            Landing::NewFs => {
                ds.inconsistent = false;
                self.created = true;
            }
            Landing::Replace => {
                ds.snapshots.clear();
                self.created = true;
            }
            Landing::Incremental { rollback_to: Some(g) } => {
                if let Some(pos) = ds.snapshots.iter().position(|s| s.guid == g) {
                    ds.snapshots.truncate(pos + 1);
                }
            }
            Landing::Incremental { rollback_to: None } | Landing::Skip => {}
        }
        ds.partial = None;
        ds.content = snap.content;
        ds.snapshots.push(snap);
    }

    /// The stream stopped short (EOF or kill): keep the partial state with -s,
    /// else undo a new filesystem. A killed process prints nothing.
    fn interrupt(&mut self, zfs: &mut Zfs, message: Option<String>) {
        self.release(zfs);
        let target = self.args.target.clone();
        let mut message = message;
        if let Some(c) = self.current.take() {
            let keep = self.args.resumable && c.landing != Landing::Skip;
            if keep {
                if let Some(ds) = zfs.datasets.get_mut(&target) {
                    let p = Partial {
                        from_guid: c.begin.from_guid,
                        to_guid: c.begin.to_guid,
                        to_name: c.begin.to_name.clone(),
                        creation: c.begin.creation,
                        content: c.begin.content,
                        total: c.begin.total,
                        received: c.received,
                        hash: c.hash,
                    };
                    if let Some(m) = &mut message {
                        m.push_str(&format!(
                            ".\nPartially received snapshot is saved.\nA resuming stream can be generated on the sending system by running:\n    zfs send -t {}",
                            token(&p)
                        ));
                    }
                    ds.partial = Some(p);
                }
            } else if c.landing == Landing::NewFs {
                let resumed = zfs.datasets.get(&target).is_some_and(|d| d.partial.is_some());
                if !resumed {
                    zfs.datasets.remove(&target);
                }
            }
            zfs.touch();
        }
        self.done = Some(Outcome::fail(1, message.unwrap_or_default()));
    }

    /// Stdin reached its end and every byte was read.
    pub fn eof(&mut self, zfs: &mut Zfs) {
        if self.done.is_some() {
            return;
        }
        if !self.started {
            return self.fail(zfs, "cannot receive: failed to read from stream".to_owned());
        }
        let msg = match &self.current {
            Some(c) => format!("{}: checksum mismatch or incomplete stream", what(Some(&c.begin))),
            None => "cannot receive: failed to read from stream".to_owned(),
        };
        self.interrupt(zfs, Some(msg));
    }

    /// An injected failure in the middle (out of space): like a cut stream,
    /// with the partial state kept under -s (the kernel saves it once the
    /// receive got past its BEGIN checks).
    pub fn fail_injected(&mut self, zfs: &mut Zfs, reason: &str) {
        if self.done.is_none() {
            let message = format!("{}: {reason}", what(self.current.as_ref().map(|c| &c.begin)));
            self.interrupt(zfs, Some(message));
        }
    }

    /// SIGKILL: like a cut stream, and nothing is printed any more.
    pub fn kill(&mut self, zfs: &mut Zfs) {
        if self.done.is_none() {
            self.interrupt(zfs, None);
        }
        self.release(zfs);
    }
}
