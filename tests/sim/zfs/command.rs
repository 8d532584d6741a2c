//! The model's `zfs` command line: argv in, what the process prints and its
//! exit code out. Commands that stream (`send`, `receive`) are only parsed and
//! checked here; their bytes move in `world.rs` and `receive.rs`.

use super::stream::{self, Begin};
use super::{split_version, Flavor, Partial, Zfs};
use crate::rng::Rng;

/// What a finished command printed, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(stdout: Vec<u8>) -> Outcome {
        Outcome { code: 0, stdout, stderr: String::new() }
    }

    pub fn fail(code: i32, stderr: impl Into<String>) -> Outcome {
        Outcome { code, stdout: Vec::new(), stderr: stderr.into() }
    }
}

/// How a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Computed at once against the model.
    Oneshot,
    Send(SendArgs),
    Receive(ReceiveArgs),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendArgs {
    Stream { from: Option<String>, intermediates: bool, to: String },
    Resume { token: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveArgs {
    pub target: String,
    pub force: bool,
    pub resumable: bool,
}

const ZFS_FUSE_USAGE: &str = include_str!("../../../core/src/zfs/testdata/zfs-fuse-version.stderr");

/// Parsed options, each with its argument if it takes one.
type Opts = Vec<(char, Option<String>)>;

/// Splits options from operands. `with_arg` are the options that take one.
/// Returns `(options, operands)` or the usage error zfs prints.
fn getopt(args: &[String], allowed: &str, with_arg: &str) -> Result<(Opts, Vec<String>), String> {
    let mut opts = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() > 1 && a.starts_with('-') && rest.is_empty() {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                if !allowed.contains(c) {
                    return Err(format!("invalid option '{c}'"));
                }
                if with_arg.contains(c) {
                    let value: String = chars[j + 1..].iter().collect();
                    let value = if value.is_empty() {
                        i += 1;
                        args.get(i).cloned().ok_or(format!("missing argument for '{c}' option"))?
                    } else {
                        value
                    };
                    opts.push((c, Some(value)));
                    break;
                }
                opts.push((c, None));
                j += 1;
            }
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    Ok((opts, rest))
}

fn usage(flavor: Flavor, why: &str) -> Outcome {
    let usage = match flavor {
        Flavor::ZfsFuse => ZFS_FUSE_USAGE.lines().skip(1).collect::<Vec<_>>().join("\n"),
        Flavor::OpenZfs => "usage: zfs command args ...".to_owned(),
    };
    Outcome::fail(2, format!("{why}\n{usage}"))
}

fn opt(opts: &[(char, Option<String>)], c: char) -> Option<&str> {
    opts.iter().find(|(o, _)| *o == c).map(|(_, v)| v.as_deref().unwrap_or(""))
}

fn has(opts: &[(char, Option<String>)], c: char) -> bool {
    opts.iter().any(|(o, _)| *o == c)
}

/// Which way `argv` runs, or the usage error it gets at once.
pub fn classify(flavor: Flavor, argv: &[String]) -> Result<Kind, Outcome> {
    if argv.first().map(String::as_str) != Some("zfs") {
        return Err(Outcome::fail(127, format!("{}: command not found", argv.join(" "))));
    }
    let sub = argv.get(1).map(String::as_str).unwrap_or("");
    let args = &argv[2.min(argv.len())..];
    let fuse = flavor == Flavor::ZfsFuse;
    match sub {
        "send" => {
            let allowed = if fuse { "RDpiI" } else { "iItnvPwLcepRhb" };
            let (opts, rest) = getopt(args, allowed, "iIt").map_err(|e| usage(flavor, &e))?;
            if has(&opts, 'n') {
                return Ok(Kind::Oneshot);
            }
            if let Some(token) = opt(&opts, 't') {
                return Ok(Kind::Send(SendArgs::Resume { token: token.to_owned() }));
            }
            let [to] = &rest[..] else { return Err(usage(flavor, "wrong number of arguments")) };
            let (from, intermediates) = match (opt(&opts, 'i'), opt(&opts, 'I')) {
                (Some(f), None) => (Some(f.to_owned()), false),
                (None, Some(f)) => (Some(f.to_owned()), true),
                (None, None) => (None, false),
                _ => return Err(usage(flavor, "-i and -I are mutually exclusive")),
            };
            Ok(Kind::Send(SendArgs::Stream { from, intermediates, to: to.clone() }))
        }
        "receive" | "recv" => {
            let allowed = if fuse { "vnFdu" } else { "vnFdusAeo" };
            let (opts, rest) = getopt(args, allowed, "o").map_err(|e| usage(flavor, &e))?;
            if has(&opts, 'A') {
                return Ok(Kind::Oneshot);
            }
            let [target] = &rest[..] else {
                return Err(usage(flavor, "missing snapshot argument"));
            };
            Ok(Kind::Receive(ReceiveArgs {
                target: target.clone(),
                force: has(&opts, 'F'),
                resumable: has(&opts, 's'),
            }))
        }
        _ => Ok(Kind::Oneshot),
    }
}

/// Runs a command that is not a stream.
pub fn run(zfs: &mut Zfs, argv: &[String], wall: i64, rng: &mut Rng) -> Outcome {
    let flavor = zfs.flavor;
    let fuse = flavor == Flavor::ZfsFuse;
    let sub = argv.get(1).map(String::as_str).unwrap_or("");
    let args = &argv[2.min(argv.len())..];
    let parsed = |allowed: &str, with_arg: &str| getopt(args, allowed, with_arg);
    match sub {
        "version" if fuse => Outcome::fail(2, ZFS_FUSE_USAGE.to_owned()),
        "version" => Outcome::ok(b"zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n".to_vec()),
        "get" => match parsed(if fuse { "Hprosd" } else { "Hprotsd" }, "otsd") {
            Ok((opts, rest)) => get(zfs, &opts, &rest),
            Err(e) => usage(flavor, &e),
        },
        "list" => match parsed(if fuse { "HrtosSd" } else { "HprtosSd" }, "otsSd") {
            Ok((opts, rest)) => list(zfs, &opts, &rest),
            Err(e) => usage(flavor, &e),
        },
        "create" => match parsed("po", "o") {
            Ok((opts, rest)) => {
                let [path] = &rest[..] else { return usage(flavor, "missing filesystem argument") };
                let mut props = Vec::new();
                for (_, v) in opts.iter().filter(|(c, _)| *c == 'o') {
                    let Some((k, v)) = v.as_deref().and_then(|v| v.split_once('=')) else {
                        return usage(flavor, "missing '=' for -o option");
                    };
                    if !super::is_settable(k) {
                        return Outcome::fail(
                            1,
                            format!("cannot create '{path}': invalid property '{k}'"),
                        );
                    }
                    props.push((k.to_owned(), v.to_owned()));
                }
                status(zfs.create(path, &props, rng))
            }
            Err(e) => usage(flavor, &e),
        },
        "set" => {
            let [assignment, ds] = args else { return usage(flavor, "wrong number of arguments") };
            let Some((k, v)) = assignment.split_once('=') else {
                return usage(flavor, "missing '=' for property=value argument");
            };
            status(zfs.set_prop(ds, k, v))
        }
        "inherit" => {
            let [prop, ds] = args else { return usage(flavor, "wrong number of arguments") };
            status(zfs.inherit_prop(ds, prop))
        }
        "snapshot" => {
            // Several names are one atomic operation in OpenZFS: if any of them
            // cannot be made (it exists, its filesystem is gone), none is.
            let mut names = Vec::new();
            for name in args {
                let Some((fs, '@', snap)) = split_version(name) else {
                    return Outcome::fail(
                        1,
                        format!("cannot create snapshot '{name}': invalid name"),
                    );
                };
                match zfs.datasets.get(fs) {
                    None => {
                        return Outcome::fail(
                            1,
                            format!("cannot open '{fs}': dataset does not exist"),
                        )
                    }
                    Some(d) if d.snapshot(snap).is_some() => {
                        return Outcome::fail(
                            1,
                            format!("cannot create snapshot '{name}': dataset already exists"),
                        )
                    }
                    Some(_) => names.push((fs, snap)),
                }
            }
            let mut out = Outcome::ok(Vec::new());
            for (fs, snap) in names {
                if let Err(e) = zfs.snapshot(fs, snap, wall, rng) {
                    out = Outcome::fail(1, e);
                }
            }
            out
        }
        "destroy" => {
            let [name] = args else { return usage(flavor, "wrong number of arguments") };
            if !name.contains(['@', '#']) {
                return Outcome::fail(
                    1,
                    "zferry never destroys filesystems: the model refuses".to_owned(),
                );
            }
            if fuse && name.contains(['#', ',']) {
                return Outcome::fail(1, format!("cannot open '{name}': invalid dataset name"));
            }
            // OpenZFS: `fs@a,b,c` destroys each; what it can, reporting the first failure.
            match name.split_once('@') {
                Some((fs, list)) if list.contains(',') => {
                    let mut result = Ok(());
                    for short in list.split(',') {
                        let r = zfs.destroy_version(&format!("{fs}@{short}"));
                        if result.is_ok() {
                            result = r;
                        }
                    }
                    status(result)
                }
                _ => status(zfs.destroy_version(name)),
            }
        }
        "bookmark" if !fuse => {
            let [snap, mark] = args else { return usage(flavor, "wrong number of arguments") };
            status(zfs.bookmark(snap, mark))
        }
        "hold" | "release" => {
            let [tag, name] = args else { return usage(flavor, "wrong number of arguments") };
            hold(zfs, sub == "hold", tag, name)
        }
        "holds" if !fuse => match parsed("Hr", "") {
            Ok((_, rest)) => holds(zfs, &rest),
            Err(e) => usage(flavor, &e),
        },
        "holds" => Outcome::fail(1, "internal error: /usr/lib/zfs/pyzfs.py not found"),
        "send" => match parsed("iItnvPwLcepRhb", "iIt") {
            Ok((opts, rest)) => dry_run_send(zfs, &opts, &rest),
            Err(e) => usage(flavor, &e),
        },
        "receive" | "recv" => match parsed("vnFdusAeo", "o") {
            Ok((_, rest)) => {
                let [target] = &rest[..] else { return usage(flavor, "missing argument") };
                abort_receive(zfs, target)
            }
            Err(e) => usage(flavor, &e),
        },
        other => usage(flavor, &format!("unrecognized command '{other}'")),
    }
}

fn status(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::ok(Vec::new()),
        Err(e) => Outcome::fail(1, e),
    }
}

/// Datasets at and (with `-r`) below `root`: each filesystem, then its
/// snapshots (and bookmarks) if the types ask, then its children.
fn walk(zfs: &Zfs, root: &str, recursive: bool, types: &[&str], out: &mut Vec<String>) {
    if types.contains(&"filesystem") {
        out.push(root.to_owned());
    }
    let ds = &zfs.datasets[root];
    if types.contains(&"snapshot") {
        out.extend(ds.snapshots.iter().map(|s| format!("{root}@{}", s.name)));
    }
    if types.contains(&"bookmark") {
        out.extend(ds.bookmarks.iter().map(|b| format!("{root}#{}", b.name)));
    }
    if recursive {
        let prefix = format!("{root}/");
        let direct: Vec<&String> = zfs
            .datasets
            .keys()
            .filter(|k| k.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
            .collect();
        for child in direct {
            walk(zfs, child, true, types, out);
        }
    }
}

fn missing(name: &str) -> String {
    format!("cannot open '{name}': dataset does not exist\n")
}

fn get(zfs: &Zfs, opts: &[(char, Option<String>)], rest: &[String]) -> Outcome {
    let flavor = zfs.flavor;
    if opt(opts, 'o') != Some("name,property,value,source") || !has(opts, 'H') || !has(opts, 'p') {
        return Outcome::fail(
            2,
            "the model only prints `zfs get -H -p -o name,property,value,source`",
        );
    }
    let types: Vec<&str> = match opt(opts, 't') {
        Some(t) => t.split(',').collect(),
        None => vec!["filesystem", "snapshot", "bookmark"],
    };
    let Some((props, names)) = rest.split_first() else {
        return usage(flavor, "missing property argument");
    };
    let props: Vec<&str> = props.split(',').collect();
    if let Some(bad) = props.iter().find(|p| !super::is_known_prop(p, flavor)) {
        return usage(flavor, &format!("bad property list: invalid property '{bad}'"));
    }
    let mut out = String::new();
    let mut err = String::new();
    for name in names {
        let mut rows = Vec::new();
        match split_version(name) {
            Some((fs, '@', snap)) => match zfs.datasets.get(fs).and_then(|d| d.snapshot(snap)) {
                Some(_) => rows.push(name.clone()),
                None => err.push_str(&missing(name)),
            },
            Some(_) => err.push_str(&missing(name)),
            None if zfs.exists(name) => walk(zfs, name, has(opts, 'r'), &types, &mut rows),
            None => err.push_str(&missing(name)),
        }
        for row in rows {
            for p in &props {
                let (value, source) = match split_version(&row) {
                    Some((fs, '@', snap)) => {
                        let s = zfs.datasets[fs].snapshot(snap).expect("listed");
                        zfs.snapshot_prop(fs, s, p)
                    }
                    Some((_, _, _)) => ("-".into(), super::Source::None),
                    None => zfs.fs_prop(&row, p),
                };
                out.push_str(&format!("{row}\t{p}\t{value}\t{}\n", source.column()));
            }
        }
    }
    Outcome { code: i32::from(!err.is_empty()), stdout: out.into_bytes(), stderr: err }
}

fn list(zfs: &Zfs, opts: &[(char, Option<String>)], rest: &[String]) -> Outcome {
    let wanted = opt(opts, 't') == Some("snapshot,bookmark") || opt(opts, 't') == Some("snapshot");
    if !wanted
        || opt(opts, 'o') != Some("name,guid,createtxg,creation")
        || !matches!(opt(opts, 's'), None | Some("createtxg"))
        || !has(opts, 'H')
        || !has(opts, 'p')
        || !has(opts, 'r')
    {
        return Outcome::fail(2, "the model only lists versions the way zferry does");
    }
    let types: Vec<&str> = opt(opts, 't').unwrap_or("").split(',').collect();
    let mut rows: Vec<(u64, usize, String)> = Vec::new();
    let mut err = String::new();
    for root in rest {
        if !zfs.exists(root) {
            err.push_str(&missing(root));
            continue;
        }
        let mut names = Vec::new();
        walk(zfs, root, true, &types, &mut names);
        for name in names {
            let Some((fs, sep, short)) = split_version(&name) else { continue };
            let ds = &zfs.datasets[fs];
            let (guid, txg, creation) = if sep == '@' {
                let s = ds.snapshot(short).expect("listed");
                (s.guid, s.createtxg, s.creation)
            } else {
                let b = ds.bookmarks.iter().find(|b| b.name == short).expect("listed");
                (b.guid, b.createtxg, b.creation)
            };
            let n = rows.len();
            rows.push((txg, n, format!("{name}\t{guid}\t{txg}\t{creation}\n")));
        }
    }
    if opt(opts, 's').is_some() {
        rows.sort();
    }
    let out: String = rows.into_iter().map(|(_, _, l)| l).collect();
    Outcome { code: i32::from(!err.is_empty()), stdout: out.into_bytes(), stderr: err }
}

fn hold(zfs: &mut Zfs, add: bool, tag: &str, name: &str) -> Outcome {
    let Some((fs, '@', snap)) = split_version(name) else {
        return Outcome::fail(
            1,
            format!("cannot hold '{name}': operation only applies to snapshots"),
        );
    };
    let Some(s) =
        zfs.datasets.get_mut(fs).and_then(|d| d.snapshots.iter_mut().find(|s| s.name == snap))
    else {
        return Outcome::fail(1, missing(name));
    };
    let changed = if add { s.holds.insert(tag.to_owned()) } else { s.holds.remove(tag) };
    zfs.touch();
    match (changed, add) {
        (true, _) => Outcome::ok(Vec::new()),
        (false, true) => Outcome::fail(
            1,
            format!("cannot hold snapshot '{name}': tag already exists on this dataset"),
        ),
        (false, false) => Outcome::fail(
            1,
            format!("cannot release hold from snapshot '{name}': no such tag on this dataset"),
        ),
    }
}

fn holds(zfs: &Zfs, rest: &[String]) -> Outcome {
    let mut out = String::new();
    for name in rest {
        let Some(s) =
            split_version(name).and_then(|(fs, _, snap)| zfs.datasets.get(fs)?.snapshot(snap))
        else {
            return Outcome::fail(1, missing(name));
        };
        for tag in &s.holds {
            out.push_str(&format!("{name}\t{tag}\tThu Jan  1 00:00 1970\n"));
        }
    }
    Outcome::ok(out.into_bytes())
}

/// A resume token in the shape ZFS prints (`1-<hex>-<hex>-<hex>`); its payload is
/// the model's own, which only the model reads.
pub fn token(p: &Partial) -> String {
    let payload = format!("{}:{}:{}:{}", p.from_guid, p.to_guid, p.received, p.to_name);
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    let check = crate::rng::fnv(crate::rng::FNV_START, payload.as_bytes()) & 0xffff_ffff;
    format!("1-{check:x}-{:x}-{hex}", payload.len())
}

/// `(from_guid, to_guid, offset, to_name)` of a token, if it is one of ours.
pub fn parse_token(token: &str) -> Option<(u64, u64, u64, String)> {
    let hex = token.split('-').nth(3)?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.splitn(4, ':');
    let from = parts.next()?.parse().ok()?;
    let to = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some((from, to, offset, parts.next()?.to_owned()))
}

/// The substreams `zfs send` would produce, checked against the model.
pub struct SendPlan {
    pub substreams: Vec<Begin>,
    pub compound: bool,
    /// Snapshots the send holds busy while it runs.
    pub holds: Vec<String>,
}

impl SendPlan {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.compound {
            stream::package_header(&mut out, self.substreams.len() as u32);
        }
        for b in &self.substreams {
            stream::substream(&mut out, b);
        }
        if self.compound {
            stream::package_end(&mut out);
        }
        out
    }
}

fn begin_for(fs: &str, from_guid: u64, s: &super::Snapshot) -> Begin {
    Begin {
        resuming: false,
        from_guid,
        to_guid: s.guid,
        to_name: format!("{fs}@{}", s.name),
        creation: s.creation,
        content: s.content,
        total: stream::payload_size(from_guid, s.guid, s.content),
        offset: 0,
    }
}

/// Checks a send against the model and lists what it will stream.
pub fn plan_send(zfs: &Zfs, args: &SendArgs) -> Result<SendPlan, Outcome> {
    match args {
        SendArgs::Resume { token } => {
            let Some((from_guid, to_guid, offset, to_name)) = parse_token(token) else {
                return Err(Outcome::fail(255, "cannot resume send: invalid token"));
            };
            let (fs, _) = to_name.split_once('@').unwrap_or((&to_name, ""));
            let Some(ds) = zfs.datasets.get(fs) else {
                return Err(Outcome::fail(
                    255,
                    format!(
                        "cannot resume send: '{to_name}' used in the initial send no longer exists"
                    ),
                ));
            };
            let Some(to) = ds.snapshots.iter().find(|s| s.guid == to_guid) else {
                return Err(Outcome::fail(
                    255,
                    format!(
                        "cannot resume send: '{to_name}' used in the initial send no longer exists"
                    ),
                ));
            };
            let from_ok = from_guid == 0
                || ds.snapshots.iter().any(|s| s.guid == from_guid)
                || ds.bookmarks.iter().any(|b| b.guid == from_guid);
            if !from_ok {
                return Err(Outcome::fail(
                    255,
                    format!(
                        "cannot resume send: incremental source {from_guid:#x} no longer exists"
                    ),
                ));
            }
            let mut b = begin_for(fs, from_guid, to);
            b.resuming = true;
            b.offset = offset.min(b.total);
            Ok(SendPlan {
                substreams: vec![b],
                compound: false,
                holds: vec![format!("{fs}@{}", to.name)],
            })
        }
        SendArgs::Stream { from, intermediates, to } => {
            let Some((fs, '@', snap)) = split_version(to) else {
                return Err(Outcome::fail(1, missing(to)));
            };
            let Some(ds) = zfs.datasets.get(fs) else { return Err(Outcome::fail(1, missing(to))) };
            let Some(to_index) = ds.snapshots.iter().position(|s| s.name == snap) else {
                return Err(Outcome::fail(1, missing(to)));
            };
            let target = &ds.snapshots[to_index];
            let Some(from) = from else {
                return Ok(SendPlan {
                    substreams: vec![begin_for(fs, 0, target)],
                    compound: false,
                    holds: vec![to.clone()],
                });
            };
            // `-i @snap` is short for the target's own filesystem.
            let from =
                &if from.starts_with(['@', '#']) { format!("{fs}{from}") } else { from.clone() };
            let Some((from_fs, sep, from_short)) = split_version(from) else {
                return Err(Outcome::fail(1, missing(from)));
            };
            if from_fs != fs {
                return Err(Outcome::fail(
                    1,
                    format!("cannot send '{to}': incremental source must be in same filesystem"),
                ));
            }
            let base = if sep == '@' {
                ds.snapshot(from_short).map(|s| (s.guid, s.createtxg))
            } else {
                ds.bookmarks.iter().find(|b| b.name == from_short).map(|b| (b.guid, b.createtxg))
            };
            let Some((from_guid, from_txg)) = base else {
                return Err(Outcome::fail(1, missing(from)));
            };
            if from_txg >= target.createtxg {
                return Err(Outcome::fail(
                    1,
                    format!("cannot send '{to}': incremental source must be before destination"),
                ));
            }
            let mut holds = vec![to.clone()];
            if sep == '@' {
                holds.push(from.clone());
            }
            if !intermediates {
                return Ok(SendPlan {
                    substreams: vec![begin_for(fs, from_guid, target)],
                    compound: false,
                    holds,
                });
            }
            let mut substreams = Vec::new();
            let mut prev = from_guid;
            for s in ds.snapshots[..=to_index].iter().filter(|s| s.createtxg > from_txg) {
                substreams.push(begin_for(fs, prev, s));
                holds.push(format!("{fs}@{}", s.name));
                prev = s.guid;
            }
            holds.dedup();
            Ok(SendPlan { substreams, compound: true, holds })
        }
    }
}

/// `zfs send -n -v -P` (estimate) and `zfs send -n -v -t` (describe a token).
fn dry_run_send(zfs: &Zfs, opts: &[(char, Option<String>)], rest: &[String]) -> Outcome {
    if let Some(token) = opt(opts, 't') {
        let args = SendArgs::Resume { token: token.to_owned() };
        let plan = match plan_send(zfs, &args) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let b = &plan.substreams[0];
        let mut out = String::from("resume token contents:\nnvlist version: 0\n");
        if b.from_guid != 0 {
            out.push_str(&format!("\tfromguid = {:#x}\n", b.from_guid));
        }
        out.push_str(&format!(
            "\tobject = 0x3\n\toffset = {:#x}\n\tbytes = {:#x}\n\ttoguid = {:#x}\n\ttoname = {}\n",
            b.offset, b.offset, b.to_guid, b.to_name
        ));
        let left = nicenum(b.total - b.offset);
        let (fs, _) = b.to_name.split_once('@').unwrap_or((&b.to_name, ""));
        let from = zfs.datasets.get(fs).and_then(|d| {
            d.snapshots.iter().find(|s| s.guid == b.from_guid).map(|s| s.name.clone())
        });
        match from {
            Some(f) => out.push_str(&format!(
                "send from {fs}@{f} to {} estimated size is {left}\n",
                b.to_name
            )),
            None => out.push_str(&format!("full send of {} estimated size is {left}\n", b.to_name)),
        }
        out.push_str(&format!("total estimated size is {left}\n"));
        return Outcome::ok(out.into_bytes());
    }
    let [to] = rest else { return usage(zfs.flavor, "wrong number of arguments") };
    let (from, intermediates) = match (opt(opts, 'i'), opt(opts, 'I')) {
        (Some(f), _) => (Some(f.to_owned()), false),
        (None, Some(f)) => (Some(f.to_owned()), true),
        _ => (None, false),
    };
    let args = SendArgs::Stream { from: from.clone(), intermediates, to: to.clone() };
    let plan = match plan_send(zfs, &args) {
        Ok(p) => p,
        Err(o) => return o,
    };
    let mut out = String::new();
    let mut total = 0;
    let fs = to.split('@').next().unwrap_or("");
    let mut prev = match from {
        Some(f) if f.starts_with(['@', '#']) => format!("{fs}{f}"),
        other => other.unwrap_or_default(),
    };
    for b in &plan.substreams {
        total += b.total;
        if b.from_guid == 0 {
            out.push_str(&format!("full\t{}\t{}\n", b.to_name, b.total));
        } else {
            out.push_str(&format!("incremental\t{prev}\t{}\t{}\n", b.to_name, b.total));
        }
        prev = b.to_name.clone();
    }
    out.push_str(&format!("size\t{total}\n"));
    Outcome::ok(out.into_bytes())
}

/// A size as `zfs` prints it for people (zfs_nicenum): 647K, 1.01M, 512.
pub fn nicenum(n: u64) -> String {
    if n < 1024 {
        return n.to_string();
    }
    let mut index = 0;
    while index < 6 && n >> (10 * (index + 1)) >= 1 {
        index += 1;
    }
    let unit = ['K', 'M', 'G', 'T', 'P', 'E'][index - 1];
    if n & ((1u64 << (10 * index)) - 1) == 0 {
        return format!("{}{unit}", n >> (10 * index));
    }
    let v = n as f64 / (1u64 << (10 * index)) as f64;
    let mut text = String::new();
    for precision in (0..=2).rev() {
        text = format!("{v:.precision$}{unit}");
        if text.len() <= 5 {
            break;
        }
    }
    text
}

/// `zfs receive -A TARGET`: drops what an interrupted `receive -s` left.
fn abort_receive(zfs: &mut Zfs, target: &str) -> Outcome {
    let Some(ds) = zfs.datasets.get_mut(target) else {
        return Outcome::fail(1, format!("cannot open '{target}': dataset does not exist"));
    };
    if ds.partial.is_none() {
        return Outcome::fail(1, format!("cannot resume receive: '{target}' does not have any resumable receive state to abort"));
    }
    ds.partial = None;
    if ds.inconsistent {
        zfs.datasets.remove(target);
    }
    zfs.touch();
    Outcome::ok(Vec::new())
}
