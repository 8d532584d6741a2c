//! Destroying snapshots that pruning let go, on the local host: used by the
//! active job for its own side and by sinks and sources for their clients.
//!
//! The caller names each snapshot with its guid. The filesystem is listed afresh
//! first and only snapshots still there under the same name *and* guid are
//! destroyed: a snapshot that was replaced by another of the same name since the
//! caller looked is left alone. After the destroys, a second listing says what is
//! really gone (a batched `zfs destroy` that fails half-way does not say).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::zfsops;
use super::JobCtx;
use crate::node::{ProcId, ProcessResult, ProcessSpec, StdinFrom, StdoutTo};
use crate::zfs::{DatasetPath, Dialect, FilesystemVersion};

/// What a destroy task did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DestroyOutcome {
    /// Snapshot names that are gone now.
    pub destroyed: Vec<String>,
    /// Asked for, but absent or of another guid by the time we looked.
    pub skipped: Vec<String>,
    /// What `zfs destroy` said when it failed (a hold, a clone, busy).
    pub errors: Vec<String>,
}

#[derive(Debug)]
enum Phase {
    Listing(ProcId),
    Destroying(ProcId),
    Verifying(ProcId),
    Done,
}

#[derive(Debug)]
pub struct DestroyTask {
    dialect: Dialect,
    fs: DatasetPath,
    wanted: Vec<FilesystemVersion>,
    /// Names that passed the check and were handed to `zfs destroy`.
    chosen: Vec<String>,
    batches: VecDeque<ProcessSpec>,
    phase: Phase,
    outcome: DestroyOutcome,
    result: Option<Result<DestroyOutcome, String>>,
}

impl DestroyTask {
    pub fn start(
        ctx: &mut JobCtx<'_, '_>,
        dialect: Dialect,
        fs: DatasetPath,
        wanted: Vec<FilesystemVersion>,
    ) -> DestroyTask {
        let mut task = DestroyTask {
            dialect,
            fs,
            wanted,
            chosen: Vec::new(),
            batches: VecDeque::new(),
            phase: Phase::Done,
            outcome: DestroyOutcome::default(),
            result: None,
        };
        if task.wanted.is_empty() {
            task.result = Some(Ok(DestroyOutcome::default()));
            return task;
        }
        match task.list(ctx) {
            Ok(p) => task.phase = Phase::Listing(p),
            Err(e) => task.result = Some(Err(e)),
        }
        task
    }

    fn list(&self, ctx: &mut JobCtx<'_, '_>) -> Result<ProcId, String> {
        let spec = zfsops::list_versions(self.dialect, &self.fs)
            .map_err(|e| format!("cannot list {}: {e}", self.fs))?;
        Ok(ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null))
    }

    /// `Some` once finished.
    pub fn result(&self) -> Option<&Result<DestroyOutcome, String>> {
        self.result.as_ref()
    }

    pub fn owns(&self, proc: ProcId) -> bool {
        matches!(self.phase, Phase::Listing(p) | Phase::Destroying(p) | Phase::Verifying(p) if p == proc)
    }

    fn snapshots_now(&self, result: &ProcessResult) -> Result<BTreeMap<String, u64>, String> {
        if !result.status.success() {
            return Err(format!("cannot list {}: {}", self.fs, result.stderr.trim()));
        }
        let mut by_fs = zfsops::parse_versions(self.dialect, &result.stdout)?;
        Ok(by_fs
            .remove(&self.fs)
            .unwrap_or_default()
            .into_iter()
            .filter(FilesystemVersion::is_snapshot)
            .map(|v| (v.name, v.guid))
            .collect())
    }

    pub fn on_process_done(&mut self, ctx: &mut JobCtx<'_, '_>, result: ProcessResult) {
        match self.phase {
            Phase::Listing(_) => {
                let now = match self.snapshots_now(&result) {
                    Ok(n) => n,
                    Err(e) => return self.finish(Err(e)),
                };
                for v in &self.wanted {
                    if v.is_snapshot() && now.get(&v.name) == Some(&v.guid) {
                        self.chosen.push(v.name.clone());
                    } else {
                        self.outcome.skipped.push(v.name.clone());
                    }
                }
                if self.chosen.is_empty() {
                    let outcome = std::mem::take(&mut self.outcome);
                    return self.finish(Ok(outcome));
                }
                match zfsops::destroy_snapshots(self.dialect, &self.fs, &self.chosen) {
                    Ok(batches) => self.batches = batches.into(),
                    Err(e) => {
                        return self.finish(Err(format!("cannot destroy in {}: {e}", self.fs)))
                    }
                }
                self.next_batch(ctx);
            }
            Phase::Destroying(_) => {
                if !result.status.success() {
                    self.outcome.errors.push(result.stderr.trim().to_owned());
                }
                self.next_batch(ctx);
            }
            Phase::Verifying(_) => {
                let now = match self.snapshots_now(&result) {
                    Ok(n) => n,
                    Err(e) => return self.finish(Err(e)),
                };
                let chosen = std::mem::take(&mut self.chosen);
                self.outcome.destroyed =
                    chosen.into_iter().filter(|n| !now.contains_key(n)).collect();
                let outcome = std::mem::take(&mut self.outcome);
                self.finish(Ok(outcome));
            }
            Phase::Done => {}
        }
    }

    fn next_batch(&mut self, ctx: &mut JobCtx<'_, '_>) {
        match self.batches.pop_front() {
            Some(spec) => {
                self.phase = Phase::Destroying(ctx.spawn(spec, StdoutTo::Null, StdinFrom::Null))
            }
            None => match self.list(ctx) {
                Ok(p) => self.phase = Phase::Verifying(p),
                Err(e) => self.finish(Err(e)),
            },
        }
    }

    fn finish(&mut self, result: Result<DestroyOutcome, String>) {
        self.phase = Phase::Done;
        self.result = Some(result);
    }
}
