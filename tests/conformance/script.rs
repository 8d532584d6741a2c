//! The scripted app: steps run one after another, each starting once the one
//! before it has ended (every handle it opened is closed, every process done), so
//! the trace does not depend on how the driver interleaves them.

use std::collections::VecDeque;
use std::time::Duration;

use zferry_core::node::{App, AppCtx, ConnId, ListenerId, ProcId, ProcessResult};
use zferry_core::rpc::SessionEvent;
use zferry_core::time::Instant;

use crate::world::World;

/// One callback of the node, as a value a step can match on.
#[derive(Debug)]
pub enum Ev {
    Listening(ListenerId, String),
    ListenFailed(ListenerId, String),
    Accepted(ListenerId, ConnId, String),
    Session(ConnId, SessionEvent),
    Closed(ConnId, Option<String>),
    ProcessDone(ProcId, ProcessResult),
    Timeout,
    Shutdown,
    /// After every input: a chance to send stream data.
    Poll,
}

pub trait Step {
    fn name(&self) -> &'static str;
    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>);
    /// Every event while the step runs, after [`World::record`] has noted it.
    fn on(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, ev: &Ev);
    fn done(&self) -> bool;
}

/// How long one step may take before the script gives up: a driver that loses an
/// event must fail the test, not hang it.
const STEP_LIMIT: Duration = Duration::from_secs(60);

pub struct Script {
    steps: VecDeque<Box<dyn Step>>,
    current: Option<Box<dyn Step>>,
    world: World,
    watchdog: Option<Instant>,
    exit: Option<i32>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = self.current.as_ref().map(|s| s.name());
        f.debug_struct("Script").field("step", &step).field("left", &self.steps.len()).finish()
    }
}

impl Script {
    pub fn new(world: World, steps: Vec<Box<dyn Step>>) -> Script {
        Script { steps: steps.into(), current: None, world, watchdog: None, exit: None }
    }

    fn event(&mut self, ctx: &mut AppCtx<'_>, ev: Ev) {
        if self.exit.is_some() {
            return;
        }
        self.world.record(&ev);
        if let Some(step) = &mut self.current {
            step.on(&mut self.world, ctx, &ev);
        }
        self.advance(ctx);
    }

    /// Ends the current step if it is done and starts the next ones.
    fn advance(&mut self, ctx: &mut AppCtx<'_>) {
        loop {
            match &self.current {
                Some(step) if !step.done() => return,
                Some(step) => {
                    self.world.end_step(step.name());
                    self.world.timer = None;
                    self.current = None;
                }
                None => {}
            }
            let Some(mut next) = self.steps.pop_front() else {
                self.exit = Some(0);
                return;
            };
            self.watchdog = Some(ctx.now().mono + STEP_LIMIT);
            next.start(&mut self.world, ctx);
            self.current = Some(next);
        }
    }
}

impl App for Script {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        self.advance(ctx);
    }

    fn on_listening(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, local: &str) {
        self.event(ctx, Ev::Listening(listener, local.to_owned()));
    }

    fn on_listen_failed(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, error: &str) {
        self.event(ctx, Ev::ListenFailed(listener, error.to_owned()));
    }

    fn on_accept(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, conn: ConnId, peer: &str) {
        self.event(ctx, Ev::Accepted(listener, conn, peer.to_owned()));
    }

    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        self.event(ctx, Ev::Session(conn, event));
    }

    fn on_conn_closed(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, error: Option<String>) {
        self.event(ctx, Ev::Closed(conn, error));
    }

    fn on_process_done(&mut self, ctx: &mut AppCtx<'_>, proc: ProcId, result: ProcessResult) {
        self.event(ctx, Ev::ProcessDone(proc, result));
    }

    fn poll(&mut self, ctx: &mut AppCtx<'_>) {
        self.event(ctx, Ev::Poll);
    }

    fn on_timeout(&mut self, ctx: &mut AppCtx<'_>) {
        if self.exit.is_none() && self.watchdog.is_some_and(|w| ctx.now().mono >= w) {
            let name = self.current.as_ref().map_or("script", |s| s.name());
            self.world.note_in("script", format!("gave up after {STEP_LIMIT:?}"));
            self.world.end_step(name);
            self.exit = Some(1);
            return;
        }
        self.event(ctx, Ev::Timeout);
    }

    fn on_shutdown(&mut self, ctx: &mut AppCtx<'_>) {
        self.event(ctx, Ev::Shutdown);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.world.timer, self.watchdog].into_iter().flatten().min()
    }

    fn exit_code(&self) -> Option<i32> {
        self.exit
    }
}
