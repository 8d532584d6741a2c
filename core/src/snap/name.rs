//! Snapshot names: the job's prefix and the time, written by a Go layout.
//!
//! zrepl formats the time with Go's `time.Format`, so `timestamp_format` may be
//! any Go layout; the named formats are layouts too (dense is
//! `20060102_150405_000`). This module writes every element Go's layouts know
//! (`2006 06 01 1 Jan January 02 2 _2 002 __2 Mon Monday 15 03 3 04 4 05 5 PM pm
//! MST -0700 -07:00 -07 -070000 -07:00:00 Z0700 Z07:00 Z07 Z070000 Z07:00:00
//! .000 .999 ,000 ,999`), recognized exactly where Go recognizes them; the rest
//! of a layout is literal text. Times are UTC and whole seconds, so zones print
//! as UTC and fractions as zeros.
//!
//! A name must be a ZFS snapshot name made only of `A-Z a-z 0-9 _ . : -`: ZFS
//! would also take a space, but a scheduled name with a space in it is a trap
//! for every script that handles it.

use super::civil::Civil;
use crate::config::{TimestampFormat, TimestampFormatting, TimestampLocation, NOT_SUPPORTED};
use crate::time::WallTime;
use crate::zfs::VersionName;

/// Go's reference time, Mon Jan 2 15:04:05 UTC 2006: its day, month and hour
/// are single digits, so padding with spaces shows up when a layout is checked.
const REFERENCE_TIME: WallTime = WallTime(1_136_214_245);

/// The name of a snapshot taken at `t`: `prefix` followed by the timestamp.
pub fn snapshot_name(
    prefix: &str,
    t: WallTime,
    format: &TimestampFormat,
) -> Result<VersionName, String> {
    let stamp = match format {
        TimestampFormat::Dense => format_layout("20060102_150405_000", t),
        TimestampFormat::Human => format_layout("2006-01-02_15:04:05", t),
        TimestampFormat::Iso8601 => format_layout("2006-01-02T15:04:05.000Z", t),
        TimestampFormat::UnixSeconds => t.0.to_string(),
        TimestampFormat::GoLayout(layout) => format_layout(layout, t),
    };
    let name = format!("{prefix}{stamp}");
    let bad = |what: String| {
        format!(
            "snapshot name {name:?} (prefix {prefix:?}, timestamp_format {}) {what}",
            format_text(format)
        )
    };
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.:-".contains(*c))) {
        return Err(bad(format!(
            "contains {c:?}; snapshot names may only contain A-Z a-z 0-9 _ . : -"
        )));
    }
    VersionName::parse(&name).map_err(|e| bad(format!("is not valid: {e}")))
}

/// For the config builder: refuses what cannot produce names, before any job runs.
/// `Local` needs the host's time zone rules, which the pure core does not have.
pub fn check_formatting(prefix: &str, formatting: &TimestampFormatting) -> Result<(), String> {
    if formatting.location == TimestampLocation::Local {
        return Err(format!("timestamp_location Local is {NOT_SUPPORTED}; use UTC (the default)"));
    }
    snapshot_name(prefix, REFERENCE_TIME, &formatting.format).map(drop)
}

fn format_text(format: &TimestampFormat) -> String {
    match format {
        TimestampFormat::Dense => "dense".to_owned(),
        TimestampFormat::Human => "human".to_owned(),
        TimestampFormat::Iso8601 => "iso-8601".to_owned(),
        TimestampFormat::UnixSeconds => "unix-seconds".to_owned(),
        TimestampFormat::GoLayout(layout) => format!("{layout:?}"),
    }
}

/// One element of a Go layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    UpperPm,
    LowerPm,
    ZoneName,
    /// A numeric zone (`-0700` and kin): what it prints for UTC.
    NumZone(&'static str),
    /// An ISO 8601 zone (`Z0700` and kin): `Z` for UTC.
    IsoZone,
    /// Fractional seconds: separator, digits, and whether zeros are trimmed.
    Fraction(char, usize, bool),
}

/// The element that starts `s`, and its length, where Go's layout parser sees one.
fn elem_at(s: &str) -> Option<(Elem, usize)> {
    let b = s.as_bytes();
    let starts = |p: &str| s.starts_with(p);
    let lower_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_lowercase);
    let found = match b[0] {
        b'J' if starts("January") => (Elem::LongMonth, 7),
        // "Jan" before a lower-case letter is a word, like "Janet".
        b'J' if starts("Jan") && !lower_at(3) => (Elem::Month, 3),
        b'M' if starts("Monday") => (Elem::LongWeekDay, 6),
        b'M' if starts("Mon") && !lower_at(3) => (Elem::WeekDay, 3),
        b'M' if starts("MST") => (Elem::ZoneName, 3),
        b'0' if matches!(b.get(1), Some(b'1'..=b'6')) => {
            let elem = [
                Elem::ZeroMonth,
                Elem::ZeroDay,
                Elem::ZeroHour12,
                Elem::ZeroMinute,
                Elem::ZeroSecond,
                Elem::Year,
            ][usize::from(b[1] - b'1')];
            (elem, 2)
        }
        b'0' if starts("002") => (Elem::ZeroYearDay, 3),
        b'1' if starts("15") => (Elem::Hour, 2),
        b'1' => (Elem::NumMonth, 1),
        b'2' if starts("2006") => (Elem::LongYear, 4),
        b'2' => (Elem::Day, 1),
        // "_2006" is a literal "_" and then the year.
        b'_' if starts("_2") && !starts("_2006") => (Elem::UnderDay, 2),
        b'_' if starts("__2") => (Elem::UnderYearDay, 3),
        b'3' => (Elem::Hour12, 1),
        b'4' => (Elem::Minute, 1),
        b'5' => (Elem::Second, 1),
        b'P' if starts("PM") => (Elem::UpperPm, 2),
        b'p' if starts("pm") => (Elem::LowerPm, 2),
        b'-' | b'Z' => {
            let numeric = b[0] == b'-';
            // Longest first, as Go tries them.
            let forms: [(&str, &'static str); 5] = [
                ("070000", "+000000"),
                ("07:00:00", "+00:00:00"),
                ("0700", "+0000"),
                ("07:00", "+00:00"),
                ("07", "+00"),
            ];
            let (form, utc) = forms.into_iter().find(|(f, _)| s[1..].starts_with(f))?;
            let elem = if numeric { Elem::NumZone(utc) } else { Elem::IsoZone };
            (elem, 1 + form.len())
        }
        b'.' | b',' if matches!(b.get(1), Some(b'0' | b'9')) => {
            let digit = b[1];
            let run = b[1..].iter().take_while(|c| **c == digit).count();
            // Only a run of digits that ends the number is a fraction.
            if b.get(1 + run).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            (Elem::Fraction(char::from(b[0]), run, digit == b'9'), 1 + run)
        }
        _ => return None,
    };
    Some(found)
}

/// Writes `t` (UTC) with a Go layout.
fn format_layout(layout: &str, t: WallTime) -> String {
    let c = Civil::from_wall(t);
    let mut out = String::new();
    let mut rest = layout;
    while let Some(ch) = rest.chars().next() {
        match elem_at(rest) {
            Some((elem, len)) => {
                write_elem(&mut out, elem, &c);
                rest = &rest[len..];
            }
            None => {
                out.push(ch);
                rest = &rest[ch.len_utf8()..];
            }
        }
    }
    out
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] =
    ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn write_elem(out: &mut String, elem: Elem, c: &Civil) {
    let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
    let month = MONTH_NAMES[(c.month - 1) as usize];
    let weekday = DAY_NAMES[c.weekday() as usize];
    let text = match elem {
        Elem::LongMonth => month.to_owned(),
        Elem::Month => month[..3].to_owned(),
        Elem::NumMonth => c.month.to_string(),
        Elem::ZeroMonth => format!("{:02}", c.month),
        Elem::LongWeekDay => weekday.to_owned(),
        Elem::WeekDay => weekday[..3].to_owned(),
        Elem::Day => c.day.to_string(),
        Elem::UnderDay => format!("{:>2}", c.day),
        Elem::ZeroDay => format!("{:02}", c.day),
        Elem::UnderYearDay => format!("{:>3}", c.year_day()),
        Elem::ZeroYearDay => format!("{:03}", c.year_day()),
        Elem::Hour => format!("{:02}", c.hour),
        Elem::Hour12 => hour12.to_string(),
        Elem::ZeroHour12 => format!("{hour12:02}"),
        Elem::Minute => c.minute.to_string(),
        Elem::ZeroMinute => format!("{:02}", c.minute),
        Elem::Second => c.second.to_string(),
        Elem::ZeroSecond => format!("{:02}", c.second),
        Elem::LongYear => padded(c.year, 4),
        // Go takes the remainder towards zero, and so does `%`.
        Elem::Year => padded(c.year % 100, 2),
        Elem::UpperPm => (if c.hour >= 12 { "PM" } else { "AM" }).to_owned(),
        Elem::LowerPm => (if c.hour >= 12 { "pm" } else { "am" }).to_owned(),
        Elem::ZoneName => "UTC".to_owned(),
        Elem::NumZone(utc) => utc.to_owned(),
        Elem::IsoZone => "Z".to_owned(),
        // Whole seconds: `.000` prints zeros, `.999` trims them and its separator.
        Elem::Fraction(sep, digits, false) => format!("{sep}{}", "0".repeat(digits)),
        Elem::Fraction(_, _, true) => String::new(),
    };
    out.push_str(&text);
}

/// Go's zero padding of a possibly negative number: the sign, then the digits.
fn padded(v: i64, width: usize) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{:0width$}", v.unsigned_abs())
}
