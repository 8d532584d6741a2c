//! Processes on their own (exit codes, output, environment, failure to start, a
//! kill), the timer, and a shutdown signal.

use std::time::Duration;

use zferry_core::node::{AppCtx, ProcId, ProcessSpec, StdinFrom, StdoutTo};
use zferry_core::time::Instant;

use super::{command, sh};
use crate::script::{Ev, Step};
use crate::world::World;

/// Several processes at once, each in its own lane.
#[derive(Debug, Default)]
pub struct Processes {
    running: usize,
}

impl Processes {
    fn run(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, name: &str, spec: ProcessSpec) {
        let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
        w.name_counted(proc.0, name);
        self.running += 1;
    }
}

impl Step for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        self.run(w, ctx, "failing", sh("printf out; printf 'err msg' >&2; exit 3"));
        let mut env = sh("printf %s \"$ZFERRY_CONFORMANCE\"");
        env.env.push(("ZFERRY_CONFORMANCE".to_owned(), "from the node".to_owned()));
        self.run(w, ctx, "environment", env);
        self.run(w, ctx, "large output", command(&["head", "-c", "1000000", "/dev/zero"]));
        self.run(w, ctx, "missing program", command(&["/nonexistent/zferry-conformance"]));
        self.run(w, ctx, "empty command", command(&[]));
        let quiet = ctx.spawn(command(&["true"]), StdoutTo::Null, StdinFrom::Null);
        w.name(quiet.0, "no pipes but stderr");
        self.running += 1;
    }

    fn on(&mut self, _w: &mut World, _ctx: &mut AppCtx<'_>, ev: &Ev) {
        if let Ev::ProcessDone(..) = ev {
            self.running -= 1;
        }
    }

    fn done(&self) -> bool {
        self.running == 0
    }
}

/// A process killed while it runs, when the timer fires.
#[derive(Debug, Default)]
pub struct Kill {
    sleeper: Option<ProcId>,
    done: bool,
}

impl Step for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let proc = ctx.spawn(command(&["sleep", "30"]), StdoutTo::Null, StdinFrom::Null);
        w.name(proc.0, "sleeper");
        self.sleeper = Some(proc);
        w.timer = Some(ctx.now().mono + Duration::from_millis(50));
    }

    fn on(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Timeout if w.timer.is_some_and(|t| ctx.now().mono >= t) => {
                w.timer = None;
                w.note_in("timer", "fired");
                if let Some(proc) = self.sleeper {
                    ctx.kill(proc);
                }
            }
            Ev::ProcessDone(..) => self.done = true,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.done
    }
}

/// The driver follows the timer when it moves: earlier (a far deadline brought
/// near) and later (a near one pushed back). A timeout before the deadline the
/// node last gave means the driver kept an old one.
#[derive(Debug, Default)]
pub struct Timers {
    phase: u8,
    armed: Option<Instant>,
    triggers_done: usize,
    early: usize,
}

/// Far enough that a driver waiting for it would show in the trace.
const FAR: Duration = Duration::from_secs(20);
const NEAR: Duration = Duration::from_millis(30);
const PUSHED: Duration = Duration::from_millis(150);

impl Timers {
    fn trigger(w: &mut World, ctx: &mut AppCtx<'_>, name: &str) {
        let proc = ctx.spawn(command(&["true"]), StdoutTo::Null, StdinFrom::Null);
        w.name(proc.0, name);
    }
}

impl Step for Timers {
    fn name(&self) -> &'static str {
        "timers"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let now = ctx.now().mono;
        self.armed = Some(now);
        w.timer = Some(now + FAR);
        Self::trigger(w, ctx, "trigger 1");
    }

    fn on(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, ev: &Ev) {
        let now = ctx.now().mono;
        match ev {
            Ev::ProcessDone(..) => {
                self.triggers_done += 1;
                // Brought near in phase 0; pushed back in phase 1, if not fired yet.
                if self.phase == 0 && w.timer.is_some() {
                    w.timer = Some(now + NEAR);
                } else if self.phase == 1 && w.timer.is_some() {
                    w.timer = Some(now + PUSHED);
                }
            }
            Ev::Timeout => match w.timer {
                Some(t) if now >= t => {
                    w.timer = None;
                    if self.phase == 0 {
                        let waited = self.armed.map_or(FAR, |a| now.saturating_since(a));
                        w.note_in(
                            "timer",
                            format!("fired before the far deadline: {}", waited < FAR),
                        );
                        self.phase = 1;
                        w.timer = Some(now + PUSHED);
                        Self::trigger(w, ctx, "trigger 2");
                    } else {
                        w.note_in("timer", "fired again");
                        w.note_in("timer", format!("timeouts before the deadline: {}", self.early));
                        self.phase = 2;
                    }
                }
                Some(_) => self.early += 1,
                None => {}
            },
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.phase == 2 && self.triggers_done == 2
    }
}

/// SIGTERM to this process, from a child: the node hears of it as a shutdown.
#[derive(Debug, Default)]
pub struct Shutdown {
    shut_down: bool,
    signaller_done: bool,
}

impl Step for Shutdown {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let proc = ctx.spawn(sh("kill -TERM $PPID"), StdoutTo::Null, StdinFrom::Null);
        w.name(proc.0, "signaller");
    }

    fn on(&mut self, _w: &mut World, _ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Shutdown => self.shut_down = true,
            Ev::ProcessDone(..) => self.signaller_done = true,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.shut_down && self.signaller_done
    }
}
