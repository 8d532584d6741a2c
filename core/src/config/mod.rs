//! Typed configuration, read from zrepl's YAML schema unchanged.
//!
//! This first part holds the leaf parsers: zrepl's two duration syntaxes, the
//! pruning grid, cron specs and the `clients` map of a tcp serve.

mod clients;
mod cron;
pub mod duration;
mod grid;

pub use clients::{validate_identity, ClientEntry, ClientMap};
pub use cron::{parse_cron, CronSpec};
pub use grid::{parse_grid, GridInterval, GridKeep};
