//! The durable spool: lines of line protocol an output could not deliver
//! now, kept on disk until a later run or daemon cycle writes them.
//!
//! The crate knows nothing of the program that uses it: a [`Batch`] is a
//! label and lines, a [`Record`] carries the count of points the spool
//! dropped that it reports ([`Record::dropped`]), and the spool never reads
//! the lines it keeps (but for their timestamps, for [`Status`]).
//!
//! # Blocking
//!
//! Every call is blocking: it takes a file lock (`flock`), reads, writes and
//! `fsync`s files. Async callers use it through
//! `tokio::task::spawn_blocking` (or a thread of their own), never directly
//! on an async worker. [`Spool`] is `Send + Sync`: share it in an `Arc`.
//!
//! # Layout of the spool directory
//!
//! | file | what |
//! | --- | --- |
//! | `<seq>-<pid>-<n>.seg` | a segment: the records of one append, oldest segment first by name |
//! | `dead-letter.lp` | batches the output refused (HTTP 400), each after a `# ubuntu-metrics dead letter: ...` line holding the server's message |
//! | `dropped` | points dropped at the size limit and not yet reported |
//! | `<seq>-<pid>-<n>.seg.progress` | the delivery progress of a segment being replayed: per record, the lines already delivered (see below) |
//! | `summary` | the running backlog summary: what each segment holds, so that [`Spool::status`] decodes no segment (see [`summary`](crate::summary)) |
//! | `.<seq>-<pid>-<n>.seg.tmp` | a segment being written; renamed into place once synced (a leftover from a crash is removed at the next open) |
//! | `NAME.bad` | a segment whose checksum failed, or an entry that is not a file, set aside with an error |
//! | `.lock` | file lock taken for every change on disk (short; never held across a network request) |
//! | `.replay.lock` | file lock of the one process replaying the spool |
//!
//! # Records
//!
//! A segment is a sequence of records, each framed and checksummed (see
//! [`codec`]). A segment is never written in place: every write (an
//! append, or a replay's rewrite) goes to a temporary name in the spool
//! directory, is `fsync`ed, renamed into place, and the directory
//! `fsync`ed, all under `.lock`, before the append returns. A crash (even
//! `kill -9` or a power cut) leaves the old segments and at most a
//! temporary file, which the next process that takes the lock removes: a
//! segment cannot tear. A segment whose checksum fails anyway (bit rot, a
//! hand edit) is set aside as `NAME.bad` with an error, never half-read;
//! the other segments carry on.
//!
//! Records leave the spool only after the output accepted them (or refused
//! them for good, into the dead-letter file): a replay rewrites a segment
//! without the records it wrote.
//!
//! # Progress within a segment
//!
//! A record goes out in batches. After each batch accepted (or
//! dead-lettered), the replay records how far it got in `NAME.progress`
//! (see [`Progress`]), so that a process killed in the middle of a record
//! (SIGKILL, a power cut, the daemon's shutdown grace running out) is
//! followed by a replay that starts at the first batch not delivered
//! instead of the record's first. An entry counts only while the record is
//! exactly the one it was written for (same id and checksum): a segment
//! rewritten meanwhile (the end of a replay, the size limit) makes it
//! void, never wrong; a marker that cannot be read is ignored (the record
//! is resent whole). The end of a segment's replay rewrites the segment and
//! then removes the marker.
//!
//! Delivery is therefore at least once: the batch in flight when a process
//! dies is sent again, whole. That is harmless for InfluxDB (a point is
//! its series and timestamp: the same point written twice is stored once);
//! VictoriaMetrics keeps both samples unless it runs with
//! `-dedup.minScrapeInterval`.
//!
//! At the size limit the oldest records are dropped, with an error log and a
//! counter ([`Spool::take_dropped`], [`Spool::append_reporting`]).

// No product function over 100 lines (clippy.toml sets the limit); the
// inline tests are exempt.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod codec;
mod dead_letter;
mod dropped;
mod files;
mod listing;
mod lock;
#[cfg(test)]
mod noticed_tests;
mod progress;
mod status;
mod store;
pub mod summary;

pub use codec::{HEADER_LEN, MAGIC, Parsed, Record, line_timestamp, parse_segment};
pub use dead_letter::{DEAD_LETTER_FILE, DEAD_LETTER_MARK};
pub use lock::FileLock;
pub use progress::Progress;
pub use status::{Status, peek};
pub use store::{AppendReport, BAD_SUFFIX, Segment, Spool};

use std::path::Path;

/// At most this many lines in one record (the product's largest write
/// batch: it checks that the two agree).
pub const MAX_RECORD_LINES: usize = 5_000;
/// A record grows past this many payload bytes only for a single huge line.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Lines of line protocol spooled (or dead-lettered) together, with a
/// label saying where they came from; kept apart so that a batch the
/// output refuses does not take the others with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Where the lines came from: a collector's name, or `self-metrics`.
    pub label: String,
    pub lines: Vec<String>,
}

/// A spool error: what failed, on which file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpoolError(pub String);

fn io_err(path: &Path, what: &str, e: std::io::Error) -> SpoolError {
    SpoolError(format!("spool {}: {what}: {e}", path.display()))
}
