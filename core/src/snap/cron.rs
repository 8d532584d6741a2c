//! `cron` snapshotting: the next time a cron spec fires, in UTC.
//!
//! Semantics of robfig/cron v3, which zrepl uses:
//! - fields `second minute hour day-of-month month day-of-week` (a five-field
//!   spec already got second 0 from the config parser);
//! - items `*`, `?`, `A`, `A-B`, each optionally `/STEP`; `A/STEP` means
//!   `A-MAX/STEP`; month and weekday names; weekday 0 is Sunday;
//! - day of month and day of week: if either field is unrestricted (`*` or `?`,
//!   but not `*/2`), both must match, which leaves only the other one to count;
//!   if both are restricted, either matching is enough.
//!
//! The search looks at most [`SEARCH_YEARS`] ahead, so a spec that never fires
//! (February 30th) ends with `None` instead of looping.

use super::civil::{days_from_civil, Civil, SECS_PER_DAY};
use crate::config::CronSpec;
use crate::time::WallTime;

/// How far ahead [`CronSchedule::next_after`] looks; robfig/cron gives up after
/// five years too.
pub const SEARCH_YEARS: i64 = 5;

/// A cron spec turned into sets of allowed values, ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    second: u64,
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
    /// Whether the day fields were written unrestricted (see the module docs).
    dom_any: bool,
    dow_any: bool,
}

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    first_name: u32,
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 6] = [
    Field { min: 0, max: 59, names: &[], first_name: 0 },
    Field { min: 0, max: 59, names: &[], first_name: 0 },
    Field { min: 0, max: 23, names: &[], first_name: 0 },
    Field { min: 1, max: 31, names: &[], first_name: 0 },
    Field { min: 1, max: 12, names: &MONTHS, first_name: 1 },
    Field { min: 0, max: 6, names: &DAYS, first_name: 0 },
];

impl CronSchedule {
    /// Compiles a spec. Refuses one that never fires (like `0 0 30 2 *`), so a
    /// job cannot wait forever for a date that does not exist.
    pub fn new(spec: &CronSpec) -> Result<CronSchedule, String> {
        let mut sets = [0u64; 6];
        let mut any = [false; 6];
        for (i, (text, field)) in spec.fields.iter().zip(FIELDS.iter()).enumerate() {
            (sets[i], any[i]) =
                parse_field(text, field).map_err(|e| format!("cron spec {:?}: {e}", spec.spec))?;
        }
        let schedule = CronSchedule {
            second: sets[0],
            minute: sets[1],
            hour: sets[2],
            day_of_month: sets[3],
            month: sets[4],
            day_of_week: sets[5],
            dom_any: any[3],
            dow_any: any[5],
        };
        // Every date pattern recurs within a leap cycle, so one search from a fixed
        // point decides it (a 29 February counts: the next one is < 5 years away).
        if schedule.next_after(WallTime(0)).is_none() {
            return Err(format!(
                "cron spec {:?} never fires: no date matches its day and month fields",
                spec.spec
            ));
        }
        Ok(schedule)
    }

    /// The first time strictly after `t` at which the spec fires, or `None` if
    /// there is none within [`SEARCH_YEARS`].
    pub fn next_after(&self, t: WallTime) -> Option<WallTime> {
        let mut t = t.0.checked_add(1)?;
        let last_year = Civil::from_wall(WallTime(t)).year + SEARCH_YEARS;
        loop {
            let c = Civil::from_wall(WallTime(t));
            if c.year > last_year {
                return None;
            }
            let days = days_from_civil(c.year, c.month, c.day);
            // Skip whole units that cannot match, largest first.
            t = if !has(self.month, c.month) {
                let (y, m) = if c.month == 12 { (c.year + 1, 1) } else { (c.year, c.month + 1) };
                days_from_civil(y, m, 1).checked_mul(SECS_PER_DAY)?
            } else if !self.day_matches(&c) {
                (days + 1).checked_mul(SECS_PER_DAY)?
            } else if !has(self.hour, c.hour) {
                (t - t.rem_euclid(3600)).checked_add(3600)?
            } else if !has(self.minute, c.minute) {
                (t - t.rem_euclid(60)).checked_add(60)?
            } else if !has(self.second, c.second) {
                t.checked_add(1)?
            } else {
                return Some(WallTime(t));
            };
        }
    }

    fn day_matches(&self, c: &Civil) -> bool {
        let dom = has(self.day_of_month, c.day);
        let dow = has(self.day_of_week, c.weekday());
        if self.dom_any || self.dow_any {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn has(set: u64, value: u32) -> bool {
    set & (1 << value) != 0
}

/// The set of values a field allows, and whether it was written unrestricted.
fn parse_field(text: &str, field: &Field) -> Result<(u64, bool), String> {
    let mut set = 0u64;
    let mut any = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                (r, s.parse::<u32>().map_err(|_| format!("step {s:?} is not a number"))?)
            }
            None => (item, 1),
        };
        if step == 0 {
            return Err(format!("step in {item:?} must be at least 1"));
        }
        let (lo, hi, star) = if range == "*" || range == "?" {
            (field.min, field.max, true)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (value(lo, field)?, value(hi, field)?, false)
        } else {
            let v = value(range, field)?;
            // `A/STEP` runs from A to the end of the field.
            (v, if item.contains('/') { field.max } else { v }, false)
        };
        if lo > hi {
            return Err(format!("range {range:?} ends before it starts"));
        }
        // `*/1` still counts as unrestricted; `*/2` does not (robfig/cron v3).
        any |= star && step == 1;
        set |= (lo..=hi).step_by(step as usize).fold(0, |acc, v| acc | 1 << v);
    }
    Ok((set, any))
}

fn value(s: &str, field: &Field) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    let v = match field.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + field.first_name,
        None => s.parse().map_err(|_| format!("{s:?} is not a number"))?,
    };
    if v < field.min || v > field.max {
        return Err(format!("{v} is outside {}-{}", field.min, field.max));
    }
    Ok(v)
}
