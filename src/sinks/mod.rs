//! Where points go: InfluxDB (with its durable spool), or standard output
//! in a dry run.
pub mod influxdb;
pub mod print;
pub mod spool;

/// Lines of line protocol written (or spooled, or dead-lettered) together:
/// one collector's points of one run, or the self-metrics of a run. Kept
/// apart so that a batch InfluxDB refuses does not take the others with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Where the lines came from: a collector's name, or `self-metrics`.
    pub label: String,
    pub lines: Vec<String>,
}

/// The label of the self-metrics batch in the spool and dead-letter file.
pub const SELF_LABEL: &str = "self-metrics";
