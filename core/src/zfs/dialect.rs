//! Which `zfs` is installed, and what it can do. Detected from the output of
//! `zfs version` (see [`detect`]); every command builder asks [`Capabilities`]
//! before using a flag, so a missing feature is reported, never faked.

use std::fmt;

/// Oldest OpenZFS accepted: the first with `zfs version`, raw sends and `recv -o/-x`.
pub const MIN_OPENZFS: OpenZfsVersion = OpenZfsVersion { major: 0, minor: 8, patch: 0 };

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct OpenZfsVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for OpenZfsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Dialect {
    /// OpenZFS (ZFS on Linux, FreeBSD): the older of userland and kernel module.
    OpenZfs(OpenZfsVersion),
    /// zfs-fuse 0.7 (pool version 23): used in CI, lacks most modern features.
    ZfsFuse,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dialect::OpenZfs(v) => write!(f, "OpenZFS {v}"),
            Dialect::ZfsFuse => f.write_str("zfs-fuse"),
        }
    }
}

/// What a dialect supports. Each `false` for zfs-fuse was checked against
/// zfs-fuse 0.7.0-25 on Debian (see the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// `zfs bookmark`, `-t bookmark`, `send -i pool/fs#mark`.
    pub bookmarks: bool,
    /// `zfs hold` / `zfs release`.
    pub holds: bool,
    /// `zfs holds`, to see which holds exist.
    pub list_holds: bool,
    /// `zfs receive -s`, `receive_resume_token`, `zfs send -t`, `zfs receive -A`.
    pub resumable: bool,
    /// `zfs list -p`.
    pub list_parsable: bool,
    /// `zfs get -t TYPE`.
    pub get_type_filter: bool,
    /// Several names in one `zfs snapshot`, taken atomically.
    pub multi_snapshot: bool,
    /// Several `prop=value` in one `zfs set`.
    pub set_many_properties: bool,
    /// `zfs destroy pool/fs@a,b,c`: several snapshots of one filesystem at once.
    pub destroy_many: bool,
    /// `zfs send -w`.
    pub raw_send: bool,
    /// `zfs send -L`.
    pub large_blocks: bool,
    /// `zfs send -c`.
    pub compressed_send: bool,
    /// `zfs send -e`.
    pub embedded_data: bool,
    /// `zfs send -n -v -P`: size estimates and parsable summaries.
    pub send_estimate: bool,
    /// `zfs receive -o prop=value` and `-x prop`.
    pub receive_property_overrides: bool,
    /// `-o encryption=...` on create.
    pub encryption: bool,
}

impl Dialect {
    pub fn capabilities(&self) -> Capabilities {
        match self {
            // Every feature here exists since OpenZFS 0.8, the oldest we accept.
            Dialect::OpenZfs(_) => Capabilities {
                bookmarks: true,
                holds: true,
                list_holds: true,
                resumable: true,
                list_parsable: true,
                get_type_filter: true,
                multi_snapshot: true,
                set_many_properties: true,
                destroy_many: true,
                raw_send: true,
                large_blocks: true,
                compressed_send: true,
                embedded_data: true,
                send_estimate: true,
                receive_property_overrides: true,
                encryption: true,
            },
            Dialect::ZfsFuse => Capabilities {
                bookmarks: false,
                // `zfs hold`/`release` work and a hold makes destroy fail with
                // "dataset is busy"; but `zfs holds` fails with
                // "internal error: /usr/lib/zfs/pyzfs.py not found".
                holds: true,
                list_holds: false,
                resumable: false,
                list_parsable: false,
                get_type_filter: false,
                multi_snapshot: false,
                set_many_properties: false,
                // `zfs destroy p@a,b` is "cannot open 'p@a,b': invalid dataset name".
                destroy_many: false,
                raw_send: false,
                large_blocks: false,
                compressed_send: false,
                embedded_data: false,
                send_estimate: false,
                receive_property_overrides: false,
                encryption: false,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    #[error("`zfs version` printed {line:?}, which is not an OpenZFS version line")]
    BadVersionLine { line: String },
    #[error("OpenZFS {found} is too old; zferry needs {MIN_OPENZFS} or newer")]
    TooOld { found: OpenZfsVersion },
    #[error("this zfs has no `version` command but does know bookmarks: an OpenZFS older than {MIN_OPENZFS}, which zferry does not support")]
    OldOpenZfs,
    #[error("cannot tell which zfs this is: `zfs version` exited with {exit_code:?} and printed {output:?}")]
    Unrecognized { exit_code: Option<i32>, output: String },
}

/// Recognises the installed `zfs` from the exit code and output of `zfs version`.
///
/// OpenZFS 0.8+ prints `zfs-2.3.2-2~bpo12+2` and `zfs-kmod-2.3.2-2~bpo12+2`.
/// zfs-fuse has no such command: it prints "unrecognized command 'version'" and
/// its usage to stderr, and exits 2. An OpenZFS before 0.8 does the same, but
/// its usage lists `bookmark`, which zfs-fuse lacks.
pub fn detect(
    exit_code: Option<i32>,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Dialect, DialectError> {
    let stdout = String::from_utf8_lossy(stdout);
    let stderr = String::from_utf8_lossy(stderr);
    if exit_code == Some(0) {
        return detect_openzfs(&stdout);
    }
    if stderr.contains("unrecognized command 'version'") {
        let knows_bookmarks = stderr.lines().any(|l| l.trim_start().starts_with("bookmark "));
        return if knows_bookmarks { Err(DialectError::OldOpenZfs) } else { Ok(Dialect::ZfsFuse) };
    }
    let output = first_line(&stderr).or_else(|| first_line(&stdout)).unwrap_or_default();
    Err(DialectError::Unrecognized { exit_code, output: output.to_owned() })
}

fn first_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).find(|l| !l.is_empty())
}

fn detect_openzfs(stdout: &str) -> Result<Dialect, DialectError> {
    let mut userland = None;
    let mut kernel = None;
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // The kernel line must be checked first: it also starts with "zfs-".
        if let Some(rest) = line.strip_prefix("zfs-kmod-") {
            kernel = Some(parse_version(rest).ok_or_else(|| bad_line(line))?);
        } else if let Some(rest) = line.strip_prefix("zfs-") {
            userland = Some(parse_version(rest).ok_or_else(|| bad_line(line))?);
        } else {
            return Err(bad_line(line));
        }
    }
    let Some(userland) = userland else {
        let output = first_line(stdout).unwrap_or_default().to_owned();
        return Err(DialectError::Unrecognized { exit_code: Some(0), output });
    };
    // Features need both halves, so the older one decides.
    let version = kernel.map_or(userland, |k| k.min(userland));
    if version < MIN_OPENZFS {
        return Err(DialectError::TooOld { found: version });
    }
    Ok(Dialect::OpenZfs(version))
}

fn bad_line(line: &str) -> DialectError {
    DialectError::BadVersionLine { line: line.to_owned() }
}

/// `2.3.2-2~bpo12+2` or `2.1.9-FreeBSD_g92e0d9d18` or `0.8.3-1ubuntu12`: the
/// numbers before the first `-`; a missing patch level counts as 0.
fn parse_version(s: &str) -> Option<OpenZfsVersion> {
    let numbers = s.split('-').next()?;
    let mut parts = numbers.split('.');
    let mut next = |required: bool| -> Option<u32> {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            None if !required => Some(0),
            _ => None,
        }
    };
    let version = OpenZfsVersion { major: next(true)?, minor: next(true)?, patch: next(false)? };
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUSE_STDERR: &[u8] = include_bytes!("testdata/zfs-fuse-version.stderr");

    fn v(major: u32, minor: u32, patch: u32) -> OpenZfsVersion {
        OpenZfsVersion { major, minor, patch }
    }

    #[test]
    fn detects_openzfs_from_the_lab_guest_output() {
        let out = b"zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n";
        assert_eq!(detect(Some(0), out, b""), Ok(Dialect::OpenZfs(v(2, 3, 2))));
    }

    #[test]
    fn takes_the_older_of_userland_and_kernel() {
        let out = b"zfs-2.2.0-1\nzfs-kmod-2.1.9-FreeBSD_g92e0d9d18\n";
        assert_eq!(detect(Some(0), out, b""), Ok(Dialect::OpenZfs(v(2, 1, 9))));
        assert_eq!(
            detect(Some(0), b"zfs-0.8.3-1ubuntu12\n", b""),
            Ok(Dialect::OpenZfs(v(0, 8, 3)))
        );
        assert_eq!(detect(Some(0), b"zfs-2.2\n", b""), Ok(Dialect::OpenZfs(v(2, 2, 0))));
    }

    #[test]
    fn rejects_old_or_garbled_openzfs_output() {
        assert_eq!(
            detect(Some(0), b"zfs-0.7.13-1\n", b""),
            Err(DialectError::TooOld { found: v(0, 7, 13) })
        );
        assert_eq!(
            detect(Some(0), b"zfs-2.3.2\nzfs-kmod-unknown\n", b""),
            Err(DialectError::BadVersionLine { line: "zfs-kmod-unknown".into() })
        );
        assert_eq!(
            detect(Some(0), b"hello\n", b""),
            Err(DialectError::BadVersionLine { line: "hello".into() })
        );
        assert!(matches!(detect(Some(0), b"", b""), Err(DialectError::Unrecognized { .. })));
        assert!(matches!(
            detect(Some(0), b"zfs-kmod-2.3.2\n", b""),
            Err(DialectError::Unrecognized { .. })
        ));
        for bad in ["zfs-2\n", "zfs-2.x.1\n", "zfs-2.3.4.5\n", "zfs-+2.3\n", "zfs-99999999999.1\n"]
        {
            assert!(detect(Some(0), bad.as_bytes(), b"").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checked_on_zfs_fuse_version_is_an_unknown_command() {
        // Real output of `zfs version` with zfs-fuse 0.7.0-25+b1: exit 2, empty
        // stdout, "unrecognized command 'version'" and the usage on stderr.
        assert!(FUSE_STDERR.starts_with(b"unrecognized command 'version'\n"));
        assert_eq!(detect(Some(2), b"", FUSE_STDERR), Ok(Dialect::ZfsFuse));
    }

    #[test]
    fn an_old_openzfs_without_version_is_refused() {
        let stderr = b"unrecognized command 'version'\nusage: zfs command args ...\n\tbookmark <snapshot> <bookmark>\n";
        assert_eq!(detect(Some(2), b"", stderr), Err(DialectError::OldOpenZfs));
    }

    #[test]
    fn other_failures_are_unrecognized_and_quote_the_output() {
        let err = detect(Some(127), b"", b"sh: 1: zfs: not found\n").expect_err("no zfs");
        assert_eq!(
            err,
            DialectError::Unrecognized {
                exit_code: Some(127),
                output: "sh: 1: zfs: not found".into()
            }
        );
        assert!(err.to_string().contains("zfs: not found"));
        assert!(matches!(
            detect(None, b"", b""),
            Err(DialectError::Unrecognized { exit_code: None, .. })
        ));
    }

    #[test]
    fn zfs_fuse_lacks_what_was_checked() {
        let caps = Dialect::ZfsFuse.capabilities();
        assert!(!caps.bookmarks && !caps.resumable && !caps.list_parsable && !caps.multi_snapshot);
        assert!(caps.holds && !caps.list_holds);
        let caps = Dialect::OpenZfs(v(2, 3, 2)).capabilities();
        assert!(caps.bookmarks && caps.resumable && caps.raw_send && caps.list_holds);
    }
}
