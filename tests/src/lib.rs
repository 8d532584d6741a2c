//! Harness for zferry's end-to-end suites: the binaries under test, and child
//! processes whose log lines a test can wait for.

pub mod proc;
pub mod zfs;

pub use proc::{binaries, Binary, Child};
pub use zfs::{Flavor, Pool, ZfsEnv};
