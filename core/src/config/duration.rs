//! The two duration syntaxes a zrepl configuration uses.
//!
//! * Intervals (`snapshotting.interval`, pull `interval`, the lengths in a pruning
//!   grid) use zrepl's own syntax: one optionally signed integer and one unit out
//!   of `s`, `m`, `h`, `d` (24 h) or `w` (7 d), with optional blanks around and
//!   between them (`10m`, ` 1 d `). Combinations like `1h30m` are not accepted,
//!   exactly as in zrepl. A bare `0` is the only value without a unit.
//! * Timeouts (`dial_timeout`, hook `timeout`) are Go `time.Duration` strings:
//!   a sequence of decimal numbers with optional fraction and a unit out of `ns`,
//!   `us` (`µs`), `ms`, `s`, `m`, `h` (`1h30m`, `1.5s`, `300ms`); no days.

use std::time::Duration;

/// Go's `\s` in a regular expression.
fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// A zrepl interval that must be positive (`parsePositiveDuration` in zrepl).
pub fn parse_positive_interval(s: &str) -> Result<Duration, String> {
    let (negative, d) = parse_interval(s)?;
    if negative || d.is_zero() {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(d)
}

/// A zrepl interval: returns whether it was negative, and its magnitude.
fn parse_interval(s: &str) -> Result<(bool, Duration), String> {
    let syntax = || {
        format!(
            "cannot parse duration {s:?}: expected a whole number and one unit of \
             s, m, h, d or w (like 10m or 1d)"
        )
    };
    let t = s.trim_matches(is_go_space);
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    if digits_end == 0 {
        return Err(syntax());
    }
    let (digits, unit) = rest.split_at(digits_end);
    let unit = unit.trim_start_matches(is_go_space);
    let n: u64 = digits.parse().map_err(|_| format!("duration {s:?} is out of range"))?;
    let secs_per_unit: u64 = match unit {
        "" if n == 0 => 0,
        "" => return Err(format!("cannot parse duration {s:?}: missing time unit")),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(syntax()),
    };
    // Go's time.Duration is nanoseconds in an i64.
    let secs = n
        .checked_mul(secs_per_unit)
        .filter(|secs| *secs <= i64::MAX as u64 / 1_000_000_000)
        .ok_or_else(|| format!("duration {s:?} is out of range"))?;
    Ok((negative && n != 0, Duration::from_secs(secs)))
}

/// A Go `time.Duration` string that must not be negative (zero allowed).
pub fn parse_go_duration_nonnegative(s: &str) -> Result<Duration, String> {
    match parse_go_duration(s)? {
        (true, _) => Err(format!("duration {s:?} must not be negative")),
        (false, d) => Ok(d),
    }
}

/// A Go `time.Duration` string that must be positive.
pub fn parse_go_duration_positive(s: &str) -> Result<Duration, String> {
    match parse_go_duration(s)? {
        (false, d) if !d.is_zero() => Ok(d),
        _ => Err(format!("duration {s:?} must be positive")),
    }
}

/// Go's `time.ParseDuration`: returns whether it was negative, and its magnitude.
fn parse_go_duration(s: &str) -> Result<(bool, Duration), String> {
    let invalid = || {
        format!(
            "cannot parse duration {s:?}: expected a Go duration such as 10s, 1m30s or \
             500ms (units ns, us, ms, s, m, h)"
        )
    };
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok((false, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const MAX_NANOS: u128 = i64::MAX as u128;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(end)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_end = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("cannot parse duration {s:?}: missing unit")),
            _ => return Err(format!("cannot parse duration {s:?}: unknown unit {unit:?}")),
        };
        let out_of_range = || format!("duration {s:?} is out of range");
        let mut value: u128 = 0;
        for c in int_part.bytes() {
            value = value * 10 + u128::from(c - b'0');
            if value > MAX_NANOS {
                return Err(out_of_range());
            }
        }
        let mut nanos = value * nanos_per_unit;
        // The fraction, truncated to whole nanoseconds as Go does.
        let mut scale = nanos_per_unit;
        for c in frac_part.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            nanos += u128::from(c - b'0') * scale;
        }
        total += nanos;
        if total > MAX_NANOS {
            return Err(out_of_range());
        }
        rest = after;
    }
    let d = Duration::new((total / 1_000_000_000) as u64, (total % 1_000_000_000) as u32);
    Ok((negative && total != 0, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_zrepl() {
        let ok = [
            ("10m", 600),
            ("1d", 86_400),
            ("2w", 14 * 86_400),
            (" 5 s ", 5),
            ("+3h", 3 * 3600),
            ("90s", 90),
        ];
        for (s, secs) in ok {
            assert_eq!(parse_positive_interval(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        for s in ["0", "0s", "-5m", "10", "1h30m", "", "m", "5x", "1.5h", "5 m s"] {
            assert!(parse_positive_interval(s).is_err(), "{s:?} accepted");
        }
        assert!(parse_positive_interval("10").unwrap_err().contains("missing time unit"));
        assert!(parse_positive_interval("-5m").unwrap_err().contains("positive"));
        assert!(parse_positive_interval("99999999999999999999d").is_err());
    }

    #[test]
    fn go_durations_follow_time_parse_duration() {
        let ok = [
            ("10s", Duration::from_secs(10)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("300ms", Duration::from_millis(300)),
            ("2us", Duration::from_micros(2)),
            ("2\u{b5}s", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            (".5m", Duration::from_secs(30)),
            ("1m0.000000001s", Duration::new(60, 1)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_go_duration_positive(s), Ok(d), "{s}");
        }
        assert_eq!(parse_go_duration_nonnegative("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration_nonnegative("0s"), Ok(Duration::ZERO));
        assert!(parse_go_duration_positive("0").is_err());
        assert!(parse_go_duration_nonnegative("-1s").unwrap_err().contains("negative"));
        for s in ["", "1d", "10", "s", "1h 30m", " 1s", ".s", "1..5s", "3000000h"] {
            assert!(parse_go_duration_nonnegative(s).is_err(), "{s:?} accepted");
        }
    }
}
