//! The durable spool: the `spool` crate (`crates/spool`: record codec,
//! segments, progress markers, dead letters, drop counts, the lock and the
//! backlog summary), re-exported where the product has always found it.
//!
//! Its API is blocking (file locks, `fsync`): async code calls it through
//! `tokio::task::spawn_blocking` or a thread of its own.

pub use ::spool::*;

// A spool record is at most one write batch.
const _: () = assert!(::spool::MAX_RECORD_LINES == super::influxdb::MAX_BATCH_LINES);
