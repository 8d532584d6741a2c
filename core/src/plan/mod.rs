//! The replication planner: what to send, per filesystem, and never wrongly.
