//! zferry-core: the whole logic of zferry, as state machines without I/O.
//!
//! This crate is deterministic. It contains no networking, no process or file
//! handling, no threads, and it never reads a clock or the OS's randomness: time is
//! a value the caller passes in ([`time::Now`]), and every effect on the world is an
//! action the caller executes and answers with an input. The two drivers
//! (`zferry` with mio, `zferry-smol` with smol) are thin loops around it.
//!
//! Layers, each its own module with a narrow face; data flows one way through them:
//! bytes → [`frame`] → [`rpc`] sessions → [`node`] (connections and apps) →
//! replication planning ([`plan`]) over the [`zfs`] model.
//! Snapshot scheduling and naming ([`snap`]) and keep rules ([`prune`]) are pure
//! decisions on values the caller lists.

pub mod config;
pub mod control;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod job;
pub mod limits;
pub mod node;
pub mod plan;
pub mod probe;
pub mod prune;
pub mod rpc;
pub mod snap;
pub mod time;
pub mod zfs;
