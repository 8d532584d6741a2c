//! From YAML text to the typed configuration.
//!
//! yaml_serde attaches a position (and the YAML path, like `jobs[0].connect`) to
//! an error raised while a node is being deserialized. To keep positions precise,
//! every check runs *inside* the deserialization of the node it concerns: tagged
//! sections (`type: ...`) are read as a flat "raw" struct of every key any of
//! their types has (`deny_unknown_fields`, so a misspelt key is reported at its
//! own line), then converted within the same `visit_map`; scalar values are
//! parsed within their own `visit_str`.
//!
//! zrepl reads YAML 1.1 (`yes`/`no`/`on`/`off` are booleans, every scalar can be
//! a string); [`YBool`] and [`Scalar`] keep those configs working.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::clients::{validate_identity, ClientMap};
use super::cron::{parse_cron, CronSpec};
use super::duration::{
    parse_go_duration_nonnegative, parse_go_duration_positive, parse_positive_interval,
};
use super::grid::{parse_grid, GridInterval};
use super::*;
use crate::zfs::path::DatasetPath;

/// Parses the text; job-independent checks only.
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: Option<RawConfig> = yaml_serde::from_str(text).map_err(|e| yaml_error(text, e))?;
    let raw = raw.unwrap_or_default();
    let global = match raw.global {
        Some(g) => g.0,
        None => default_global(),
    };
    Ok(Config { global, jobs: raw.jobs.unwrap_or_default() })
}

fn default_global() -> Global {
    Global {
        logging: vec![default_outlet()],
        control: Control { sockpath: DEFAULT_CONTROL_SOCKPATH.to_owned() },
    }
}

fn default_outlet() -> LogOutlet {
    LogOutlet::Stdout(StdoutOutlet {
        level: LogLevel::Warn,
        format: LogFormat::Human,
        time: true,
        color: true,
    })
}

/// Turns a yaml_serde error into ours, naming the job when the error lies in one.
fn yaml_error(text: &str, e: yaml_serde::Error) -> ConfigError {
    let location = e.location();
    let mut message = e.to_string();
    // yaml_serde leaves out a position at line 1, column 1; we always show it.
    if let Some(l) = &location {
        if !message.contains(" at line ") {
            message.push_str(&format!(" at line {} column {}", l.line(), l.column()));
        }
    }
    let kind = if message.contains(NOT_SUPPORTED) {
        ConfigErrorKind::Unsupported
    } else {
        ConfigErrorKind::Invalid
    };
    ConfigError {
        kind,
        job: job_name_for_path(text, &message),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message,
    }
}

/// If the message starts with the path `jobs[N]`, the name of job N, read
/// leniently from the text.
fn job_name_for_path(text: &str, message: &str) -> Option<String> {
    let rest = message.strip_prefix("jobs[")?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    let doc: yaml_serde::Value = yaml_serde::from_str(text).ok()?;
    let name = doc.get("jobs")?.get(index)?.get("name")?.as_str()?;
    (!name.is_empty()).then(|| name.to_owned())
}

// ---------------------------------------------------------------------------
// Building blocks

/// Implements `Deserialize` for `$ty` by reading the mapping as `$raw` and
/// converting it with `$convert`, all within the node (so errors point at it).
macro_rules! via_raw {
    ($ty:ty, $raw:ty, $expecting:literal, $convert:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        let raw = <$raw>::deserialize(MapAccessDeserializer::new(map))?;
                        let convert: fn($raw) -> Result<$ty, String> = $convert;
                        convert(raw).map_err(de::Error::custom)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

/// Implements `Deserialize` for `$ty` from a scalar's text, parsed by `$parse`.
macro_rules! from_scalar {
    ($ty:ty, $expecting:literal, $parse:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        let parse: fn(&str) -> Result<$ty, String> = $parse;
                        parse(s).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$ty, E> {
                        self.visit_str(&n.to_string())
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$ty, E> {
                        self.visit_str(&n.to_string())
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// A boolean as YAML 1.1 (and so zrepl) reads it: also yes/no/on/off/y/n.
#[derive(Debug, Clone, Copy)]
struct YBool(bool);

impl<'de> Deserialize<'de> for YBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = YBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<YBool, E> {
                Ok(YBool(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<YBool, E> {
                match s {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                    | "TRUE" => Ok(YBool(true)),
                    "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                    | "FALSE" => Ok(YBool(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn flag(b: Option<YBool>, default: bool) -> bool {
    b.map_or(default, |b| b.0)
}

/// Any scalar, as text (zrepl reads numbers and booleans into strings too).
#[derive(Debug, Clone)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A key zrepl knows and zferry does not implement yet. Absent, null or empty
/// is accepted (nothing is asked for); anything else is an error at the key.
#[derive(Debug)]
struct NotSupported;

impl<'de> Deserialize<'de> for NotSupported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn no<E: de::Error>() -> Result<NotSupported, E> {
            Err(E::custom(NOT_SUPPORTED))
        }
        impl<'de> Visitor<'de> for V {
            type Value = NotSupported;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nothing")
            }
            fn visit_unit<E: de::Error>(self) -> Result<NotSupported, E> {
                Ok(NotSupported)
            }
            fn visit_none<E: de::Error>(self) -> Result<NotSupported, E> {
                Ok(NotSupported)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NotSupported, E> {
                no()
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NotSupported, E> {
                no()
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<NotSupported, E> {
                no()
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<NotSupported, E> {
                no()
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<NotSupported, E> {
                no()
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NotSupported, A::Error> {
                match seq.next_element::<IgnoredAny>()? {
                    None => Ok(NotSupported),
                    Some(_) => no(),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NotSupported, A::Error> {
                match map.next_key::<IgnoredAny>()? {
                    None => Ok(NotSupported),
                    Some(_) => no(),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Errors if a key that does not belong to the selected `type` is present.
fn only_allowed(what: &str, present: &[(&str, bool)], allowed: &[&str]) -> Result<(), String> {
    for (key, is_present) in present {
        if *is_present && !allowed.contains(key) {
            return Err(format!(
                "key `{key}` does not belong in {what} (its keys are: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

fn required<T>(v: Option<T>, what: &str, key: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("{what} requires `{key}`"))
}

fn unsupported_type(section: &str, ty: &str, supported: &str) -> String {
    format!("{section} type {ty:?} is {NOT_SUPPORTED} (supported: {supported})")
}

fn unknown_type(section: &str, ty: &str, known: &str) -> String {
    format!("unknown {section} type {ty:?} (known: {known})")
}

/// `host:port` with a numeric port; the host may be empty only if `empty_host`.
fn check_host_port(key: &str, s: &str, empty_host: bool) -> Result<(), String> {
    let bad = |why: &str| format!("{key} {s:?} is not host:port: {why}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        (host, after.strip_prefix(':').ok_or_else(|| bad("missing port"))?)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address must be in brackets, like [::1]:8888"));
        }
        (host, port)
    };
    if host.is_empty() && !empty_host {
        return Err(bad("missing host"));
    }
    port.parse::<u16>().map_err(|_| bad("the port must be a number 0-65535"))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Scalars

struct PosInterval(Duration);
from_scalar!(PosInterval, "a duration like 10m or 1d", |s| {
    parse_positive_interval(s).map(PosInterval)
});

struct NonNegGoDuration(Duration);
from_scalar!(NonNegGoDuration, "a duration like 10s or 1m30s", |s| {
    parse_go_duration_nonnegative(s).map(NonNegGoDuration)
});

struct PosGoDuration(Duration);
from_scalar!(PosGoDuration, "a duration like 30s or 1m30s", |s| {
    parse_go_duration_positive(s).map(PosGoDuration)
});

from_scalar!(PullInterval, "a duration like 10m, or manual", |s| match s {
    "manual" => Ok(PullInterval::Manual),
    "" => Err("interval must not be empty (a duration like 10m, or manual)".to_owned()),
    _ => parse_positive_interval(s).map(PullInterval::Every),
});

struct RootFs(DatasetPath);
from_scalar!(RootFs, "a dataset path", |s| DatasetPath::parse(s)
    .map(RootFs)
    .map_err(|e| format!("root_fs is not a valid dataset path: {e}")));

struct Grid(Vec<GridInterval>);
from_scalar!(Grid, "a grid like 1x1h(keep=all) | 24x1h | 14x1d", |s| parse_grid(s).map(Grid));

struct Cron(CronSpec);
from_scalar!(Cron, "a cron spec like \"0 3 * * *\"", |s| parse_cron(s).map(Cron));

/// A name of a local listener or job: a single safe component.
struct Name(String);
from_scalar!(Name, "a name", |s| {
    validate_identity(s).map_err(|_| {
        format!("{s:?} is not a valid name: use letters, digits and _-.: only, no '/'")
    })?;
    Ok(Name(s.to_owned()))
});

fn check_job_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("job name must not be empty".to_owned());
    }
    if s.starts_with('_') {
        return Err(format!("job name {s:?} must not start with '_' (reserved for internal jobs)"));
    }
    if s.len() > MAX_JOB_NAME_LEN {
        return Err(format!("job name {s:?} is longer than {MAX_JOB_NAME_LEN} bytes"));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "_-.:".contains(*c))) {
        return Err(format!(
            "job name {s:?} contains {c:?}; use letters, digits and _-.: only \
             (the name goes into ZFS bookmark and hold names)"
        ));
    }
    Ok(())
}

// zrepl spells the middle level `guarantee_incremental` (its docs and samples do);
// `guarantee_incremental_replication`, the name of zrepl's Go constant, is accepted
// as an alias.
from_scalar!(
    Protection,
    "guarantee_resumability, guarantee_incremental or guarantee_nothing",
    |s| match s {
        "guarantee_resumability" => Ok(Protection::Resumability),
        "guarantee_incremental" | "guarantee_incremental_replication" => {
            Ok(Protection::IncrementalReplication)
        }
        "guarantee_nothing" => Ok(Protection::Nothing),
        _ => Err(format!(
            "unknown protection {s:?} (known: guarantee_resumability, \
             guarantee_incremental, guarantee_nothing)"
        )),
    }
);

from_scalar!(InitialReplication, "most_recent, all or fail", |s| match s {
    "most_recent" => Ok(InitialReplication::MostRecent),
    "all" => Ok(InitialReplication::All),
    "fail" => Ok(InitialReplication::Fail),
    _ => Err(format!("unknown initial_replication {s:?} (known: most_recent, all, fail)")),
});

from_scalar!(PlaceholderEncryption, "unspecified, off or inherit", |s| match s {
    "unspecified" => Ok(PlaceholderEncryption::Unspecified),
    "off" => Ok(PlaceholderEncryption::Off),
    "inherit" => Ok(PlaceholderEncryption::Inherit),
    _ => Err(format!(
        "placeholder encryption value {s:?} is invalid, must be one of unspecified, off, inherit"
    )),
});

from_scalar!(TimestampFormat, "dense, human, iso-8601, unix-seconds or a Go time layout", |s| {
    Ok(match s {
        "dense" => TimestampFormat::Dense,
        "human" => TimestampFormat::Human,
        "iso-8601" => TimestampFormat::Iso8601,
        "unix-seconds" => TimestampFormat::UnixSeconds,
        "" => return Err("timestamp_format must not be empty".to_owned()),
        layout => TimestampFormat::GoLayout(layout.to_owned()),
    })
});

from_scalar!(TimestampLocation, "UTC or Local", |s| match s {
    "UTC" => Ok(TimestampLocation::Utc),
    "Local" => Ok(TimestampLocation::Local),
    _ => Err(format!(
        "timestamp_location {s:?} is {NOT_SUPPORTED} (supported: UTC, Local; \
         named time zones are not)"
    )),
});

from_scalar!(LogLevel, "debug, info, warn or error", |s| match s {
    "debug" => Ok(LogLevel::Debug),
    "info" => Ok(LogLevel::Info),
    "warn" => Ok(LogLevel::Warn),
    "error" => Ok(LogLevel::Error),
    _ => Err(format!("unknown log level {s:?} (known: debug, info, warn, error)")),
});

from_scalar!(LogFormat, "human, logfmt or json", |s| match s {
    "human" => Ok(LogFormat::Human),
    "logfmt" => Ok(LogFormat::Logfmt),
    "json" => Ok(LogFormat::Json),
    _ => Err(format!("unknown log format {s:?} (known: human, logfmt, json)")),
});

/// A ZFS property name as zrepl accepts it.
struct PropName(String);
from_scalar!(PropName, "a property name", |s| {
    if s.is_empty() || s.len() > 256 || s.starts_with('-') {
        return Err(format!("invalid property name {s:?}"));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(format!(
            "invalid property name {s:?}: only letters, digits and -_.: are allowed"
        ));
    }
    Ok(PropName(s.to_owned()))
});

// ---------------------------------------------------------------------------
// Maps

/// A filesystem filter: pattern → bool, keys non-empty and unique.
struct Filesystems(FilesystemFilter);

impl<'de> Deserialize<'de> for Filesystems {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Filesystems;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of filesystem patterns to true or false")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Filesystems, A::Error> {
                let mut out = FilesystemFilter::new();
                while let Some((k, v)) = map.next_entry::<Scalar, YBool>()? {
                    let k = k.0;
                    if k.trim().is_empty() {
                        return Err(de::Error::custom("filesystems: a pattern must not be empty"));
                    }
                    if out.insert(k.clone(), v.0).is_some() {
                        return Err(de::Error::custom(format!(
                            "filesystems: pattern {k:?} appears twice"
                        )));
                    }
                }
                Ok(Filesystems(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string → string map; duplicate keys are errors.
struct StrMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for StrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<Scalar, Scalar>()? {
                    if out.insert(k.0.clone(), v.0).is_some() {
                        return Err(de::Error::custom(format!("key {:?} appears twice", k.0)));
                    }
                }
                Ok(StrMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct Clients(ClientMap);

impl<'de> Deserialize<'de> for Clients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Clients;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of client IP addresses or subnets to client identities")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Clients, A::Error> {
                let StrMap(m) = StrMap::deserialize(MapAccessDeserializer::new(map))?;
                ClientMap::parse(&m).map(Clients).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------------------
// Top level and global

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    global: Option<GlobalDe>,
    jobs: Option<Vec<Job>>,
    #[allow(dead_code)]
    include: Option<NotSupported>,
}

struct GlobalDe(Global);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    logging: Option<Vec<LogOutlet>>,
    #[allow(dead_code)]
    monitoring: Option<NotSupported>,
    control: Option<RawControl>,
    serve: Option<RawGlobalServe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    sockpath: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobalServe {
    #[allow(dead_code)]
    stdinserver: Option<NotSupported>,
}

via_raw!(GlobalDe, RawGlobal, "the global section", |r| {
    let _ = r.serve;
    let sockpath =
        r.control.and_then(|c| c.sockpath).unwrap_or_else(|| DEFAULT_CONTROL_SOCKPATH.to_owned());
    if sockpath.is_empty() {
        return Err("control.sockpath must not be empty".to_owned());
    }
    Ok(GlobalDe(Global {
        logging: r.logging.unwrap_or_else(|| vec![default_outlet()]),
        control: Control { sockpath },
    }))
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutlet {
    #[serde(rename = "type")]
    ty: Option<String>,
    level: Option<LogLevel>,
    format: Option<LogFormat>,
    time: Option<YBool>,
    color: Option<YBool>,
    // syslog and tcp
    facility: Option<IgnoredAny>,
    retry_interval: Option<IgnoredAny>,
    address: Option<IgnoredAny>,
    net: Option<IgnoredAny>,
    tls: Option<IgnoredAny>,
}

via_raw!(LogOutlet, RawOutlet, "a logging outlet", |r| {
    let ty = required(r.ty, "a logging outlet", "type")?;
    match ty.as_str() {
        "stdout" => {
            only_allowed(
                "a stdout outlet",
                &[
                    ("facility", r.facility.is_some()),
                    ("retry_interval", r.retry_interval.is_some()),
                    ("address", r.address.is_some()),
                    ("net", r.net.is_some()),
                    ("tls", r.tls.is_some()),
                ],
                &["type", "level", "format", "time", "color"],
            )?;
            Ok(LogOutlet::Stdout(StdoutOutlet {
                level: required(r.level, "a stdout outlet", "level")?,
                format: required(r.format, "a stdout outlet", "format")?,
                time: flag(r.time, true),
                color: flag(r.color, true),
            }))
        }
        "syslog" | "tcp" => Err(unsupported_type("logging outlet", &ty, "stdout")),
        _ => Err(unknown_type("logging outlet", &ty, "stdout, syslog, tcp")),
    }
});

// ---------------------------------------------------------------------------
// Jobs

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(rename = "type")]
    ty: Option<String>,
    name: Option<String>,
    connect: Option<Connect>,
    serve: Option<Serve>,
    filesystems: Option<Filesystems>,
    send: Option<SendOptions>,
    recv: Option<RecvOptions>,
    replication: Option<Replication>,
    snapshotting: Option<Snapshotting>,
    pruning: Option<Pruning>,
    conflict_resolution: Option<ConflictResolution>,
    root_fs: Option<RootFs>,
    interval: Option<PullInterval>,
}

/// `pruning`: `keep_sender` and `keep_receiver` (push, pull) or `keep` (snap).
enum Pruning {
    SenderReceiver(PruningSenderReceiver),
    Local(Vec<KeepRule>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPruning {
    keep_sender: Option<Vec<KeepRule>>,
    keep_receiver: Option<Vec<KeepRule>>,
    keep: Option<Vec<KeepRule>>,
}

via_raw!(Pruning, RawPruning, "a pruning section", |r| {
    match (r.keep, r.keep_sender, r.keep_receiver) {
        (Some(keep), None, None) => Ok(Pruning::Local(keep)),
        (None, Some(keep_sender), Some(keep_receiver)) => {
            Ok(Pruning::SenderReceiver(PruningSenderReceiver { keep_sender, keep_receiver }))
        }
        (Some(_), _, _) => {
            Err("pruning has either `keep` (snap jobs) or keep_sender and keep_receiver \
             (push and pull jobs), not both"
                .to_owned())
        }
        (None, None, None) => {
            Err("pruning requires keep_sender and keep_receiver (push and pull jobs) or keep \
             (snap jobs)"
                .to_owned())
        }
        (None, None, Some(_)) => Err("pruning requires `keep_sender`".to_owned()),
        (None, Some(_), None) => Err("pruning requires `keep_receiver`".to_owned()),
    }
});

fn sender_receiver(p: Pruning, what: &str) -> Result<PruningSenderReceiver, String> {
    match p {
        Pruning::SenderReceiver(p) => Ok(p),
        Pruning::Local(_) => Err(format!(
            "pruning of {what} has keep_sender and keep_receiver, not `keep` (that is for snap jobs)"
        )),
    }
}

via_raw!(Job, RawJob, "a job", |r| {
    let name = r.name.ok_or("a job requires `name`")?;
    check_job_name(&name)?;
    let ty = r.ty.ok_or("a job requires `type` (push, sink, pull, source or snap)")?;
    let present = [
        ("connect", r.connect.is_some()),
        ("serve", r.serve.is_some()),
        ("filesystems", r.filesystems.is_some()),
        ("send", r.send.is_some()),
        ("recv", r.recv.is_some()),
        ("replication", r.replication.is_some()),
        ("snapshotting", r.snapshotting.is_some()),
        ("pruning", r.pruning.is_some()),
        ("conflict_resolution", r.conflict_resolution.is_some()),
        ("root_fs", r.root_fs.is_some()),
        ("interval", r.interval.is_some()),
    ];
    let what = format!("a {ty} job");
    let kind = match ty.as_str() {
        "push" => {
            only_allowed(
                &what,
                &present,
                &[
                    "type",
                    "name",
                    "connect",
                    "filesystems",
                    "send",
                    "replication",
                    "snapshotting",
                    "pruning",
                    "conflict_resolution",
                ],
            )?;
            JobKind::Push(PushJob {
                connect: required(r.connect, &what, "connect")?,
                filesystems: required(r.filesystems, &what, "filesystems")?.0,
                send: r.send.unwrap_or_default(),
                replication: r.replication.unwrap_or_default(),
                snapshotting: required(r.snapshotting, &what, "snapshotting")?,
                pruning: sender_receiver(required(r.pruning, &what, "pruning")?, &what)?,
                conflict_resolution: r.conflict_resolution.unwrap_or_default(),
            })
        }
        "sink" => {
            only_allowed(&what, &present, &["type", "name", "serve", "root_fs", "recv"])?;
            JobKind::Sink(SinkJob {
                serve: required(r.serve, &what, "serve")?,
                root_fs: required(r.root_fs, &what, "root_fs")?.0,
                recv: r.recv.unwrap_or_default(),
            })
        }
        "pull" => {
            only_allowed(
                &what,
                &present,
                &[
                    "type",
                    "name",
                    "connect",
                    "root_fs",
                    "interval",
                    "recv",
                    "replication",
                    "pruning",
                    "conflict_resolution",
                ],
            )?;
            JobKind::Pull(PullJob {
                connect: required(r.connect, &what, "connect")?,
                root_fs: required(r.root_fs, &what, "root_fs")?.0,
                interval: required(r.interval, &what, "interval")?,
                recv: r.recv.unwrap_or_default(),
                replication: r.replication.unwrap_or_default(),
                pruning: sender_receiver(required(r.pruning, &what, "pruning")?, &what)?,
                conflict_resolution: r.conflict_resolution.unwrap_or_default(),
            })
        }
        "source" => {
            only_allowed(
                &what,
                &present,
                &["type", "name", "serve", "filesystems", "send", "snapshotting"],
            )?;
            JobKind::Source(SourceJob {
                serve: required(r.serve, &what, "serve")?,
                filesystems: required(r.filesystems, &what, "filesystems")?.0,
                send: r.send.unwrap_or_default(),
                snapshotting: required(r.snapshotting, &what, "snapshotting")?,
            })
        }
        "snap" => {
            only_allowed(
                &what,
                &present,
                &["type", "name", "filesystems", "snapshotting", "pruning"],
            )?;
            let Pruning::Local(pruning) = required(r.pruning, &what, "pruning")? else {
                return Err(
                    "pruning of a snap job has `keep`, not keep_sender/keep_receiver".to_owned()
                );
            };
            JobKind::Snap(SnapJob {
                filesystems: required(r.filesystems, &what, "filesystems")?.0,
                snapshotting: required(r.snapshotting, &what, "snapshotting")?,
                pruning,
            })
        }
        _ => return Err(unknown_type("job", &ty, "push, sink, pull, source, snap")),
    };
    Ok(Job { name, kind })
});

// ---------------------------------------------------------------------------
// Transports

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    #[serde(rename = "type")]
    ty: Option<String>,
    address: Option<String>,
    dial_timeout: Option<NonNegGoDuration>,
    listener_name: Option<Name>,
    client_identity: Option<String>,
    // tls
    ca: Option<IgnoredAny>,
    cert: Option<IgnoredAny>,
    key: Option<IgnoredAny>,
    server_cn: Option<IgnoredAny>,
    // ssh+stdinserver
    host: Option<IgnoredAny>,
    user: Option<IgnoredAny>,
    port: Option<IgnoredAny>,
    identity_file: Option<IgnoredAny>,
    transport_open_command: Option<IgnoredAny>,
    ssh_command: Option<IgnoredAny>,
    options: Option<IgnoredAny>,
}

via_raw!(Connect, RawConnect, "a connect section", |r| {
    let ty = required(r.ty, "connect", "type")?;
    let present = [
        ("address", r.address.is_some()),
        ("dial_timeout", r.dial_timeout.is_some()),
        ("listener_name", r.listener_name.is_some()),
        ("client_identity", r.client_identity.is_some()),
        ("ca", r.ca.is_some()),
        ("cert", r.cert.is_some()),
        ("key", r.key.is_some()),
        ("server_cn", r.server_cn.is_some()),
        ("host", r.host.is_some()),
        ("user", r.user.is_some()),
        ("port", r.port.is_some()),
        ("identity_file", r.identity_file.is_some()),
        ("transport_open_command", r.transport_open_command.is_some()),
        ("ssh_command", r.ssh_command.is_some()),
        ("options", r.options.is_some()),
    ];
    match ty.as_str() {
        "tcp" => {
            only_allowed("a tcp connect", &present, &["type", "address", "dial_timeout"])?;
            let address = required(r.address, "a tcp connect", "address")?;
            check_host_port("address", &address, false)?;
            Ok(Connect::Tcp {
                address,
                dial_timeout: r.dial_timeout.map_or(DEFAULT_TCP_DIAL_TIMEOUT, |d| d.0),
            })
        }
        "local" => {
            only_allowed(
                "a local connect",
                &present,
                &["type", "listener_name", "client_identity", "dial_timeout"],
            )?;
            let client_identity =
                required(r.client_identity, "a local connect", "client_identity")?;
            validate_identity(&client_identity)?;
            Ok(Connect::Local {
                listener_name: required(r.listener_name, "a local connect", "listener_name")?.0,
                client_identity,
                dial_timeout: r.dial_timeout.map_or(DEFAULT_LOCAL_DIAL_TIMEOUT, |d| d.0),
            })
        }
        "tls" | "ssh+stdinserver" => Err(unsupported_type("connect", &ty, "tcp, local")),
        _ => Err(unknown_type("connect", &ty, "tcp, tls, ssh+stdinserver, local")),
    }
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    #[serde(rename = "type")]
    ty: Option<String>,
    listen: Option<String>,
    listen_freebind: Option<YBool>,
    clients: Option<Clients>,
    listener_name: Option<Name>,
    // tls
    ca: Option<IgnoredAny>,
    cert: Option<IgnoredAny>,
    key: Option<IgnoredAny>,
    client_cns: Option<IgnoredAny>,
    handshake_timeout: Option<IgnoredAny>,
    // stdinserver
    client_identities: Option<IgnoredAny>,
}

via_raw!(Serve, RawServe, "a serve section", |r| {
    let ty = required(r.ty, "serve", "type")?;
    let present = [
        ("listen", r.listen.is_some()),
        ("listen_freebind", r.listen_freebind.is_some()),
        ("clients", r.clients.is_some()),
        ("listener_name", r.listener_name.is_some()),
        ("ca", r.ca.is_some()),
        ("cert", r.cert.is_some()),
        ("key", r.key.is_some()),
        ("client_cns", r.client_cns.is_some()),
        ("handshake_timeout", r.handshake_timeout.is_some()),
        ("client_identities", r.client_identities.is_some()),
    ];
    match ty.as_str() {
        "tcp" => {
            only_allowed(
                "a tcp serve",
                &present,
                &["type", "listen", "listen_freebind", "clients"],
            )?;
            let listen = required(r.listen, "a tcp serve", "listen")?;
            check_host_port("listen", &listen, true)?;
            Ok(Serve::Tcp {
                listen,
                listen_freebind: flag(r.listen_freebind, false),
                clients: required(r.clients, "a tcp serve", "clients")?.0,
            })
        }
        "local" => {
            only_allowed("a local serve", &present, &["type", "listener_name"])?;
            Ok(Serve::Local {
                listener_name: required(r.listener_name, "a local serve", "listener_name")?.0,
            })
        }
        "tls" | "stdinserver" => Err(unsupported_type("serve", &ty, "tcp, local")),
        _ => Err(unknown_type("serve", &ty, "tcp, tls, stdinserver, local")),
    }
});

// ---------------------------------------------------------------------------
// Send, recv, replication, conflict resolution

/// `bandwidth_limit`: accepted only when it does not limit (max absent or negative).
struct BandwidthLimit;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBandwidthLimit {
    max: Option<Scalar>,
    #[allow(dead_code)]
    bucket_capacity: Option<Scalar>,
}

via_raw!(BandwidthLimit, RawBandwidthLimit, "a bandwidth limit", |r| match r.max {
    Some(Scalar(max)) if !max.trim_start().starts_with('-') => {
        Err(format!("bandwidth_limit (max {max:?}) is {NOT_SUPPORTED}"))
    }
    _ => Ok(BandwidthLimit),
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSend {
    encrypted: Option<YBool>,
    raw: Option<YBool>,
    send_properties: Option<YBool>,
    backup_properties: Option<YBool>,
    large_blocks: Option<YBool>,
    compressed: Option<YBool>,
    embedded_data: Option<YBool>,
    saved: Option<YBool>,
    #[allow(dead_code)]
    bandwidth_limit: Option<BandwidthLimit>,
    #[allow(dead_code)]
    execpipe: Option<NotSupported>,
}

via_raw!(SendOptions, RawSend, "send options", |r| Ok(SendOptions {
    encrypted: flag(r.encrypted, false),
    raw: flag(r.raw, false),
    send_properties: flag(r.send_properties, false),
    backup_properties: flag(r.backup_properties, false),
    large_blocks: flag(r.large_blocks, false),
    compressed: flag(r.compressed, false),
    embedded_data: flag(r.embedded_data, false),
    saved: flag(r.saved, false),
}));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecv {
    properties: Option<RawRecvProperties>,
    #[allow(dead_code)]
    bandwidth_limit: Option<BandwidthLimit>,
    placeholder: Option<RawPlaceholder>,
    #[allow(dead_code)]
    execpipe: Option<NotSupported>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecvProperties {
    #[serde(rename = "override")]
    override_: Option<StrMap>,
    inherit: Option<Vec<PropName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaceholder {
    encryption: Option<PlaceholderEncryption>,
}

via_raw!(RecvOptions, RawRecv, "recv options", |r| {
    let (override_properties, inherit_properties) = match r.properties {
        None => (BTreeMap::new(), Vec::new()),
        Some(p) => {
            let over = p.override_.map(|m| m.0).unwrap_or_default();
            for k in over.keys() {
                PropName::check(k)?;
            }
            let inherit: Vec<String> =
                p.inherit.unwrap_or_default().into_iter().map(|p| p.0).collect();
            for (i, prop) in inherit.iter().enumerate() {
                if over.contains_key(prop) {
                    return Err(format!(
                        "property {prop:?} is both in properties.inherit and properties.override"
                    ));
                }
                if inherit[..i].contains(prop) {
                    return Err(format!("property {prop:?} appears twice in properties.inherit"));
                }
            }
            (over, inherit)
        }
    };
    Ok(RecvOptions {
        override_properties,
        inherit_properties,
        placeholder_encryption: r.placeholder.and_then(|p| p.encryption).unwrap_or_default(),
    })
});

impl PropName {
    fn check(s: &str) -> Result<(), String> {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        let d: StrDeserializer<'_, Error> = s.into_deserializer();
        PropName::deserialize(d).map(|_| ()).map_err(|e| e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    protection: Option<RawProtection>,
    concurrency: Option<RawConcurrency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtection {
    initial: Option<Protection>,
    incremental: Option<Protection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConcurrency {
    steps: Option<i64>,
    size_estimates: Option<i64>,
}

via_raw!(Replication, RawReplication, "replication options", |r| {
    let d = Replication::default();
    let positive = |v: Option<i64>, key: &str, default: u32| -> Result<u32, String> {
        match v {
            None => Ok(default),
            Some(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(n as u32),
            Some(n) => Err(format!("replication.concurrency.{key} must be positive, got {n}")),
        }
    };
    let (steps, size_estimates) = match r.concurrency {
        None => (d.concurrency_steps, d.concurrency_size_estimates),
        Some(c) => (
            positive(c.steps, "steps", d.concurrency_steps)?,
            positive(c.size_estimates, "size_estimates", d.concurrency_size_estimates)?,
        ),
    };
    let (initial, incremental) = match r.protection {
        None => (d.protection_initial, d.protection_incremental),
        Some(p) => (
            p.initial.unwrap_or(d.protection_initial),
            p.incremental.unwrap_or(d.protection_incremental),
        ),
    };
    Ok(Replication {
        protection_initial: initial,
        protection_incremental: incremental,
        concurrency_steps: steps,
        concurrency_size_estimates: size_estimates,
    })
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConflictResolution {
    initial_replication: Option<InitialReplication>,
}

via_raw!(ConflictResolution, RawConflictResolution, "conflict resolution", |r| {
    Ok(ConflictResolution { initial_replication: r.initial_replication.unwrap_or_default() })
});

// ---------------------------------------------------------------------------
// Snapshotting and hooks

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshotting {
    #[serde(rename = "type")]
    ty: Option<String>,
    prefix: Option<String>,
    interval: Option<PosInterval>,
    cron: Option<Cron>,
    hooks: Option<Vec<Hook>>,
    timestamp_format: Option<TimestampFormat>,
    timestamp_location: Option<TimestampLocation>,
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if let Some(c) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || "_-.:".contains(*c))) {
        return Err(format!(
            "snapshot prefix {prefix:?} contains {c:?}, which ZFS does not allow in a snapshot name"
        ));
    }
    Ok(())
}

via_raw!(Snapshotting, RawSnapshotting, "a snapshotting section", |r| {
    let ty = required(r.ty, "snapshotting", "type")?;
    let present = [
        ("prefix", r.prefix.is_some()),
        ("interval", r.interval.is_some()),
        ("cron", r.cron.is_some()),
        ("hooks", r.hooks.is_some()),
        ("timestamp_format", r.timestamp_format.is_some()),
        ("timestamp_location", r.timestamp_location.is_some()),
    ];
    let timestamp = TimestampFormatting {
        format: r.timestamp_format.unwrap_or_default(),
        location: r.timestamp_location.unwrap_or_default(),
    };
    match ty.as_str() {
        "periodic" => {
            let what = "periodic snapshotting";
            only_allowed(
                what,
                &present,
                &["type", "prefix", "interval", "hooks", "timestamp_format", "timestamp_location"],
            )?;
            let prefix = required(r.prefix, what, "prefix")?;
            check_prefix(&prefix)?;
            Ok(Snapshotting::Periodic {
                prefix,
                interval: required(r.interval, what, "interval")?.0,
                timestamp,
                hooks: r.hooks.unwrap_or_default(),
            })
        }
        "cron" => {
            let what = "cron snapshotting";
            only_allowed(
                what,
                &present,
                &["type", "prefix", "cron", "hooks", "timestamp_format", "timestamp_location"],
            )?;
            let prefix = required(r.prefix, what, "prefix")?;
            check_prefix(&prefix)?;
            Ok(Snapshotting::Cron {
                prefix,
                cron: required(r.cron, what, "cron")?.0,
                timestamp,
                hooks: r.hooks.unwrap_or_default(),
            })
        }
        "manual" => {
            only_allowed("manual snapshotting", &present, &["type"])?;
            Ok(Snapshotting::Manual)
        }
        _ => Err(unknown_type("snapshotting", &ty, "periodic, cron, manual")),
    }
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    #[serde(rename = "type")]
    ty: Option<String>,
    path: Option<String>,
    timeout: Option<PosGoDuration>,
    err_is_fatal: Option<YBool>,
    filesystems: Option<Filesystems>,
    dsn: Option<IgnoredAny>,
}

via_raw!(Hook, RawHook, "a hook", |r| {
    let ty = required(r.ty, "a hook", "type")?;
    match ty.as_str() {
        "command" => {
            only_allowed(
                "a command hook",
                &[("dsn", r.dsn.is_some())],
                &["type", "path", "timeout", "err_is_fatal", "filesystems"],
            )?;
            let path = required(r.path, "a command hook", "path")?;
            if !path.starts_with('/') {
                return Err(format!("hook path {path:?} must be absolute"));
            }
            Ok(Hook::Command(CommandHook {
                path,
                timeout: r.timeout.map_or(DEFAULT_HOOK_TIMEOUT, |t| t.0),
                err_is_fatal: flag(r.err_is_fatal, false),
                filesystems: r
                    .filesystems
                    .map(|f| f.0)
                    .unwrap_or_else(|| FilesystemFilter::from([("<".to_owned(), true)])),
            }))
        }
        "postgres-checkpoint" | "mysql-lock-tables" => {
            Err(unsupported_type("hook", &ty, "command"))
        }
        _ => Err(unknown_type("hook", &ty, "command, postgres-checkpoint, mysql-lock-tables")),
    }
});

// ---------------------------------------------------------------------------
// Pruning

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeepRule {
    #[serde(rename = "type")]
    ty: Option<String>,
    grid: Option<Grid>,
    regex: Option<String>,
    count: Option<i64>,
    negate: Option<YBool>,
    keep_snapshot_at_cursor: Option<YBool>,
}

via_raw!(KeepRule, RawKeepRule, "a keep rule", |r| {
    let ty = required(r.ty, "a keep rule", "type")?;
    let present = [
        ("grid", r.grid.is_some()),
        ("regex", r.regex.is_some()),
        ("count", r.count.is_some()),
        ("negate", r.negate.is_some()),
        ("keep_snapshot_at_cursor", r.keep_snapshot_at_cursor.is_some()),
    ];
    match ty.as_str() {
        "grid" => {
            let what = "a grid keep rule";
            only_allowed(what, &present, &["type", "grid", "regex"])?;
            Ok(KeepRule::Grid {
                grid: required(r.grid, what, "grid")?.0,
                regex: required(r.regex, what, "regex")?,
            })
        }
        "last_n" => {
            let what = "a last_n keep rule";
            only_allowed(what, &present, &["type", "count", "regex"])?;
            let count = required(r.count, what, "count")?;
            let count = u32::try_from(count).ok().filter(|c| *c > 0).ok_or_else(|| {
                format!("must specify positive number as 'keep last count', got {count}")
            })?;
            Ok(KeepRule::LastN { count, regex: r.regex })
        }
        "regex" => {
            let what = "a regex keep rule";
            only_allowed(what, &present, &["type", "regex", "negate"])?;
            Ok(KeepRule::Regex {
                regex: required(r.regex, what, "regex")?,
                negate: flag(r.negate, false),
            })
        }
        "not_replicated" => {
            only_allowed(
                "a not_replicated keep rule",
                &present,
                &["type", "keep_snapshot_at_cursor"],
            )?;
            Ok(KeepRule::NotReplicated {
                keep_snapshot_at_cursor: flag(r.keep_snapshot_at_cursor, true),
            })
        }
        _ => Err(unknown_type("keep rule", &ty, "grid, last_n, regex, not_replicated")),
    }
});
