//! `zfs` child processes in the simulated world: started when a node spawns
//! them, run against the host's model ZFS, their bytes moved through pipes of
//! a real pipe's size; failures injected where the scenario asks.

use std::collections::VecDeque;

use zferry_core::node::{ExitStatus, Input, ProcId, ProcessSpec};

use crate::net::Pid;
use crate::scenario::SECOND;
use crate::world::{Child, Ev, Followup, Work, World, PIPE};
use crate::zfs::command::{self, Kind, Outcome};
use crate::zfs::receive::Receive;

impl World {
    pub(crate) fn schedule_child(&mut self, pid: Pid, proc: ProcId, delay: u64) {
        let Some(c) = self.children.get_mut(&(pid, proc)) else { return };
        if !c.run_scheduled {
            c.run_scheduled = true;
            let t = self.now + delay;
            self.at(t, Ev::ChildRun(pid, proc));
        }
    }

    pub(crate) fn spawn(&mut self, pid: Pid, proc: ProcId, spec: ProcessSpec) {
        let host = self.progs[&pid].host;
        let name = self.host_name(host).to_owned();
        if self.faults && self.rng.chance(self.scenario.command_failures / 4) {
            self.stats.injected += 1;
            self.log(format!(
                "{name}[{pid}] cannot spawn `{}`: injected EAGAIN",
                spec.argv.join(" ")
            ));
            self.followup_done(host, &spec.argv, false);
            let error = "Resource temporarily unavailable (os error 11)".into();
            return self.input(pid, Input::SpawnFailed { proc, error });
        }
        self.log(format!("{name}[{pid}] spawn {}: {}", proc.0, spec.argv.join(" ")));
        let work = match command::classify(self.zfs[host].flavor, &spec.argv) {
            Ok(Kind::Oneshot) => Work::Oneshot,
            Ok(Kind::Send(args)) => Work::SendPending(args),
            Ok(Kind::Receive(args)) => {
                let fail_after = (self.faults && self.rng.chance(self.scenario.command_failures))
                    .then(|| self.rng.below(20_000));
                // From a slow disk to a fast one: 16 KiB/s to 16 MiB/s.
                let rate = 1 << self.rng.range(14, 24);
                let recv = Box::new(Receive::new(args));
                Work::Receive { recv, fail_after, fed: 0, rate, last: self.now }
            }
            Err(outcome) => Work::Finished(outcome),
        };
        self.children.insert(
            (pid, proc),
            Child {
                host,
                argv: spec.argv,
                stdout_piped: spec.stdout,
                work,
                stdout: VecDeque::new(),
                stdout_closed: false,
                stderr: VecDeque::new(),
                stderr_closed: false,
                stdin: VecDeque::new(),
                stdin_eof: false,
                stdin_gone: !spec.stdin,
                status: None,
                run_scheduled: false,
            },
        );
        let delay = self.rng.range(500_000, 20_000_000);
        self.schedule_child(pid, proc, delay);
    }

    /// An injected failure of a command that changes things, with the message
    /// libzfs prints for the error.
    pub(crate) fn injected(&mut self, argv: &[String]) -> Option<Outcome> {
        let sub = argv.get(1).map(String::as_str)?;
        let target = argv.last().cloned().unwrap_or_default();
        let msg = match sub {
            "create" => format!("cannot create '{target}': out of space"),
            "set" => format!("cannot set property for '{target}': out of space"),
            "inherit" => format!("cannot inherit {} for '{target}': dataset is busy", argv.get(2)?),
            _ => return None,
        };
        if !self.faults || !self.rng.chance(self.scenario.command_failures) {
            return None;
        }
        self.stats.injected += 1;
        Some(Outcome::fail(1, msg))
    }

    pub(crate) fn child_run(&mut self, pid: Pid, proc: ProcId) {
        let Some(c) = self.children.get_mut(&(pid, proc)) else { return };
        c.run_scheduled = false;
        if c.status.is_some() {
            return;
        }
        let host = c.host;
        let work = std::mem::replace(&mut c.work, Work::Done);
        let argv = c.argv.clone();
        let wall = self.host_now(host).wall.0;
        let finished = match work {
            Work::Done => None,
            Work::Finished(o) => Some(o),
            Work::Oneshot => {
                if argv.get(1).is_some_and(|s| s == "destroy") {
                    if let Err(e) = crate::check::destroy_is_safe(self, host, &argv) {
                        self.fail(e);
                    }
                    self.note_pruned(host, &argv);
                }
                let o = match self.injected(&argv) {
                    Some(o) => o,
                    None => command::run(&mut self.zfs[host], &argv, wall, &mut self.rng),
                };
                if o.code == 0 && argv.get(1).is_some_and(|s| s == "snapshot") {
                    self.note_snapshots(host, &argv[2..]);
                }
                Some(o)
            }
            Work::SendPending(args) => match command::plan_send(&self.zfs[host], &args) {
                Err(o) => Some(o),
                Ok(plan) => {
                    for h in &plan.holds {
                        self.zfs[host].hold_busy(h);
                    }
                    let bytes = plan.bytes();
                    let fail_at = (self.faults && self.rng.chance(self.scenario.command_failures))
                        .then(|| self.rng.below(bytes.len() as u64) as usize);
                    let name =
                        plan.substreams.last().map(|b| b.to_name.clone()).unwrap_or_default();
                    let work = Work::Sending { bytes, pos: 0, fail_at, holds: plan.holds, name };
                    self.children.get_mut(&(pid, proc)).expect("running").work = work;
                    return self.child_run(pid, proc);
                }
            },
            Work::Sending { bytes, mut pos, fail_at, holds, name } => {
                let c = self.children.get_mut(&(pid, proc)).expect("running");
                let end = fail_at.unwrap_or(bytes.len());
                let room = PIPE.saturating_sub(c.stdout.len());
                let n = room.min(end - pos);
                if c.stdout_piped {
                    c.stdout.extend(&bytes[pos..pos + n]);
                }
                pos += n;
                if pos == end {
                    for h in &holds {
                        self.zfs[host].release_busy(h);
                    }
                    if fail_at.is_some() {
                        self.stats.injected += 1;
                        let msg = format!("warning: cannot send '{name}': Input/output error");
                        Some(Outcome::fail(1, msg))
                    } else {
                        Some(Outcome::ok(Vec::new()))
                    }
                } else {
                    c.work = Work::Sending { bytes, pos, fail_at, holds, name };
                    None
                }
            }
            Work::Receive { mut recv, fail_after, mut fed, rate, last } => {
                let c = self.children.get_mut(&(pid, proc)).expect("running");
                // Only what the disk took since the last run; the rest waits
                // in the pipe, and back-pressure builds up to the sender.
                let budget = (rate * (self.now - last) / SECOND).max(4096) as usize;
                let n = budget.min(c.stdin.len());
                let mut taken: VecDeque<u8> = c.stdin.drain(..n).collect();
                recv.consume(&mut self.zfs[host], &mut taken, &mut self.rng);
                fed += (n - taken.len()) as u64;
                for b in taken.into_iter().rev() {
                    c.stdin.push_front(b);
                }
                let waiting = !c.stdin.is_empty();
                if recv.done.is_none() && fail_after.is_some_and(|f| fed >= f) {
                    self.stats.injected += 1;
                    let target = argv.last().cloned().unwrap_or_default();
                    // ENOSPC, EBUSY and EDQUOT as zfs_standard_error and libzfs word them.
                    let reason = match self.rng.below(3) {
                        0 => "out of space".to_owned(),
                        1 => "dataset is busy".to_owned(),
                        _ => format!("destination {target} space quota exceeded."),
                    };
                    recv.fail_injected(&mut self.zfs[host], &reason);
                }
                let c = self.children.get_mut(&(pid, proc)).expect("running");
                if recv.done.is_none() && c.stdin_eof && c.stdin.is_empty() {
                    recv.eof(&mut self.zfs[host]);
                }
                match recv.done.take() {
                    Some(o) => {
                        let target = argv.last().cloned().unwrap_or_default();
                        // zferry finishes a replica after a receive that made it
                        // (readonly=on) and after any receive into a target still
                        // marked as a placeholder (which it then unmarks).
                        let marked =
                            self.zfs[host].fs_prop(&target, "zferry:placeholder").0 == "on";
                        if o.code == 0 && (recv.created || marked) {
                            let unmark = marked || argv.iter().any(|a| a == "-F");
                            let f = Followup { readonly: true, unmark, owner: pid, lost: false };
                            self.followups.insert((host, target), f);
                        }
                        Some(o)
                    }
                    None => {
                        c.work = Work::Receive { recv, fail_after, fed, rate, last: self.now };
                        if waiting {
                            let delay = (4096 * SECOND / rate).max(1_000_000);
                            self.schedule_child(pid, proc, delay);
                        }
                        None
                    }
                }
            }
        };
        if let Some(o) = finished {
            self.finish_child(pid, proc, o);
        }
        self.wake(pid, self.now);
    }

    pub(crate) fn finish_child(&mut self, pid: Pid, proc: ProcId, o: Outcome) {
        let Some(c) = self.children.get_mut(&(pid, proc)) else { return };
        if c.stdout_piped {
            c.stdout.extend(o.stdout);
        }
        c.stderr.extend(o.stderr.as_bytes());
        c.status = Some(ExitStatus::Code(o.code));
        c.stdin_gone = true;
        c.stdin.clear();
        c.work = Work::Done;
        let receive = c.argv.get(1).is_some_and(|s| s == "receive");
        let host = c.host;
        let argv = c.argv.clone();
        self.followup_done(host, &argv, o.code == 0);
        let name = self.host_name(host).to_owned();
        let first = o.stderr.lines().next().unwrap_or("").to_owned();
        if receive {
            if o.code == 0 {
                self.stats.transfers_ok += 1;
            } else {
                self.stats.transfers_failed += 1;
            }
        }
        self.log(format!("{name}[{pid}] exit {} of {}: {}", o.code, proc.0, first));
    }

    /// zferry's own snapshots (its snapshot schedule) enter the sender's history
    /// as the workload's do.
    fn note_snapshots(&mut self, host: usize, names: &[String]) {
        for name in names {
            let Some((fs, short)) = name.split_once('@') else { continue };
            let Some(ds) = self.zfs[host].datasets.get(fs) else { continue };
            if let Some(snap) = ds.snapshot(short).cloned() {
                let fs_guid = ds.guid;
                self.stats.snapshots += 1;
                self.history[host].snapshot(fs, fs_guid, &snap);
            }
        }
    }

    /// Remembers the snapshots a `zfs destroy` of zferry's names (before it runs).
    fn note_pruned(&mut self, host: usize, argv: &[String]) {
        let Some((fs, list)) = argv.last().and_then(|n| n.split_once('@')) else { return };
        let Some(ds) = self.zfs[host].datasets.get(fs) else { return };
        for short in list.split(',') {
            if let Some(s) = ds.snapshot(short) {
                self.pruned.insert((host, fs.to_owned(), s.guid));
            }
        }
    }

    /// Notes a post-receive command's outcome for [`Followup`]s.
    fn followup_done(&mut self, host: usize, argv: &[String], ok: bool) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (t, readonly) = match argv[..] {
            ["zfs", "set", "readonly=on", t] => (t, true),
            ["zfs", "inherit", "zferry:placeholder", t] => (t, false),
            _ => return,
        };
        let Some(f) = self.followups.get_mut(&(host, t.to_owned())) else { return };
        match (ok, readonly) {
            (false, _) => f.lost = true,
            (true, true) => f.readonly = false,
            (true, false) => f.unmark = false,
        }
        self.followups.retain(|_, f| f.readonly || f.unmark);
    }

    pub(crate) fn kill_child(&mut self, pid: Pid, proc: ProcId) {
        let Some(c) = self.children.get_mut(&(pid, proc)) else { return };
        if c.status.is_some() {
            return;
        }
        let host = c.host;
        match std::mem::replace(&mut c.work, Work::Done) {
            Work::Sending { holds, .. } => {
                for h in &holds {
                    self.zfs[host].release_busy(h);
                }
            }
            Work::Receive { mut recv, .. } => recv.kill(&mut self.zfs[host]),
            _ => {}
        }
        let c = self.children.get_mut(&(pid, proc)).expect("checked");
        c.status = Some(ExitStatus::Signal(9));
        c.stdin_gone = true;
        c.stdin.clear();
        let name = self.host_name(host).to_owned();
        self.log(format!("{name}[{pid}] killed {}", proc.0));
        self.wake(pid, self.now);
    }
}
