//! Data-plane benchmark (DESIGN.md "Tests, in tiers" item 5): zferry's full data path
//! (frames, RPC session with credit, loopback TCP, deframing) beside a plain loopback
//! TCP relay measured in the same run on the same machine, so the figures are ratios
//! rather than numbers that only mean something on one laptop.
//!
//!     cargo build --release --workspace --bins
//!     cargo bench -p zferry-tests --bench dataplane   # ZFERRY_BENCH_GIB=4, _RUNS=5 by default
//!
//! It never fails on speed, only when a run fails (non-zero exit, wrong byte count).
//! Each case has the same process structure: a source (`head -c N /dev/zero`) feeding a
//! sending relay, loopback TCP, a receiving relay feeding a sink (`cat > /dev/null`).
//! The baseline relays read in zferry's frame size, once with the OS's default pipes and
//! once with zferry's pipe capacity; ratios are to the faster of the two, so that a
//! buffer size which helps zferry but hurts a plain copy cannot flatter zferry.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

/// zferry's data frame payload (core `DEFAULT_DATA_PAYLOAD`): the baseline reads in the
/// same unit so the comparison is about the protocol, not buffer sizes.
const BUF: usize = 256 * 1024;
/// Runs per case unless ZFERRY_BENCH_RUNS says otherwise; medians need a few.
const RUNS: usize = 5;
const GIB: f64 = (1u64 << 30) as f64;
const SINK: &str = "cat > /dev/null";
/// GNU time writes the wrapped process's peak RSS (KiB) here; wait4's rusage folds in
/// the children it reaped, but `head`/`cat`/`sh` are a few MiB at most.
const TIME: &str = "/usr/bin/time";
/// Issue 8's bound on a daemon's memory during a transfer.
const MEMORY_CEILING_MIB: u64 = 64;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["relay-recv", pipes] => relay_recv(pipes == "sized"),
        ["relay-send", pipes, addr, bytes] => relay_send(pipes == "sized", addr, bytes),
        // `cargo test --all-targets` runs bench binaries without `--bench`: moving
        // dozens of GiB there would only slow the test suite down.
        _ if !args.iter().any(|a| a == "--bench") => {
            println!("dataplane: measures only under `cargo bench`; skipped");
            Ok(())
        }
        _ => bench(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Blocking copy in `BUF` reads. Not `io::copy`: on Linux it splices between pipes and
/// sockets, which would make the baseline a kernel shortcut instead of a relay.
fn relay(from: &mut impl Read, to: &mut impl Write) -> Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf).map_err(|e| format!("relay read: {e}"))?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n]).map_err(|e| format!("relay write: {e}"))?;
        total += n as u64;
    }
}

/// Baseline receiving relay: socket -> the sink's stdin, then the byte count back to
/// the sender, as zferry's probe server confirms what it piped.
fn relay_recv(sized_pipes: bool) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("relay listening on {addr}");
    let (mut sock, _) = listener.accept().map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut sink = Command::new("sh")
        .args(["-c", SINK])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn sink: {e}"))?;
    if let Some(stdin) = sink.stdin.as_ref().filter(|_| sized_pipes) {
        zferry_cli::process::size_pipe(stdin);
    }
    let n = relay(&mut sock, &mut sink.stdin.take().ok_or("sink stdin")?)?;
    let status = sink.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("sink failed: {status}"));
    }
    sock.write_all(&n.to_be_bytes()).map_err(|e| e.to_string())?;
    eprintln!("relay piped {n} bytes");
    Ok(())
}

/// Baseline sending relay: the source's stdout -> socket; exits once the receiver has
/// confirmed the count, so its wall clock covers the whole path like `probe send`'s.
fn relay_send(sized_pipes: bool, addr: &str, bytes: &str) -> Result<()> {
    let mut source = Command::new("head")
        .args(["-c", bytes, "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn source: {e}"))?;
    if let Some(stdout) = source.stdout.as_ref().filter(|_| sized_pipes) {
        zferry_cli::process::size_pipe(stdout);
    }
    let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let n = relay(&mut source.stdout.take().ok_or("source stdout")?, &mut sock)?;
    sock.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let status = source.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("source failed: {status}"));
    }
    let mut confirmed = [0u8; 8];
    sock.read_exact(&mut confirmed).map_err(|e| format!("no confirmation: {e}"))?;
    let confirmed = u64::from_be_bytes(confirmed);
    if confirmed != n {
        return Err(format!("sent {n} bytes, receiver piped {confirmed}"));
    }
    eprintln!("relay verified: {n} bytes");
    Ok(())
}

/// One pairing: how to start its receiving and its sending side, and the log lines
/// that prove the byte count arrived (`{addr}`, `{bytes}` and `{n}` are replaced).
#[derive(Debug)]
struct Case {
    label: String,
    server: Vec<String>,
    client: Vec<String>,
    server_proof: &'static str,
    client_proof: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    cpu_secs: f64,
    rss_kib: Option<(u64, u64)>,
}

fn bench() -> Result<()> {
    let gib: f64 = match std::env::var("ZFERRY_BENCH_GIB") {
        Ok(v) => v.parse().ok().filter(|g: &f64| *g > 0.0).ok_or("bad ZFERRY_BENCH_GIB")?,
        Err(_) => 4.0,
    };
    let bytes = (gib * GIB) as u64;
    let dir = zferry_tests::release_bin_dir()?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_string_lossy().into_owned();
    let timed = Path::new(TIME).is_file();

    let baseline = |pipes: &str| Case {
        label: format!("baseline, {pipes} pipes"),
        server: vec![me.clone(), "relay-recv".into(), pipes.into()],
        client: vec![
            me.clone(),
            "relay-send".into(),
            pipes.into(),
            "{addr}".into(),
            "{bytes}".into(),
        ],
        server_proof: "relay piped {n} bytes",
        client_proof: "relay verified: {n} bytes",
    };
    let mut cases = vec![baseline("default"), baseline("sized")];
    let drivers = [("mio", "zferry"), ("smol", "zferry-smol")];
    // Same-driver pairs first: they are the headline; the mixed pairs show that a
    // gap belongs to one side rather than to the protocol; the last two show what
    // splicing the sender's stdout into the socket is worth.
    let pairs =
        [(0, 0, true), (1, 1, true), (0, 1, true), (1, 0, true), (0, 0, false), (1, 1, false)];
    for (s, r, splice) in pairs {
        let bin = |i: usize| dir.join(drivers[i].1).to_string_lossy().into_owned();
        let sender_env: &[&str] = if splice { &[] } else { &["env", "ZFERRY_NO_SPLICE=1"] };
        cases.push(Case {
            label: format!(
                "zferry {} -> {}{}",
                drivers[s].0,
                drivers[r].0,
                if splice { "" } else { ", no splice" }
            ),
            server: [&bin(r), "probe", "serve", "--listen", "127.0.0.1:0", "--once", "--"]
                .into_iter()
                .chain(["sh", "-c", SINK])
                .map(String::from)
                .collect(),
            client: sender_env
                .iter()
                .copied()
                .chain([&bin(s), "probe", "send", "--connect", "{addr}", "--", "head", "-c"])
                .map(String::from)
                .chain(["{bytes}".into(), "/dev/zero".into()])
                .collect(),
            server_proof: "probe piped {n} bytes",
            client_proof: "probe verified: {n} bytes",
        });
    }

    // Round-robin over the cases, so that a slow patch of the machine (another build,
    // thermal throttling) hits every case rather than skewing one ratio.
    let runs = match std::env::var("ZFERRY_BENCH_RUNS") {
        Ok(v) => v.parse().ok().filter(|r: &usize| *r > 0).ok_or("bad ZFERRY_BENCH_RUNS")?,
        Err(_) => RUNS,
    };
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cases.len()];
    for run in 1..=runs {
        for (case, samples) in cases.iter().zip(&mut samples) {
            eprintln!("dataplane: run {run}/{runs}: {}", case.label);
            samples.push(measure(case, bytes, timed)?);
        }
    }
    for s in &mut samples {
        s.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    }
    let median = |s: &[Sample]| s[s.len() / 2];

    println!();
    println!("data plane, {gib} GiB /dev/zero -> cat, loopback TCP, {runs} runs each");
    println!("(binaries: {})", dir.display());
    // Against the faster baseline, median to median and best to best.
    let base_median = samples[..2].iter().map(|s| median(s).secs).fold(f64::MAX, f64::min);
    let base_best = samples[..2].iter().map(|s| s[0].secs).fold(f64::MAX, f64::min);
    println!(
        "{:<32} {:>11} {:>6} {:>11} {:>6} {:>10}  peak RSS",
        "", "median", "ratio", "best", "ratio", "CPU-s/GiB"
    );
    for (case, s) in cases.iter().zip(&samples) {
        let (m, b) = (median(s), s[0]);
        let rss =
            match s.iter().filter_map(|x| x.rss_kib).reduce(|a, b| (a.0.max(b.0), a.1.max(b.1))) {
                Some((send, recv)) => format!("send {} MiB, recv {} MiB", send / 1024, recv / 1024),
                None => "- (needs /usr/bin/time, Debian package `time`)".into(),
            };
        println!(
            "{:<32} {:>5.2} GiB/s {:>5.2}x {:>5.2} GiB/s {:>5.2}x {:>10.2}  {rss}",
            case.label,
            gib / m.secs,
            base_median / m.secs,
            gib / b.secs,
            base_best / b.secs,
            m.cpu_secs / gib,
        );
    }
    println!("{:<32} not measured: zferry has no TLS yet", "zferry over TLS");
    println!(
        "ratio: to the faster baseline; CPU: user+sys of both relays and their source/sink \
         in the median run"
    );

    // The daemon's memory must not grow with the stream: the same-driver pairs once
    // more with a sixteenth of the bytes, peak RSS beside the full run's.
    if timed {
        println!();
        println!(
            "peak RSS of each zferry process (ceiling {MEMORY_CEILING_MIB} MiB whatever the size):"
        );
        let small = bytes / 16;
        for i in [2, 3] {
            let full = samples[i]
                .iter()
                .filter_map(|x| x.rss_kib)
                .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
                .ok_or("missing sample")?;
            let part = measure(&cases[i], small, timed)?.rss_kib.ok_or("missing sample")?;
            let peak = full.0.max(full.1).max(part.0).max(part.1) / 1024;
            println!(
                "{:<32} {:.2} GiB: send {} MiB, recv {} MiB; {gib} GiB: send {} MiB, recv {} MiB  {}",
                cases[i].label,
                small as f64 / GIB,
                part.0 / 1024,
                part.1 / 1024,
                full.0 / 1024,
                full.1 / 1024,
                if peak < MEMORY_CEILING_MIB { "under the ceiling" } else { "OVER THE CEILING" },
            );
        }
    }
    Ok(())
}

/// Spawns `argv` with stderr piped, under GNU time when available (`-o` keeps its
/// report out of the log we parse).
fn spawn(argv: &[String], time_file: Option<&Path>) -> Result<Child> {
    let mut cmd = match time_file {
        Some(f) => {
            let mut c = Command::new(TIME);
            c.args(["-f", "%M", "-o"]).arg(f).args(argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().map_err(|e| format!("spawn {}: {e}", argv[0]))
}

fn measure(case: &Case, bytes: u64, timed: bool) -> Result<Sample> {
    let tmp = std::env::temp_dir();
    let files = timed.then(|| {
        let f = |side| tmp.join(format!("zferry-bench-{}-{side}", std::process::id()));
        (f("send"), f("recv"))
    });
    let cpu_before = children_cpu_secs()?;

    let mut server = spawn(&case.server, files.as_ref().map(|f| f.1.as_path()))?;
    let mut server_log = BufReader::new(server.stderr.take().ok_or("server stderr")?);
    let mut seen = Vec::new();
    let addr = loop {
        let mut line = String::new();
        if server_log.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            let status = server.wait().map_err(|e| e.to_string())?;
            return Err(format!(
                "{}: server exited ({status}) before listening: {seen:?}",
                case.label
            ));
        }
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.trim().to_owned();
        }
        seen.push(line);
    };
    // Keep draining the server's log so it can never block on a full pipe.
    let server_rest = std::thread::spawn(move || {
        server_log.lines().map_while(std::io::Result::ok).collect::<Vec<_>>()
    });

    let client_argv: Vec<String> = case
        .client
        .iter()
        .map(|a| a.replace("{addr}", &addr).replace("{bytes}", &bytes.to_string()))
        .collect();
    let start = Instant::now();
    let client = spawn(&client_argv, files.as_ref().map(|f| f.0.as_path()))?;
    let client_out = client.wait_with_output().map_err(|e| e.to_string());
    let secs = start.elapsed().as_secs_f64();
    let client_out = match client_out {
        Ok(out) if out.status.success() => out,
        other => {
            // The server would wait for a sender forever; its time still gets reaped.
            let _ = server.kill();
            let _ = server.wait();
            return Err(format!("{}: client failed: {other:?}", case.label));
        }
    };
    let server_status = server.wait().map_err(|e| e.to_string())?;
    let server_lines = server_rest.join().map_err(|_| "server log reader panicked")?;
    // Only now are both sides reaped, so their CPU time is in our children's total.
    let cpu_secs = children_cpu_secs()? - cpu_before;

    let client_log = String::from_utf8_lossy(&client_out.stderr);
    let n = bytes.to_string();
    let server_ok = server_lines.iter().any(|l| l.contains(&case.server_proof.replace("{n}", &n)));
    let client_ok = client_log.contains(&case.client_proof.replace("{n}", &n));
    if !server_status.success() || !server_ok || !client_ok {
        return Err(format!(
            "{}: byte count not confirmed (server {server_status}): server log {server_lines:?}, \
             client log {client_log:?}",
            case.label
        ));
    }
    let rss_kib = match files {
        Some((send, recv)) => Some((peak_rss_kib(&send)?, peak_rss_kib(&recv)?)),
        None => None,
    };
    Ok(Sample { secs, cpu_secs, rss_kib })
}

/// GNU time's `%M` is the last line of its `-o` file (a non-zero exit adds a line above).
fn peak_rss_kib(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let _ = std::fs::remove_file(file);
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("{}: unexpected contents {text:?}", file.display()))
}

/// cutime + cstime of this process (fields 16 and 17 of /proc/self/stat): the CPU of
/// every child we waited for, including their own reaped children (head, cat).
fn children_cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    // The command name (field 2) may contain spaces; fields resume after its ')'.
    let rest = stat.rsplit_once(')').ok_or("odd /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).ok_or("odd /proc/self/stat".into())
    };
    Ok((tick(16)? + tick(17)?) / clk_tck())
}

/// `getconf CLK_TCK`; 100 on every Linux we run on, which is also the fallback.
fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
