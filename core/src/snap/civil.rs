//! UTC calendar arithmetic on [`WallTime`]: the proleptic Gregorian calendar,
//! no leap seconds (as in Unix time).
//!
//! Day numbers convert to dates with the usual trick of starting the year in
//! March, so that the leap day is the last day of a year and months have a
//! regular 153-days-per-5-months pattern; 400-year eras repeat exactly.

use std::fmt;

use crate::time::WallTime;

pub(crate) const SECS_PER_DAY: i64 = 86_400;

/// A UTC date and time of day, to the second. Displays as `2024-05-07 03:00:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1 = January.
    pub month: u32,
    /// 1-based day of the month.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Days in a 400-year era: 400 * 365 + 97 leap days.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;

/// Days since 1970-01-01 of a date (month 1-12, day 1-31; not range-checked).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    // The year runs March..February.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT
}

/// The date (year, month 1-12, day 1-31) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + EPOCH_SHIFT;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA);
    // Undo the leap-day corrections to find the year within the era.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

impl Civil {
    pub fn from_wall(t: WallTime) -> Civil {
        let days = t.0.div_euclid(SECS_PER_DAY);
        let secs = t.0.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil { year, month, day, hour: secs / 3600, minute: secs / 60 % 60, second: secs % 60 }
    }

    /// Saturates at the ends of `WallTime` for years no clock will reach.
    pub fn to_wall(self) -> WallTime {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        WallTime(days.saturating_mul(SECS_PER_DAY).saturating_add(secs))
    }

    /// 0 = Sunday ... 6 = Saturday, as in cron and Go.
    pub fn weekday(&self) -> u32 {
        // 1970-01-01 was a Thursday.
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as u32
    }

    /// 1-based day of the year.
    pub fn year_day(&self) -> u32 {
        (days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1) + 1)
            as u32
    }
}

impl fmt::Display for Civil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}
