//! The pruning phase of an active job's cycle: after replication, each
//! replicated filesystem in turn: both sides' versions, the keep rules'
//! verdicts (see [`crate::job::prune`]), our side's destroys, then the peer's.

use super::{ActiveJob, CycleKind, Direction, Wait};
use crate::control::PruneSummary;
use crate::job::destroy::{DestroyOutcome, DestroyTask};
use crate::job::protocol::{DestroyRequest, DestroySnapshots, ListVersions};
use crate::job::prune;
use crate::job::{zfsops, JobCtx};
use crate::node::{Level, ProcId, ProcessResult, StdinFrom, StdoutTo};
use crate::zfs::{DatasetPath, FilesystemVersion};

impl ActiveJob {
    /// After replication: prune each replicated filesystem, one at a time.
    pub(super) fn start_pruning(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let Some(cycle) = &mut self.cycle else { return };
        if self.spec.prune.is_none() || self.stopping || cycle.fatal.is_some() {
            return self.finish_cycle(ctx);
        }
        cycle.prune_queue = std::mem::take(&mut cycle.replicated).into();
        cycle.prune = Some(PruneSummary::default());
        self.next_prune(ctx);
    }

    fn next_prune(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.wait = None;
        let Some(cycle) = &mut self.cycle else { return };
        let fs = match cycle.prune_queue.pop_front() {
            Some(fs) if !self.stopping => fs,
            _ => return self.finish_cycle(ctx),
        };
        let Some(local) = self.local_path(&fs) else {
            return self.prune_failed(ctx, &fs, "no local path".to_owned());
        };
        let spec = match zfsops::list_versions(self.dialect(), &local) {
            Ok(spec) => spec,
            Err(e) => return self.prune_failed(ctx, &fs, format!("cannot list {local}: {e}")),
        };
        // Both sides are listed at once: the cycle waits for the slower listing only.
        let now = ctx.now().mono;
        let sent = self
            .conn()
            .and_then(|c| ctx.session(c))
            .map(|s| s.request::<ListVersions>(now, &fs, false));
        match sent {
            Some(Ok(())) => {
                let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                self.wait = Some(Wait::PruneLists { fs, proc, remote: None, local: None });
            }
            other => {
                self.abort_cycle(ctx, format!("cannot ask for the versions of {fs}: {other:?}"))
            }
        }
    }

    /// Our side's path of a sender filesystem.
    fn local_path(&self, fs: &DatasetPath) -> Option<DatasetPath> {
        match self.spec.direction {
            Direction::Push => Some(fs.clone()),
            Direction::Pull => self.receiver_path(fs),
        }
    }

    pub(super) fn prune_failed(&mut self, ctx: &mut JobCtx<'_, '_>, fs: &DatasetPath, why: String) {
        self.log(ctx, Level::Error, format!("{fs}: pruning failed: {why}"));
        if let Some(c) = &mut self.cycle {
            c.reports.push(format!("{fs}: pruning failed: {why}"));
            if let Some(p) = &mut c.prune {
                p.failed += 1;
            }
        }
        self.next_prune(ctx);
    }

    /// One side's listing arrived; once both have, decide.
    pub(super) fn on_prune_lists(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        fs: DatasetPath,
        proc: ProcId,
        remote: Option<Result<Vec<FilesystemVersion>, String>>,
        local: Option<ProcessResult>,
    ) {
        match (remote, local) {
            (Some(Ok(remote)), Some(local)) => self.on_prune_local_list(ctx, fs, remote, local),
            (Some(Err(e)), Some(_)) => {
                self.prune_failed(ctx, &fs, format!("the peer could not list versions: {e}"))
            }
            (remote, local) => self.wait = Some(Wait::PruneLists { fs, proc, remote, local }),
        }
    }

    pub(super) fn on_prune_local_list(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        fs: DatasetPath,
        remote: Vec<FilesystemVersion>,
        result: ProcessResult,
    ) {
        let Some(local_path) = self.local_path(&fs) else { return };
        // A receiver that does not exist (the sender has no snapshot yet) holds
        // nothing to prune.
        let missing = !result.status.success() && zfsops::is_missing_dataset(&result.stderr);
        if !result.status.success() && !missing {
            let why = format!("cannot list {local_path}: {}", result.stderr.trim());
            return self.prune_failed(ctx, &fs, why);
        }
        let local = match zfsops::parse_versions(self.dialect(), &result.stdout) {
            Ok(mut by_fs) => by_fs.remove(&local_path).unwrap_or_default(),
            Err(e) => return self.prune_failed(ctx, &fs, e),
        };
        let Some(spec) = &self.spec.prune else { return };
        let (sender, receiver) = match self.spec.direction {
            Direction::Push => (&local, &remote),
            Direction::Pull => (&remote, &local),
        };
        let partial = self.resume_token_of(&fs).is_some();
        let decided = prune::decide(spec, ctx.now().wall, sender, receiver, partial);
        let sender_gone: Vec<FilesystemVersion> =
            decided.sender.destroys().into_iter().cloned().collect();
        let receiver_gone: Vec<FilesystemVersion> =
            decided.receiver.destroys().into_iter().cloned().collect();
        if let Some(CycleKind::PruneOnly { dry_run: true }) = self.cycle.as_ref().map(|c| c.kind) {
            ctx.print(format!(
                "{fs}: would destroy {} on the sender, {} on the receiver",
                sender_gone.len(),
                receiver_gone.len()
            ));
            for line in prune::explain("sender", &spec.sender, &decided.sender)
                .into_iter()
                .chain(prune::explain("receiver", &spec.receiver, &decided.receiver))
            {
                ctx.print(line);
            }
            if let Some(c) = &mut self.cycle {
                c.reports.push(format!(
                    "{fs}: dry run: would destroy {} on the sender, {} on the receiver",
                    sender_gone.len(),
                    receiver_gone.len()
                ));
            }
            return self.next_prune(ctx);
        }
        let (local_gone, remote_gone) = match self.spec.direction {
            Direction::Push => (sender_gone, receiver_gone),
            Direction::Pull => (receiver_gone, sender_gone),
        };
        let task = Box::new(DestroyTask::start(ctx, self.dialect(), local_path, local_gone));
        self.wait = Some(Wait::PruneLocalDestroy { task, fs, remote: remote_gone });
        self.check_prune_local(ctx);
    }

    /// Moves on once the local destroys are done: to the remote ones.
    pub(super) fn check_prune_local(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let Some(Wait::PruneLocalDestroy { task, .. }) = &self.wait else { return };
        let Some(result) = task.result().cloned() else { return };
        let Some(Wait::PruneLocalDestroy { fs, remote, .. }) = self.wait.take() else { return };
        let local = match result {
            Ok(o) => o,
            Err(e) => return self.prune_failed(ctx, &fs, e),
        };
        if remote.is_empty() {
            return self.prune_done(ctx, fs, local, DestroyOutcome::default());
        }
        let now = ctx.now().mono;
        let request = DestroyRequest { filesystem: fs.clone(), snapshots: remote };
        let sent = self
            .conn()
            .and_then(|c| ctx.session(c))
            .map(|s| s.request::<DestroySnapshots>(now, &request, false));
        match sent {
            Some(Ok(())) => self.wait = Some(Wait::PruneRemoteDestroy { fs, local }),
            other => self.abort_cycle(ctx, format!("cannot ask the peer to prune {fs}: {other:?}")),
        }
    }

    pub(super) fn prune_done(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        fs: DatasetPath,
        local: DestroyOutcome,
        remote: DestroyOutcome,
    ) {
        let (sender, receiver) = match self.spec.direction {
            Direction::Push => (local, remote),
            Direction::Pull => (remote, local),
        };
        let list = |o: &DestroyOutcome| {
            if o.destroyed.is_empty() {
                String::new()
            } else {
                format!(" (@{})", o.destroyed.join(", @"))
            }
        };
        let line = format!(
            "{fs}: pruned {} on the sender{}, {} on the receiver{}",
            sender.destroyed.len(),
            list(&sender),
            receiver.destroyed.len(),
            list(&receiver)
        );
        self.log(ctx, Level::Info, &line);
        let errors: Vec<String> = sender.errors.iter().chain(&receiver.errors).cloned().collect();
        if let Some(c) = &mut self.cycle {
            c.reports.push(line);
            if let Some(p) = &mut c.prune {
                p.sender_destroyed += sender.destroyed.len() as u32;
                p.receiver_destroyed += receiver.destroyed.len() as u32;
            }
        }
        if !errors.is_empty() {
            return self.prune_failed(ctx, &fs, format!("zfs destroy: {}", errors.join("; ")));
        }
        self.next_prune(ctx);
    }
}
