use std::time::Duration;

use super::civil::{civil_from_days, days_from_civil};
use super::*;
use crate::config::{parse_cron, TimestampFormat, TimestampFormatting, TimestampLocation};
use crate::time::WallTime;

/// `"2024-05-06 07:08:09"` as a UTC time (via the code under test; the civil
/// table below pins that code to known Unix times).
fn utc(s: &str) -> WallTime {
    let n: Vec<i64> = s.split([' ', '-', ':']).map(|p| p.parse().unwrap()).collect();
    let c = Civil {
        year: n[0],
        month: n[1] as u32,
        day: n[2] as u32,
        hour: n[3] as u32,
        minute: n[4] as u32,
        second: n[5] as u32,
    };
    c.to_wall()
}

fn show(t: WallTime) -> String {
    Civil::from_wall(t).to_string()
}

/// An oracle independent of the day-number arithmetic.
fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[test]
fn civil_matches_known_unix_times() {
    // (unix time, UTC, weekday with 0 = Sunday, day of the year)
    let table: [(i64, &str, u32, u32); 9] = [
        (0, "1970-01-01 00:00:00", 4, 1),
        (-1, "1969-12-31 23:59:59", 3, 365),
        (951_782_400, "2000-02-29 00:00:00", 2, 60),
        (1_136_214_245, "2006-01-02 15:04:05", 1, 2),
        (1_709_208_000, "2024-02-29 12:00:00", 4, 60),
        (1_714_979_289, "2024-05-06 07:08:09", 1, 127),
        (4_107_542_400, "2100-03-01 00:00:00", 1, 60),
        (253_402_300_799, "9999-12-31 23:59:59", 5, 365),
        (-62_135_596_800, "0001-01-01 00:00:00", 1, 1),
    ];
    for (unix, text, weekday, year_day) in table {
        let c = Civil::from_wall(WallTime(unix));
        assert_eq!(show(WallTime(unix)), text);
        assert_eq!(c.to_wall(), WallTime(unix), "{text}");
        assert_eq!(c.weekday(), weekday, "{text}");
        assert_eq!(c.year_day(), year_day, "{text}");
    }
}

#[test]
fn civil_days_are_consecutive_dates_for_two_thousand_years() {
    let first = days_from_civil(1000, 1, 1);
    let last = days_from_civil(3000, 1, 1);
    let mut prev = civil_from_days(first - 1);
    assert_eq!(prev, (999, 12, 31));
    for days in first..=last {
        let (y, m, d) = civil_from_days(days);
        let (py, pm, pd) = prev;
        let expected = if pd < days_in_month(py, pm) {
            (py, pm, pd + 1)
        } else if pm < 12 {
            (py, pm + 1, 1)
        } else {
            (py + 1, 1, 1)
        };
        assert_eq!((y, m, d), expected, "day {days}");
        assert_eq!(days_from_civil(y, m, d), days);
        prev = (y, m, d);
    }
    assert_eq!(prev, (3000, 1, 1));
}

#[test]
fn periodic_windows_are_aligned_to_the_epoch() {
    const MIN: u64 = 60;
    // (interval, now, existing snapshots, due now, next window)
    let table: [(u64, &str, &[&str], bool, &str); 10] = [
        (10 * MIN, "2024-05-06 12:34:56", &[], true, "2024-05-06 12:40:00"),
        (10 * MIN, "2024-05-06 12:34:56", &["2024-05-06 12:30:00"], false, "2024-05-06 12:40:00"),
        (10 * MIN, "2024-05-06 12:34:56", &["2024-05-06 12:29:59"], true, "2024-05-06 12:40:00"),
        // The newest one counts, whatever the order.
        (
            10 * MIN,
            "2024-05-06 12:34:56",
            &["2024-05-06 12:31:00", "2024-05-06 11:00:00"],
            false,
            "2024-05-06 12:40:00",
        ),
        // A future-dated snapshot does not stand for this window.
        (10 * MIN, "2024-05-06 12:34:56", &["2024-05-06 13:00:00"], true, "2024-05-06 12:40:00"),
        // On a boundary, the window that starts there is the current one.
        (10 * MIN, "2024-05-06 12:40:00", &["2024-05-06 12:30:00"], true, "2024-05-06 12:50:00"),
        (
            24 * 60 * MIN,
            "2024-05-06 12:34:56",
            &["2024-05-06 00:00:01"],
            false,
            "2024-05-07 00:00:00",
        ),
        (
            24 * 60 * MIN,
            "2024-05-06 12:34:56",
            &["2024-05-05 23:59:59"],
            true,
            "2024-05-07 00:00:00",
        ),
        // 7 minutes do not divide an hour: windows still count from the epoch.
        // 12:34:56 is 1714998896, and 1714998896 % 420 = 296: the window began 12:30:00.
        (7 * MIN, "2024-05-06 12:34:56", &["2024-05-06 12:30:00"], false, "2024-05-06 12:37:00"),
        (7 * MIN, "2024-05-06 12:34:56", &["2024-05-06 12:29:59"], true, "2024-05-06 12:37:00"),
    ];
    for (interval, now, existing, due, next) in table {
        let got =
            periodic_due(Duration::from_secs(interval), utc(now), existing.iter().map(|s| utc(s)));
        assert_eq!(
            (got.now, show(got.next)),
            (due, next.to_owned()),
            "interval {interval}s at {now} with {existing:?}"
        );
    }
}

#[test]
fn periodic_survives_a_zero_interval() {
    let got = periodic_due(Duration::ZERO, WallTime(100), []);
    assert_eq!(got, PeriodicDue { now: true, next: WallTime(101) });
}

#[test]
fn cron_next_after() {
    let table: [(&str, &str, Option<&str>); 17] = [
        ("0 3 * * *", "2024-05-06 12:00:00", Some("2024-05-07 03:00:00")),
        ("0 3 * * *", "2024-05-07 02:59:59", Some("2024-05-07 03:00:00")),
        // Strictly after.
        ("0 3 * * *", "2024-05-07 03:00:00", Some("2024-05-08 03:00:00")),
        ("*/15 * * * *", "2024-05-06 12:07:30", Some("2024-05-06 12:15:00")),
        ("0-10 * * * *", "2024-05-06 12:10:00", Some("2024-05-06 13:00:00")),
        ("* 0-5,8,12 * * *", "2024-05-06 08:59:00", Some("2024-05-06 12:00:00")),
        // Six fields: a seconds field first.
        ("30 */5 * * * *", "2024-05-06 12:07:00", Some("2024-05-06 12:10:30")),
        ("*/20 * * * * *", "2024-05-06 12:07:45", Some("2024-05-06 12:08:00")),
        // Both day fields restricted: either one matching is enough (2025-01-02 is a
        // Thursday, not the 1st).
        ("0 0 1 jan-mar MON-FRI", "2025-01-01 00:00:00", Some("2025-01-02 00:00:00")),
        ("0 0 13 * fri", "2024-05-06 00:00:00", Some("2024-05-10 00:00:00")),
        // `*/2` is a restriction, so odd days OR Fridays; `*/1` is not, so Fridays.
        ("0 0 */2 * fri", "2024-05-06 00:00:00", Some("2024-05-07 00:00:00")),
        ("0 0 */1 * fri", "2024-05-06 00:00:00", Some("2024-05-10 00:00:00")),
        // `?` leaves only the weekday: the next Sunday.
        ("0 12 ? * sun", "2024-05-06 00:00:00", Some("2024-05-12 12:00:00")),
        // `5/10` is 5-31/10: days 5, 15, 25.
        ("0 0 5/10 * *", "2024-05-06 00:00:00", Some("2024-05-15 00:00:00")),
        ("59 59 23 31 12 *", "2024-12-31 23:59:59", Some("2025-12-31 23:59:59")),
        ("0 0 29 2 *", "2024-03-01 00:00:00", Some("2028-02-29 00:00:00")),
        // 2100 is no leap year: the next 29 February is more than 5 years away.
        ("0 0 29 2 *", "2096-03-01 00:00:00", None),
    ];
    for (spec, after, want) in table {
        let schedule = CronSchedule::new(&parse_cron(spec).unwrap()).unwrap();
        let got = schedule.next_after(utc(after)).map(show);
        assert_eq!(got.as_deref(), want, "{spec:?} after {after}");
    }
}

#[test]
fn cron_specs_that_never_fire_are_refused() {
    for spec in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 feb ?"] {
        let err = CronSchedule::new(&parse_cron(spec).unwrap()).unwrap_err();
        assert!(err.contains("never fires"), "{spec:?}: {err}");
        assert!(err.contains(spec), "{spec:?}: {err}");
    }
    // With a weekday as well, either day field may match: this one fires on the
    // Mondays of February.
    let mondays = CronSchedule::new(&parse_cron("0 0 30 2 mon").unwrap()).unwrap();
    assert_eq!(
        mondays.next_after(utc("2024-05-06 00:00:00")).map(show).as_deref(),
        Some("2025-02-03 00:00:00")
    );
}

#[test]
fn cron_at_the_end_of_time_is_none_not_a_panic() {
    let schedule = CronSchedule::new(&parse_cron("* * * * *").unwrap()).unwrap();
    assert_eq!(schedule.next_after(WallTime(i64::MAX)), None);
    let new_year = CronSchedule::new(&parse_cron("0 0 1 1 *").unwrap()).unwrap();
    assert_eq!(new_year.next_after(WallTime(i64::MAX - 86_400)), None);
}

#[test]
fn names_in_zrepls_formats() {
    let t = utc("2024-05-06 07:08:09");
    let table = [
        (TimestampFormat::Dense, "zrepl_20240506_070809_000"),
        (TimestampFormat::Human, "zrepl_2024-05-06_07:08:09"),
        (TimestampFormat::Iso8601, "zrepl_2024-05-06T07:08:09.000Z"),
        (TimestampFormat::UnixSeconds, "zrepl_1714979289"),
    ];
    for (format, want) in table {
        assert_eq!(snapshot_name("zrepl_", t, &format).unwrap().as_str(), want);
    }
}

#[test]
fn names_from_go_layouts() {
    // 2024-05-06 07:08:09 UTC was a Monday, day 127 of a leap year.
    let t = utc("2024-05-06 07:08:09");
    let table = [
        ("2006-01-02", "2024-05-06"),
        ("06.1.2", "24.5.6"),
        ("Jan-2", "May-6"),
        ("January.Monday", "May.Monday"),
        ("Mon_15h04", "Mon_07h08"),
        ("3PM", "7AM"),
        ("03pm", "07am"),
        ("4m5s", "8m9s"),
        ("002", "127"),
        ("__2", "127"),
        ("MST", "UTC"),
        ("15:04:05Z07:00", "07:08:09Z"),
        ("15:04:05.999", "07:08:09"),
        ("05.000000", "09.000000"),
        // Not elements: "Jan" and "Mon" before a lower-case letter, "Z" alone.
        ("Janet.Monthly.Z", "Janet.Monthly.Z"),
        // "_2006" is "_" and the year; "1" alone is the month.
        ("x_2006", "x_2024"),
        ("v1", "v5"),
        // A dot before digits that go on is no fraction: ".", "0", "01", "2".
        ("2006.0012", "2024.0056"),
    ];
    for (layout, want) in table {
        let format = TimestampFormat::GoLayout(layout.to_owned());
        assert_eq!(snapshot_name("", t, &format).unwrap().as_str(), want, "{layout:?}");
    }
    let pm = utc("2024-05-06 00:30:00");
    let noon = TimestampFormat::GoLayout("3pm".to_owned());
    assert_eq!(snapshot_name("", pm, &noon).unwrap().as_str(), "12am");
}

#[test]
fn names_that_zfs_or_scripts_would_choke_on_are_refused() {
    let t = utc("2024-05-06 07:08:09");
    let table = [
        ("2006/01/02", "contains '/'"),
        ("Jan _2", "contains ' '"),
        ("15:04:05-0700", "contains '+'"),
        ("05,000", "contains ','"),
    ];
    for (layout, want) in table {
        let err =
            snapshot_name("zrepl_", t, &TimestampFormat::GoLayout(layout.to_owned())).unwrap_err();
        assert!(err.contains(want), "{layout:?}: {err}");
        assert!(err.contains(&format!("timestamp_format {layout:?}")), "{layout:?}: {err}");
    }
    let long = "p".repeat(250);
    let err = snapshot_name(&long, t, &TimestampFormat::Dense).unwrap_err();
    assert!(err.contains("longer than 255"), "{err}");
}

#[test]
fn formatting_is_checked_before_any_job_runs() {
    let utc_with = |layout: &str| TimestampFormatting {
        format: TimestampFormat::GoLayout(layout.to_owned()),
        location: TimestampLocation::Utc,
    };
    assert_eq!(check_formatting("zrepl_", &TimestampFormatting::default()), Ok(()));
    assert_eq!(check_formatting("zrepl_", &utc_with("2006-01-02_15:04")), Ok(()));
    // Go's reference time has a single-digit day, so padding shows.
    let err = check_formatting("zrepl_", &utc_with("Jan_2")).unwrap_err();
    assert!(err.contains("contains ' '"), "{err}");
    let local = TimestampFormatting { location: TimestampLocation::Local, ..Default::default() };
    assert_eq!(
        check_formatting("zrepl_", &local),
        Err("timestamp_location Local is not supported yet by zferry; use UTC (the default)"
            .to_owned())
    );
}
