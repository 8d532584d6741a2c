//! Replication end to end: both binaries (and each against the other) as real
//! processes, real sockets on loopback, real pools of the machine's ZFS.
//!
//! Every test makes its own pools and destroys them at the end. Without a usable
//! ZFS, each test prints why and passes without checking anything: see
//! `ZfsEnv::detect` (CI starts zfs-fuse first, so there it always runs).

use std::path::PathBuf;
use std::time::Duration;

use zferry_tests::zfs::{must, run};
use zferry_tests::{binaries, Binary, Child, Flavor, Pool, ZfsEnv};

const T: Duration = Duration::from_secs(120);

/// zfs-fuse is not built for many concurrent pool operations on two cores:
/// the scenarios run one at a time, whatever the test harness's threads.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn env() -> Option<(ZfsEnv, std::sync::MutexGuard<'static, ()>)> {
    let serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match ZfsEnv::detect() {
        Ok(e) => Some((e, serial)),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// Pairs of (sender side, receiver side) binaries: each alone and both mixes.
fn pairs() -> Vec<(Binary, Binary)> {
    let mut v = Vec::new();
    for a in binaries() {
        for b in binaries() {
            v.push((a, b));
        }
    }
    v
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("zferry-e2e-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PRUNING: &str = "    pruning:\n      keep_sender:\n        - type: last_n\n          count: 100\n      keep_receiver:\n        - type: last_n\n          count: 100\n";

fn filters(rules: &[(&str, bool)]) -> String {
    rules.iter().map(|(p, b)| format!("      \"{p}\": {b}\n")).collect()
}

/// A push job and a sink job in one config, talking in-process.
fn local_config(
    dir: &Dir,
    name: &str,
    rules: &[(&str, bool)],
    root_fs: &str,
    identity: &str,
) -> String {
    let text = format!(
        "global:\n  control:\n    sockpath: {sock}\njobs:\n  - name: push\n    type: push\n    connect:\n      type: local\n      listener_name: l\n      client_identity: {identity}\n    filesystems:\n{f}    snapshotting:\n      type: manual\n{PRUNING}  - name: sink\n    type: sink\n    serve:\n      type: local\n      listener_name: l\n    root_fs: {root_fs}\n",
        sock = dir.path(&format!("{name}.sock")),
        f = filters(rules),
    );
    dir.file(&format!("{name}.yml"), &text)
}

fn sink_config(dir: &Dir, root_fs: &str, clients: &[(&str, &str)]) -> String {
    let clients: String =
        clients.iter().map(|(ip, id)| format!("        \"{ip}\": \"{id}\"\n")).collect();
    let text = format!(
        "global:\n  control:\n    sockpath: {sock}\njobs:\n  - name: sink\n    type: sink\n    serve:\n      type: tcp\n      listen: \"127.0.0.1:0\"\n      clients:\n{clients}    root_fs: {root_fs}\n",
        sock = dir.path("sink.sock"),
    );
    dir.file("sink.yml", &text)
}

fn push_config(dir: &Dir, address: &str, rules: &[(&str, bool)]) -> String {
    let text = format!(
        "global:\n  control:\n    sockpath: {sock}\njobs:\n  - name: push\n    type: push\n    connect:\n      type: tcp\n      address: \"{address}\"\n    filesystems:\n{f}    snapshotting:\n      type: manual\n{PRUNING}",
        sock = dir.path("push.sock"),
        f = filters(rules),
    );
    dir.file("push.yml", &text)
}

/// A source job `src` on loopback serving `fs` to the client "puller".
fn source_config(dir: &Dir, fs: &str) -> String {
    let text = format!(
        "global:\n  control:\n    sockpath: {}\njobs:\n  - name: src\n    type: source\n    serve:\n      type: tcp\n      listen: \"127.0.0.1:0\"\n      clients:\n        \"127.0.0.1\": \"puller\"\n    filesystems:\n      \"{fs}\": true\n    snapshotting:\n      type: manual\n",
        dir.path("source.sock"),
    );
    dir.file("source.yml", &text)
}

/// A pull job `pull` from `addr` into `root_fs`; `extra` is YAML for the job
/// (indented four spaces), and must include its `pruning`.
fn pull_config(dir: &Dir, addr: &str, root_fs: &str, extra: &str) -> String {
    let text = format!(
        "global:\n  control:\n    sockpath: {}\njobs:\n  - name: pull\n    type: pull\n    connect:\n      type: tcp\n      address: \"{addr}\"\n    root_fs: {root_fs}\n    interval: manual\n{extra}",
        dir.path("pull.sock"),
    );
    dir.file("pull.yml", &text)
}

const INITIAL_ALL: &str = "    conflict_resolution:\n      initial_replication: all\n";

/// Starts a daemon and returns it with the address its job listens on.
fn daemon(bin: Binary, config: &str, label: &str) -> (Child, String) {
    let mut cmd = bin.command();
    cmd.args(["daemon", "--config", config]);
    let mut child = Child::spawn(label, cmd);
    let line = child.wait_for_line("listening on ", T);
    let addr = line.rsplit("listening on ").next().unwrap().trim().to_owned();
    (child, addr)
}

/// `zferry run`; returns its exit code and every line it printed (stdout lines
/// are the per-filesystem summary, stderr the log).
fn run_job(bin: Binary, config: &str, job: &str) -> (i32, String) {
    let out = bin.command().args(["run", "--config", config, job]).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("[{} run {job}] exit {:?}\n{text}", bin.name(), out.status.code());
    (out.status.code().unwrap_or(-1), text)
}

/// Source pool with `data` (two snapshots) and `data/child` (one).
fn source(env: &ZfsEnv) -> Pool {
    let src = env.pool("s");
    src.create("data/child");
    src.write("data", "a", b"first");
    src.snapshot("data", "s1");
    src.write("data", "b", b"second");
    src.snapshot("data", "s2");
    src.snapshot("data/child", "c1");
    src
}

fn same_guids(src: &Pool, src_fs: &str, dst: &Pool, dst_fs: &str) {
    let snaps = dst.snapshots(dst_fs);
    assert!(!snaps.is_empty(), "{dst_fs} has no snapshots");
    for s in &snaps {
        assert_eq!(src.guid(src_fs, s), dst.guid(dst_fs, s), "{s} matches by guid");
    }
}

#[test]
fn local_push_full_then_incrementals_in_both_binaries() {
    let Some((env, _serial)) = env() else { return };
    for bin in binaries() {
        let src = source(&env);
        let dst = env.pool("d");
        dst.create("sink");
        let dir = Dir::new(&format!("local-{}", bin.name()));
        let config =
            local_config(&dir, "c", &[(&src.path("data<"), true)], &dst.path("sink"), "laptop");

        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0, "{out}");
        let target = format!("sink/laptop/{}", src.path("data"));
        assert_eq!(dst.snapshots(&target), ["s2"], "most_recent: only the newest at first");
        same_guids(&src, "data", &dst, &target);
        assert_eq!(dst.get(&target, "readonly"), "on", "replicas are read-only");
        assert_eq!(
            dst.get("sink/laptop", "zferry:placeholder"),
            "on",
            "the client root is a placeholder"
        );

        for s in ["s3", "s4", "s5"] {
            src.write("data", s, s.as_bytes());
            src.snapshot("data", s);
        }
        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0, "{out}");
        // One step per snapshot where the ZFS can resume (each step stays
        // resumable), one `-I` package where it cannot (zfs-fuse).
        let steps = if env.flavor == Flavor::ZfsFuse { "1 step(s)" } else { "3 step(s)" };
        assert!(out.contains(steps), "{steps}: {out}");
        assert_eq!(dst.snapshots(&target), ["s2", "s3", "s4", "s5"]);
        same_guids(&src, "data", &dst, &target);

        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0);
        assert!(out.contains("up to date"), "{out}");
    }
}

#[test]
fn tcp_push_to_a_sink_daemon_across_binaries() {
    let Some((env, _serial)) = env() else { return };
    for (sender, receiver) in pairs() {
        let src = source(&env);
        let dst = env.pool("d");
        dst.create("sink");
        let dir = Dir::new(&format!("tcp-{}-{}", sender.name(), receiver.name()));
        let sink = sink_config(&dir, &dst.path("sink"), &[("127.0.0.1", "laptop")]);
        let (mut sinkd, addr) = daemon(receiver, &sink, &format!("{}-sink", receiver.name()));
        let push = push_config(&dir, &addr, &[(&src.path("data<"), true)]);
        let (code, out) = run_job(sender, &push, "push");
        assert_eq!(code, 0, "{sender:?} -> {receiver:?}: {out}");
        let target = format!("sink/laptop/{}", src.path("data"));
        same_guids(&src, "data", &dst, &target);
        same_guids(&src, "data/child", &dst, &format!("{target}/child"));

        // The daemon reports what it did.
        let status = sender.command().args(["status", "--config", &sink]).output().unwrap();
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(status.contains("sink (sink)") && status.contains("bytes received"), "{status}");
        sinkd.signal("TERM");
        assert_eq!(sinkd.wait(T).code(), Some(0));
    }
}

#[test]
fn placeholder_parent_and_exclusions() {
    let Some((env, _serial)) = env() else { return };
    for bin in binaries() {
        let src = env.pool("s");
        src.create("a/b/c");
        src.create("a/b/tmp");
        for fs in ["a", "a/b", "a/b/c", "a/b/tmp"] {
            src.snapshot(fs, "s1");
        }
        let dst = env.pool("d");
        dst.create("r");
        let dir = Dir::new(&format!("ph-{}", bin.name()));
        // `a` itself is not replicated, `a/b` and below are, except `tmp`.
        let rules = [(src.path("a/b<"), true), (src.path("a/b/tmp"), false)];
        let rules: Vec<(&str, bool)> = rules.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let config = local_config(&dir, "c", &rules, &dst.path("r"), "h");
        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0, "{out}");
        let base = format!("r/h/{}", src.name);
        assert_eq!(
            dst.get(&format!("{base}/a"), "zferry:placeholder"),
            "on",
            "unreplicated parent is a placeholder"
        );
        assert!(dst.snapshots(&format!("{base}/a")).is_empty(), "a placeholder holds no data");
        same_guids(&src, "a/b", &dst, &format!("{base}/a/b"));
        same_guids(&src, "a/b/c", &dst, &format!("{base}/a/b/c"));
        assert!(!dst.exists(&format!("{base}/a/b/tmp")), "excluded filesystem not replicated");
        assert!(!out.contains("tmp"), "excluded filesystem not even planned: {out}");
    }
}

#[test]
fn diverged_receiver_is_an_error_and_nothing_is_destroyed() {
    let Some((env, _serial)) = env() else { return };
    for bin in binaries() {
        let src = source(&env);
        let dst = env.pool("d");
        dst.create("sink");
        let dir = Dir::new(&format!("div-{}", bin.name()));
        let config = local_config(&dir, "c", &[(&src.path("data<"), true)], &dst.path("sink"), "x");
        assert_eq!(run_job(bin, &config, "push").0, 0);
        let target = format!("sink/x/{}", src.path("data"));
        // The receiver grows its own snapshot; the sender moves on.
        zferry_tests::zfs::must("zfs", &["set", "readonly=off", &dst.path(&target)]);
        dst.snapshot(&target, "local-change");
        src.snapshot("data", "s3");
        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("diverged")
                || out.contains("Diverged")
                || out.contains("after the common"),
            "{out}"
        );
        assert!(
            out.contains("local-change"),
            "the message names the receiver's extra snapshot: {out}"
        );
        assert_eq!(
            dst.snapshots(&target),
            ["s2", "local-change"],
            "nothing destroyed, nothing received"
        );
        // The sibling is unaffected.
        same_guids(&src, "data/child", &dst, &format!("{target}/child"));
    }
}

#[test]
fn no_common_ancestor_is_an_error_and_nothing_is_destroyed() {
    let Some((env, _serial)) = env() else { return };
    for bin in binaries() {
        let src = source(&env);
        let dst = env.pool("d");
        // The receiver already has an unrelated filesystem where the replica goes.
        let target = format!("sink/x/{}", src.path("data"));
        dst.create(&target);
        dst.snapshot(&target, "s2");
        let dir = Dir::new(&format!("nca-{}", bin.name()));
        let config = local_config(&dir, "c", &[(&src.path("data"), true)], &dst.path("sink"), "x");
        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 1, "{out}");
        assert!(out.to_lowercase().contains("common"), "{out}");
        assert_eq!(
            dst.snapshots(&target),
            ["s2"],
            "the unrelated snapshot of the same name survives"
        );
        assert_ne!(dst.guid(&target, "s2"), src.guid("data", "s2"));
    }
}

#[test]
fn a_failing_child_stops_its_subtree_and_no_other() {
    let Some((env, _serial)) = env() else { return };
    let bin = Binary::Mio;
    let src = env.pool("s");
    src.create("p/bad/below");
    src.create("p/good");
    for fs in ["p", "p/bad", "p/bad/below", "p/good"] {
        src.snapshot(fs, "s1");
    }
    let dst = env.pool("d");
    dst.create("sink");
    let base = format!("sink/x/{}", src.name);
    let dir = Dir::new("child");
    let config = local_config(&dir, "c", &[(&src.path("p<"), true)], &dst.path("sink"), "x");
    assert_eq!(run_job(bin, &config, "push").0, 0);
    // `p/bad` grows a snapshot of its own on the receiver: it must fail.
    zferry_tests::zfs::must("zfs", &["set", "readonly=off", &dst.path(&format!("{base}/p/bad"))]);
    dst.snapshot(&format!("{base}/p/bad"), "other");
    for fs in ["p", "p/bad", "p/bad/below", "p/good"] {
        src.snapshot(fs, "s2");
    }
    let (code, out) = run_job(bin, &config, "push");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{}: failed", src.path("p/bad"))), "{out}");
    assert!(out.contains(&format!("{}: skipped", src.path("p/bad/below"))), "{out}");
    same_guids(&src, "p", &dst, &format!("{base}/p"));
    same_guids(&src, "p/good", &dst, &format!("{base}/p/good"));
    assert_eq!(
        dst.snapshots(&format!("{base}/p/bad/below")),
        ["s1"],
        "the skipped child did not move"
    );
    assert_eq!(dst.snapshots(&format!("{base}/p/bad")), ["s1", "other"], "nothing destroyed");
}

#[test]
fn clients_stay_in_their_own_subtree_and_strangers_are_refused() {
    let Some((env, _serial)) = env() else { return };
    let src = source(&env);
    let dst = env.pool("d");
    dst.create("sink");
    let dir = Dir::new("clients");
    for (bin, who) in [(Binary::Mio, "alice"), (Binary::Smol, "bob")] {
        let config = local_config(&dir, who, &[(&src.path("data"), true)], &dst.path("sink"), who);
        assert_eq!(run_job(bin, &config, "push").0, 0);
    }
    // Each client's replica lives under its own identity, and each is complete.
    same_guids(&src, "data", &dst, &format!("sink/alice/{}", src.path("data")));
    same_guids(&src, "data", &dst, &format!("sink/bob/{}", src.path("data")));

    // A TCP client that is not in the clients map gets nothing.
    let sink = sink_config(&dir, &dst.path("sink"), &[("10.9.9.9", "elsewhere")]);
    let (mut sinkd, addr) = daemon(Binary::Smol, &sink, "sink");
    let push = push_config(&dir, &addr, &[(&src.path("data"), true)]);
    let (code, out) = run_job(Binary::Mio, &push, "push");
    assert_eq!(code, 1, "{out}");
    sinkd.wait_for_line("refused connection from 127.0.0.1", T);
    assert!(!dst.exists("sink/127.0.0.1"), "nothing created for a stranger");
    sinkd.kill();
}

#[test]
fn missing_root_fs_is_a_clear_error_and_is_not_created() {
    let Some((env, _serial)) = env() else { return };
    let src = source(&env);
    let dst = env.pool("d");
    let dir = Dir::new("noroot");
    let config = local_config(&dir, "c", &[(&src.path("data"), true)], &dst.path("nope"), "x");
    let (code, out) = run_job(Binary::Smol, &config, "push");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not exist") && out.contains("never creates it"), "{out}");
    assert!(!dst.exists("nope"), "zferry never creates the receive root");
}

#[test]
fn daemon_survives_a_corrupt_peer_and_still_receives() {
    use std::io::{Read, Write};
    let Some((env, _serial)) = env() else { return };
    for bin in binaries() {
        let src = source(&env);
        let dst = env.pool("d");
        dst.create("sink");
        let dir = Dir::new(&format!("corrupt-{}", bin.name()));
        let sink = sink_config(&dir, &dst.path("sink"), &[("127.0.0.1", "laptop")]);
        let (mut sinkd, addr) = daemon(bin, &sink, "sink");
        let mut raw = std::net::TcpStream::connect(&addr).unwrap();
        raw.set_read_timeout(Some(T)).unwrap();
        let garbage: Vec<u8> =
            (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let _ = raw.write_all(&garbage);
        let _ = raw.read_to_end(&mut Vec::new());
        sinkd.wait_for_line("not a zferry endpoint", T);
        let push = push_config(&dir, &addr, &[(&src.path("data"), true)]);
        assert_eq!(run_job(bin, &push, "push").0, 0);
        same_guids(&src, "data", &dst, &format!("sink/laptop/{}", src.path("data")));
        sinkd.kill();
    }
}

#[test]
fn sink_killed_mid_transfer_then_restarted_converges() {
    let Some((env, _serial)) = env() else { return };
    let src = env.pool("s");
    src.create("big");
    // Incompressible, so the transfer takes a moment.
    let data: Vec<u8> =
        (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    src.write("big", "blob", &data);
    src.snapshot("big", "s1");
    let dst = env.pool("d");
    dst.create("sink");
    let dir = Dir::new("kill");
    let sink = sink_config(&dir, &dst.path("sink"), &[("127.0.0.1", "laptop")]);
    let (mut sinkd, addr) = daemon(Binary::Mio, &sink, "sink");
    let push = push_config(&dir, &addr, &[(&src.path("big"), true)]);
    let mut pusher = Binary::Smol.command();
    pusher.args(["run", "--config", &push, "push"]);
    let mut pusher = Child::spawn("push", pusher);
    sinkd.wait_for_line("receiving", T);
    std::thread::sleep(Duration::from_millis(150));
    sinkd.signal("KILL");
    let _ = sinkd.wait(T);
    // Whether the kill cut the stream or came just after it, the pusher ends
    // (it must not hang on a dead peer) and the receiver holds no partial
    // snapshot: either the whole s1 or nothing.
    let status = pusher.wait(T);
    let target = format!("sink/laptop/{}", src.path("big"));
    let got = dst.snapshots(&target);
    assert!(got.is_empty() || got == ["s1"], "{got:?}");
    if status.success() {
        eprintln!(
            "note: the transfer finished before the kill; the restart checks convergence only"
        );
    }

    let (mut sinkd, addr) = daemon(Binary::Smol, &sink, "sink2");
    let push = push_config(&dir, &addr, &[(&src.path("big"), true)]);
    let (code, out) = run_job(Binary::Mio, &push, "push");
    assert_eq!(code, 0, "{out}");
    same_guids(&src, "big", &dst, &target);
    sinkd.kill();
    // Leftover zfs processes of the killed daemon must not hold the pool.
    let _ = run("sync", &[]);
}

#[test]
fn pull_from_a_source_daemon() {
    let Some((env, _serial)) = env() else { return };
    for (sender, receiver) in pairs() {
        let src = source(&env);
        let dst = env.pool("d");
        dst.create("pulled");
        let dir = Dir::new(&format!("pull-{}-{}", sender.name(), receiver.name()));
        let source_cfg = source_config(&dir, &src.path("data<"));
        let (mut sourced, addr) = daemon(sender, &source_cfg, "source");
        let pull_cfg =
            pull_config(&dir, &addr, &dst.path("pulled"), &format!("{INITIAL_ALL}{PRUNING}"));
        let (code, out) = run_job(receiver, &pull_cfg, "pull");
        assert_eq!(code, 0, "{out}");
        let target = format!("pulled/{}", src.path("data"));
        assert_eq!(dst.snapshots(&target), ["s1", "s2"], "initial_replication: all");
        same_guids(&src, "data", &dst, &target);
        same_guids(&src, "data/child", &dst, &format!("{target}/child"));
        sourced.signal("TERM");
        assert_eq!(sourced.wait(T).code(), Some(0));
    }
}

#[test]
fn test_filesystems_shows_what_the_filter_selects() {
    let Some((env, _serial)) = env() else { return };
    let src = env.pool("s");
    src.create("a/tmp");
    src.create("b");
    let dir = Dir::new("testfs");
    let rules = [(src.path("a<"), true), (src.path("a/tmp"), false)];
    let rules: Vec<(&str, bool)> = rules.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    let config = local_config(&dir, "c", &rules, "nowhere/x", "h");
    for bin in binaries() {
        let out = bin
            .command()
            .args(["test", "filesystems", "--config", &config, "push"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let expect = [
            (src.path("a"), "replicate"),
            (src.path("a/tmp"), "exclude"),
            (src.path("b"), "exclude"),
            (src.path(""), "exclude"),
        ];
        for (fs, verdict) in expect {
            assert!(
                text.lines().any(|l| l == format!("{fs}\t{verdict}")),
                "{bin:?}: {fs} {verdict}:\n{text}"
            );
        }
    }
}

/// Incompressible bytes, so a stream's size follows the data's.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Issue 8: a daemon's memory during a transfer stays under this, whatever the size.
const MEMORY_CEILING_KIB: u64 = 64 * 1024;

/// A stream larger than the memory ceiling passes through a push daemon and a sink
/// daemon (each binary on each side) without either holding more than the ceiling:
/// the credit window, not the stream, bounds what is buffered.
#[test]
fn daemons_stay_under_the_memory_ceiling_whatever_the_stream_size() {
    let Some((env, _serial)) = env() else { return };
    let size = 100 << 20;
    for (sender, receiver) in [(Binary::Mio, Binary::Smol), (Binary::Smol, Binary::Mio)] {
        let src = env.pool("s");
        src.create("big");
        src.write("big", "blob", &noise(size, 7));
        src.snapshot("big", "s1");
        let dst = env.pool("d");
        dst.create("sink");
        let dir = Dir::new(&format!("memory-{}", sender.name()));
        let sink = sink_config(&dir, &dst.path("sink"), &[("127.0.0.1", "laptop")]);
        let (mut sinkd, addr) = daemon(receiver, &sink, "sink");
        let push = push_config(&dir, &addr, &[(&src.path("big"), true)]);
        let mut cmd = sender.command();
        cmd.args(["daemon", "--config", &push]);
        let mut pushd = Child::spawn("push", cmd);
        // The control socket appears once the daemon runs; until then, retry.
        let deadline = std::time::Instant::now() + T;
        while !sender
            .command()
            .args(["signal", "wakeup", "--config", &push, "push"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(std::time::Instant::now() < deadline, "push daemon never took a wakeup");
            std::thread::sleep(Duration::from_millis(100));
        }
        pushd.wait_for_line("replication cycle done", T);
        let target = format!("sink/laptop/{}", src.path("big"));
        same_guids(&src, "big", &dst, &target);
        // The stream's size, as the sink counted it (the replica's `referenced` would
        // be its compressed size on OpenZFS); it must outgrow the ceiling, or the
        // test would prove nothing.
        let status = receiver.command().args(["status", "--config", &sink]).output().unwrap();
        let status = String::from_utf8_lossy(&status.stdout);
        let bytes: u64 = status
            .split(" bytes received")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no byte count in the sink's status: {status}"));
        assert!(bytes > MEMORY_CEILING_KIB * 1024, "only {bytes} bytes received: {status}");
        let (sent, received) = (pushd.peak_rss_kib(), sinkd.peak_rss_kib());
        eprintln!(
            "{} MiB stream: peak RSS push ({}) {} MiB, sink ({}) {} MiB",
            bytes >> 20,
            sender.name(),
            sent / 1024,
            receiver.name(),
            received / 1024
        );
        assert!(sent < MEMORY_CEILING_KIB, "push daemon peaked at {sent} KiB");
        assert!(received < MEMORY_CEILING_KIB, "sink daemon peaked at {received} KiB");
        pushd.signal("TERM");
        sinkd.signal("TERM");
        assert_eq!(pushd.wait(T).code(), Some(0));
        assert_eq!(sinkd.wait(T).code(), Some(0));
    }
}

/// Leaves a partial receive of `send_args` in `target`, as a transfer cut after
/// `cut` bytes does: `zfs receive -s` keeps what arrived and a resume token.
fn interrupted_receive(send_args: &str, target: &str, cut: usize) -> String {
    let cmd = format!("zfs send {send_args} | head -c {cut} | zfs receive -u -s {target}");
    let r = run("sh", &["-c", &cmd]);
    assert!(!r.ok, "the cut stream must fail to receive: {cmd}");
    let token = must("zfs", &["get", "-H", "-o", "value", "receive_resume_token", target]);
    let token = token.trim().to_owned();
    assert!(token.len() > 1, "{target} holds a resume token after `{cmd}`: {}", r.stderr);
    token
}

/// A receive cut short (full, then incremental) is resumed from its token by
/// the next run, push and pull, and ends with the sender's snapshots by guid.
#[test]
fn interrupted_receives_are_resumed_push_and_pull() {
    let Some((env, _serial)) = env() else { return };
    if lacks(&env, "resumable receive (`zfs receive -s`)") {
        return;
    }
    let src = env.pool("s");
    src.create("big");
    src.write("big", "one", &noise(8 << 20, 1));
    src.snapshot("big", "s1");
    src.write("big", "two", &noise(8 << 20, 2));
    src.snapshot("big", "s2");
    let dst = env.pool("d");
    dst.create("sink");
    dst.create("pulled");
    let dir = Dir::new("resume");
    let big = src.path("big");

    // Push, in one process (local transport), mio binary.
    let push_target = format!("sink/laptop/{big}");
    dst.create(&format!("sink/laptop/{}", src.name));
    interrupted_receive(&format!("{big}@s1"), &dst.path(&push_target), 3 << 20);
    let config = local_config(&dir, "push", &[(&big, true)], &dst.path("sink"), "laptop");
    let (code, out) = run_job(Binary::Mio, &config, "push");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partial receive of @s1: resuming it"), "{out}");
    assert_eq!(dst.snapshots(&push_target), ["s1", "s2"]);
    same_guids(&src, "big", &dst, &push_target);
    assert_eq!(dst.get(&push_target, "readonly"), "on", "a resumed full receive is a replica");

    src.write("big", "three", &noise(8 << 20, 3));
    src.snapshot("big", "s3");
    interrupted_receive(&format!("-i @s2 {big}@s3"), &dst.path(&push_target), 3 << 20);
    let (code, out) = run_job(Binary::Mio, &config, "push");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partial receive of @s3: resuming it"), "{out}");
    assert_eq!(dst.snapshots(&push_target), ["s1", "s2", "s3"]);
    same_guids(&src, "big", &dst, &push_target);
    assert_eq!(dst.get(&push_target, "receive_resume_token"), "-");

    // Pull over TCP from a source daemon, smol binary both sides.
    let pull_target = format!("pulled/{big}");
    dst.create(&format!("pulled/{}", src.name));
    interrupted_receive(&format!("{big}@s1"), &dst.path(&pull_target), 3 << 20);
    let source_cfg = source_config(&dir, &big);
    let (mut sourced, addr) = daemon(Binary::Smol, &source_cfg, "source");
    let pull_cfg = pull_config(&dir, &addr, &dst.path("pulled"), PRUNING);
    let (code, out) = run_job(Binary::Smol, &pull_cfg, "pull");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partial receive of @s1: resuming it"), "{out}");
    assert_eq!(dst.snapshots(&pull_target), ["s1", "s2", "s3"]);
    same_guids(&src, "big", &dst, &pull_target);
    assert!(
        sourced.wait_for_line("resuming", T).contains(&big),
        "the source read the token and resumed"
    );
    sourced.signal("TERM");
    assert_eq!(sourced.wait(T).code(), Some(0));
}

/// A push job and a sink job in one config, with these keep rules (YAML list
/// items, indented for the `keep_*` keys) and `initial_replication: all`.
fn pruning_config(
    dir: &Dir,
    fs: &str,
    root_fs: &str,
    keep_sender: &str,
    keep_receiver: &str,
) -> String {
    let text = format!(
        "global:\n  control:\n    sockpath: {sock}\njobs:\n  - name: push\n    type: push\n    connect:\n      type: local\n      listener_name: l\n      client_identity: box\n    filesystems:\n      \"{fs}\": true\n    snapshotting:\n      type: manual\n    conflict_resolution:\n      initial_replication: all\n    pruning:\n      keep_sender:\n{keep_sender}      keep_receiver:\n{keep_receiver}  - name: sink\n    type: sink\n    serve:\n      type: local\n      listener_name: l\n    root_fs: {root_fs}\n",
        sock = dir.path("prune.sock"),
    );
    dir.file("prune.yml", &text)
}

fn last_n(n: u32) -> String {
    format!("        - type: last_n\n          count: {n}\n")
}

/// Pruning after replication shapes both sides; the incremental base survives
/// a sender `last_n 1` while the receiver lags; a dry run destroys nothing.
#[test]
fn push_prunes_both_sides_and_keeps_the_incremental_base() {
    let Some((env, _serial)) = env() else { return };
    for bin in binaries() {
        let src = env.pool("s");
        src.create("data");
        for i in 1..=4 {
            src.write("data", "f", format!("v{i}").as_bytes());
            src.snapshot("data", &format!("s{i}"));
        }
        let dst = env.pool("d");
        dst.create("sink");
        let dir = Dir::new(&format!("prune-{}", bin.name()));
        let data = src.path("data");
        let target = format!("sink/box/{data}");
        let config = pruning_config(&dir, &data, &dst.path("sink"), &last_n(1), &last_n(2));

        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0, "{out}");
        assert_eq!(src.snapshots("data"), ["s4"], "sender: last_n 1");
        assert_eq!(dst.snapshots(&target), ["s3", "s4"], "receiver: last_n 2");
        assert!(
            out.contains("pruned 3 on the sender (@s1, @s2, @s3), 2 on the receiver (@s1, @s2)"),
            "{out}"
        );

        // The receiver lags behind two new snapshots: prune without replicating.
        src.snapshot("data", "s5");
        src.snapshot("data", "s6");
        let out = bin
            .command()
            .args(["prune", "--dry-run", "--config", &config, "push"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("would destroy 1 on the sender, 0 on the receiver"), "{text}");
        assert!(
            text.lines().any(|l| l.contains("@s4") && l.contains("incremental base")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.contains("@s5") && l.trim_end().ends_with("destroy")),
            "{text}"
        );
        assert_eq!(src.snapshots("data"), ["s4", "s5", "s6"], "a dry run destroys nothing");

        let out = bin.command().args(["prune", "--config", &config, "push"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(src.snapshots("data"), ["s4", "s6"], "s4 is the receiver's base: it stays");
        assert_eq!(dst.snapshots(&target), ["s3", "s4"]);

        // And the next replication still finds its base.
        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0, "{out}");
        assert_eq!(dst.snapshots(&target), ["s4", "s6"]);
        assert_eq!(src.snapshots("data"), ["s6"]);
        assert_eq!(src.guid("data", "s6"), dst.guid(&target, "s6"));
    }
}

/// A pull job prunes its own (receiving) side locally and the source's side
/// through the source, which destroys only in filesystems it serves.
#[test]
fn pull_prunes_the_source_through_the_source() {
    let Some((env, _serial)) = env() else { return };
    let src = env.pool("s");
    src.create("data");
    for i in 1..=3 {
        src.write("data", "f", format!("v{i}").as_bytes());
        src.snapshot("data", &format!("s{i}"));
    }
    let dst = env.pool("d");
    dst.create("pulled");
    let dir = Dir::new("pull-prune");
    let data = src.path("data");
    let source_cfg = source_config(&dir, &data);
    let (mut sourced, addr) = daemon(Binary::Mio, &source_cfg, "source");
    let pull_rules = format!(
        "{INITIAL_ALL}    pruning:\n      keep_sender:\n{}      keep_receiver:\n{}",
        last_n(1),
        last_n(2)
    );
    let pull_cfg = pull_config(&dir, &addr, &dst.path("pulled"), &pull_rules);
    let (code, out) = run_job(Binary::Smol, &pull_cfg, "pull");
    assert_eq!(code, 0, "{out}");
    let target = format!("pulled/{data}");
    assert_eq!(src.snapshots("data"), ["s3"]);
    assert_eq!(dst.snapshots(&target), ["s2", "s3"]);
    sourced.wait_for_line("prunes", T);
    sourced.signal("TERM");
    assert_eq!(sourced.wait(T).code(), Some(0));
}

/// Writes an executable shell script into `dir`.
fn script(dir: &Dir, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.file(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A push daemon snapshots every second, replicates each round to its sink and
/// prunes both sides to the configured shape; a snapshot without the job's
/// prefix is never a pruning candidate; hooks see zrepl's environment.
#[test]
fn push_daemon_snapshots_replicates_and_prunes_on_schedule() {
    let Some((env, _serial)) = env() else { return };
    let src = env.pool("s");
    src.create("data");
    src.snapshot("data", "by_hand");
    let dst = env.pool("d");
    dst.create("sink");
    let dir = Dir::new("periodic");
    let data = src.path("data");
    let hook_log = dir.path("hooks.log");
    let hook = script(
        &dir,
        "hook.sh",
        &format!("echo \"$ZREPL_HOOKTYPE $ZREPL_FS $ZREPL_SNAPNAME $ZREPL_DRYRUN\" >> {hook_log}"),
    );
    let text = format!(
        "global:\n  control:\n    sockpath: {sock}\njobs:\n  - name: push\n    type: push\n    connect:\n      type: local\n      listener_name: l\n      client_identity: box\n    filesystems:\n      \"{data}\": true\n    snapshotting:\n      type: periodic\n      prefix: zf_\n      interval: 1s\n      hooks:\n        - type: command\n          path: {hook}\n          timeout: 10s\n    conflict_resolution:\n      initial_replication: all\n    pruning:\n      keep_sender:\n{sender}      keep_receiver:\n{receiver}  - name: sink\n    type: sink\n    serve:\n      type: local\n      listener_name: l\n    root_fs: {root}\n",
        sock = dir.path("periodic.sock"),
        sender = last_n(2),
        receiver = last_n(3),
        root = dst.path("sink"),
    );
    let config = dir.file("periodic.yml", &text);
    for bin in binaries() {
        let mut cmd = bin.command();
        cmd.args(["daemon", "--config", &config]);
        let mut daemon = Child::spawn("periodic", cmd);
        // Four rounds, each replicated and pruned.
        daemon.wait_for_lines("replication cycle done", 4, T);
        daemon.signal("TERM");
        assert_eq!(daemon.wait(T).code(), Some(0), "clean shutdown");
        // Rounds that came during a cycle may still wait for their replication
        // (and their pruning, on a slow host): one more run settles the shape.
        // Names have a one-second resolution: let the run's name differ.
        std::thread::sleep(Duration::from_millis(1100));
        let (code, out) = run_job(bin, &config, "push");
        assert_eq!(code, 0, "{out}");

        let target = format!("sink/box/{data}");
        let sent = src.snapshots("data");
        let received = dst.snapshots(&target);
        let ours: Vec<&String> = sent.iter().filter(|s| s.starts_with("zf_")).collect();
        assert!(sent.contains(&"by_hand".to_owned()), "not a candidate, never pruned: {sent:?}");
        assert_eq!(ours.len(), 2, "sender keeps last_n 2: {sent:?}");
        let ours_received: Vec<&String> =
            received.iter().filter(|s| s.starts_with("zf_")).collect();
        assert_eq!(ours_received.len(), 3, "receiver keeps last_n 3 of its own: {received:?}");
        assert_eq!(received[0], "by_hand", "replicated (initial: all), never a candidate");
        let newest = received.last().unwrap();
        assert_eq!(src.guid("data", newest), dst.guid(&target, newest));
        let hooks = std::fs::read_to_string(&hook_log).unwrap();
        let first = hooks.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("pre_snapshot {data} zf_")) && first.ends_with(" false"),
            "{hooks}"
        );
        assert!(hooks.lines().any(|l| l.starts_with("post_snapshot ")), "{hooks}");
        std::fs::remove_file(&hook_log).unwrap();
    }
}

/// A snap job run once: a fatal pre hook stops only its filesystem's
/// snapshot; the run says so and exits 1; the other filesystem is snapshotted
/// and pruned to its keep rule.
#[test]
fn snap_job_hooks_veto_and_local_pruning() {
    let Some((env, _serial)) = env() else { return };
    let src = env.pool("s");
    src.create("a");
    src.create("b");
    let dir = Dir::new("snapjob");
    let b = src.path("b");
    let veto = script(
        &dir,
        "veto.sh",
        &format!("[ \"$ZREPL_FS\" != \"{b}\" ] || {{ echo no b >&2; exit 3; }}"),
    );
    let text = format!(
        "global:\n  control:\n    sockpath: {sock}\njobs:\n  - name: snap\n    type: snap\n    filesystems:\n      \"{pool}<\": true\n      \"{pool}\": false\n    snapshotting:\n      type: periodic\n      prefix: zs_\n      interval: 1h\n      hooks:\n        - type: command\n          path: {veto}\n          timeout: 10s\n          err_is_fatal: true\n    pruning:\n      keep:\n{keep}",
        sock = dir.path("snap.sock"),
        pool = src.name,
        keep = last_n(1),
    );
    let config = dir.file("snap.yml", &text);
    let mut taken = Vec::new();
    for bin in binaries() {
        let (code, out) = run_job(bin, &config, "snap");
        assert_eq!(code, 1, "a vetoed snapshot is a failure: {out}");
        assert!(out.contains("no b"), "the hook's words are in the log: {out}");
        assert_eq!(src.snapshots("b"), Vec::<String>::new());
        let now = src.snapshots("a");
        assert_eq!(now.len(), 1, "last_n 1: {out}");
        assert!(now[0].starts_with("zs_") && !taken.contains(&now[0]), "a new one: {now:?}");
        taken.push(now[0].clone());
        // Names have a one-second resolution: the next run's must differ.
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(taken.len(), 2);
}

/// True, after saying so, where the ZFS is zfs-fuse, which lacks `what`.
fn lacks(env: &ZfsEnv, what: &str) -> bool {
    let fuse = env.flavor == Flavor::ZfsFuse;
    if fuse {
        eprintln!("SKIPPED: zfs-fuse has no {what}");
    }
    fuse
}

/// The name of the cursor bookmark that `owner` (a push job, or a source job and
/// its client) keeps at `data@snap`.
fn cursor_mark(src: &Pool, snap: &str, owner: &str) -> String {
    let guid: u64 = src.guid("data", snap).parse().unwrap();
    format!("zferry_cursor_G{guid:016x}_J_{owner}")
}

/// On a ZFS with bookmarks, a push keeps a replication cursor on the sender:
/// when the snapshot the receiver stands on is destroyed by hand, the next
/// incremental starts from the cursor, and the cursor moves on.
#[test]
fn the_replication_cursor_survives_its_snapshot() {
    let Some((env, _serial)) = env() else { return };
    if lacks(&env, "bookmarks") {
        return;
    }
    let src = env.pool("s");
    src.create("data");
    src.write("data", "f", b"one");
    src.snapshot("data", "s1");
    src.write("data", "f", b"two");
    src.snapshot("data", "s2");
    let dst = env.pool("d");
    dst.create("sink");
    let dir = Dir::new("cursor");
    let data = src.path("data");
    let config = local_config(&dir, "cursor", &[(&data, true)], &dst.path("sink"), "box");
    let bookmarks = || {
        let out = must("zfs", &["list", "-H", "-o", "name", "-t", "bookmark", "-r", &data]);
        out.lines().map(|l| l.rsplit('#').next().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let cursor_of = |snap: &str| cursor_mark(&src, snap, "push");

    let (code, out) = run_job(Binary::Mio, &config, "push");
    assert_eq!(code, 0, "{out}");
    assert_eq!(bookmarks(), [cursor_of("s2")]);

    // Someone destroys the receiver's base on the sender.
    let s2 = cursor_of("s2");
    must("zfs", &["destroy", &format!("{data}@s2")]);
    src.write("data", "f", b"three");
    src.snapshot("data", "s3");
    let s3 = cursor_of("s3");
    let (code, out) = run_job(Binary::Smol, &config, "push");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("-i #{s2} @s3")), "from the cursor: {out}");
    let target = format!("sink/box/{data}");
    assert_eq!(dst.snapshots(&target), ["s2", "s3"]);
    assert_eq!(src.guid("data", "s3"), dst.guid(&target, "s3"));
    assert_eq!(bookmarks(), [s3], "the cursor moved, the old one is gone");
}

/// The same for pull: the source keeps one cursor per source job and client.
#[test]
fn the_source_keeps_a_cursor_for_its_puller() {
    let Some((env, _serial)) = env() else { return };
    if lacks(&env, "bookmarks") {
        return;
    }
    let src = env.pool("s");
    src.create("data");
    src.snapshot("data", "s1");
    let dst = env.pool("d");
    dst.create("pulled");
    let dir = Dir::new("pull-cursor");
    let data = src.path("data");
    let source_cfg = source_config(&dir, &data);
    let (mut sourced, addr) = daemon(Binary::Smol, &source_cfg, "source");
    let pull_cfg = pull_config(&dir, &addr, &dst.path("pulled"), PRUNING);
    let cursor_of = |snap: &str| format!("{data}#{}", cursor_mark(&src, snap, "src_puller"));
    let bookmarks = || must("zfs", &["list", "-H", "-o", "name", "-t", "bookmark", "-r", &data]);

    let (code, out) = run_job(Binary::Mio, &pull_cfg, "pull");
    assert_eq!(code, 0, "{out}");
    assert_eq!(bookmarks().trim(), cursor_of("s1"));
    let s1 = cursor_of("s1");
    must("zfs", &["destroy", &format!("{data}@s1")]);
    src.snapshot("data", "s2");
    let (code, out) = run_job(Binary::Mio, &pull_cfg, "pull");
    assert_eq!(code, 0, "{out}");
    let s1_mark = s1.rsplit('#').next().unwrap();
    assert!(out.contains(&format!("-i #{s1_mark} @s2")), "from the cursor: {out}");
    assert_eq!(bookmarks().trim(), cursor_of("s2"));
    let target = format!("pulled/{data}");
    assert_eq!(dst.snapshots(&target), ["s1", "s2"]);
    sourced.signal("TERM");
    assert_eq!(sourced.wait(T).code(), Some(0));
}
