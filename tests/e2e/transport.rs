//! Both binaries, and each against the other, over real TCP on loopback: the probe
//! streams bytes through real sessions and verifies them end to end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use zferry_tests::{binaries, Binary, Child};

const T: Duration = Duration::from_secs(60);

fn serve(bin: Binary, once: bool) -> (Child, String) {
    serve_into(bin, once, &[])
}

/// A probe server; with a command, each stream is piped into a run of it.
fn serve_into(bin: Binary, once: bool, command: &[&str]) -> (Child, String) {
    let mut cmd = bin.command();
    cmd.args(["probe", "serve", "--listen", "127.0.0.1:0"]);
    if once {
        cmd.arg("--once");
    }
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    let mut server = Child::spawn(&format!("{}-server", bin.name()), cmd);
    let line = server.wait_for_line("listening on ", T);
    let addr = line.rsplit("listening on ").next().unwrap().trim().to_owned();
    (server, addr)
}

fn send(bin: Binary, addr: &str, bytes: u64) -> Child {
    let mut cmd = bin.command();
    cmd.args(["probe", "send", "--connect", addr, "--bytes", &bytes.to_string()]);
    Child::spawn(&format!("{}-client", bin.name()), cmd)
}

fn send_from(bin: Binary, addr: &str, command: &[&str]) -> Child {
    send_from_splicing(bin, addr, command, true)
}

/// [`send_from`]; without `splice`, the sender reads the command's output instead
/// of splicing it into the socket (`ZFERRY_NO_SPLICE`).
fn send_from_splicing(bin: Binary, addr: &str, command: &[&str], splice: bool) -> Child {
    let mut cmd = bin.command();
    if !splice {
        cmd.env("ZFERRY_NO_SPLICE", "1");
    }
    cmd.args(["probe", "send", "--connect", addr, "--"]).args(command);
    Child::spawn(&format!("{}-client", bin.name()), cmd)
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zferry-transport-{}-{name}", std::process::id()))
}

#[test]
fn streamed_request_between_every_pair_of_binaries() {
    for server_bin in binaries() {
        for client_bin in binaries() {
            let (mut server, addr) = serve(server_bin, true);
            let bytes = 40 * 1024 * 1024 + 12_345;
            let mut client = send(client_bin, &addr, bytes);
            let status = client.wait(T);
            assert!(
                status.success(),
                "{client_bin:?} -> {server_bin:?}: client failed: {:?}",
                client.log()
            );
            client.wait_for_line(&format!("probe verified: {bytes} bytes"), T);
            let status = server.wait(T);
            assert!(status.success(), "{server_bin:?} server failed: {:?}", server.log());
            server.wait_for_line(&format!("probe received {bytes} bytes"), T);
        }
    }
}

#[test]
fn server_survives_a_corrupt_peer() {
    for bin in binaries() {
        let (mut server, addr) = serve(bin, false);
        // Random bytes on the port: the server must drop that connection with a
        // reason, and go on serving.
        let mut x: u32 = 0x1234_5678;
        let garbage: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut raw = TcpStream::connect(&addr).unwrap();
        raw.set_read_timeout(Some(T)).unwrap();
        let _ = raw.write_all(&garbage);
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink); // Returns once the server closes.
        server.wait_for_line("not a zferry endpoint", T);

        let mut client = send(bin, &addr, 1_000_000);
        assert!(client.wait(T).success(), "{bin:?}: probe after corrupt peer: {:?}", client.log());
        server.kill();
    }
}

#[test]
fn unreachable_server_is_a_clear_error() {
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for bin in binaries() {
        let mut client = send(bin, &format!("127.0.0.1:{port}"), 10);
        let status = client.wait(T);
        assert_eq!(status.code(), Some(1), "{bin:?}");
        client.wait_for_line("cannot connect to tcp://127.0.0.1:", T);
    }
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for bin in binaries() {
        for sig in ["TERM", "INT"] {
            let (mut server, _) = serve(bin, false);
            server.signal(sig);
            let status = server.wait(T);
            assert_eq!(status.code(), Some(0), "{bin:?} on SIG{sig}");
            server.wait_for_line("shutting down", T);
        }
    }
}

/// Every pair, with the sender splicing the command's output into the socket (the
/// default on Linux) and reading it instead.
#[test]
fn process_output_is_piped_into_a_remote_process() {
    let input = temp_path("in");
    let data: Vec<u8> =
        (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    for splice in [true, false] {
        for server_bin in binaries() {
            for client_bin in binaries() {
                let pair = format!("{client_bin:?} -> {server_bin:?} (splice: {splice})");
                let output = temp_path(&format!("out-{}-{}", server_bin.name(), client_bin.name()));
                let sink = format!("cat > {}", output.display());
                let (mut server, addr) = serve_into(server_bin, true, &["sh", "-c", &sink]);
                let source = ["cat", input.to_str().unwrap()];
                let mut client = send_from_splicing(client_bin, &addr, &source, splice);
                assert!(client.wait(T).success(), "{pair}: {:?}", client.log());
                assert!(server.wait(T).success(), "{pair}: {:?}", server.log());
                let got = std::fs::read(&output).unwrap();
                assert!(got == data, "{pair}: {} bytes arrived, {} sent", got.len(), data.len());
                let _ = std::fs::remove_file(&output);
            }
        }
    }
    let _ = std::fs::remove_file(&input);
}

#[test]
fn a_failing_command_on_either_side_fails_the_probe_with_its_message() {
    for bin in binaries() {
        let (mut server, addr) = serve_into(
            bin,
            false,
            &["sh", "-c", "head -c 100 >/dev/null; echo disk full >&2; exit 3"],
        );
        let mut client = send_from(bin, &addr, &["head", "-c", "10000000", "/dev/zero"]);
        assert_eq!(client.wait(T).code(), Some(1), "{bin:?}");
        client.wait_for_line("the command failed (exit code 3): disk full", T);
        server.kill();

        let (mut server, addr) = serve_into(bin, false, &["sh", "-c", "cat >/dev/null"]);
        let mut client =
            send_from(bin, &addr, &["sh", "-c", "head -c 100000 /dev/zero; echo oops >&2; exit 4"]);
        assert_eq!(client.wait(T).code(), Some(1), "{bin:?}");
        client.wait_for_line("the command failed (exit code 4): oops", T);
        server.wait_for_line("aborted", T);
        server.kill();
    }
}

/// A host name is looked up off the event loop, then connected like an address;
/// a name that does not resolve is a clear error, not a hang.
#[test]
fn connecting_by_host_name() {
    for bin in binaries() {
        let (mut server, addr) = serve(bin, true);
        let port = addr.rsplit(':').next().unwrap();
        let mut client = send(bin, &format!("localhost:{port}"), 1000);
        assert!(client.wait(T).success(), "{bin:?}: {:?}", client.log());
        client.wait_for_line("probe verified: 1000 bytes", T);
        assert!(server.wait(T).success());

        let mut client = send(bin, "no-such-host.invalid:9", 10);
        assert_eq!(client.wait(T).code(), Some(1), "{bin:?}");
        client.wait_for_line("no-such-host.invalid", T);
    }
}
