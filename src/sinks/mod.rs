//! Where points go. A [`Sink`] takes one run's points (each collector's,
//! and the run's self-metrics) and says what it did with them
//! ([`Delivery`]); the runner hands a run to a sink and does not know
//! which. Two peers implement it:
//!
//! - [`influxdb::output::InfluxOutput`]: InfluxDB through its durable
//!   spool (write-ahead), with a dead-letter file for the points InfluxDB
//!   refuses;
//! - [`print::Printer`]: the dry run, points to standard output.
//!
//! Sinks know nothing of collectors: a run is labelled points.
pub mod blocking;
pub mod influxdb;
pub mod print;
pub mod spool;

/// What outputs write about themselves (each write, each spool's backlog).
pub use influxdb::self_metrics::{SPOOL_MEASUREMENT, WRITE_MEASUREMENT};

/// [`SPOOL_MEASUREMENT`] and [`WRITE_MEASUREMENT`], declared like a
/// collector's schema.
pub fn output_schema() -> Vec<crate::model::schema::Measurement> {
    vec![
        influxdb::self_metrics::write_schema(),
        influxdb::self_metrics::spool_schema(),
    ]
}

use crate::model::point::{Point, PointError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Lines of line protocol written (or spooled, or dead-lettered) together:
/// one collector's points of one run, or the self-metrics of a run. The
/// spool's own type, so that a batch goes into the spool as it is.
pub use ::spool::Batch;

/// The label of the self-metrics batch in the spool and dead-letter file.
pub const SELF_LABEL: &str = "self-metrics";

/// Makes a run's self-metrics points from the number of points of each
/// part the sink took (the encodable ones, in the order of the parts) and
/// the points the sink dropped since it last reported them. Owned (`Arc`,
/// `'static`): a sink may make them off the async workers, in the spool's
/// blocking append that reads the drop count.
pub type SelfMetrics = dyn Fn(&[usize], u64) -> Vec<Point> + Send + Sync;

/// One run, as a sink sees it.
pub struct Run<'a> {
    /// Each part's points (a collector's run), labelled with its name.
    pub parts: Vec<(&'a str, &'a [Point])>,
    /// The run's self-metrics, for a sink that keeps them; `None` when they
    /// are off.
    pub self_metrics: Option<Arc<SelfMetrics>>,
}

/// What a sink did with a run. Counts are points (lines of line protocol).
#[derive(Debug, Default)]
pub struct Delivery {
    /// New points to deliver (the run's points and self-metrics).
    pub total: usize,
    /// New points written (to InfluxDB; printed, for the printer).
    pub written: usize,
    /// New points kept in the spool for a later write.
    pub spooled: usize,
    /// Points from the spool written now.
    pub replayed: usize,
    /// Points (new or from the spool) InfluxDB refused for good, now in the
    /// dead-letter file.
    pub dead_lettered: usize,
    /// Points neither written nor kept (no usable spool).
    pub lost: usize,
    /// Points refused before sending (they cannot be encoded).
    pub unencodable: Vec<PointError>,
    /// Why points were kept for later (or lost), if they were.
    pub error: Option<influxdb::WriteError>,
    /// Another process was replaying the spool: the new points wait there.
    pub busy: bool,
    /// Spool trouble (reading, writing, dead-letter file).
    pub spool_errors: Vec<String>,
    /// The output could not be written (the printer's standard output).
    pub output_error: Option<String>,
}

/// A place a run's points go.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Delivers one run.
    async fn deliver(&self, run: Run<'_>) -> Delivery;

    /// Keeps one run for a later delivery (the write-ahead step alone: the
    /// daemon's collectors keep, its delivery task writes). A sink without
    /// a place to keep points delivers them now.
    async fn keep(&self, run: Run<'_>) -> Delivery {
        self.deliver(run).await
    }
}

/// An output: a sink that keeps what it cannot deliver now (its spool),
/// writes it later ([`Output::replay`]) and reports on itself. `run`,
/// `spool flush` and the daemon see outputs through this alone.
#[async_trait::async_trait]
pub trait Output: Sink {
    /// Its name (`influxdb`, or the NAME of `[outputs.NAME]`).
    fn name(&self) -> &str;
    /// Its name as its configuration section says it, for messages.
    fn label(&self) -> String;
    /// Where it keeps points (and its dead letters).
    fn spool_dir(&self) -> &Path;
    /// What waits, when it can be read (none without a spool).
    async fn backlog(&self) -> Option<spool::Status>;
    /// What waits, or why it cannot be read (empty without a spool).
    async fn status(&self) -> Result<spool::Status, spool::SpoolError>;
    /// Writes what waits, oldest first, waiting up to `wait` for another
    /// process doing it; `log`: says what it wrote (else the caller does).
    async fn replay(&self, wait: Duration, log: bool) -> Replay;
    /// Writes its own self-metrics after a delivery that emptied its spool
    /// (`backlog`: what waited before it).
    async fn write_self_metrics(
        &self,
        backlog: Option<&spool::Status>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), influxdb::WriteError>;
}

/// What a replay of the spool did.
#[derive(Debug, Default)]
pub struct Replay {
    /// Lines written.
    pub written: usize,
    /// Records fully done (written or dead-lettered).
    pub records: usize,
    /// Lines moved to the dead-letter file.
    pub dead_lettered: usize,
    /// Why the replay stopped before the spool was empty.
    pub stopped: Option<influxdb::WriteError>,
    /// Another process was replaying (nothing done).
    pub busy: bool,
    pub error: Option<spool::SpoolError>,
    /// Per segment replayed: its name, lines written, lines dead-lettered.
    pub segments: Vec<(String, usize, usize)>,
}

/// Each part's points as a batch of line protocol (a part with no
/// encodable point gives none), the unencodable points refused into `d`,
/// and the encodable count of each part, in order.
pub fn encode_parts(run: &Run<'_>, d: &mut Delivery) -> (Vec<Batch>, Vec<usize>) {
    let mut batches = Vec::new();
    let mut counts = Vec::new();
    for (label, points) in &run.parts {
        let (lines, errors) = crate::model::point::encode_lines(*points);
        d.unencodable.extend(errors);
        counts.push(lines.len());
        if !lines.is_empty() {
            batches.push(Batch {
                label: (*label).to_owned(),
                lines,
            });
        }
    }
    (batches, counts)
}

/// The self-metrics batch of a run, made by `make` from the parts'
/// `counts` and the `dropped` count (an unencodable self-metrics point is
/// logged and left out).
pub fn self_batch(make: &SelfMetrics, counts: &[usize], dropped: u64) -> Batch {
    let (lines, errors) = crate::model::point::encode_lines(&make(counts, dropped));
    for e in errors {
        tracing::error!("self-metrics point not written: {e}");
    }
    Batch {
        label: SELF_LABEL.to_owned(),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Outcome, Status, deliver_to};
    use crate::support::test_support::Captured;
    use std::sync::Mutex;
    use std::time::Duration;

    fn outcome(name: &'static str, points: Vec<Point>) -> Outcome {
        Outcome {
            name: name.into(),
            status: Status::Ok,
            time: "2026-11-24T12:00:00Z".parse().unwrap(),
            points,
            error: None,
            duration: Duration::from_millis(5),
            requests: 2,
            hosts: Default::default(),
            newest: Default::default(),
        }
    }

    fn outcomes() -> Vec<Outcome> {
        let t = "2026-11-24T12:00:00Z".parse().unwrap();
        vec![
            outcome(
                "alpha",
                vec![
                    Point::new("a").field("n", 1i64).at(t),
                    // No field: InfluxDB would refuse it; no sink takes it.
                    Point::new("a").at(t),
                ],
            ),
            outcome("beta", vec![Point::new("b").field("x", 0.5).at(t)]),
        ]
    }

    /// A third sink, in memory: what the runner hands any sink.
    #[derive(Default)]
    struct Memory {
        batches: Mutex<Vec<Batch>>,
    }

    #[async_trait::async_trait]
    impl Sink for Memory {
        async fn deliver(&self, run: Run<'_>) -> Delivery {
            let mut d = Delivery::default();
            let (mut batches, counts) = encode_parts(&run, &mut d);
            if let Some(make) = &run.self_metrics {
                // This sink says it dropped 7 points.
                batches.push(self_batch(make.as_ref(), &counts, 7));
            }
            d.written = batches.iter().map(|b| b.lines.len()).sum();
            self.batches.lock().unwrap().extend(batches);
            d
        }
    }

    #[tokio::test]
    async fn the_runner_hands_a_run_to_any_sink() {
        let sink = Memory::default();
        let d = deliver_to(&outcomes(), &sink, true).await;
        assert_eq!(d.unencodable.len(), 1);
        assert_eq!(d.written, 4);
        let batches = sink.batches.lock().unwrap().clone();
        let labels: Vec<&str> = batches.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["alpha", "beta", SELF_LABEL]);
        assert_eq!(batches[0].lines, ["a n=1i 1795521600000000000"]);
        // One self-metrics point per collector run: the points the sink
        // took of it, and the sink's drop count on the first.
        let own = &batches[2].lines;
        assert_eq!(own.len(), 2);
        assert!(own[0].starts_with("ubuntu_metrics_run,collector=alpha,status=ok "));
        assert!(own[0].contains("points=1i") && own[0].contains("spool_dropped=7i"));
        assert!(own[1].contains("points=1i") && own[1].contains("spool_dropped=0i"));
        // Without self-metrics, none.
        let sink = Memory::default();
        deliver_to(&outcomes(), &sink, false).await;
        assert_eq!(sink.batches.lock().unwrap().len(), 2);
    }

    /// Sinks know nothing of collectors, of the runner or of the
    /// configuration file (the `[influxdb]` settings live here).
    #[test]
    fn sinks_import_neither_collector_nor_runner_nor_config() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sinks");
        let mut files = 0;
        let mut dirs = vec![dir.clone()];
        let mut paths = Vec::new();
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    paths.push(path);
                }
            }
        }
        for path in paths {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for module in ["crate::collector", "crate::runner", "crate::config"] {
                assert!(
                    !code.contains(module),
                    "{} names {module}: sinks must not depend on it",
                    path.display()
                );
            }
        }
        assert!(files >= 5, "{files} files in {}", dir.display());
    }

    #[tokio::test]
    async fn the_printer_is_a_sink_printing_every_collectors_points() {
        let out = Captured::default();
        let printer = print::Printer::new(Box::new(out.clone()), print::Format::Lp);
        // Self-metrics asked for or not, a dry run prints the collectors'.
        let d = deliver_to(&outcomes(), &printer, true).await;
        assert_eq!(
            out.text(),
            "a n=1i 1795521600000000000\nb x=0.5 1795521600000000000\n"
        );
        assert_eq!((d.total, d.written, d.unencodable.len()), (3, 2, 1));
        assert!(d.output_error.is_none());

        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let printer = print::Printer::new(Box::new(Closed), print::Format::Lp);
        let d = deliver_to(&outcomes(), &printer, false).await;
        assert!(d.output_error.is_some(), "{d:?}");
    }
}
