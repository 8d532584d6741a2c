//! What jobs ask of the local ZFS, as process specs and parsers of their output.
//! One place for every `zfs` command a job runs, so each is built for the
//! installed dialect and nothing a dialect lacks is ever asked of it.

use std::collections::BTreeMap;

use crate::node::ProcessSpec;
use crate::zfs::{DatasetPath, Dialect, FilesystemVersion, VersionKind};

/// User property that marks a placeholder zferry created.
pub const PLACEHOLDER_PROPERTY: &str = "zferry:placeholder";
/// zrepl's marker, honoured so that a receiver zrepl filled keeps working.
pub const ZREPL_PLACEHOLDER_PROPERTY: &str = "zrepl:placeholder";

fn zfs(args: &[&str]) -> ProcessSpec {
    let mut argv = vec!["zfs".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    ProcessSpec { argv, env: Vec::new(), stdin: false, stdout: false }
}

/// `zfs version`, whose output [`crate::zfs::detect`] reads.
pub fn version() -> ProcessSpec {
    zfs(&["version"])
}

/// A filesystem as a job sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFilesystem {
    pub path: DatasetPath,
    pub placeholder: bool,
    pub resume_token: Option<String>,
}

/// Filesystems and volumes at and below `root`, with their placeholder markers
/// and resume tokens, in one command.
pub fn list_filesystems(dialect: Dialect, root: &DatasetPath) -> ProcessSpec {
    let mut props = format!("type,{PLACEHOLDER_PROPERTY},{ZREPL_PLACEHOLDER_PROPERTY}");
    if dialect.capabilities().resumable {
        props.push_str(",receive_resume_token");
    }
    let root = root.to_string();
    if dialect.capabilities().get_type_filter {
        zfs(&[
            "get",
            "-H",
            "-p",
            "-r",
            "-t",
            "filesystem,volume",
            "-o",
            "name,property,value,source",
            &props,
            &root,
        ])
    } else {
        zfs(&["get", "-H", "-p", "-r", "-o", "name,property,value,source", &props, &root])
    }
}

/// The given datasets only (not their children), with the same columns as
/// [`list_filesystems`]: what a receive needs to know about a target's ancestry,
/// in one command whose cost does not grow with the size of the tree.
pub fn list_datasets(dialect: Dialect, paths: &[DatasetPath]) -> ProcessSpec {
    let mut spec = list_filesystems(dialect, &paths[0]);
    // Drop `-r` and the root; name every dataset instead.
    spec.argv.retain(|a| a != "-r");
    spec.argv.pop();
    spec.argv.extend(paths.iter().map(ToString::to_string));
    spec
}

/// True if every complaint in `stderr` is about a dataset that does not exist:
/// such a listing is complete for the datasets that do.
pub fn only_missing_datasets(stderr: &str) -> bool {
    stderr.lines().filter(|l| !l.trim().is_empty()).all(is_missing_dataset)
}

/// True if a failed listing only means that `root` does not exist (yet).
pub fn is_missing_dataset(stderr: &str) -> bool {
    stderr.contains("dataset does not exist")
}

struct Row<'a> {
    name: &'a str,
    property: &'a str,
    value: &'a str,
    source: &'a str,
}

fn rows(stdout: &str, columns: usize) -> Result<Vec<Row<'_>>, String> {
    let mut out = Vec::new();
    for (n, line) in stdout.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != columns {
            return Err(format!(
                "line {}: expected {columns} tab-separated columns: {line:?}",
                n + 1
            ));
        }
        out.push(Row {
            name: f[0],
            property: f[1],
            value: f[2],
            source: f.get(3).copied().unwrap_or(""),
        });
    }
    Ok(out)
}

pub fn parse_filesystems(stdout: &str) -> Result<Vec<LocalFilesystem>, String> {
    let mut found: BTreeMap<DatasetPath, (bool, bool, Option<String>)> = BTreeMap::new();
    for row in rows(stdout, 4)? {
        // Without a type filter, snapshots and bookmarks come too.
        if row.name.contains(['@', '#']) {
            continue;
        }
        let path = DatasetPath::parse(row.name).map_err(|e| e.to_string())?;
        let entry = found.entry(path).or_insert((false, false, None));
        match row.property {
            "type" => entry.0 = matches!(row.value, "filesystem" | "volume"),
            PLACEHOLDER_PROPERTY | ZREPL_PLACEHOLDER_PROPERTY => {
                // Only a marker set on the dataset itself counts: children of a
                // placeholder inherit it and are real replicas.
                entry.1 |= row.value == "on" && row.source == "local";
            }
            "receive_resume_token" if row.value != "-" && !row.value.is_empty() => {
                entry.2 = Some(row.value.to_owned());
            }
            _ => {}
        }
    }
    Ok(found
        .into_iter()
        .filter(|(_, (is_fs, _, _))| *is_fs)
        .map(|(path, (_, placeholder, resume_token))| LocalFilesystem {
            path,
            placeholder,
            resume_token,
        })
        .collect())
}

/// Every snapshot (and bookmark, where the dialect has them) at and below `root`,
/// in one command.
pub fn list_versions(dialect: Dialect, root: &DatasetPath) -> ProcessSpec {
    let root = root.to_string();
    let caps = dialect.capabilities();
    if caps.list_parsable {
        let types = if caps.bookmarks { "snapshot,bookmark" } else { "snapshot" };
        zfs(&["list", "-H", "-p", "-r", "-t", types, "-o", "name,guid,createtxg,creation", &root])
    } else {
        zfs(&[
            "get",
            "-H",
            "-p",
            "-r",
            "-o",
            "name,property,value",
            "guid,createtxg,creation",
            &root,
        ])
    }
}

fn number(s: &str, what: &str, line: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{what} {s:?} is not a number in {line:?}"))
}

fn split_version(name: &str) -> Option<(DatasetPath, VersionKind, &str)> {
    let (fs, kind, v) = if let Some((fs, v)) = name.split_once('@') {
        (fs, VersionKind::Snapshot, v)
    } else {
        let (fs, v) = name.split_once('#')?;
        (fs, VersionKind::Bookmark, v)
    };
    Some((DatasetPath::parse(fs).ok()?, kind, v))
}

/// Versions per filesystem, each list ordered by createtxg.
pub fn parse_versions(
    dialect: Dialect,
    stdout: &str,
) -> Result<BTreeMap<DatasetPath, Vec<FilesystemVersion>>, String> {
    let mut out: BTreeMap<DatasetPath, Vec<FilesystemVersion>> = BTreeMap::new();
    if dialect.capabilities().list_parsable {
        for line in stdout.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 4 {
                return Err(format!("expected 4 tab-separated columns: {line:?}"));
            }
            let (fs, kind, name) =
                split_version(f[0]).ok_or_else(|| format!("not a version name: {line:?}"))?;
            out.entry(fs).or_default().push(FilesystemVersion {
                kind,
                name: name.to_owned(),
                guid: number(f[1], "guid", line)?,
                createtxg: number(f[2], "createtxg", line)?,
                creation: number(f[3], "creation", line)? as i64,
            });
        }
    } else {
        let mut partial: BTreeMap<String, [Option<u64>; 3]> = BTreeMap::new();
        for row in rows(stdout, 3)? {
            if !row.name.contains('@') {
                continue;
            }
            let slot = match row.property {
                "guid" => 0,
                "createtxg" => 1,
                "creation" => 2,
                other => return Err(format!("unexpected property {other:?} for {}", row.name)),
            };
            partial.entry(row.name.to_owned()).or_default()[slot] =
                Some(number(row.value, row.property, row.name)?);
        }
        for (full, [guid, txg, creation]) in partial {
            let (fs, kind, name) =
                split_version(&full).ok_or_else(|| format!("not a version name: {full:?}"))?;
            let (Some(guid), Some(createtxg), Some(creation)) = (guid, txg, creation) else {
                return Err(format!("{full}: guid, createtxg or creation missing"));
            };
            out.entry(fs).or_default().push(FilesystemVersion {
                kind,
                name: name.to_owned(),
                guid,
                createtxg,
                creation: creation as i64,
            });
        }
    }
    for versions in out.values_mut() {
        versions.sort_by_key(|v| (v.createtxg, v.kind));
    }
    Ok(out)
}

/// `zfs send` of one step: full, incremental from `from` (a snapshot or, where
/// supported, a bookmark), with every intermediate snapshot if `intermediate`, or
/// the resumption of a partial receive.
pub fn send(
    fs: &DatasetPath,
    from: Option<&FilesystemVersion>,
    to: &FilesystemVersion,
    intermediate: bool,
    resume_token: Option<&str>,
) -> ProcessSpec {
    if let Some(token) = resume_token {
        return zfs(&["send", "-t", token]);
    }
    let target = format!("{fs}{}", to.relative_name());
    match from {
        None => zfs(&["send", &target]),
        Some(base) => {
            let base = format!("{fs}{}", base.relative_name());
            zfs(&["send", if intermediate { "-I" } else { "-i" }, &base, &target])
        }
    }
}

/// `zfs receive` into `target`: never mounted where the dialect allows it,
/// resumable where it can be, and forced (`-F`) only to replace a placeholder.
pub fn receive(dialect: Dialect, target: &DatasetPath, force: bool) -> ProcessSpec {
    let caps = dialect.capabilities();
    let mut args = vec!["receive"];
    if caps.resumable {
        // OpenZFS: -u (do not mount) exists alongside -s.
        args.extend(["-u", "-s"]);
    }
    if force {
        args.push("-F");
    }
    let target = target.to_string();
    args.push(&target);
    zfs(&args)
}

/// A placeholder: marked, never mounted, holding only children.
pub fn create_placeholder(path: &DatasetPath) -> ProcessSpec {
    let marker = format!("{PLACEHOLDER_PROPERTY}=on");
    zfs(&[
        "create",
        "-o",
        &marker,
        "-o",
        "mountpoint=none",
        "-o",
        "canmount=off",
        &path.to_string(),
    ])
}

/// Sets one property (zfs-fuse takes one per `zfs set`).
pub fn set_property(path: &DatasetPath, property: &str, value: &str) -> ProcessSpec {
    zfs(&["set", &format!("{property}={value}"), &path.to_string()])
}

/// Removes our placeholder marker after a real receive replaced the placeholder.
pub fn clear_placeholder(path: &DatasetPath) -> ProcessSpec {
    zfs(&["inherit", PLACEHOLDER_PROPERTY, &path.to_string()])
}
