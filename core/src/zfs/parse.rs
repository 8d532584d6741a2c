//! Parsers of `zfs` output into typed rows. Every parser is strict: a line it
//! does not understand is an error that quotes the line and its number, because
//! a misread guid or name could make the planner destroy the wrong thing. No
//! input makes them panic; [`fuzz_parsers`] runs them all for the fuzz target.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use super::command::ListingFormat;
use super::path::DatasetPath;
use super::property::{is_placeholder, PropertyName, PropertyRow, PropertySource};
use super::resume::{ResumeToken, ResumeTokenInfo};
use super::version::{FilesystemVersion, VersionKind};
use super::version_path::{DatasetName, SnapshotPath, VersionPath};

/// How much of a bad line an error quotes.
const QUOTE_LIMIT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}: {text:?}")]
pub struct ParseError {
    /// 1-based; 0 when the problem is the output as a whole.
    pub line: usize,
    /// The offending line, cut to a readable length.
    pub text: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("expected {expected} tab-separated columns, found {found}")]
    Columns { expected: usize, found: usize },
    #[error("bad name: {0}")]
    Name(String),
    #[error("{what} is not a number")]
    Number { what: &'static str },
    #[error("guid 0 is not a real guid")]
    ZeroGuid,
    #[error("unknown property source")]
    Source,
    #[error("bad property name: {0}")]
    Property(String),
    #[error("{name} appears twice")]
    Duplicate { name: String },
    #[error("{name} lacks property {property}")]
    Missing { name: String, property: &'static str },
    #[error("unexpected {what} {value:?}")]
    Unexpected { what: &'static str, value: String },
    #[error("guid {guid} belongs to two {kind}s of {filesystem}")]
    DuplicateGuid { guid: u64, kind: &'static str, filesystem: String },
    #[error("unexpected line")]
    UnexpectedLine,
    #[error("output holds no {what}")]
    Nothing { what: &'static str },
}

fn error(line: usize, text: &str, problem: Problem) -> ParseError {
    let text: String = text.chars().take(QUOTE_LIMIT).collect();
    ParseError { line, text, problem }
}

/// The lines of `data`, numbered from 1; a final newline ends the last line
/// rather than starting an empty one.
fn lines(data: &[u8]) -> impl Iterator<Item = Result<(usize, &str), ParseError>> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let pieces = if data.is_empty() { None } else { Some(data.split(|b| *b == b'\n')) };
    pieces.into_iter().flatten().enumerate().map(|(i, raw)| {
        std::str::from_utf8(raw)
            .map(|s| (i + 1, s))
            .map_err(|_| error(i + 1, &String::from_utf8_lossy(raw), Problem::NotUtf8))
    })
}

fn number<T: std::str::FromStr>(
    n: usize,
    line: &str,
    field: &str,
    what: &'static str,
) -> Result<T, ParseError> {
    // `str::parse` accepts a leading `+`; ZFS never prints one.
    if field.starts_with('+') {
        return Err(error(n, line, Problem::Number { what }));
    }
    field.parse().map_err(|_| error(n, line, Problem::Number { what }))
}

fn guid(n: usize, line: &str, field: &str) -> Result<u64, ParseError> {
    match number(n, line, field, "guid")? {
        0 => Err(error(n, line, Problem::ZeroGuid)),
        g => Ok(g),
    }
}

/// Parses `zfs get -H -p -o name,property,value,source`. The value is whatever
/// lies between the second and the last tab, so a user property's value may
/// itself contain tabs.
pub fn parse_property_table(data: &[u8]) -> Result<Vec<(usize, PropertyRow)>, ParseError> {
    let mut rows = Vec::new();
    let mut seen = BTreeMap::new();
    for item in lines(data) {
        let (n, line) = item?;
        let mut head = line.splitn(3, '\t');
        let (Some(name), Some(property), Some(rest)) = (head.next(), head.next(), head.next())
        else {
            let found = line.split('\t').count();
            return Err(error(n, line, Problem::Columns { expected: 4, found }));
        };
        let Some((value, source)) = rest.rsplit_once('\t') else {
            return Err(error(n, line, Problem::Columns { expected: 4, found: 3 }));
        };
        let dataset =
            DatasetName::parse(name).map_err(|e| error(n, line, Problem::Name(e.to_string())))?;
        let property = PropertyName::parse(property)
            .map_err(|e| error(n, line, Problem::Property(e.to_string())))?;
        let source =
            PropertySource::parse(source).ok_or_else(|| error(n, line, Problem::Source))?;
        if seen.insert((dataset.to_string(), property.to_string()), n).is_some() {
            let name = format!("{dataset} property {property}");
            return Err(error(n, line, Problem::Duplicate { name }));
        }
        rows.push((n, PropertyRow { dataset, property, value: value.to_owned(), source }));
    }
    Ok(rows)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DatasetType {
    Filesystem,
    Volume,
}

/// One filesystem or volume from [`ZfsCommand::ListFilesystems`](super::command::ZfsCommand::ListFilesystems).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilesystemInfo {
    pub path: DatasetPath,
    pub dataset_type: DatasetType,
    pub guid: u64,
    pub readonly: bool,
    /// See [`is_placeholder`]: only a locally set marker counts.
    pub is_placeholder: bool,
    /// Left by an interrupted `zfs receive -s`; always `None` on zfs-fuse.
    pub resume_token: Option<ResumeToken>,
}

/// Parses the output of `ListFilesystems`, sorted by path (parents first).
/// Rows of snapshots (zfs-fuse cannot filter them out) are skipped.
pub fn parse_filesystems(data: &[u8]) -> Result<Vec<FilesystemInfo>, ParseError> {
    let mut by_fs: BTreeMap<DatasetPath, (usize, Vec<PropertyRow>)> = BTreeMap::new();
    for (n, row) in parse_property_table(data)? {
        if let DatasetName::Filesystem(fs) = &row.dataset {
            by_fs.entry(fs.clone()).or_insert_with(|| (n, Vec::new())).1.push(row);
        }
    }
    let mut out = Vec::with_capacity(by_fs.len());
    for (path, (first_line, rows)) in by_fs {
        let get = |property: &'static str| {
            rows.iter()
                .find(|r| r.property.as_str() == property)
                .map(|r| r.value.as_str())
                .ok_or_else(|| {
                    error(
                        first_line,
                        &path.to_string(),
                        Problem::Missing { name: path.to_string(), property },
                    )
                })
        };
        let unexpected = |what, value: &str| {
            error(
                first_line,
                &path.to_string(),
                Problem::Unexpected { what, value: value.to_owned() },
            )
        };
        let dataset_type = match get("type")? {
            "filesystem" => DatasetType::Filesystem,
            "volume" => DatasetType::Volume,
            other => return Err(unexpected("type", other)),
        };
        let guid = guid(first_line, &path.to_string(), get("guid")?)?;
        let readonly = match get("readonly")? {
            "on" => true,
            "off" => false,
            other => return Err(unexpected("readonly value", other)),
        };
        let resume_token = match rows.iter().find(|r| r.property.as_str() == "receive_resume_token")
        {
            None => None,
            Some(row) => ResumeToken::from_property(&row.value)
                .map_err(|e| error(first_line, &path.to_string(), Problem::Name(e.to_string())))?,
        };
        let is_placeholder = is_placeholder(&path, &rows);
        out.push(FilesystemInfo {
            path,
            dataset_type,
            guid,
            readonly,
            is_placeholder,
            resume_token,
        });
    }
    Ok(out)
}

/// Versions per filesystem, each list sorted by createtxg (the order in which
/// they were taken); a bookmark sorts after the snapshot it was made from.
pub type VersionsByFilesystem = BTreeMap<DatasetPath, Vec<FilesystemVersion>>;

/// Property values of one dataset, with the line each came from.
type PropertiesByName = BTreeMap<String, (usize, String)>;

/// Parses the output of `ListVersions` in the format its dialect printed.
pub fn parse_versions(
    format: ListingFormat,
    data: &[u8],
) -> Result<VersionsByFilesystem, ParseError> {
    let mut found: BTreeMap<VersionPath, (usize, FilesystemVersion)> = BTreeMap::new();
    match format {
        ListingFormat::Columns => {
            for item in lines(data) {
                let (n, line) = item?;
                let fields: Vec<&str> = line.split('\t').collect();
                let [name, guid_field, createtxg, creation] = fields[..] else {
                    return Err(error(
                        n,
                        line,
                        Problem::Columns { expected: 4, found: fields.len() },
                    ));
                };
                let path = VersionPath::parse(name)
                    .map_err(|e| error(n, line, Problem::Name(e.to_string())))?;
                let version = FilesystemVersion {
                    kind: path.kind(),
                    name: path.name().to_string(),
                    guid: guid(n, line, guid_field)?,
                    createtxg: number(n, line, createtxg, "createtxg")?,
                    creation: number(n, line, creation, "creation")?,
                };
                if found.insert(path.clone(), (n, version)).is_some() {
                    return Err(error(n, line, Problem::Duplicate { name: path.to_string() }));
                }
            }
        }
        ListingFormat::PropertyTable => {
            let mut rows: BTreeMap<VersionPath, (usize, PropertiesByName)> = BTreeMap::new();
            for (n, row) in parse_property_table(data)? {
                if let DatasetName::Version(v) = row.dataset {
                    let entry = rows.entry(v).or_insert_with(|| (n, BTreeMap::new()));
                    entry.1.insert(row.property.to_string(), (n, row.value));
                }
            }
            for (path, (first_line, props)) in rows {
                let name = path.to_string();
                let get = |property: &'static str| {
                    props.get(property).map(|(n, v)| (*n, v.as_str())).ok_or_else(|| {
                        error(first_line, &name, Problem::Missing { name: name.clone(), property })
                    })
                };
                if let Ok((n, kind)) = get("type") {
                    let expected =
                        if path.kind() == VersionKind::Snapshot { "snapshot" } else { "bookmark" };
                    if kind != expected {
                        let problem = Problem::Unexpected { what: "type", value: kind.to_owned() };
                        return Err(error(n, &name, problem));
                    }
                }
                let (gn, g) = get("guid")?;
                let (tn, t) = get("createtxg")?;
                let (cn, c) = get("creation")?;
                let version = FilesystemVersion {
                    kind: path.kind(),
                    name: path.name().to_string(),
                    guid: guid(gn, g, g)?,
                    createtxg: number(tn, t, t, "createtxg")?,
                    creation: number(cn, c, c, "creation")?,
                };
                found.insert(path, (first_line, version));
            }
        }
    }
    group_versions(found)
}

fn group_versions(
    found: BTreeMap<VersionPath, (usize, FilesystemVersion)>,
) -> Result<VersionsByFilesystem, ParseError> {
    let mut out = VersionsByFilesystem::new();
    let mut guids: BTreeMap<(DatasetPath, VersionKind, u64), ()> = BTreeMap::new();
    for (path, (n, version)) in found {
        // Two snapshots of one filesystem never share a guid; if the output says
        // they do, matching by guid would be unsafe. Bookmarks do share one: every
        // bookmark of a snapshot carries the snapshot's guid (zferry's push and
        // pull cursors of one snapshot, for instance).
        if version.kind != VersionKind::Snapshot {
            // Nothing to check.
        } else if let Entry::Vacant(e) =
            guids.entry((path.filesystem().clone(), version.kind, version.guid))
        {
            e.insert(());
        } else {
            let kind = if version.kind == VersionKind::Snapshot { "snapshot" } else { "bookmark" };
            let filesystem = path.filesystem().to_string();
            return Err(error(
                n,
                &path.to_string(),
                Problem::DuplicateGuid { guid: version.guid, kind, filesystem },
            ));
        }
        out.entry(path.filesystem().clone()).or_default().push(version);
    }
    for versions in out.values_mut() {
        versions
            .sort_by(|a, b| (a.createtxg, a.kind, &a.name).cmp(&(b.createtxg, b.kind, &b.name)));
    }
    Ok(out)
}

/// One user hold on a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hold {
    pub snapshot: SnapshotPath,
    pub tag: String,
}

/// Parses `zfs holds -H`: `name TAB tag TAB timestamp`. The timestamp is not
/// needed and its format varies (with and without `-p`), so it is not read.
pub fn parse_holds(data: &[u8]) -> Result<Vec<Hold>, ParseError> {
    let mut holds = Vec::new();
    let mut seen = BTreeMap::new();
    for item in lines(data) {
        let (n, line) = item?;
        let found = line.split('\t').count();
        let parts =
            line.split_once('\t').and_then(|(name, rest)| Some((name, rest.rsplit_once('\t')?.0)));
        let Some((name, tag)) = parts.filter(|(_, tag)| !tag.is_empty()) else {
            return Err(error(n, line, Problem::Columns { expected: 3, found }));
        };
        let snapshot =
            SnapshotPath::parse(name).map_err(|e| error(n, line, Problem::Name(e.to_string())))?;
        if seen.insert((snapshot.to_string(), tag.to_owned()), ()).is_some() {
            return Err(error(
                n,
                line,
                Problem::Duplicate { name: format!("hold {tag:?} on {snapshot}") },
            ));
        }
        holds.push(Hold { snapshot, tag: tag.to_owned() });
    }
    Ok(holds)
}

/// Lines `zfs send -n -v -t` prints before the streams: the token's nvlist.
fn is_token_dump_line(line: &str) -> bool {
    line == "resume token contents:"
        || line.starts_with("nvlist version: ")
        || line.starts_with('\t')
}

/// Parses `zfs send -n -v -P` into the estimated stream size in bytes: the
/// `size` line if there is one, else the sum of the `full` / `incremental` lines.
pub fn parse_send_estimate(data: &[u8]) -> Result<u64, ParseError> {
    let mut total = None;
    let mut sum: Option<u64> = None;
    for item in lines(data) {
        let (n, line) = item?;
        let fields: Vec<&str> = line.split('\t').collect();
        // OpenZFS leaves the size column out when the estimate is 0.
        let (to, size) = match fields[..] {
            ["size", size] => {
                total = Some(number(n, line, size, "size")?);
                continue;
            }
            ["full", to] | ["incremental", _, to] => (to, 0),
            ["full", to, size] | ["incremental", _, to, size] => {
                (to, number(n, line, size, "size")?)
            }
            _ if is_token_dump_line(line) => continue,
            _ => return Err(error(n, line, Problem::UnexpectedLine)),
        };
        SnapshotPath::parse(to).map_err(|e| error(n, line, Problem::Name(e.to_string())))?;
        sum = Some(sum.unwrap_or(0).saturating_add(size));
    }
    total.or(sum).ok_or_else(|| error(0, "", Problem::Nothing { what: "size estimate" }))
}

/// Parses `zfs send -n -v -t TOKEN` (OpenZFS prints the token's nvlist, then
/// the estimate lines, which are ignored here).
pub fn parse_resume_token_description(data: &[u8]) -> Result<ResumeTokenInfo, ParseError> {
    let mut header = None;
    let mut fields: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for item in lines(data) {
        let (n, line) = item?;
        match header {
            None if line == "resume token contents:" => header = Some(n),
            None => return Err(error(n, line, Problem::UnexpectedLine)),
            Some(_) if line.starts_with("nvlist version: ") => {}
            Some(_) => {
                let Some(pair) = line.strip_prefix('\t') else { break };
                // Booleans print as `name = 1`, arrays as `name[0] = ...`; only
                // the four fields below are read.
                if let Some((key, value)) = pair.split_once(" = ") {
                    if fields.insert(key, (n, value)).is_some() {
                        return Err(error(n, line, Problem::Duplicate { name: key.to_owned() }));
                    }
                }
            }
        }
    }
    let Some(header) = header else {
        return Err(error(0, "", Problem::Nothing { what: "resume token contents" }));
    };
    let get = |property: &'static str| {
        fields.get(property).copied().ok_or_else(|| {
            let name = "resume token".to_owned();
            error(header, "resume token contents:", Problem::Missing { name, property })
        })
    };
    let nvlist_u64 = |key: &'static str, (n, value): (usize, &str)| {
        let parsed = match value.strip_prefix("0x") {
            Some(hex) if !hex.starts_with('+') => u64::from_str_radix(hex, 16).ok(),
            Some(_) => None,
            None => value.parse().ok().filter(|_| !value.starts_with('+')),
        };
        parsed.ok_or_else(|| error(n, value, Problem::Number { what: key }))
    };
    let (name_line, to_name) = get("toname")?;
    let to_name = SnapshotPath::parse(to_name)
        .map_err(|e| error(name_line, to_name, Problem::Name(e.to_string())))?;
    let to_guid = nvlist_u64("toguid", get("toguid")?)?;
    let from_guid = match fields.get("fromguid") {
        Some(&field) => Some(nvlist_u64("fromguid", field)?).filter(|g| *g != 0),
        None => None,
    };
    let bytes = nvlist_u64("bytes", get("bytes")?)?;
    if to_guid == 0 {
        return Err(error(get("toguid")?.0, "toguid = 0x0", Problem::ZeroGuid));
    }
    Ok(ResumeTokenInfo { from_guid, to_guid, to_name, bytes })
}

/// Runs every parser on `data` and ignores the results: the fuzz target's body.
pub fn fuzz_parsers(data: &[u8]) {
    let _ = parse_property_table(data);
    let _ = parse_filesystems(data);
    let _ = parse_versions(ListingFormat::Columns, data);
    let _ = parse_versions(ListingFormat::PropertyTable, data);
    let _ = parse_holds(data);
    let _ = parse_send_estimate(data);
    let _ = parse_resume_token_description(data);
    let _ = super::dialect::detect(Some(0), data, b"");
    let _ = super::dialect::detect(Some(2), b"", data);
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
