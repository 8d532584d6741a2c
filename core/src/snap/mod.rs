//! Snapshotting, pure: when a snapshot is due, and what it is called.
//!
//! - [`periodic_due`]: `periodic` snapshotting, in interval windows aligned to
//!   the Unix epoch.
//! - [`CronSchedule`]: `cron` snapshotting, with robfig/cron's semantics, in UTC.
//! - [`snapshot_name`]: the prefix and the time, written with zrepl's timestamp
//!   formats or any Go layout; [`check_formatting`] refuses at config-build
//!   time what cannot produce valid names (including `timestamp_location: Local`).
//!
//! All of it is UTC calendar arithmetic on [`crate::time::WallTime`] ([`Civil`]);
//! the caller passes the time in.

mod civil;
mod cron;
mod name;
mod periodic;
#[cfg(test)]
mod tests;

pub use civil::Civil;
pub use cron::{CronSchedule, SEARCH_YEARS};
pub use name::{check_formatting, snapshot_name};
pub use periodic::{periodic_due, PeriodicDue};
