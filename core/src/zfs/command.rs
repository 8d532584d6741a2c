//! Typed `zfs` invocations. [`ZfsCommand::argv`] turns one into an argument
//! vector for the installed [`Dialect`] (never a shell string), or says which
//! feature that dialect lacks. Everything a command needs to be well-formed is
//! checked when it is built, so `argv` can only fail on the dialect.

use std::collections::BTreeSet;

use super::dialect::{Capabilities, Dialect};
use super::path::DatasetPath;
use super::property::{PropertyName, PropertyValue, ZFERRY_PLACEHOLDER};
use super::resume::ResumeToken;
use super::version::VersionKind;
use super::version_path::{DatasetName, SnapshotPath, VersionName, VersionPath};

/// The program every command runs.
pub const PROGRAM: &str = "zfs";

/// Properties [`ZfsCommand::ListFilesystems`] asks for, besides the resume token.
pub const FILESYSTEM_PROPERTIES: [&str; 5] = [
    "type",
    "guid",
    "readonly",
    super::property::ZFERRY_PLACEHOLDER,
    super::property::ZREPL_PLACEHOLDER,
];
/// Added to [`FILESYSTEM_PROPERTIES`] where the dialect can resume.
pub const RESUME_TOKEN_PROPERTY: &str = "receive_resume_token";
/// Properties [`ZfsCommand::ListVersions`] needs per version.
pub const VERSION_PROPERTIES: [&str; 4] = ["type", "guid", "createtxg", "creation"];

/// A `zfs` feature that the installed dialect lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{dialect} does not support {feature}, which `zfs {command}` needs here")]
pub struct Unsupported {
    pub dialect: Dialect,
    pub command: &'static str,
    pub feature: &'static str,
}

/// A command that cannot be well-formed whatever the dialect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    #[error("`zfs {command}` needs at least one {what}")]
    Empty { command: &'static str, what: &'static str },
    #[error("`zfs {command}` names {item:?} twice")]
    Duplicate { command: &'static str, item: String },
    #[error("`zfs snapshot` of several snapshots is atomic only within one pool, but {first:?} and {other:?} are in different pools")]
    SeveralPools { first: String, other: String },
    #[error("hold tag {tag:?} must be 1 to 200 characters of a-z, A-Z, 0-9, '_', '-', '.', ':' and not start with '-'")]
    BadHoldTag { tag: String },
    #[error("incremental base {from:?} and target {to:?} are on different filesystems")]
    BaseOnOtherFilesystem { from: String, to: String },
}

/// The tag of a `zfs hold`. Restricted to a safe subset so that it can never be
/// read as an option and reads back unchanged from `zfs holds -H`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct HoldTag(String);

impl HoldTag {
    pub fn parse(s: &str) -> Result<HoldTag, InvalidCommand> {
        let valid = (1..=200).contains(&s.len())
            && !s.starts_with('-')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !valid {
            return Err(InvalidCommand::BadHoldTag { tag: s.to_owned() });
        }
        Ok(HoldTag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HoldTag {
    type Error = InvalidCommand;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        HoldTag::parse(&s)
    }
}

impl From<HoldTag> for String {
    fn from(t: HoldTag) -> String {
        t.0
    }
}

/// Several snapshots taken by one `zfs snapshot`, so that they are atomic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshots(Vec<SnapshotPath>);

impl Snapshots {
    /// Non-empty, no duplicates, one pool (ZFS makes them atomic only within one).
    pub fn new(snapshots: Vec<SnapshotPath>) -> Result<Snapshots, InvalidCommand> {
        let Some(first) = snapshots.first() else {
            return Err(InvalidCommand::Empty { command: "snapshot", what: "snapshot" });
        };
        if let Some(other) =
            snapshots.iter().find(|s| s.filesystem().pool() != first.filesystem().pool())
        {
            return Err(InvalidCommand::SeveralPools {
                first: first.to_string(),
                other: other.to_string(),
            });
        }
        check_unique("snapshot", snapshots.iter().map(|s| s.to_string()))?;
        Ok(Snapshots(snapshots))
    }

    pub fn as_slice(&self) -> &[SnapshotPath] {
        &self.0
    }
}

/// Snapshot names for one `zfs destroy`: non-empty, each once. An empty list
/// would make `pool/fs@` name nothing at best; it cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotNames(Vec<VersionName>);

impl SnapshotNames {
    pub fn new(names: Vec<VersionName>) -> Result<SnapshotNames, InvalidCommand> {
        if names.is_empty() {
            return Err(InvalidCommand::Empty { command: "destroy", what: "snapshot" });
        }
        check_unique("destroy", names.iter().map(|n| n.as_str().to_owned()))?;
        Ok(SnapshotNames(names))
    }

    pub fn as_slice(&self) -> &[VersionName] {
        &self.0
    }
}

/// Properties for `zfs set`: non-empty, each name once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyAssignments(Vec<(PropertyName, PropertyValue)>);

impl PropertyAssignments {
    pub fn new(assignments: Vec<(PropertyName, PropertyValue)>) -> Result<Self, InvalidCommand> {
        if assignments.is_empty() {
            return Err(InvalidCommand::Empty { command: "set", what: "property" });
        }
        check_unique("set", assignments.iter().map(|(n, _)| n.to_string()))?;
        Ok(PropertyAssignments(assignments))
    }

    pub fn as_slice(&self) -> &[(PropertyName, PropertyValue)] {
        &self.0
    }
}

/// Property names for `zfs get`: non-empty, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyNames(Vec<PropertyName>);

impl PropertyNames {
    pub fn new(names: Vec<PropertyName>) -> Result<Self, InvalidCommand> {
        if names.is_empty() {
            return Err(InvalidCommand::Empty { command: "get", what: "property" });
        }
        check_unique("get", names.iter().map(|n| n.to_string()))?;
        Ok(PropertyNames(names))
    }

    pub fn as_slice(&self) -> &[PropertyName] {
        &self.0
    }
}

fn check_unique(
    command: &'static str,
    items: impl Iterator<Item = String>,
) -> Result<(), InvalidCommand> {
    let mut seen = BTreeSet::new();
    for item in items {
        if !seen.insert(item.clone()) {
            return Err(InvalidCommand::Duplicate { command, item });
        }
    }
    Ok(())
}

/// Which stream `zfs send` produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStream {
    /// The whole snapshot.
    Full { to: SnapshotPath },
    /// `-i FROM`: the changes between one version (snapshot or bookmark) and `to`.
    Incremental { from: VersionPath, to: SnapshotPath },
    /// `-I FROM`: like `-i`, but also carries every snapshot in between.
    WithIntermediates { from: SnapshotPath, to: SnapshotPath },
}

impl SendStream {
    /// Builds an incremental stream, refusing a base on another filesystem: a
    /// clone's origin would be valid for ZFS, but zferry never needs one, and a
    /// base on the wrong filesystem is far more likely a planner bug.
    pub fn incremental(from: VersionPath, to: SnapshotPath) -> Result<SendStream, InvalidCommand> {
        same_filesystem(from.filesystem(), &from, &to)?;
        Ok(SendStream::Incremental { from, to })
    }

    pub fn with_intermediates(
        from: SnapshotPath,
        to: SnapshotPath,
    ) -> Result<SendStream, InvalidCommand> {
        same_filesystem(from.filesystem(), &from, &to)?;
        Ok(SendStream::WithIntermediates { from, to })
    }

    pub fn to(&self) -> &SnapshotPath {
        match self {
            SendStream::Full { to }
            | SendStream::Incremental { to, .. }
            | SendStream::WithIntermediates { to, .. } => to,
        }
    }
}

fn same_filesystem(
    from_fs: &DatasetPath,
    from: &dyn std::fmt::Display,
    to: &SnapshotPath,
) -> Result<(), InvalidCommand> {
    if from_fs != to.filesystem() {
        return Err(InvalidCommand::BaseOnOtherFilesystem {
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    Ok(())
}

/// Optional `zfs send` flags. All off is a plain stream, which every dialect sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendFlags {
    /// `-w`: send encrypted blocks as they are on disk (no key needed).
    pub raw: bool,
    /// `-L`: keep blocks larger than 128 KiB.
    pub large_blocks: bool,
    /// `-c`: keep blocks compressed as on disk.
    pub compressed: bool,
    /// `-e`: keep embedded-data blocks.
    pub embedded: bool,
    /// `-p`: carry the filesystem's properties.
    pub properties: bool,
}

/// What `zfs send` sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    Stream {
        stream: SendStream,
        flags: SendFlags,
    },
    /// `-t TOKEN`: continue an interrupted transfer; the token carries the flags.
    Resume {
        token: ResumeToken,
    },
}

/// `zfs receive -F` rolls the target back and destroys its snapshots that the
/// stream does not have: only for replacing a placeholder, by explicit policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rollback {
    #[default]
    Never,
    Force,
}

/// A property override for `zfs receive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveOverride {
    /// `-o name=value`: set on the received filesystem, whatever the stream says.
    Set(PropertyName, PropertyValue),
    /// `-x name`: ignore the stream's value; inherit instead.
    Exclude(PropertyName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receive {
    /// The filesystem to receive into; the snapshot keeps the stream's name.
    pub target: DatasetPath,
    pub rollback: Rollback,
    pub overrides: Vec<ReceiveOverride>,
}

/// One `zfs` invocation. Received filesystems are never mounted (`-u`), a
/// destroy names exactly one snapshot or bookmark, and nothing is recursive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZfsCommand {
    /// `zfs version`, to detect the dialect.
    Version,
    /// Filesystems and volumes under `root` (itself included) with
    /// [`FILESYSTEM_PROPERTIES`] and, where supported, the resume token.
    ListFilesystems {
        root: DatasetPath,
    },
    /// Snapshots (and bookmarks where supported) of `root` and everything below.
    ListVersions {
        root: DatasetPath,
    },
    GetProperties {
        dataset: DatasetName,
        properties: PropertyNames,
    },
    SetProperties {
        dataset: DatasetName,
        properties: PropertyAssignments,
    },
    /// `zfs inherit`: drops a local value, e.g. a placeholder marker.
    Inherit {
        dataset: DatasetPath,
        property: PropertyName,
    },
    Snapshot {
        snapshots: Snapshots,
    },
    /// An unmounted filesystem marked `zferry:placeholder=on`. Not `-p`: parents
    /// are created one by one, top-down, so that each can be marked.
    CreatePlaceholder {
        path: DatasetPath,
    },
    Send(Send),
    /// `zfs send -n -v -P`: prints the estimated stream size, sends nothing.
    EstimateSend(Send),
    Receive(Receive),
    /// `zfs receive -A`: discard the partial state an interrupted receive left.
    AbortResumableReceive {
        target: DatasetPath,
    },
    /// Destroys exactly one snapshot or bookmark; a filesystem cannot be named.
    Destroy {
        version: VersionPath,
    },
    /// `zfs destroy pool/fs@a,b,c`: snapshots of one filesystem in one command.
    /// Never the filesystem itself: the list is non-empty by construction.
    DestroySnapshots {
        filesystem: DatasetPath,
        names: SnapshotNames,
    },
    Hold {
        tag: HoldTag,
        snapshot: SnapshotPath,
    },
    Release {
        tag: HoldTag,
        snapshot: SnapshotPath,
    },
    ListHolds {
        snapshot: SnapshotPath,
    },
    /// `zfs bookmark pool/fs@snap pool/fs#name`: a bookmark on the same filesystem.
    Bookmark {
        snapshot: SnapshotPath,
        name: VersionName,
    },
    /// `zfs send -n -v -t TOKEN`: prints what the token contains. Must run on
    /// the sender, and fails if the token's snapshot no longer exists there.
    DescribeResumeToken {
        token: ResumeToken,
    },
}

/// How a listing command prints its rows, which its parser must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingFormat {
    /// `zfs list -H -p -o name,guid,createtxg,creation`: one line per dataset.
    Columns,
    /// `zfs get -H -p -o name,property,value,source`: one line per property.
    PropertyTable,
}

/// The format [`ZfsCommand::ListVersions`] prints in under `dialect`.
pub fn versions_listing_format(dialect: &Dialect) -> ListingFormat {
    if dialect.capabilities().list_parsable {
        ListingFormat::Columns
    } else {
        ListingFormat::PropertyTable
    }
}

struct Builder<'a> {
    dialect: &'a Dialect,
    caps: Capabilities,
    command: &'static str,
    args: Vec<String>,
}

impl Builder<'_> {
    fn arg(&mut self, a: impl Into<String>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    fn require(&self, supported: bool, feature: &'static str) -> Result<(), Unsupported> {
        if supported {
            Ok(())
        } else {
            Err(Unsupported { dialect: *self.dialect, command: self.command, feature })
        }
    }

    /// Fails if `version` is a bookmark and the dialect has none.
    fn check_kind(&self, version: &VersionPath) -> Result<(), Unsupported> {
        self.require(version.kind() == VersionKind::Snapshot || self.caps.bookmarks, "bookmarks")
    }

    fn version(&mut self, version: &VersionPath) -> Result<&mut Self, Unsupported> {
        self.check_kind(version)?;
        Ok(self.arg(version.to_string()))
    }
}

impl ZfsCommand {
    /// The subcommand, for logs and errors: "send", "receive", ...
    pub fn name(&self) -> &'static str {
        match self {
            ZfsCommand::Version => "version",
            ZfsCommand::ListFilesystems { .. } | ZfsCommand::GetProperties { .. } => "get",
            ZfsCommand::ListVersions { .. } => "list",
            ZfsCommand::SetProperties { .. } => "set",
            ZfsCommand::Inherit { .. } => "inherit",
            ZfsCommand::Snapshot { .. } => "snapshot",
            ZfsCommand::CreatePlaceholder { .. } => "create",
            ZfsCommand::Send(_)
            | ZfsCommand::EstimateSend(_)
            | ZfsCommand::DescribeResumeToken { .. } => "send",
            ZfsCommand::Receive(_) | ZfsCommand::AbortResumableReceive { .. } => "receive",
            ZfsCommand::Destroy { .. } | ZfsCommand::DestroySnapshots { .. } => "destroy",
            ZfsCommand::Hold { .. } => "hold",
            ZfsCommand::Release { .. } => "release",
            ZfsCommand::ListHolds { .. } => "holds",
            ZfsCommand::Bookmark { .. } => "bookmark",
        }
    }

    /// The full argument vector, program first.
    pub fn argv(&self, dialect: &Dialect) -> Result<Vec<String>, Unsupported> {
        let mut b = Builder {
            dialect,
            caps: dialect.capabilities(),
            command: self.name(),
            args: vec![PROGRAM.to_owned()],
        };
        match self {
            ZfsCommand::Version => {
                b.arg("version");
            }
            ZfsCommand::ListFilesystems { root } => {
                let mut props: Vec<&str> = FILESYSTEM_PROPERTIES.to_vec();
                if b.caps.resumable {
                    props.push(RESUME_TOKEN_PROPERTY);
                }
                b.arg("get")
                    .arg("-H")
                    .arg("-p")
                    .arg("-r")
                    .arg("-o")
                    .arg("name,property,value,source");
                // Without -t (zfs-fuse) snapshots come too; the parser skips them.
                if b.caps.get_type_filter {
                    b.arg("-t").arg("filesystem,volume");
                }
                b.arg(props.join(",")).arg(root.to_string());
            }
            ZfsCommand::ListVersions { root } => match versions_listing_format(dialect) {
                ListingFormat::Columns => {
                    let types = if b.caps.bookmarks { "snapshot,bookmark" } else { "snapshot" };
                    b.arg("list").arg("-H").arg("-p").arg("-r").arg("-t").arg(types);
                    b.arg("-o").arg("name,guid,createtxg,creation").arg("-s").arg("createtxg");
                    b.arg(root.to_string());
                }
                ListingFormat::PropertyTable => {
                    // zfs-fuse: `zfs list` has no -p (creation would be a local
                    // date) and `zfs get` no -t; filesystem rows are skipped.
                    b.arg("get")
                        .arg("-H")
                        .arg("-p")
                        .arg("-r")
                        .arg("-o")
                        .arg("name,property,value,source");
                    b.arg(VERSION_PROPERTIES.join(",")).arg(root.to_string());
                }
            },
            ZfsCommand::GetProperties { dataset, properties } => {
                if let DatasetName::Version(v) = dataset {
                    b.check_kind(v)?;
                }
                let names: Vec<&str> =
                    properties.as_slice().iter().map(PropertyName::as_str).collect();
                b.arg("get").arg("-H").arg("-p").arg("-o").arg("name,property,value,source");
                b.arg(names.join(",")).arg(dataset.to_string());
            }
            ZfsCommand::SetProperties { dataset, properties } => {
                b.require(
                    properties.as_slice().len() == 1 || b.caps.set_many_properties,
                    "several properties in one `zfs set`",
                )?;
                b.arg("set");
                for (name, value) in properties.as_slice() {
                    b.arg(format!("{name}={value}"));
                }
                if let DatasetName::Version(v) = dataset {
                    b.check_kind(v)?;
                }
                b.arg(dataset.to_string());
            }
            ZfsCommand::Inherit { dataset, property } => {
                b.arg("inherit").arg(property.as_str()).arg(dataset.to_string());
            }
            ZfsCommand::Snapshot { snapshots } => {
                b.require(
                    snapshots.as_slice().len() == 1 || b.caps.multi_snapshot,
                    "several snapshots in one `zfs snapshot`",
                )?;
                b.arg("snapshot");
                for s in snapshots.as_slice() {
                    b.arg(s.to_string());
                }
            }
            ZfsCommand::CreatePlaceholder { path } => {
                // mountpoint=none (as zrepl does): the placeholder never mounts,
                // and children that inherit it do not mount over host paths.
                b.arg("create").arg("-o").arg(format!("{ZFERRY_PLACEHOLDER}=on"));
                b.arg("-o").arg("mountpoint=none").arg(path.to_string());
            }
            ZfsCommand::Send(send) => {
                b.arg("send");
                send_args(&mut b, send)?;
            }
            ZfsCommand::EstimateSend(send) => {
                b.require(b.caps.send_estimate, "dry-run size estimates (send -n -P)")?;
                b.arg("send").arg("-n").arg("-v").arg("-P");
                send_args(&mut b, send)?;
            }
            ZfsCommand::Receive(recv) => {
                // -u: never mount what arrives. zfs-fuse does not document -u, but
                // accepts it and leaves the filesystem unmounted (checked).
                b.arg("receive").arg("-u");
                if b.caps.resumable {
                    b.arg("-s");
                }
                if recv.rollback == Rollback::Force {
                    b.arg("-F");
                }
                if !recv.overrides.is_empty() {
                    b.require(b.caps.receive_property_overrides, "receive -o/-x")?;
                }
                for o in &recv.overrides {
                    match o {
                        ReceiveOverride::Set(name, value) => {
                            b.arg("-o").arg(format!("{name}={value}"))
                        }
                        ReceiveOverride::Exclude(name) => b.arg("-x").arg(name.as_str()),
                    };
                }
                b.arg(recv.target.to_string());
            }
            ZfsCommand::AbortResumableReceive { target } => {
                b.require(b.caps.resumable, "resumable receive")?;
                b.arg("receive").arg("-A").arg(target.to_string());
            }
            ZfsCommand::Destroy { version } => {
                b.arg("destroy");
                b.version(version)?;
            }
            ZfsCommand::DestroySnapshots { filesystem, names } => {
                let names = names.as_slice();
                b.require(
                    names.len() == 1 || b.caps.destroy_many,
                    "several snapshots in one `zfs destroy`",
                )?;
                let list: Vec<&str> = names.iter().map(VersionName::as_str).collect();
                b.arg("destroy").arg(format!("{filesystem}@{}", list.join(",")));
            }
            ZfsCommand::Hold { tag, snapshot } => {
                b.require(b.caps.holds, "holds")?;
                b.arg("hold").arg(tag.as_str()).arg(snapshot.to_string());
            }
            ZfsCommand::Release { tag, snapshot } => {
                b.require(b.caps.holds, "holds")?;
                b.arg("release").arg(tag.as_str()).arg(snapshot.to_string());
            }
            ZfsCommand::ListHolds { snapshot } => {
                b.require(b.caps.list_holds, "listing holds")?;
                b.arg("holds").arg("-H").arg(snapshot.to_string());
            }
            ZfsCommand::Bookmark { snapshot, name } => {
                b.require(b.caps.bookmarks, "bookmarks")?;
                let bookmark = format!("{}#{}", snapshot.filesystem(), name);
                b.arg("bookmark").arg(snapshot.to_string()).arg(bookmark);
            }
            ZfsCommand::DescribeResumeToken { token } => {
                b.require(b.caps.resumable, "resumable send")?;
                b.arg("send").arg("-n").arg("-v").arg("-t").arg(token.as_str());
            }
        }
        Ok(b.args)
    }
}

fn send_args(b: &mut Builder<'_>, send: &Send) -> Result<(), Unsupported> {
    match send {
        Send::Resume { token } => {
            b.require(b.caps.resumable, "resumable send")?;
            b.arg("-t").arg(token.as_str());
        }
        Send::Stream { stream, flags } => {
            let caps = b.caps;
            let wanted = [
                (flags.raw, caps.raw_send, "-w", "raw sends"),
                (flags.large_blocks, caps.large_blocks, "-L", "large blocks"),
                (flags.compressed, caps.compressed_send, "-c", "compressed sends"),
                (flags.embedded, caps.embedded_data, "-e", "embedded data"),
                (flags.properties, true, "-p", ""),
            ];
            for (on, supported, flag, feature) in wanted {
                if on {
                    b.require(supported, feature)?;
                    b.arg(flag);
                }
            }
            match stream {
                SendStream::Full { .. } => {}
                SendStream::Incremental { from, .. } => {
                    b.arg("-i");
                    b.version(from)?;
                }
                SendStream::WithIntermediates { from, .. } => {
                    b.arg("-I").arg(from.to_string());
                }
            }
            b.arg(stream.to().to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::dialect::OpenZfsVersion;

    const OPENZFS: Dialect = Dialect::OpenZfs(OpenZfsVersion { major: 2, minor: 3, patch: 2 });
    const FUSE: Dialect = Dialect::ZfsFuse;

    fn fs(s: &str) -> DatasetPath {
        DatasetPath::parse(s).expect("path")
    }
    fn snap(s: &str) -> SnapshotPath {
        SnapshotPath::parse(s).expect("snapshot")
    }
    fn ver(s: &str) -> VersionPath {
        VersionPath::parse(s).expect("version")
    }
    fn prop(s: &str) -> PropertyName {
        PropertyName::parse(s).expect("property")
    }
    fn val(s: &str) -> PropertyValue {
        PropertyValue::parse(s).expect("value")
    }
    fn tag(s: &str) -> HoldTag {
        HoldTag::parse(s).expect("tag")
    }
    fn argv(cmd: &ZfsCommand, dialect: &Dialect) -> String {
        cmd.argv(dialect).expect("supported").join(" ")
    }
    fn unsupported(cmd: &ZfsCommand, dialect: &Dialect) -> &'static str {
        cmd.argv(dialect).expect_err("unsupported").feature
    }
    fn stream(s: SendStream) -> Send {
        Send::Stream { stream: s, flags: SendFlags::default() }
    }

    #[test]
    fn version() {
        assert_eq!(argv(&ZfsCommand::Version, &OPENZFS), "zfs version");
        assert_eq!(argv(&ZfsCommand::Version, &FUSE), "zfs version");
    }

    #[test]
    fn list_filesystems() {
        let cmd = ZfsCommand::ListFilesystems { root: fs("pool/src") };
        assert_eq!(
            argv(&cmd, &OPENZFS),
            "zfs get -H -p -r -o name,property,value,source -t filesystem,volume \
             type,guid,readonly,zferry:placeholder,zrepl:placeholder,receive_resume_token pool/src"
        );
        // Checked on zfs-fuse 0.7.0: `zfs get -t` is "invalid option 't'" and
        // `receive_resume_token` is "bad property list: invalid property".
        assert_eq!(
            argv(&cmd, &FUSE),
            "zfs get -H -p -r -o name,property,value,source \
             type,guid,readonly,zferry:placeholder,zrepl:placeholder pool/src"
        );
    }

    #[test]
    fn list_versions() {
        let cmd = ZfsCommand::ListVersions { root: fs("pool/src") };
        assert_eq!(
            argv(&cmd, &OPENZFS),
            "zfs list -H -p -r -t snapshot,bookmark -o name,guid,createtxg,creation -s createtxg pool/src"
        );
        assert_eq!(versions_listing_format(&OPENZFS), ListingFormat::Columns);
        // Checked on zfs-fuse 0.7.0: `zfs list -p` is "invalid option 'p'".
        assert_eq!(
            argv(&cmd, &FUSE),
            "zfs get -H -p -r -o name,property,value,source type,guid,createtxg,creation pool/src"
        );
        assert_eq!(versions_listing_format(&FUSE), ListingFormat::PropertyTable);
    }

    #[test]
    fn get_and_set_properties() {
        let names =
            PropertyNames::new(vec![prop("readonly"), prop("zferry:placeholder")]).expect("names");
        let cmd = ZfsCommand::GetProperties { dataset: fs("p/a").into(), properties: names };
        assert_eq!(
            argv(&cmd, &FUSE),
            "zfs get -H -p -o name,property,value,source readonly,zferry:placeholder p/a"
        );
        let one = PropertyAssignments::new(vec![(prop("readonly"), val("on"))]).expect("one");
        let cmd = ZfsCommand::SetProperties { dataset: fs("p/a").into(), properties: one };
        assert_eq!(argv(&cmd, &FUSE), "zfs set readonly=on p/a");
        let two = PropertyAssignments::new(vec![
            (prop("readonly"), val("on")),
            (prop("x:y"), val("a=b c")),
        ])
        .expect("two");
        let cmd = ZfsCommand::SetProperties { dataset: fs("p/a").into(), properties: two };
        assert_eq!(
            cmd.argv(&OPENZFS).expect("openzfs"),
            ["zfs", "set", "readonly=on", "x:y=a=b c", "p/a"]
        );
        // Checked on zfs-fuse 0.7.0: a second `k=v` is taken as a dataset name.
        assert_eq!(unsupported(&cmd, &FUSE), "several properties in one `zfs set`");
        let on_bookmark = ZfsCommand::GetProperties {
            dataset: ver("p/a#m").into(),
            properties: PropertyNames::new(vec![prop("guid")]).expect("names"),
        };
        assert_eq!(unsupported(&on_bookmark, &FUSE), "bookmarks");
        assert_eq!(
            argv(&on_bookmark, &OPENZFS),
            "zfs get -H -p -o name,property,value,source guid p/a#m"
        );
        let inherit =
            ZfsCommand::Inherit { dataset: fs("p/a"), property: prop("zferry:placeholder") };
        assert_eq!(argv(&inherit, &FUSE), "zfs inherit zferry:placeholder p/a");
    }

    #[test]
    fn property_lists_must_be_nonempty_and_unique() {
        assert_eq!(
            PropertyNames::new(vec![]),
            Err(InvalidCommand::Empty { command: "get", what: "property" })
        );
        assert_eq!(
            PropertyNames::new(vec![prop("a"), prop("a")]),
            Err(InvalidCommand::Duplicate { command: "get", item: "a".into() })
        );
        assert!(PropertyAssignments::new(vec![]).is_err());
        let dup = vec![(prop("a"), val("1")), (prop("a"), val("2"))];
        assert_eq!(
            PropertyAssignments::new(dup),
            Err(InvalidCommand::Duplicate { command: "set", item: "a".into() })
        );
    }

    #[test]
    fn snapshot_is_one_atomic_command() {
        let many = Snapshots::new(vec![snap("p/a@s"), snap("p/a/b@s")]).expect("snapshots");
        let cmd = ZfsCommand::Snapshot { snapshots: many };
        assert_eq!(argv(&cmd, &OPENZFS), "zfs snapshot p/a@s p/a/b@s");
        // Checked on zfs-fuse 0.7.0: two names give "too many arguments".
        assert_eq!(unsupported(&cmd, &FUSE), "several snapshots in one `zfs snapshot`");
        let one =
            ZfsCommand::Snapshot { snapshots: Snapshots::new(vec![snap("p/a@s")]).expect("one") };
        assert_eq!(argv(&one, &FUSE), "zfs snapshot p/a@s");
    }

    #[test]
    fn destroy_snapshots_batches_where_the_dialect_can() {
        let names = |n: &[&str]| {
            SnapshotNames::new(n.iter().map(|s| VersionName::parse(s).expect("name")).collect())
        };
        let fs = DatasetPath::parse("p/a").expect("path");
        let many = ZfsCommand::DestroySnapshots {
            filesystem: fs.clone(),
            names: names(&["s1", "s2", "s3"]).expect("three"),
        };
        assert_eq!(argv(&many, &OPENZFS), "zfs destroy p/a@s1,s2,s3");
        assert_eq!(unsupported(&many, &FUSE), "several snapshots in one `zfs destroy`");
        let one =
            ZfsCommand::DestroySnapshots { filesystem: fs, names: names(&["s1"]).expect("one") };
        assert_eq!(argv(&one, &FUSE), "zfs destroy p/a@s1");
        assert!(names(&[]).is_err(), "an empty list names no snapshot");
        assert!(names(&["s1", "s1"]).is_err());
    }

    #[test]
    fn snapshots_must_be_nonempty_unique_and_in_one_pool() {
        assert_eq!(
            Snapshots::new(vec![]),
            Err(InvalidCommand::Empty { command: "snapshot", what: "snapshot" })
        );
        assert_eq!(
            Snapshots::new(vec![snap("p/a@s"), snap("p/a@s")]),
            Err(InvalidCommand::Duplicate { command: "snapshot", item: "p/a@s".into() })
        );
        assert_eq!(
            Snapshots::new(vec![snap("p/a@s"), snap("q/a@s")]),
            Err(InvalidCommand::SeveralPools { first: "p/a@s".into(), other: "q/a@s".into() })
        );
    }

    #[test]
    fn create_placeholder() {
        let cmd = ZfsCommand::CreatePlaceholder { path: fs("dst/a") };
        let want = "zfs create -o zferry:placeholder=on -o mountpoint=none dst/a";
        assert_eq!(argv(&cmd, &OPENZFS), want);
        assert_eq!(argv(&cmd, &FUSE), want, "checked: zfs-fuse accepts these options");
    }

    #[test]
    fn send_streams() {
        let full = ZfsCommand::Send(stream(SendStream::Full { to: snap("p/a@s2") }));
        assert_eq!(argv(&full, &FUSE), "zfs send p/a@s2");
        let inc = SendStream::incremental(ver("p/a@s1"), snap("p/a@s2")).expect("inc");
        assert_eq!(argv(&ZfsCommand::Send(stream(inc)), &FUSE), "zfs send -i p/a@s1 p/a@s2");
        let from_bookmark = SendStream::incremental(ver("p/a#s1"), snap("p/a@s2")).expect("inc");
        let cmd = ZfsCommand::Send(stream(from_bookmark));
        assert_eq!(argv(&cmd, &OPENZFS), "zfs send -i p/a#s1 p/a@s2");
        assert_eq!(unsupported(&cmd, &FUSE), "bookmarks");
        let batched =
            SendStream::with_intermediates(snap("p/a@s1"), snap("p/a@s9")).expect("batched");
        assert_eq!(argv(&ZfsCommand::Send(stream(batched)), &FUSE), "zfs send -I p/a@s1 p/a@s9");
    }

    #[test]
    fn send_base_must_be_on_the_same_filesystem() {
        assert_eq!(
            SendStream::incremental(ver("p/b@s1"), snap("p/a@s2")),
            Err(InvalidCommand::BaseOnOtherFilesystem {
                from: "p/b@s1".into(),
                to: "p/a@s2".into()
            })
        );
        assert!(SendStream::with_intermediates(snap("p/b@s1"), snap("p/a@s2")).is_err());
    }

    #[test]
    fn send_flags_follow_the_dialect() {
        let all = SendFlags {
            raw: true,
            large_blocks: true,
            compressed: true,
            embedded: true,
            properties: true,
        };
        let cmd = ZfsCommand::Send(Send::Stream {
            stream: SendStream::Full { to: snap("p/a@s") },
            flags: all,
        });
        assert_eq!(argv(&cmd, &OPENZFS), "zfs send -w -L -c -e -p p/a@s");
        // Checked on zfs-fuse 0.7.0: -w, -L, -c and -e are each "invalid option"; -p works.
        assert_eq!(unsupported(&cmd, &FUSE), "raw sends");
        for (flags, feature) in [
            (SendFlags { large_blocks: true, ..SendFlags::default() }, "large blocks"),
            (SendFlags { compressed: true, ..SendFlags::default() }, "compressed sends"),
            (SendFlags { embedded: true, ..SendFlags::default() }, "embedded data"),
        ] {
            let cmd = ZfsCommand::Send(Send::Stream {
                stream: SendStream::Full { to: snap("p/a@s") },
                flags,
            });
            assert_eq!(unsupported(&cmd, &FUSE), feature);
        }
        let props = SendFlags { properties: true, ..SendFlags::default() };
        let cmd = ZfsCommand::Send(Send::Stream {
            stream: SendStream::Full { to: snap("p/a@s") },
            flags: props,
        });
        assert_eq!(argv(&cmd, &FUSE), "zfs send -p p/a@s");
    }

    #[test]
    fn resume_and_estimates() {
        let token = ResumeToken::parse("1-e604ea4bf-e0-789c63a2").expect("token");
        let resume = ZfsCommand::Send(Send::Resume { token: token.clone() });
        assert_eq!(argv(&resume, &OPENZFS), "zfs send -t 1-e604ea4bf-e0-789c63a2");
        // Checked on zfs-fuse 0.7.0: `zfs send -t` is "invalid option 't'".
        assert_eq!(unsupported(&resume, &FUSE), "resumable send");
        let estimate = ZfsCommand::EstimateSend(stream(SendStream::Full { to: snap("p/a@s") }));
        assert_eq!(argv(&estimate, &OPENZFS), "zfs send -n -v -P p/a@s");
        // Checked on zfs-fuse 0.7.0: `zfs send -n` is "invalid option 'n'".
        assert_eq!(unsupported(&estimate, &FUSE), "dry-run size estimates (send -n -P)");
        let estimate_resume = ZfsCommand::EstimateSend(Send::Resume { token: token.clone() });
        assert_eq!(
            argv(&estimate_resume, &OPENZFS),
            "zfs send -n -v -P -t 1-e604ea4bf-e0-789c63a2"
        );
        let describe = ZfsCommand::DescribeResumeToken { token };
        assert_eq!(argv(&describe, &OPENZFS), "zfs send -n -v -t 1-e604ea4bf-e0-789c63a2");
        assert_eq!(unsupported(&describe, &FUSE), "resumable send");
    }

    #[test]
    fn receive() {
        let plain = Receive { target: fs("dst/a"), rollback: Rollback::Never, overrides: vec![] };
        let cmd = ZfsCommand::Receive(plain.clone());
        assert_eq!(argv(&cmd, &OPENZFS), "zfs receive -u -s dst/a");
        // Checked on zfs-fuse 0.7.0: `receive -u` is accepted though undocumented
        // and leaves the filesystem unmounted; `-s` is "invalid option 's'".
        assert_eq!(argv(&cmd, &FUSE), "zfs receive -u dst/a");
        let forced = ZfsCommand::Receive(Receive { rollback: Rollback::Force, ..plain.clone() });
        assert_eq!(argv(&forced, &FUSE), "zfs receive -u -F dst/a");
        let overrides = vec![
            ReceiveOverride::Set(prop("readonly"), val("on")),
            ReceiveOverride::Exclude(prop("mountpoint")),
        ];
        let cmd = ZfsCommand::Receive(Receive { overrides, ..plain });
        assert_eq!(argv(&cmd, &OPENZFS), "zfs receive -u -s -o readonly=on -x mountpoint dst/a");
        // Checked on zfs-fuse 0.7.0: -o and -x are "invalid option".
        assert_eq!(unsupported(&cmd, &FUSE), "receive -o/-x");
        let abort = ZfsCommand::AbortResumableReceive { target: fs("dst/a") };
        assert_eq!(argv(&abort, &OPENZFS), "zfs receive -A dst/a");
        assert_eq!(unsupported(&abort, &FUSE), "resumable receive");
    }

    #[test]
    fn destroy_names_one_version_only() {
        let cmd = ZfsCommand::Destroy { version: ver("p/a@old") };
        assert_eq!(cmd.argv(&FUSE).expect("fuse"), ["zfs", "destroy", "p/a@old"]);
        let bm = ZfsCommand::Destroy { version: ver("p/a#old") };
        assert_eq!(argv(&bm, &OPENZFS), "zfs destroy p/a#old");
        assert_eq!(unsupported(&bm, &FUSE), "bookmarks");
    }

    #[test]
    fn holds_and_bookmarks() {
        let hold = ZfsCommand::Hold { tag: tag("zferry_base"), snapshot: snap("p/a@s") };
        assert_eq!(argv(&hold, &FUSE), "zfs hold zferry_base p/a@s");
        let release = ZfsCommand::Release { tag: tag("zferry_base"), snapshot: snap("p/a@s") };
        assert_eq!(argv(&release, &FUSE), "zfs release zferry_base p/a@s");
        let list = ZfsCommand::ListHolds { snapshot: snap("p/a@s") };
        assert_eq!(argv(&list, &OPENZFS), "zfs holds -H p/a@s");
        // Checked on zfs-fuse 0.7.0: "internal error: /usr/lib/zfs/pyzfs.py not found".
        assert_eq!(unsupported(&list, &FUSE), "listing holds");
        let name = VersionName::parse("zferry_s").expect("name");
        let bookmark = ZfsCommand::Bookmark { snapshot: snap("p/a@s"), name };
        assert_eq!(argv(&bookmark, &OPENZFS), "zfs bookmark p/a@s p/a#zferry_s");
        // Checked on zfs-fuse 0.7.0: "unrecognized command 'bookmark'".
        assert_eq!(unsupported(&bookmark, &FUSE), "bookmarks");
    }

    #[test]
    fn hold_tags_cannot_look_like_options() {
        for bad in ["", "-r", "a b", "a\tb", "a/b", &"x".repeat(201)] {
            assert_eq!(
                HoldTag::parse(bad),
                Err(InvalidCommand::BadHoldTag { tag: bad.to_owned() })
            );
        }
        assert!(HoldTag::parse("zferry:job-1.base_x").is_ok());
    }

    #[test]
    fn no_argument_ever_starts_with_a_dash_unless_it_is_a_flag() {
        // Every dataset argument starts with a pool name, which starts with a letter.
        let cmds = [
            ZfsCommand::ListFilesystems { root: fs("p/-a") },
            ZfsCommand::Destroy { version: ver("p/-a@-s") },
            ZfsCommand::Hold { tag: tag("t-"), snapshot: snap("p/-a@-s") },
        ];
        for cmd in cmds {
            for arg in cmd.argv(&OPENZFS).expect("openzfs").iter().skip(1) {
                let is_flag = arg.len() == 2 && arg.starts_with('-');
                assert!(is_flag || !arg.starts_with('-'), "{arg:?} in {cmd:?}");
            }
        }
    }

    #[test]
    fn unsupported_error_reads_well() {
        let cmd = ZfsCommand::ListHolds { snapshot: snap("p/a@s") };
        let err = cmd.argv(&FUSE).expect_err("unsupported");
        assert_eq!(
            err.to_string(),
            "zfs-fuse does not support listing holds, which `zfs holds` needs here"
        );
    }
}
