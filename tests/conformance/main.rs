//! Driver conformance: the same scripted app runs under both drivers, over real
//! sockets and processes, and what it observes must be the same under each, and
//! what this file expects.
//!
//! The script (script.rs, steps/) makes the node ask for every kind of action a
//! driver executes, and records every callback it gets, normalized (world.rs).
//! Like the binaries, the drivers take SIGTERM and SIGINT over for this process;
//! the script's last step sends it a SIGTERM.

mod calls;
mod script;
mod steps;
mod world;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use zferry_cli::{Clock, Driver, Report};
use zferry_core::node::Node;
use zferry_core::rpc::SessionConfig;
use zferry_driver_mio::MioDriver;
use zferry_driver_smol::SmolDriver;

use script::Script;
use world::World;

/// Well above the few seconds a run takes, even on a loaded machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Small limits, so that a few MiB take many frames and many credit grants.
fn session_config() -> SessionConfig {
    SessionConfig {
        max_data_payload: steps::PIECE,
        stream_window: 64 * 1024,
        ..SessionConfig::default()
    }
}

/// Runs the script under driver `D`; its trace ends with the driver's result.
fn run<D: Driver>(label: &str) -> Vec<String> {
    let dir =
        std::env::temp_dir().join(format!("zferry-conformance-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trace = Rc::new(RefCell::new(Vec::new()));
    let script = Script::new(World::new(trace.clone(), dir.clone()), steps::all());
    let clock = Clock::new();
    let node = Node::new(script, session_config(), clock.now());
    let code = D::run(node, clock, Report::new(false));
    let _ = std::fs::remove_dir_all(&dir);
    let mut trace = trace.take();
    trace.push(format!("exit: {code:?}"));
    trace
}

/// Where two traces part, with the rest of each, for the failure message.
fn difference(a: &[String], b: &[String]) -> String {
    let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let rest = |t: &[String]| t[at.min(t.len())..].join("\n    ");
    format!("from line {at}:\n  one:\n    {}\n  other:\n    {}", rest(a), rest(b))
}

/// Runs the script in a thread of its own: a driver that spins or hangs must fail
/// the test, not stall it.
fn run_bounded<D: Driver + 'static>(label: &'static str) -> Vec<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(run::<D>(label)));
    match rx.recv_timeout(RUN_LIMIT) {
        Ok(trace) => trace,
        Err(RecvTimeoutError::Timeout) => {
            panic!("the {label} driver did not finish the script in {RUN_LIMIT:?}")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("the {label} driver's run panicked"),
    }
}

#[test]
fn both_drivers_execute_the_script_alike() {
    let mio = run_bounded::<MioDriver>("mio");
    let smol = run_bounded::<SmolDriver>("smol");
    let expected: Vec<String> = EXPECTED.iter().map(|l| (*l).to_owned()).collect();
    assert!(mio == smol, "mio (one) and smol (other) differ {}", difference(&mio, &smol));
    assert!(
        mio == expected,
        "both drivers agree, but not with EXPECTED (one) {}\nwhole trace:\n{}",
        difference(&expected, &mio),
        mio.iter().map(|l| format!("    {l:?},")).collect::<Vec<_>>().join("\n")
    );
}

/// What the script observes: the trace of a correct driver, checked by hand.
#[rustfmt::skip]
const EXPECTED: &[&str] = &[
    "listen | tcp listener | listening on 127.0.0.1:$PORT",
    "listen | unix listener | listening on $DIR/conformance.sock",
    "listen in use | liveness probe | closed: peer hung up early",
    "listen in use | tcp listener, again | listen failed: address in use",
    "listen in use | unix listener | accepted from unix client",
    "listen in use | unix listener, again | listen failed: address in use",
    "tcp rpc | client | established",
    "tcp rpc | client | response conformance.echo \"echo: ping\"",
    "tcp rpc | client | response conformance.unknown error UnknownMethod: conformance.unknown",
    "tcp rpc | client | closed",
    "tcp rpc | server | established",
    "tcp rpc | server | request conformance.echo \"ping\"",
    "tcp rpc | server | request conformance.unknown \"anyone?\"",
    "tcp rpc | server | closed",
    "tcp rpc | tcp listener | accepted from 127.0.0.1:$PORT",
    "unix rpc | client | established",
    "unix rpc | client | response conformance.echo \"echo: ping\"",
    "unix rpc | client | response conformance.unknown error UnknownMethod: conformance.unknown",
    "unix rpc | client | closed",
    "unix rpc | server | established",
    "unix rpc | server | request conformance.echo \"ping\"",
    "unix rpc | server | request conformance.unknown \"anyone?\"",
    "unix rpc | server | closed",
    "unix rpc | unix listener | accepted from unix client",
    "app stream | client | established",
    "app stream | client | response conformance.upload \"3145851 bytes, digest b47b5365c332b954\"",
    "app stream | client | the server saw what was sent: true",
    "app stream | client | closed",
    "app stream | server | established",
    "app stream | server | request conformance.upload \"app stream\" with a stream",
    "app stream | server | stream data: 3145851 bytes, digest b47b5365c332b954",
    "app stream | server | stream end",
    "app stream | server | closed",
    "app stream | tcp listener | accepted from 127.0.0.1:$PORT",
    "piped stream | client | established",
    "piped stream | client | response conformance.upload \"3000000 bytes, digest 28b12b446541309f\"",
    "piped stream | client | closed",
    "piped stream | consumer | exit code 0, stdout 3000000 bytes, 6000000 bytes through its pipes",
    "piped stream | producer | exit code 0, 3000000 bytes through its pipes",
    "piped stream | server | established",
    "piped stream | server | request conformance.upload \"piped stream\" with a stream",
    "piped stream | server | stream end",
    "piped stream | server | closed",
    "piped stream | tcp listener | accepted from 127.0.0.1:$PORT",
    "early answer | client | established",
    "early answer | client | response conformance.upload \"took 1000 bytes\"",
    "early answer | client | closed",
    "early answer | consumer | exit code 0, stdout 1000 bytes",
    "early answer | producer | signal 9",
    "early answer | server | established",
    "early answer | server | request conformance.upload \"early answer\" with a stream",
    "early answer | server | stream aborted: the peer answered before the stream ended",
    "early answer | server | closed",
    "early answer | unix listener | accepted from unix client",
    "aborted stream | client | established",
    "aborted stream | client | response conformance.upload error Failed: the stream was aborted",
    "aborted stream | client | closed",
    "aborted stream | consumer | signal 9",
    "aborted stream | producer | exit code 5, stderr \"broken\"",
    "aborted stream | server | established",
    "aborted stream | server | request conformance.upload \"aborted stream\" with a stream",
    "aborted stream | server | stream aborted: `sh -c \"head -c 100000 /dev/zero; echo broken >&2; exit 5\"` failed (exit code 5): broken",
    "aborted stream | server | closed",
    "aborted stream | tcp listener | accepted from 127.0.0.1:$PORT",
    "cancelled stream | client | established",
    "cancelled stream | client | stream cancelled: enough",
    "cancelled stream | client | response conformance.upload \"cancelled after 1048576 bytes\"",
    "cancelled stream | client | closed",
    "cancelled stream | server | established",
    "cancelled stream | server | request conformance.upload \"cancelled stream\" with a stream",
    "cancelled stream | server | cancelled after 1048576 bytes",
    "cancelled stream | server | stream aborted: cancelled by the receiver: enough",
    "cancelled stream | server | closed",
    "cancelled stream | tcp listener | accepted from 127.0.0.1:$PORT",
    "garbage peer | garbage sender | exit code 0, stdout \"hung up\\n\"",
    "garbage peer | server | closed: not a zferry peer",
    "garbage peer | tcp listener | accepted from 127.0.0.1:$PORT",
    "connect failures | absent unix socket | closed: no such file",
    "connect failures | closed port | closed: connection refused",
    "connect failures | listener to close | listening on 127.0.0.1:$PORT",
    "connect failures | malformed address | closed: invalid address",
    "processes | empty command | exit code 127, cannot start: empty command, 0 bytes through its pipes",
    "processes | environment | exit code 0, stdout \"from the node\", 13 bytes through its pipes",
    "processes | failing | exit code 3, stdout \"out\", stderr \"err msg\", 3 bytes through its pipes",
    "processes | large output | exit code 0, stdout 1000000 bytes, 1000000 bytes through its pipes",
    "processes | missing program | exit code 127, cannot start: no such file, 0 bytes through its pipes",
    "processes | no pipes but stderr | exit code 0",
    "kill | sleeper | signal 9",
    "kill | timer | fired",
    "timers | timer | fired before the far deadline: true",
    "timers | timer | fired again",
    "timers | timer | timeouts before the deadline: 0",
    "timers | trigger 1 | exit code 0",
    "timers | trigger 2 | exit code 0",
    "shutdown | node | shutdown",
    "shutdown | signaller | exit code 0",
    "exit: Ok(0)",
];
