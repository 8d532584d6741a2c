//! `zferry test filesystems`: which local filesystems a push or source job's
//! filter selects, checked against the real `zfs list` of this host.

use std::collections::VecDeque;

use super::zfsops;
use crate::node::{
    App, AppCtx, ConnId, Level, ListenerId, ProcId, ProcessResult, StdinFrom, StdoutTo,
};
use crate::plan::filter::FilesystemFilter;
use crate::rpc::SessionEvent;
use crate::zfs::{DatasetPath, Dialect};

#[derive(Debug)]
pub struct TestFilesystems {
    filter: FilesystemFilter,
    roots: VecDeque<DatasetPath>,
    dialect: Option<Dialect>,
    running: Option<ProcId>,
    outcome: Option<i32>,
}

impl TestFilesystems {
    pub fn new(filter: FilesystemFilter, roots: Vec<DatasetPath>) -> TestFilesystems {
        TestFilesystems { filter, roots: roots.into(), dialect: None, running: None, outcome: None }
    }

    fn fail(&mut self, ctx: &mut AppCtx<'_>, why: String) {
        ctx.log(Level::Error, why);
        self.outcome = Some(1);
    }

    fn next_root(&mut self, ctx: &mut AppCtx<'_>) {
        let (Some(dialect), Some(root)) = (self.dialect, self.roots.pop_front()) else {
            self.outcome.get_or_insert(0);
            return;
        };
        match zfsops::list_filesystems(dialect, &root) {
            Ok(spec) => self.running = Some(ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null)),
            Err(e) => self.fail(ctx, format!("cannot list {root}: {e}")),
        }
    }
}

impl App for TestFilesystems {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        self.running = Some(ctx.spawn(zfsops::version(), StdoutTo::Collect, StdinFrom::Null));
    }

    fn on_listen_failed(&mut self, _ctx: &mut AppCtx<'_>, _l: ListenerId, _e: &str) {}

    fn on_session_event(&mut self, _ctx: &mut AppCtx<'_>, _c: ConnId, _e: SessionEvent) {}

    fn on_conn_closed(&mut self, _ctx: &mut AppCtx<'_>, _c: ConnId, _e: Option<String>) {}

    fn on_process_done(&mut self, ctx: &mut AppCtx<'_>, _proc: ProcId, result: ProcessResult) {
        self.running = None;
        if self.dialect.is_none() {
            let code = match result.status {
                crate::node::ExitStatus::Code(c) => Some(c),
                crate::node::ExitStatus::Signal(_) => None,
            };
            match crate::zfs::detect(code, &result.stdout, result.stderr.as_bytes()) {
                Ok(d) => self.dialect = Some(d),
                Err(e) => return self.fail(ctx, format!("cannot use the installed zfs: {e}")),
            }
            return self.next_root(ctx);
        }
        if !result.status.success() {
            return self.fail(ctx, format!("listing failed: {}", result.stderr));
        }
        match zfsops::parse_filesystems(&result.stdout) {
            Ok(list) => {
                for fs in list {
                    let verdict = if fs.placeholder {
                        "skip (placeholder: no data of its own)"
                    } else if self.filter.selects(&fs.path) {
                        "replicate"
                    } else {
                        "exclude"
                    };
                    ctx.print(format!("{}\t{verdict}", fs.path));
                }
                self.next_root(ctx);
            }
            Err(e) => self.fail(ctx, e),
        }
    }

    fn on_shutdown(&mut self, ctx: &mut AppCtx<'_>) {
        if let Some(p) = self.running {
            ctx.kill(p);
        }
        self.outcome.get_or_insert(1);
    }

    fn exit_code(&self) -> Option<i32> {
        self.outcome.filter(|_| self.running.is_none())
    }
}
