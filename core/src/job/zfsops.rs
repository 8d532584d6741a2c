//! What jobs ask of the local ZFS, as process specs and parsed results. The
//! commands are [`ZfsCommand`]s built for the installed dialect (so nothing a
//! dialect lacks is ever asked of it) and their output goes through
//! [`crate::zfs::parse`]; this module only adapts both to what jobs need.

use std::collections::BTreeMap;

use crate::node::ProcessSpec;
use crate::zfs::command::{
    versions_listing_format, Receive, ReceiveOverride, Rollback, Send, SendFlags, SendStream,
    SnapshotNames, Snapshots, ZfsCommand,
};
use crate::zfs::parse;
use crate::zfs::{
    DatasetName, DatasetPath, Dialect, FilesystemVersion, PropertyName, PropertyValue, ResumeToken,
    ResumeTokenInfo, SnapshotPath, VersionName, VersionPath,
};

fn spec(command: &ZfsCommand, dialect: Dialect) -> Result<ProcessSpec, String> {
    let argv = command.argv(&dialect).map_err(|e| e.to_string())?;
    Ok(ProcessSpec { argv, env: Vec::new(), stdin: false, stdout: false })
}

/// `zfs version`, whose output [`crate::zfs::detect`] reads.
pub fn version() -> ProcessSpec {
    // `zfs version` is the same argv in every dialect; it is how we learn which.
    spec(&ZfsCommand::Version, Dialect::ZfsFuse).unwrap_or_else(|_| ProcessSpec {
        argv: vec!["zfs".into(), "version".into()],
        env: Vec::new(),
        stdin: false,
        stdout: false,
    })
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
pub fn list_filesystems(dialect: Dialect, root: &DatasetPath) -> Result<ProcessSpec, String> {
    spec(&ZfsCommand::ListFilesystems { root: root.clone() }, dialect)
}

/// The given datasets only (not their children), as [`list_filesystems`] lists
/// them: what a receive needs to know about a target's ancestry, in one command
/// whose cost does not grow with the size of the tree.
pub fn list_datasets(dialect: Dialect, paths: &[DatasetPath]) -> Result<ProcessSpec, String> {
    let first = paths.first().ok_or("no dataset to list")?;
    let mut spec = list_filesystems(dialect, first)?;
    let root = first.to_string();
    // The listing names its root last, after `-r`: name every dataset instead.
    spec.argv.retain(|a| a != "-r" && *a != root);
    spec.argv.extend(paths.iter().map(ToString::to_string));
    Ok(spec)
}

/// True if a failed listing only means that a dataset does not exist (yet).
pub fn is_missing_dataset(stderr: &str) -> bool {
    stderr.contains("dataset does not exist")
}

/// True if every complaint in `stderr` is about a dataset that does not exist:
/// such a listing is complete for the datasets that do.
pub fn only_missing_datasets(stderr: &str) -> bool {
    stderr.lines().filter(|l| !l.trim().is_empty()).all(is_missing_dataset)
}

pub fn parse_filesystems(stdout: &[u8]) -> Result<Vec<LocalFilesystem>, String> {
    let list = parse::parse_filesystems(stdout).map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .map(|f| LocalFilesystem {
            path: f.path,
            placeholder: f.is_placeholder,
            resume_token: f.resume_token.map(|t| t.as_str().to_owned()),
        })
        .collect())
}

/// Every snapshot (and bookmark, where the dialect has them) at and below `root`,
/// in one command.
pub fn list_versions(dialect: Dialect, root: &DatasetPath) -> Result<ProcessSpec, String> {
    spec(&ZfsCommand::ListVersions { root: root.clone() }, dialect)
}

/// `spec`, built for the first root, extended with the others: `zfs get -r`
/// and `zfs list -r` take several datasets, so one process lists them all.
fn under_roots(
    roots: &[DatasetPath],
    build: impl FnOnce(&DatasetPath) -> Result<ProcessSpec, String>,
) -> Result<ProcessSpec, String> {
    let (first, rest) = roots.split_first().ok_or("the filesystems filter names no pool")?;
    let mut spec = build(first)?;
    spec.argv.extend(rest.iter().map(ToString::to_string));
    Ok(spec)
}

/// [`list_filesystems`] of every root at once.
pub fn list_filesystems_under(
    dialect: Dialect,
    roots: &[DatasetPath],
) -> Result<ProcessSpec, String> {
    under_roots(roots, |r| list_filesystems(dialect, r))
}

/// [`list_versions`] of every root at once.
pub fn list_versions_under(dialect: Dialect, roots: &[DatasetPath]) -> Result<ProcessSpec, String> {
    under_roots(roots, |r| list_versions(dialect, r))
}

/// Versions per filesystem, each list ordered by createtxg.
pub fn parse_versions(
    dialect: Dialect,
    stdout: &[u8],
) -> Result<BTreeMap<DatasetPath, Vec<FilesystemVersion>>, String> {
    parse::parse_versions(versions_listing_format(&dialect), stdout).map_err(|e| e.to_string())
}

fn version_path(fs: &DatasetPath, v: &FilesystemVersion) -> Result<VersionPath, String> {
    let name = VersionName::parse(&v.name).map_err(|e| e.to_string())?;
    VersionPath::new(fs.clone(), v.kind, name).map_err(|e| e.to_string())
}

fn snapshot_path(fs: &DatasetPath, v: &FilesystemVersion) -> Result<SnapshotPath, String> {
    SnapshotPath::try_from(version_path(fs, v)?).map_err(|e| e.to_string())
}

/// `zfs send` of one step: full, incremental from `from` (a snapshot or, where
/// supported, a bookmark), with every intermediate snapshot if `intermediate`, or
/// the resumption of a partial receive.
pub fn send(
    dialect: Dialect,
    fs: &DatasetPath,
    from: Option<&FilesystemVersion>,
    to: &FilesystemVersion,
    intermediate: bool,
    resume_token: Option<&str>,
) -> Result<ProcessSpec, String> {
    let send = match resume_token {
        Some(token) => {
            Send::Resume { token: ResumeToken::parse(token).map_err(|e| e.to_string())? }
        }
        None => {
            let to = snapshot_path(fs, to)?;
            let stream = match from {
                None => SendStream::Full { to },
                Some(base) if intermediate => {
                    SendStream::with_intermediates(snapshot_path(fs, base)?, to)
                        .map_err(|e| e.to_string())?
                }
                Some(base) => SendStream::incremental(version_path(fs, base)?, to)
                    .map_err(|e| e.to_string())?,
            };
            Send::Stream { stream, flags: SendFlags::default() }
        }
    };
    spec(&ZfsCommand::Send(send), dialect)
}

/// `zfs send -n -v -t TOKEN`: what a partial receive's token names. Only the
/// sending host can answer (the token names the sender's snapshot).
pub fn describe_resume_token(dialect: Dialect, token: &str) -> Result<ProcessSpec, String> {
    let token = ResumeToken::parse(token).map_err(|e| e.to_string())?;
    spec(&ZfsCommand::DescribeResumeToken { token }, dialect)
}

/// Reads [`describe_resume_token`]'s output and checks that the token continues
/// a stream of `fs`: a token naming any other filesystem is refused, so a peer
/// cannot use one to read a dataset it may not see.
pub fn parse_resume_description(
    fs: &DatasetPath,
    result: &crate::node::ProcessResult,
) -> Result<ResumeTokenInfo, String> {
    if !result.status.success() {
        return Err(format!(
            "zfs cannot read the resume token of {fs} ({}): {}",
            result.status,
            result.stderr.trim()
        ));
    }
    let info = parse::parse_resume_token_description(&result.stdout).map_err(|e| e.to_string())?;
    if info.to_name.filesystem() != fs {
        return Err(format!("the resume token names {}, not a snapshot of {fs}", info.to_name));
    }
    Ok(info)
}

/// `zfs receive` into `target`: never mounted, resumable where it can be, and
/// forced (`-F`) only to replace a placeholder. A new replica is made read-only
/// by the receive itself where the dialect takes `-o` (so no crash between the
/// receive and a `zfs set` can leave it writable).
pub fn receive(
    dialect: Dialect,
    target: &DatasetPath,
    force: bool,
    new_replica: bool,
) -> Result<ProcessSpec, String> {
    let rollback = if force { Rollback::Force } else { Rollback::Never };
    let mut overrides = Vec::new();
    if new_replica && dialect.capabilities().receive_property_overrides {
        let name = PropertyName::parse("readonly").map_err(|e| e.to_string())?;
        let value = PropertyValue::parse("on").map_err(|e| e.to_string())?;
        overrides.push(ReceiveOverride::Set(name, value));
    }
    spec(&ZfsCommand::Receive(Receive { target: target.clone(), rollback, overrides }), dialect)
}

/// A placeholder: marked, never mounted, holding only children.
pub fn create_placeholder(dialect: Dialect, path: &DatasetPath) -> Result<ProcessSpec, String> {
    spec(&ZfsCommand::CreatePlaceholder { path: path.clone() }, dialect)
}

/// Sets one property (zfs-fuse takes one per `zfs set`).
pub fn set_property(
    dialect: Dialect,
    path: &DatasetPath,
    property: &str,
    value: &str,
) -> Result<ProcessSpec, String> {
    let name = PropertyName::parse(property).map_err(|e| e.to_string())?;
    let value = PropertyValue::parse(value).map_err(|e| e.to_string())?;
    let properties = crate::zfs::command::PropertyAssignments::new(vec![(name, value)])
        .map_err(|e| e.to_string())?;
    spec(
        &ZfsCommand::SetProperties { dataset: DatasetName::Filesystem(path.clone()), properties },
        dialect,
    )
}

/// Destroys snapshots of `fs`, as few commands as the dialect allows: one
/// where `zfs destroy fs@a,b,c` works, else one per snapshot.
pub fn destroy_snapshots(
    dialect: Dialect,
    fs: &DatasetPath,
    names: &[String],
) -> Result<Vec<ProcessSpec>, String> {
    let names: Vec<VersionName> = names
        .iter()
        .map(|n| VersionName::parse(n).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let batches: Vec<Vec<VersionName>> = if dialect.capabilities().destroy_many {
        vec![names]
    } else {
        names.into_iter().map(|n| vec![n]).collect()
    };
    batches
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let names = SnapshotNames::new(b).map_err(|e| e.to_string())?;
            spec(&ZfsCommand::DestroySnapshots { filesystem: fs.clone(), names }, dialect)
        })
        .collect()
}

/// `zfs snapshot` of `fs@name` for every filesystem given: one command per
/// pool where the dialect takes several names (atomic within the pool), else
/// one per filesystem. Each command comes with the snapshots it takes.
pub fn snapshot(
    dialect: Dialect,
    filesystems: &[DatasetPath],
    name: &str,
) -> Result<Vec<(ProcessSpec, Vec<String>)>, String> {
    let name = VersionName::parse(name).map_err(|e| e.to_string())?;
    let mut groups: BTreeMap<String, Vec<SnapshotPath>> = BTreeMap::new();
    for (i, fs) in filesystems.iter().enumerate() {
        let path = SnapshotPath::new(fs.clone(), name.clone()).map_err(|e| e.to_string())?;
        let key = if dialect.capabilities().multi_snapshot {
            fs.pool().to_owned()
        } else {
            format!("{i:020}")
        };
        groups.entry(key).or_default().push(path);
    }
    groups
        .into_values()
        .map(|paths| {
            let names = paths.iter().map(ToString::to_string).collect();
            let snapshots = Snapshots::new(paths).map_err(|e| e.to_string())?;
            Ok((spec(&ZfsCommand::Snapshot { snapshots }, dialect)?, names))
        })
        .collect()
}

/// The replication cursor bookmark a job keeps on the sender: it names the
/// newest snapshot the receiver has, so the next incremental can start from it
/// even if that snapshot is destroyed (by hand or by another tool). One per job
/// and filesystem; a new one replaces the old.
pub fn cursor_name(job: &str, guid: u64) -> String {
    let job: String = job
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_-.:".contains(c) { c } else { '_' })
        .collect();
    format!("zferry_cursor_G{guid:016x}_J_{job}")
}

/// True for a cursor bookmark of `job` ([`cursor_name`]).
pub fn is_cursor_of(name: &str, job: &str) -> bool {
    let suffix = cursor_name(job, 0);
    let suffix = &suffix[suffix.find("_J_").unwrap_or(0)..];
    name.starts_with("zferry_cursor_G") && name.ends_with(suffix) && name.len() == suffix.len() + 31
}

/// `zfs bookmark fs@snap fs#name`, then `zfs destroy` of each stale cursor.
pub fn move_cursor(
    dialect: Dialect,
    fs: &DatasetPath,
    to: &FilesystemVersion,
    stale: &[FilesystemVersion],
    job: &str,
) -> Result<Vec<ProcessSpec>, String> {
    let name = VersionName::parse(&cursor_name(job, to.guid)).map_err(|e| e.to_string())?;
    let mut specs =
        vec![spec(&ZfsCommand::Bookmark { snapshot: snapshot_path(fs, to)?, name }, dialect)?];
    for old in stale {
        specs.push(spec(&ZfsCommand::Destroy { version: version_path(fs, old)? }, dialect)?);
    }
    Ok(specs)
}

/// Removes the placeholder markers (zferry's and zrepl's) after a real receive
/// replaced the placeholder. Inheriting a marker that is not set is harmless.
pub fn clear_placeholder(dialect: Dialect, path: &DatasetPath) -> Vec<Result<ProcessSpec, String>> {
    [crate::zfs::property::ZFERRY_PLACEHOLDER, crate::zfs::property::ZREPL_PLACEHOLDER]
        .into_iter()
        .map(|name| {
            let property = PropertyName::parse(name).map_err(|e| e.to_string())?;
            spec(&ZfsCommand::Inherit { dataset: path.clone(), property }, dialect)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{ExitStatus, ProcessResult};

    /// `zfs send -n -v -t` on OpenZFS 2.3.2, for a token of `lp/fs@s2`.
    const DESCRIPTION: &[u8] = include_bytes!("../zfs/testdata/openzfs-send-token.stdout");

    fn described(status: ExitStatus) -> ProcessResult {
        ProcessResult {
            status,
            stdout: bytes::Bytes::from_static(DESCRIPTION),
            stderr: "cannot resume send: 'lp/fs@s2' used in the initial send no longer exists"
                .into(),
            stdout_truncated: false,
            bytes: 0,
        }
    }

    fn fs(s: &str) -> DatasetPath {
        DatasetPath::parse(s).unwrap()
    }

    #[test]
    fn one_listing_covers_every_root() {
        let roots = [fs("p1"), fs("p2/a")];
        let spec = list_versions_under(Dialect::ZfsFuse, &roots).expect("listing");
        assert_eq!(spec.argv[spec.argv.len() - 2..], ["p1".to_owned(), "p2/a".to_owned()]);
        assert!(list_filesystems_under(Dialect::ZfsFuse, &[]).is_err(), "no root, no listing");
    }

    #[test]
    fn cursor_names_belong_to_one_job() {
        let name = cursor_name("laptop to server", 0xabc);
        assert_eq!(name, "zferry_cursor_G0000000000000abc_J_laptop_to_server");
        assert!(is_cursor_of(&name, "laptop to server"));
        assert!(!is_cursor_of(&name, "laptop"), "another job's cursor is not ours");
        assert!(!is_cursor_of(
            "zferry_cursor_G0000000000000abc_J_x_laptop_to_server",
            "laptop_to_server"
        ));
        assert!(!is_cursor_of("manual", "laptop to server"));
    }

    #[test]
    fn a_token_of_the_filesystem_is_read() {
        let info = parse_resume_description(&fs("lp/fs"), &described(ExitStatus::Code(0)))
            .expect("describes pool/src");
        assert_eq!(info.to_name.to_string(), "lp/fs@s2");
        assert!(info.to_guid != 0 && info.bytes > 0);
    }

    #[test]
    fn a_token_naming_another_filesystem_is_refused() {
        // A peer must not get another dataset's data by handing us its token.
        let err = parse_resume_description(&fs("lp/other"), &described(ExitStatus::Code(0)))
            .expect_err("names pool/src");
        assert!(err.contains("names lp/fs@s2, not a snapshot of lp/other"), "{err}");
        let err = parse_resume_description(&fs("lp/fs/child"), &described(ExitStatus::Code(0)))
            .expect_err("a parent's token is not a child's");
        assert!(err.contains("not a snapshot of lp/fs/child"), "{err}");
    }

    #[test]
    fn a_failing_describe_reports_zfs_words() {
        let err = parse_resume_description(&fs("lp/fs"), &described(ExitStatus::Code(1)))
            .expect_err("zfs failed");
        assert!(err.contains("no longer exists"), "{err}");
    }
}
