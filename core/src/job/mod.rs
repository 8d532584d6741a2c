//! Replication jobs: push and pull (active), sink and source (passive).

pub mod protocol;
