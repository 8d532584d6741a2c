//! Whole-file tests: configurations shaped like zrepl's shipped samples, and one
//! case per error path.

use super::*;

const H: Duration = Duration::from_secs(3600);

fn ok(text: &str) -> Config {
    match Config::from_yaml(text) {
        Ok(c) => c,
        Err(e) => panic!("config refused: {e}\n{text}"),
    }
}

/// Continuous backup of a server: push over tcp on one host, sink on the other.
const PUSH_TO_SINK: &str = r#"
jobs:
  - name: prod_to_backups
    type: push
    connect:
      type: tcp
      address: "backups.example.com:8888"
    filesystems: {
      "zroot/var/db<": true,
      "zroot/usr/home<": true,
      "zroot/usr/home/paranoid": false
    }
    snapshotting:
      type: periodic
      prefix: zrepl_
      interval: 10m
    pruning:
      keep_sender:
        - type: not_replicated
        - type: last_n
          count: 10
      keep_receiver:
        - type: grid
          grid: 1x1h(keep=all) | 24x1h | 30x1d | 6x30d
          regex: "^zrepl_"
  - name: sink
    type: sink
    root_fs: "storage/zrepl/sink"
    serve:
      type: tcp
      listen: ":8888"
      clients: {
        "192.168.122.123": "prod",
        "10.23.42.0/24": "client-*"
      }
"#;

/// Pull mode: a source on the production host, a pull job on the backup host.
const SOURCE_AND_PULL: &str = r#"
global:
  logging:
    - type: stdout
      level: info
      format: human
jobs:
- name: pull_prod
  type: pull
  connect:
    type: tcp
    address: "[fd00::1]:8888"
    dial_timeout: 1m30s
  root_fs: "backup/prod"
  interval: 1h
  recv:
    properties:
      override:
        mountpoint: none
        canmount: off
        quota: 10
      inherit:
        - atime
    placeholder:
      encryption: inherit
  pruning:
    keep_sender:
      - type: not_replicated
        keep_snapshot_at_cursor: false
      - type: last_n
        count: 10
        regex: "^zrepl_"
    keep_receiver:
      - type: grid
        grid: 1x1h(keep=all) | 24x1h | 35x1d | 6x30d
        regex: "^zrepl_"
      - type: regex
        negate: true
        regex: "^zrepl_"
- name: serve_prod
  type: source
  serve:
    type: tcp
    listen: "127.0.0.1:8889"
    listen_freebind: yes
    clients: {
      "fd00::2": "backup-host"
    }
  filesystems: {
    "zroot/var/db<": true
  }
  send:
    encrypted: true
    raw: true
  snapshotting:
    type: cron
    prefix: zrepl_
    cron: "0 3 * * *"
    timestamp_format: iso-8601
"#;

/// Backup to an external disk: snap job on the pool, local push to a local sink
/// whose snapshotting is manual and whose replication is triggered by hand.
const LOCAL_BACKUP: &str = r#"
jobs:
- type: snap
  name: snapjob
  filesystems: {
    "system<": true,
  }
  snapshotting:
    type: periodic
    interval: 15m
    prefix: zrepl_
    timestamp_format: "2006-01-02_15:04"
    timestamp_location: Local
    hooks:
    - type: command
      path: /etc/zrepl/hooks/notify.sh
      timeout: 30s
      err_is_fatal: false
    - type: command
      path: /etc/zrepl/hooks/special.sh
      filesystems: {
        "system/special": true
      }
  pruning:
    keep:
    - type: grid
      grid: 1x1h(keep=all) | 24x1h | 14x1d
      regex: "^zrepl_.*"
    - type: regex
      negate: true
      regex: "^zrepl_.*"

- type: push
  name: push_to_drive
  connect:
    type: local
    listener_name: backuppool_sink
    client_identity: myhostname
  filesystems: {
    "system<": true
  }
  send:
    encrypted: true
  replication:
    protection:
      initial: guarantee_resumability
      incremental: guarantee_incremental
    concurrency:
      steps: 2
      size_estimates: 8
  conflict_resolution:
    initial_replication: all
  snapshotting:
    type: manual
  pruning:
    keep_sender:
    - type: regex
      regex: ".*"
    keep_receiver:
    - type: grid
      grid: 1x1h(keep=all) | 24x1h | 360x1d
      regex: "^zrepl_.*"

- type: sink
  name: backuppool_sink
  root_fs: "backuppool/zrepl/sink"
  serve:
    type: local
    listener_name: backuppool_sink
"#;

/// Fan-out: one source, several pull targets, manual pull interval.
const FAN_OUT_TARGET: &str = r#"
jobs:
- name: source
  type: source
  serve:
    type: tcp
    listen: ":8888"
    clients: {
      "192.168.1.10": "target-a",
      "192.168.1.11": "target-b",
    }
  filesystems: {
    "tank<": true,
  }
  send:
    compressed: true
    large_blocks: true
    embedded_data: true
  snapshotting:
    type: periodic
    prefix: zrepl_
    interval: 1d
"#;

#[test]
fn push_to_sink_sample() {
    let c = ok(PUSH_TO_SINK);
    assert_eq!(c.global.control.sockpath, DEFAULT_CONTROL_SOCKPATH);
    assert_eq!(c.jobs.len(), 2);
    let JobKind::Push(p) = &c.jobs[0].kind else { panic!() };
    assert_eq!(c.jobs[0].name, "prod_to_backups");
    assert_eq!(
        p.connect,
        Connect::Tcp {
            address: "backups.example.com:8888".into(),
            dial_timeout: DEFAULT_TCP_DIAL_TIMEOUT
        }
    );
    assert_eq!(p.filesystems.len(), 3);
    assert!(!p.filesystems["zroot/usr/home/paranoid"]);
    assert_eq!(p.send, SendOptions::default());
    assert_eq!(p.replication, Replication::default());
    assert_eq!(p.conflict_resolution.initial_replication, InitialReplication::MostRecent);
    let Snapshotting::Periodic { prefix, interval, timestamp, hooks } = &p.snapshotting else {
        panic!()
    };
    assert_eq!((prefix.as_str(), *interval), ("zrepl_", Duration::from_secs(600)));
    assert_eq!(*timestamp, TimestampFormatting::default());
    assert!(hooks.is_empty());
    assert_eq!(
        p.pruning.keep_sender,
        vec![
            KeepRule::NotReplicated { keep_snapshot_at_cursor: true },
            KeepRule::LastN { count: 10, regex: None }
        ]
    );
    let KeepRule::Grid { grid, regex } = &p.pruning.keep_receiver[0] else { panic!() };
    assert_eq!(grid.len(), 1 + 24 + 30 + 6);
    assert_eq!(grid[0], GridInterval { length: H, keep: GridKeep::All });
    assert_eq!(regex, "^zrepl_");

    let JobKind::Sink(s) = &c.jobs[1].kind else { panic!() };
    assert_eq!(s.root_fs.to_string(), "storage/zrepl/sink");
    assert_eq!(s.recv, RecvOptions::default());
    let Serve::Tcp { listen, listen_freebind, clients } = &s.serve else { panic!() };
    assert_eq!((listen.as_str(), *listen_freebind), (":8888", false));
    assert_eq!(
        clients.identity_for("192.168.122.123".parse().unwrap(), None).as_deref(),
        Some("prod")
    );
    assert_eq!(
        clients.identity_for("10.23.42.7".parse().unwrap(), None).as_deref(),
        Some("client-10.23.42.7")
    );
}

#[test]
fn source_and_pull_sample() {
    let c = ok(SOURCE_AND_PULL);
    assert_eq!(
        c.global.logging,
        vec![LogOutlet::Stdout(StdoutOutlet {
            level: LogLevel::Info,
            format: LogFormat::Human,
            time: true,
            color: true
        })]
    );
    let JobKind::Pull(p) = &c.job("pull_prod").unwrap().kind else { panic!() };
    assert_eq!(
        p.connect,
        Connect::Tcp { address: "[fd00::1]:8888".into(), dial_timeout: Duration::from_secs(90) }
    );
    assert_eq!(p.interval, PullInterval::Every(H));
    assert_eq!(p.root_fs.to_string(), "backup/prod");
    assert_eq!(p.recv.override_properties["mountpoint"], "none");
    assert_eq!(p.recv.override_properties["canmount"], "off");
    assert_eq!(p.recv.override_properties["quota"], "10");
    assert_eq!(p.recv.inherit_properties, vec!["atime".to_owned()]);
    assert_eq!(p.recv.placeholder_encryption, PlaceholderEncryption::Inherit);
    assert_eq!(
        p.pruning.keep_sender[0],
        KeepRule::NotReplicated { keep_snapshot_at_cursor: false }
    );
    assert_eq!(
        p.pruning.keep_sender[1],
        KeepRule::LastN { count: 10, regex: Some("^zrepl_".into()) }
    );
    assert_eq!(
        p.pruning.keep_receiver[1],
        KeepRule::Regex { regex: "^zrepl_".into(), negate: true }
    );

    let JobKind::Source(s) = &c.job("serve_prod").unwrap().kind else { panic!() };
    let Serve::Tcp { listen_freebind, .. } = &s.serve else { panic!() };
    assert!(*listen_freebind, "YAML 1.1 `yes` is true, as in zrepl");
    assert!(s.send.encrypted && s.send.raw && !s.send.compressed);
    let Snapshotting::Cron { cron, timestamp, .. } = &s.snapshotting else { panic!() };
    assert_eq!(cron.spec, "0 3 * * *");
    assert_eq!(timestamp.format, TimestampFormat::Iso8601);
    assert_eq!(timestamp.location, TimestampLocation::Utc);
}

#[test]
fn local_backup_sample() {
    let c = ok(LOCAL_BACKUP);
    let JobKind::Snap(s) = &c.jobs[0].kind else { panic!() };
    let Snapshotting::Periodic { interval, timestamp, hooks, .. } = &s.snapshotting else {
        panic!()
    };
    assert_eq!(*interval, Duration::from_secs(900));
    assert_eq!(timestamp.format, TimestampFormat::GoLayout("2006-01-02_15:04".into()));
    assert_eq!(timestamp.location, TimestampLocation::Local);
    assert_eq!(
        hooks[0],
        Hook::Command(CommandHook {
            path: "/etc/zrepl/hooks/notify.sh".into(),
            timeout: Duration::from_secs(30),
            err_is_fatal: false,
            filesystems: FilesystemFilter::from([("<".to_owned(), true)]),
        })
    );
    let Hook::Command(h) = &hooks[1];
    assert_eq!(h.timeout, DEFAULT_HOOK_TIMEOUT);
    assert_eq!(h.filesystems, FilesystemFilter::from([("system/special".to_owned(), true)]));
    assert_eq!(s.pruning.len(), 2);

    let JobKind::Push(p) = &c.jobs[1].kind else { panic!() };
    assert_eq!(
        p.connect,
        Connect::Local {
            listener_name: "backuppool_sink".into(),
            client_identity: "myhostname".into(),
            dial_timeout: DEFAULT_LOCAL_DIAL_TIMEOUT
        }
    );
    assert_eq!(p.snapshotting, Snapshotting::Manual);
    assert_eq!(
        p.replication,
        Replication {
            protection_initial: Protection::Resumability,
            protection_incremental: Protection::IncrementalReplication,
            concurrency_steps: 2,
            concurrency_size_estimates: 8,
        }
    );
    assert_eq!(p.conflict_resolution.initial_replication, InitialReplication::All);
    let JobKind::Sink(s) = &c.jobs[2].kind else { panic!() };
    assert_eq!(s.serve, Serve::Local { listener_name: "backuppool_sink".into() });
}

#[test]
fn fan_out_sample() {
    let c = ok(FAN_OUT_TARGET);
    let JobKind::Source(s) = &c.jobs[0].kind else { panic!() };
    assert!(s.send.compressed && s.send.large_blocks && s.send.embedded_data);
    let Snapshotting::Periodic { interval, .. } = &s.snapshotting else { panic!() };
    assert_eq!(*interval, 24 * H);
}

#[test]
fn empty_documents_give_defaults() {
    for text in ["", "\n", "---", "---\n", "# only a comment\n", "jobs: []\n"] {
        let c = ok(text);
        assert!(c.jobs.is_empty());
        assert_eq!(c.global.logging.len(), 1);
        assert_eq!(c.global.control.sockpath, DEFAULT_CONTROL_SOCKPATH);
    }
    let c = ok("global:\n  control:\n    sockpath: /run/zf.sock\n");
    assert_eq!(c.global.control.sockpath, "/run/zf.sock");
}

#[test]
fn pull_interval_manual() {
    let text = SOURCE_AND_PULL.replace("interval: 1h", "interval: manual");
    let JobKind::Pull(p) = &ok(&text).jobs[0].kind else { panic!() };
    assert_eq!(p.interval, PullInterval::Manual);
}

/// A small valid push job to edit in error tests; its sink is `sink`.
fn push_with(extra: &str) -> String {
    format!(
        "jobs:
- name: pusher
  type: push
  connect: {{type: local, listener_name: l, client_identity: me}}
  filesystems: {{'tank<': true}}
  snapshotting: {{type: manual}}
  pruning:
    keep_sender: [{{type: not_replicated}}]
    keep_receiver: [{{type: last_n, count: 3}}]
{extra}- name: sink
  type: sink
  root_fs: pool/sink
  serve: {{type: local, listener_name: l}}
"
    )
}

struct Case {
    name: &'static str,
    text: String,
    kind: ConfigErrorKind,
    needles: &'static [&'static str],
    line: Option<usize>,
    job: Option<&'static str>,
}

fn case(
    name: &'static str,
    text: impl Into<String>,
    kind: ConfigErrorKind,
    needles: &'static [&'static str],
    line: Option<usize>,
    job: Option<&'static str>,
) -> Case {
    Case { name, text: text.into(), kind, needles, line, job }
}

#[test]
fn push_with_is_valid() {
    ok(&push_with(""));
}

#[test]
fn error_paths() {
    use ConfigErrorKind::*;
    let cases = [
        case(
            "unknown key in a job",
            push_with("  compresion: true\n"),
            Invalid,
            &["unknown field `compresion`", "at line 10 column 3"],
            Some(10),
            Some("pusher"),
        ),
        case(
            "unknown key deep inside",
            PUSH_TO_SINK.replace("count: 10", "count: 10\n          kount: 3"),
            Invalid,
            &["jobs[0].pruning.keep_sender[1]", "unknown field `kount`", "line 22"],
            Some(22),
            Some("prod_to_backups"),
        ),
        case(
            "unknown top-level key",
            "jobz: []\n",
            Invalid,
            &["unknown field `jobz`", "line 1"],
            Some(1),
            None,
        ),
        case(
            "unknown global key",
            "global:\n  logging: []\n  colour: true\n",
            Invalid,
            &["global", "unknown field `colour`", "line 3"],
            Some(3),
            None,
        ),
        case(
            "key of another type",
            push_with("  root_fs: pool/x\n"),
            Invalid,
            &["`root_fs` does not belong in a push job"],
            Some(2),
            Some("pusher"),
        ),
        case(
            "tls connect",
            PUSH_TO_SINK.replace("type: tcp\n      address", "type: tls\n      ca: /ca.crt\n      address"),
            Unsupported,
            &["jobs[0].connect", "connect type \"tls\" is not supported yet by zferry", "line 6"],
            Some(6),
            Some("prod_to_backups"),
        ),
        case(
            "ssh+stdinserver connect",
            "jobs:\n- name: p\n  type: pull\n  connect:\n    type: ssh+stdinserver\n    host: h\n    user: root\n    port: 22\n    identity_file: /k\n",
            Unsupported,
            &["connect type \"ssh+stdinserver\" is not supported yet by zferry"],
            Some(5),
            Some("p"),
        ),
        case(
            "stdinserver serve",
            "jobs:\n- name: s\n  type: source\n  serve:\n    type: stdinserver\n    client_identities: [a]\n",
            Unsupported,
            &["serve type \"stdinserver\" is not supported yet by zferry"],
            Some(5),
            Some("s"),
        ),
        case(
            "tls serve",
            "jobs:\n- name: s\n  type: sink\n  serve:\n    type: tls\n    listen: ':1'\n    client_cns: [a]\n",
            Unsupported,
            &["serve type \"tls\""],
            Some(5),
            Some("s"),
        ),
        case(
            "unknown connect type",
            push_with("").replace("type: local, listener_name: l, client", "type: udp, listener_name: l, client"),
            Invalid,
            &["unknown connect type \"udp\""],
            Some(4),
            Some("pusher"),
        ),
        case(
            "send bandwidth limit",
            push_with("  send:\n    bandwidth_limit:\n      max: 23.5 MiB\n"),
            Unsupported,
            &["jobs[0].send.bandwidth_limit", "not supported yet by zferry"],
            Some(12),
            Some("pusher"),
        ),
        case(
            "recv execpipe",
            "jobs:\n- name: s\n  type: sink\n  root_fs: a\n  recv:\n    execpipe: [cat]\n",
            Unsupported,
            &["jobs[0].recv.execpipe: not supported yet by zferry"],
            Some(6),
            Some("s"),
        ),
        case(
            "syslog outlet",
            "global:\n  logging:\n    - type: syslog\n      level: info\n      format: human\n",
            Unsupported,
            &["logging outlet type \"syslog\" is not supported yet"],
            Some(3),
            None,
        ),
        case(
            "monitoring",
            "global:\n  monitoring:\n    - type: prometheus\n      listen: ':9811'\n",
            Unsupported,
            &["global.monitoring: not supported yet by zferry"],
            Some(3),
            None,
        ),
        case(
            "stdinserver sockdir",
            "global:\n  serve:\n    stdinserver:\n      sockdir: /var/run/zrepl/stdinserver\n",
            Unsupported,
            &["global.serve.stdinserver: not supported yet"],
            Some(4),
            None,
        ),
        case(
            "include",
            "include:\n  - jobs.d\n",
            Unsupported,
            &["include: not supported yet"],
            Some(2),
            None,
        ),
        case(
            "postgres hook",
            PUSH_TO_SINK.replace("interval: 10m", "interval: 10m\n      hooks:\n        - type: postgres-checkpoint\n          dsn: x\n          filesystems: {'a': true}"),
            Unsupported,
            &["hook type \"postgres-checkpoint\" is not supported yet by zferry"],
            Some(18),
            Some("prod_to_backups"),
        ),
        case(
            "named time zone",
            PUSH_TO_SINK.replace("interval: 10m", "interval: 10m\n      timestamp_location: Europe/Berlin"),
            Unsupported,
            &["timestamp_location \"Europe/Berlin\" is not supported yet"],
            Some(17),
            Some("prod_to_backups"),
        ),
        case(
            "combined interval",
            PUSH_TO_SINK.replace("interval: 10m", "interval: 1h30m"),
            Invalid,
            &["jobs[0].snapshotting.interval", "cannot parse duration \"1h30m\"", "line 16"],
            Some(16),
            Some("prod_to_backups"),
        ),
        case(
            "zero interval",
            PUSH_TO_SINK.replace("interval: 10m", "interval: 0s"),
            Invalid,
            &["must be positive"],
            Some(16),
            Some("prod_to_backups"),
        ),
        case(
            "interval without unit",
            SOURCE_AND_PULL.replace("interval: 1h", "interval: 60"),
            Invalid,
            &["jobs[0].interval", "missing time unit"],
            Some(15),
            Some("pull_prod"),
        ),
        case(
            "negative dial timeout",
            SOURCE_AND_PULL.replace("dial_timeout: 1m30s", "dial_timeout: -1s"),
            Invalid,
            &["jobs[0].connect.dial_timeout", "must not be negative"],
            Some(13),
            Some("pull_prod"),
        ),
        case(
            "day unit in Go timeout",
            SOURCE_AND_PULL.replace("dial_timeout: 1m30s", "dial_timeout: 1d"),
            Invalid,
            &["unknown unit \"d\""],
            Some(13),
            Some("pull_prod"),
        ),
        case(
            "bad grid",
            PUSH_TO_SINK.replace("| 30x1d |", "| 30x1y |"),
            Invalid,
            &["jobs[0].pruning.keep_receiver[0].grid", "grid interval 3 of 4", "\"30x1y\""],
            Some(24),
            Some("prod_to_backups"),
        ),
        case(
            "grid without regex",
            PUSH_TO_SINK.replace("          regex: \"^zrepl_\"\n", ""),
            Invalid,
            &["a grid keep rule requires `regex`"],
            Some(23),
            Some("prod_to_backups"),
        ),
        case(
            "last_n zero",
            PUSH_TO_SINK.replace("count: 10", "count: 0"),
            Invalid,
            &["must specify positive number as 'keep last count', got 0"],
            Some(20),
            Some("prod_to_backups"),
        ),
        case(
            "bad cron",
            SOURCE_AND_PULL.replace("cron: \"0 3 * * *\"", "cron: \"0 3 * *\""),
            Invalid,
            &["jobs[1].snapshotting.cron", "4 fields"],
            Some(58),
            Some("serve_prod"),
        ),
        case(
            "push without keep_receiver",
            push_with("").replace("    keep_receiver: [{type: last_n, count: 3}]\n", ""),
            Invalid,
            &["jobs[0].pruning:", "requires `keep_receiver`"],
            Some(8),
            Some("pusher"),
        ),
        case(
            "snap with keep_sender",
            "jobs:\n- name: s\n  type: snap\n  filesystems: {'<': true}\n  snapshotting: {type: manual}\n  pruning:\n    keep_sender: []\n    keep_receiver: []\n",
            Invalid,
            &["has `keep`, not keep_sender"],
            Some(2),
            Some("s"),
        ),
        case(
            "missing required key",
            "jobs:\n- name: s\n  type: sink\n  serve: {type: local, listener_name: x}\n",
            Invalid,
            &["a sink job requires `root_fs`"],
            Some(2),
            Some("s"),
        ),
        case(
            "missing type",
            "jobs:\n- name: s\n",
            Invalid,
            &["requires `type`"],
            Some(2),
            Some("s"),
        ),
        case(
            "empty job name",
            "jobs:\n- name: ''\n  type: sink\n",
            Invalid,
            &["job name must not be empty"],
            Some(2),
            None,
        ),
        case(
            "internal job name",
            "jobs:\n- name: _internal\n  type: sink\n",
            Invalid,
            &["must not start with '_'"],
            Some(2),
            Some("_internal"),
        ),
        case(
            "unsafe job name",
            "jobs:\n- name: 'a/b'\n  type: sink\n",
            Invalid,
            &["contains '/'"],
            Some(2),
            Some("a/b"),
        ),
        case(
            "bad root_fs",
            "jobs:\n- name: s\n  type: sink\n  root_fs: 'pool//x'\n",
            Invalid,
            &["jobs[0].root_fs", "not a valid dataset path"],
            Some(4),
            Some("s"),
        ),
        case(
            "bad client identity",
            PUSH_TO_SINK.replace("\"prod\"", "\"pr@d\""),
            Invalid,
            &["jobs[1].serve.clients", "\"pr@d\""],
            Some(32),
            Some("sink"),
        ),
        case(
            "subnet without wildcard",
            PUSH_TO_SINK.replace("\"client-*\"", "\"client\""),
            Invalid,
            &["exactly one '*'"],
            Some(32),
            Some("sink"),
        ),
        case(
            "bad listen address",
            PUSH_TO_SINK.replace("listen: \":8888\"", "listen: \"8888\""),
            Invalid,
            &["listen \"8888\" is not host:port"],
            Some(30),
            Some("sink"),
        ),
        case(
            "empty filesystem pattern",
            push_with("").replace("{'tank<': true}", "{'': true}"),
            Invalid,
            &["jobs[0].filesystems", "must not be empty"],
            Some(5),
            Some("pusher"),
        ),
        case(
            "filesystem value not a bool",
            push_with("").replace("{'tank<': true}", "{'tank<': maybe}"),
            Invalid,
            &["jobs[0].filesystems", "maybe"],
            Some(5),
            Some("pusher"),
        ),
        case(
            "bad protection",
            push_with("  replication:\n    protection:\n      initial: guarantee_everything\n"),
            Invalid,
            &["unknown protection \"guarantee_everything\""],
            Some(12),
            Some("pusher"),
        ),
        case(
            "zero concurrency",
            push_with("  replication:\n    concurrency:\n      steps: 0\n"),
            Invalid,
            &["steps must be positive"],
            Some(11),
            Some("pusher"),
        ),
        case(
            "bad initial replication",
            push_with("  conflict_resolution:\n    initial_replication: newest\n"),
            Invalid,
            &["unknown initial_replication \"newest\""],
            Some(11),
            Some("pusher"),
        ),
        case(
            "bad placeholder encryption",
            "jobs:\n- name: s\n  type: sink\n  root_fs: a\n  recv:\n    placeholder:\n      encryption: on\n",
            Invalid,
            &["placeholder encryption value \"on\" is invalid"],
            Some(7),
            Some("s"),
        ),
        case(
            "property both inherited and overridden",
            "jobs:\n- name: s\n  type: sink\n  root_fs: a\n  recv:\n    properties:\n      inherit: [atime]\n      override: {atime: on}\n",
            Invalid,
            &["\"atime\" is both in properties.inherit and properties.override"],
            Some(6),
            Some("s"),
        ),
        case(
            "relative hook path",
            PUSH_TO_SINK.replace("interval: 10m", "interval: 10m\n      hooks:\n        - type: command\n          path: notify.sh"),
            Invalid,
            &["must be absolute"],
            Some(18),
            Some("prod_to_backups"),
        ),
        case(
            "not yaml",
            "jobs: [\n",
            Invalid,
            &["line"],
            None,
            None,
        ),
        case(
            "duplicate job names",
            format!("{PUSH_TO_SINK}{}", "  - name: sink\n    type: snap\n    filesystems: {'<': true}\n    snapshotting: {type: manual}\n    pruning: {keep: []}\n"),
            Inconsistent,
            &["duplicate job name \"sink\"", "jobs[1] and jobs[2]"],
            None,
            Some("sink"),
        ),
        case(
            "dangling local listener",
            push_with("").replace("serve: {type: local, listener_name: l}", "serve: {type: local, listener_name: other}"),
            Inconsistent,
            &["listener_name \"l\" is not served by any sink job"],
            None,
            Some("pusher"),
        ),
        case(
            "push connecting to a source",
            format!(
                "{}- name: src\n  type: source\n  serve: {{type: local, listener_name: l2}}\n  filesystems: {{'<': true}}\n  snapshotting: {{type: manual}}\n",
                push_with("").replace("listener_name: l, client", "listener_name: l2, client")
            ),
            Inconsistent,
            &["served by source job \"src\"", "push job must connect to a sink job"],
            None,
            Some("pusher"),
        ),
        case(
            "duplicate local listener",
            format!("{}{}", push_with(""), "- name: sink2\n  type: sink\n  root_fs: pool/sink2\n  serve: {type: local, listener_name: l}\n"),
            Inconsistent,
            &["listener_name \"l\" is already served by job \"sink\""],
            None,
            Some("sink2"),
        ),
        case(
            "overlapping root_fs",
            format!("{}{}", push_with(""), "- name: sink2\n  type: sink\n  root_fs: pool/sink/deeper\n  serve: {type: local, listener_name: l2}\n"),
            Inconsistent,
            &["overlaps root_fs \"pool/sink\" of job \"sink\""],
            None,
            Some("sink2"),
        ),
        case(
            "duplicate tcp listen",
            format!("{PUSH_TO_SINK}{}", "  - name: sink2\n    type: sink\n    root_fs: other/sink\n    serve: {type: tcp, listen: ':8888', clients: {}}\n"),
            Inconsistent,
            &["\":8888\" is already used by job \"sink\""],
            None,
            Some("sink2"),
        ),
    ];
    let mut failures = Vec::new();
    for c in cases {
        let e = match Config::from_yaml(&c.text) {
            Ok(_) => {
                failures.push(format!("{}: accepted", c.name));
                continue;
            }
            Err(e) => e,
        };
        let shown = e.to_string();
        let mut problems = Vec::new();
        if e.kind != c.kind {
            problems.push(format!("kind {:?}", e.kind));
        }
        for n in c.needles {
            if !shown.contains(n) {
                problems.push(format!("lacks {n:?}"));
            }
        }
        if c.line.is_some() && e.line != c.line {
            problems.push(format!("line {:?}", e.line));
        }
        if let Some(line) = c.line {
            if !shown.contains(&format!("at line {line} column")) {
                problems.push("message lacks the line".to_owned());
            }
        }
        if e.job.as_deref() != c.job {
            problems.push(format!("job {:?}", e.job));
        }
        if c.kind == Unsupported && !shown.contains(NOT_SUPPORTED) {
            problems.push("does not say it is not supported".to_owned());
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n    got: {shown}", c.name, problems.join(", ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn unsupported_keys_that_ask_for_nothing_are_accepted() {
    // An unlimited bandwidth limit and empty lists ask for nothing zferry lacks.
    let c = ok(&push_with("  send:\n    bandwidth_limit:\n      max: -1 B\n    execpipe: []\n"));
    assert_eq!(c.jobs.len(), 2);
    ok("global:\n  monitoring: []\n");
}

#[test]
fn yaml11_booleans_as_zrepl_reads_them() {
    let c = ok(&push_with("  send:\n    encrypted: yes\n    raw: on\n    compressed: False\n"));
    let JobKind::Push(p) = &c.jobs[0].kind else { panic!() };
    assert!(p.send.encrypted && p.send.raw && !p.send.compressed);
}
