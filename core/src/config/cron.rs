//! Cron specs as zrepl accepts them (robfig/cron with an optional seconds field).
//!
//! Five fields `minute hour day-of-month month day-of-week`, or six with a leading
//! `second`. Each field is a comma-separated list of `*`, `?`, `A`, `A-B`, each
//! optionally followed by `/STEP`; months and weekdays may be given by their
//! three-letter English names. The `@daily`-style descriptors are rejected, as in
//! zrepl.

/// A validated cron spec. The scheduler evaluates it; this type only guarantees
/// that it is well-formed and in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    /// The spec as written.
    pub spec: String,
    /// `second minute hour dom month dow`; a missing seconds field is `0`.
    pub fields: [String; 6],
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    names_base: u32,
}

const KINDS: [FieldKind; 6] = [
    FieldKind { name: "second", min: 0, max: 59, names: &[], names_base: 0 },
    FieldKind { name: "minute", min: 0, max: 59, names: &[], names_base: 0 },
    FieldKind { name: "hour", min: 0, max: 23, names: &[], names_base: 0 },
    FieldKind { name: "day of month", min: 1, max: 31, names: &[], names_base: 0 },
    FieldKind { name: "month", min: 1, max: 12, names: &MONTHS, names_base: 1 },
    FieldKind { name: "day of week", min: 0, max: 6, names: &DAYS, names_base: 0 },
];

pub fn parse_cron(spec: &str) -> Result<CronSpec, String> {
    if spec.trim_start().starts_with('@') {
        return Err(format!(
            "cron spec {spec:?}: descriptors like @daily are not accepted (as in zrepl); \
             write the five fields instead"
        ));
    }
    let given: Vec<&str> = spec.split_whitespace().collect();
    let fields: [&str; 6] = match given.len() {
        5 => ["0", given[0], given[1], given[2], given[3], given[4]],
        6 => [given[0], given[1], given[2], given[3], given[4], given[5]],
        n => {
            return Err(format!(
                "cron spec {spec:?} has {n} fields; expected 5 (minute hour day-of-month \
                 month day-of-week) or 6 (with a leading second)"
            ))
        }
    };
    for (field, kind) in fields.iter().zip(KINDS.iter()) {
        check_field(field, kind)
            .map_err(|e| format!("cron spec {spec:?}: {} field {field:?}: {e}", kind.name))?;
    }
    Ok(CronSpec { spec: spec.to_owned(), fields: fields.map(str::to_owned) })
}

fn check_field(field: &str, kind: &FieldKind) -> Result<(), String> {
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            let step: u32 = step.parse().map_err(|_| format!("step {step:?} is not a number"))?;
            if step == 0 {
                return Err("step must be at least 1".to_owned());
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (value(lo, kind)?, Some(value(hi, kind)?)),
            None => (value(range, kind)?, None),
        };
        if let Some(hi) = hi {
            if hi < lo {
                return Err(format!("range {range:?} ends before it starts"));
            }
        }
    }
    Ok(())
}

fn value(s: &str, kind: &FieldKind) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    let v = match kind.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + kind.names_base,
        None => s.parse().map_err(|_| format!("{s:?} is not a number"))?,
    };
    if v < kind.min || v > kind.max {
        return Err(format!("{v} is outside {}-{}", kind.min, kind.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_zrepl_accepts() {
        for spec in [
            "* * * * *",
            "0-10 * * * *",
            "* 0-5,8,12 * * *",
            "0 3 * * *",
            "*/15 * * * *",
            "30 */5 * * * *",
            "0 0 1 jan-mar MON-FRI",
            "0 12 ? * sun",
        ] {
            assert!(parse_cron(spec).is_ok(), "{spec:?}: {:?}", parse_cron(spec));
        }
        let c = parse_cron("10 * * * *").unwrap();
        assert_eq!(c.fields[0], "0");
        assert_eq!(c.fields[1], "10");
    }

    #[test]
    fn rejects_the_rest() {
        for (spec, needle) in [
            ("* * * *", "4 fields"),
            ("", "0 fields"),
            ("23", "1 fields"),
            ("@reboot", "descriptors"),
            ("@every 1h30m", "descriptors"),
            ("@daily", "descriptors"),
            ("* * * * * * *", "7 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 7", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "ends before"),
            ("x * * * *", "not a number"),
        ] {
            let err = parse_cron(spec).unwrap_err();
            assert!(err.contains(needle), "{spec:?}: {err}");
        }
    }
}
