//! Receiving one replication step on the local host: used by a sink for its
//! clients' pushes and by a pull job for what it fetches.
//!
//! Before `zfs receive` runs, the receive root's current state is listed afresh
//! (so a decision never rests on a stale listing), missing parents are created as
//! placeholders, and the target is checked: a full stream goes only into a
//! filesystem that does not exist or is still a placeholder. An existing real
//! filesystem is never overwritten. Stream bytes that arrive meanwhile are held
//! (the sender's credit bounds them) and handed to `zfs receive` when it starts.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::zfsops::{self, LocalFilesystem};
use super::JobCtx;
use crate::node::{ConnId, ProcId, ProcessResult, StdinFrom, StdoutTo};
use crate::rpc::SessionEvent;
use crate::zfs::{DatasetPath, Dialect};

/// What kind of stream a step brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveKind {
    /// A full stream: the target must not exist, or be a placeholder.
    Full,
    /// An incremental stream onto the target's snapshots.
    Incremental,
    /// The rest of an interrupted stream (`zfs send -t`): the target must hold
    /// the partial state. `full` if the interrupted stream was a full one.
    Resume { full: bool },
}

impl ReceiveKind {
    /// The kind of receive a step needs.
    pub fn of(from_snapshot: bool, resuming: bool) -> ReceiveKind {
        match (resuming, from_snapshot) {
            (true, from) => ReceiveKind::Resume { full: !from },
            (false, true) => ReceiveKind::Incremental,
            (false, false) => ReceiveKind::Full,
        }
    }

    /// The receive makes a new replica, which is then set read-only.
    fn creates_replica(self) -> bool {
        matches!(self, ReceiveKind::Full | ReceiveKind::Resume { full: true })
    }
}

#[derive(Debug)]
enum Phase {
    Listing(ProcId),
    Creating(ProcId),
    Receiving(ProcId),
    /// Post-receive property changes, one process at a time.
    Finishing(ProcId),
    Done,
}

/// One step being received into `target`, fed by the stream of `conn`.
#[derive(Debug)]
pub struct ReceiveTask {
    dialect: Dialect,
    /// The configured receive root: it must exist; nothing above it is touched.
    root: DatasetPath,
    target: DatasetPath,
    kind: ReceiveKind,
    conn: ConnId,
    phase: Phase,
    to_create: VecDeque<DatasetPath>,
    after: VecDeque<Result<crate::node::ProcessSpec, String>>,
    force: bool,
    /// The target is still marked as a placeholder although it holds data.
    unfinished_replica: bool,
    early: Vec<Bytes>,
    stream_ended: bool,
    stream_aborted: Option<String>,
    result: Option<Result<u64, String>>,
}

impl ReceiveTask {
    pub fn start(
        ctx: &mut JobCtx<'_, '_>,
        dialect: Dialect,
        root: DatasetPath,
        target: DatasetPath,
        kind: ReceiveKind,
        conn: ConnId,
    ) -> ReceiveTask {
        // The root and every dataset from it down to the target.
        let mut chain = vec![target.clone()];
        while let Some(p) = chain.last().and_then(DatasetPath::parent) {
            if !p.has_prefix(&root) {
                break;
            }
            chain.push(p);
        }
        chain.reverse();
        if chain.first() != Some(&root) {
            chain.insert(0, root.clone());
        }
        let mut task = ReceiveTask {
            dialect,
            root,
            target,
            kind,
            conn,
            phase: Phase::Done,
            to_create: VecDeque::new(),
            after: VecDeque::new(),
            force: false,
            unfinished_replica: false,
            early: Vec::new(),
            stream_ended: false,
            stream_aborted: None,
            result: None,
        };
        match zfsops::list_datasets(dialect, &chain) {
            Ok(spec) => {
                task.phase = Phase::Listing(ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null))
            }
            Err(e) => task.finish(Err(format!("cannot list {}: {e}", task.target))),
        }
        task
    }

    /// `Some` once finished: the bytes received, or why it failed.
    pub fn result(&self) -> Option<&Result<u64, String>> {
        // Only once everything ran: the read-only flag is part of a good receive.
        match self.phase {
            Phase::Done => self.result.as_ref(),
            _ => None,
        }
    }

    /// Stream events for our connection that the node did not route to a process
    /// (because `zfs receive` was not running yet).
    pub fn on_stream_event(&mut self, ctx: &mut JobCtx<'_, '_>, event: &SessionEvent) {
        match event {
            // After `zfs receive` ended, nothing reads: drop what still comes
            // and give its credit back, so the sender can reach its end.
            SessionEvent::StreamData(data) if matches!(self.phase, Phase::Done) => {
                if let Some(s) = ctx.session(self.conn) {
                    s.stream_consumed(data.len());
                }
            }
            SessionEvent::StreamData(data) => self.early.push(data.clone()),
            SessionEvent::StreamEnd => self.stream_ended = true,
            SessionEvent::StreamAborted(reason) => {
                self.stream_aborted = Some(reason.clone());
                match self.phase {
                    Phase::Receiving(p) => ctx.kill(p),
                    Phase::Listing(_) | Phase::Creating(_) => {}
                    Phase::Finishing(_) | Phase::Done => {}
                }
            }
            _ => {}
        }
    }

    /// The connection is gone: stop what runs.
    pub fn abort(&mut self, ctx: &mut JobCtx<'_, '_>, why: &str) {
        if let Phase::Receiving(p) = self.phase {
            ctx.kill(p);
        }
        self.stream_aborted.get_or_insert_with(|| why.to_owned());
    }

    /// The running `zfs receive`, for progress.
    pub fn receive_proc(&self) -> Option<ProcId> {
        match self.phase {
            Phase::Receiving(p) => Some(p),
            _ => None,
        }
    }

    /// True if `proc` belongs to this task.
    pub fn owns(&self, proc: ProcId) -> bool {
        matches!(self.phase, Phase::Listing(p) | Phase::Creating(p) | Phase::Receiving(p) | Phase::Finishing(p) if p == proc)
    }

    fn finish(&mut self, result: Result<u64, String>) {
        self.phase = Phase::Done;
        self.result = Some(result);
    }

    pub fn on_process_done(&mut self, ctx: &mut JobCtx<'_, '_>, result: ProcessResult) {
        if let Some(why) = self.stream_aborted.clone() {
            if !matches!(self.phase, Phase::Finishing(_)) {
                return self.finish(Err(format!("the stream was aborted: {why}")));
            }
        }
        match self.phase {
            Phase::Listing(_) => self.after_listing(ctx, result),
            Phase::Creating(_) => {
                if !result.status.success() {
                    let which = self.to_create.front().map(ToString::to_string).unwrap_or_default();
                    return self.finish(Err(format!(
                        "cannot create placeholder {which}: {}",
                        result.stderr
                    )));
                }
                self.to_create.pop_front();
                self.next_creation(ctx);
            }
            Phase::Receiving(_) => {
                if !result.status.success() {
                    return self.finish(Err(format!(
                        "zfs receive into {} failed ({}): {}",
                        self.target, result.status, result.stderr
                    )));
                }
                let bytes = result.bytes;
                // A fresh replica (or one whose follow-up was lost to a crash or
                // a failing `zfs set`): read-only, and no longer a placeholder.
                if self.kind.creates_replica() || self.unfinished_replica {
                    self.after.push_back(zfsops::set_property(
                        self.dialect,
                        &self.target,
                        "readonly",
                        "on",
                    ));
                    if self.force || self.unfinished_replica {
                        self.after.extend(zfsops::clear_placeholder(self.dialect, &self.target));
                    }
                }
                self.result = Some(Ok(bytes));
                self.next_after(ctx, bytes);
            }
            Phase::Finishing(_) => {
                let bytes = match &self.result {
                    Some(Ok(b)) => *b,
                    _ => 0,
                };
                if !result.status.success() {
                    return self.finish(Err(format!(
                        "received into {}, but then: {}",
                        self.target, result.stderr
                    )));
                }
                self.next_after(ctx, bytes);
            }
            Phase::Done => {}
        }
    }

    fn after_listing(&mut self, ctx: &mut JobCtx<'_, '_>, result: ProcessResult) {
        if !result.status.success() && !zfsops::only_missing_datasets(&result.stderr) {
            return self.finish(Err(format!("cannot list {}: {}", self.root, result.stderr)));
        }
        let listed = match zfsops::parse_filesystems(&result.stdout) {
            Ok(l) => l,
            Err(e) => {
                return self.finish(Err(format!("cannot read the listing of {}: {e}", self.root)))
            }
        };
        let existing: BTreeMap<DatasetPath, LocalFilesystem> =
            listed.into_iter().map(|f| (f.path.clone(), f)).collect();
        if !existing.contains_key(&self.root) {
            return self.finish(Err(format!(
                "the receive root {} does not exist; create it first (zferry never creates it)",
                self.root
            )));
        }
        let full = self.kind == ReceiveKind::Full;
        match existing.get(&self.target) {
            Some(t) if full && !t.placeholder => {
                let why = if t.resume_token.is_some() {
                    "it holds a partially received stream, which a resumable send continues; \
                     if that is not wanted, discard it with `zfs receive -A`"
                } else {
                    "it has no snapshot in common with the sender: rename or destroy it \
                     yourself if it is not needed"
                };
                return self.finish(Err(format!(
                    "{} exists and is not a placeholder; zferry will not overwrite it with a full \
                     stream ({why})",
                    self.target
                )));
            }
            Some(t) if full && t.placeholder => self.force = true,
            // A placeholder that already holds snapshots is a replica whose
            // follow-up after its full receive never ran: finish it this time.
            Some(t) if !full && t.placeholder => self.unfinished_replica = true,
            Some(t)
                if matches!(self.kind, ReceiveKind::Resume { .. }) && t.resume_token.is_none() =>
            {
                return self.finish(Err(format!(
                    "{} holds no partially received stream to resume (it may have been \
                     discarded meanwhile); the next cycle plans afresh",
                    self.target
                )));
            }
            Some(_) => {}
            None if !full => {
                return self.finish(Err(format!(
                    "{} does not exist for an incremental or resumed receive",
                    self.target
                )));
            }
            None => {}
        }
        // Parents between the root and the target, top-down.
        let mut parent = self.target.parent();
        let mut missing = Vec::new();
        while let Some(p) = parent {
            if !p.has_prefix(&self.root) || p == self.root {
                break;
            }
            if !existing.contains_key(&p) {
                missing.push(p.clone());
            }
            parent = p.parent();
        }
        missing.reverse();
        self.to_create = missing.into();
        self.next_creation(ctx);
    }

    fn next_creation(&mut self, ctx: &mut JobCtx<'_, '_>) {
        if let Some(path) = self.to_create.front() {
            match zfsops::create_placeholder(self.dialect, path) {
                Ok(spec) => {
                    self.phase = Phase::Creating(ctx.spawn(spec, StdoutTo::Null, StdinFrom::Null))
                }
                Err(e) => self.finish(Err(format!("cannot create placeholder {path}: {e}"))),
            }
            return;
        }
        // Not on a resumption: its stream must continue the interrupted one as is.
        let new_replica = self.kind == ReceiveKind::Full;
        let spec = match zfsops::receive(self.dialect, &self.target, self.force, new_replica) {
            Ok(spec) => spec,
            Err(e) => return self.finish(Err(format!("cannot receive into {}: {e}", self.target))),
        };
        let p = ctx.spawn(spec, StdoutTo::Null, StdinFrom::Stream(self.conn));
        for chunk in std::mem::take(&mut self.early) {
            ctx.feed_stdin(p, chunk);
        }
        if self.stream_ended {
            ctx.end_stdin(p);
        }
        self.phase = Phase::Receiving(p);
    }

    fn next_after(&mut self, ctx: &mut JobCtx<'_, '_>, bytes: u64) {
        match self.after.pop_front() {
            Some(Ok(spec)) => {
                let p = ctx.spawn(spec, StdoutTo::Null, StdinFrom::Null);
                self.phase = Phase::Finishing(p);
            }
            Some(Err(e)) => {
                self.finish(Err(format!("received into {}, but then: {e}", self.target)))
            }
            None => self.finish(Ok(bytes)),
        }
    }
}
