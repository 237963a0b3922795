//! `backfill`: a time-series source's whole history (or since a date) into
//! InfluxDB, streamed and written in batches, resumable.
//!
//! The document is read as a stream (never whole in memory): its bytes are
//! cut into batches of `batch_rows` lines, each batch is parsed exactly as
//! the collector parses a row (same measurement, tags, field types) and
//! written; only once InfluxDB accepted a batch is the byte offset after it
//! saved, atomically, in `backfill.json` in the state directory. An
//! interrupted backfill (SIGKILL included) started again with the same
//! source and `--since` goes on from that offset (`Range: bytes=N-`, or by
//! skipping N bytes when the server ignores ranges), once it proved that
//! the document is the one it was reading: the CRC-32 of the (up to)
//! [`CHECK_BYTES`] bytes before the offset, saved with it, must match those
//! bytes now (asked for with the rest, in the same request). A document
//! appended to since goes on; one replaced, rotated (rows removed at its
//! start) or shorter than the offset (HTTP 416) is read again from the
//! beginning, with a warning. A batch that was written but whose offset was
//! not saved yet is written again: the same points (same series, same
//! time), which InfluxDB keeps once. When the source is done its entry is
//! removed.
//!
//! Rows never span lines in these documents (every column is an integer),
//! so each line is a row of its own: a malformed one (an unbalanced quote
//! included) costs that row only, and is counted and named by its line
//! number. A `backfill.json` that is not valid JSON is replaced (every
//! unfinished backfill starts again, with a warning); one that cannot be
//! read (a directory) stops the backfill saying what to remove.
//!
//! Each output is backfilled on its own (the document read once per
//! output), with its own entry in `backfill.json` ([`progress_key`]): an
//! output that was down goes on from where it stopped, while the others
//! are done.
//!
//! One backfill at a time per state directory (`backfill.lock`).

use crate::collector::{Context, Rows, Series};
use crate::config::{DEFAULT_OUTPUT, redact_url};
use crate::model::point::Point;
use crate::sinks::influxdb::InfluxWriter;
use crate::sinks::spool::FileLock;
use crate::sources::SourceError;
use crate::sources::http::{Http, Stream, join};
use crate::support::fsutil::replace_file;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The progress of unfinished backfills, in the state directory.
pub const PROGRESS_FILE: &str = "backfill.json";
/// Held by a running backfill.
pub const LOCK_FILE: &str = "backfill.lock";
/// Rows per write unless told otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 5_000;
/// Bytes before the saved offset whose checksum a resumed backfill checks.
pub const CHECK_BYTES: u64 = 64 * 1024;
/// Malformed rows named one by one (their line numbers kept) per source.
pub const NAMED_ROWS: usize = 20;

/// A time-series source that can be backfilled: one a collector declares
/// ([`Collector::time_series`](crate::collector::Collector::time_series)).
#[derive(Debug)]
pub struct Source {
    /// Its name on the command line.
    pub name: &'static str,
    /// The collector that reads it every run.
    pub collector: String,
    /// Where it is and how its rows become points.
    series: Series,
}

/// Every source `backfill` knows: those the collectors declare.
pub fn sources() -> Vec<Source> {
    crate::collectors::registry()
        .iter()
        .flat_map(|c| {
            c.time_series().into_iter().map(|series| Source {
                name: series.name,
                collector: c.name().to_owned(),
                series,
            })
        })
        .collect()
}

/// The entry of `source` written to `output` in `backfill.json`: the
/// source's name for the first output (`[influxdb]`, as before there were
/// several), `SOURCE@NAME` for `[outputs.NAME]` (an output's name has no
/// `@`).
pub fn progress_key(source: &str, output: &str) -> String {
    if output == DEFAULT_OUTPUT {
        source.to_owned()
    } else {
        format!("{source}@{output}")
    }
}

/// How an output is named in messages: `[influxdb]`, `[outputs.NAME]`.
pub fn output_label(output: &str) -> String {
    if output == DEFAULT_OUTPUT {
        format!("[{DEFAULT_OUTPUT}]")
    } else {
        format!("[outputs.{output}]")
    }
}

/// The sources `name` means: a source's name, or a collector's (all its
/// sources); `-` and `_` alike.
pub fn select(name: &str) -> Result<Vec<Source>, String> {
    let name = name.replace('-', "_");
    let all = sources();
    let known: Vec<&str> = all.iter().map(|s| s.name).collect();
    let mut collectors: Vec<&str> = all.iter().map(|s| s.collector.as_str()).collect();
    collectors.dedup();
    let error = format!(
        "no time-series source {name:?}; known: {} (or a collector: {})",
        known.join(", "),
        collectors.join(", ")
    );
    let (by_name, others): (Vec<Source>, Vec<Source>) =
        all.into_iter().partition(|s| s.name == name);
    if !by_name.is_empty() {
        return Ok(by_name);
    }
    let by_collector: Vec<Source> = others.into_iter().filter(|s| s.collector == name).collect();
    if !by_collector.is_empty() {
        return Ok(by_collector);
    }
    Err(error)
}

/// Where an unfinished backfill of one source stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The document (credentials redacted).
    pub url: String,
    pub since: Option<DateTime<Utc>>,
    /// Bytes of the document read and written (a line boundary).
    pub offset: u64,
    /// The header line, for sources whose columns it names.
    pub header: Option<String>,
    /// Rows read so far (including those before `since` and malformed ones).
    pub rows: u64,
    /// Points written so far.
    pub points: u64,
    /// Rows written so far.
    #[serde(default)]
    pub written: u64,
    /// Rows before `since` so far.
    #[serde(default)]
    pub before_since: u64,
    /// Malformed rows so far (not written).
    #[serde(default)]
    pub malformed: u64,
    /// The line numbers of the first [`NAMED_ROWS`] malformed rows.
    #[serde(default)]
    pub malformed_lines: Vec<u64>,
    /// Lines of the document before `offset`.
    #[serde(default)]
    pub lines: u64,
    /// The checksum of the bytes just before `offset`; none in a progress
    /// saved by a version without it (then the document is read again).
    #[serde(default)]
    pub check: Option<Check>,
}

impl Progress {
    fn new(url: String, since: Option<DateTime<Utc>>) -> Progress {
        Progress {
            url,
            since,
            offset: 0,
            header: None,
            rows: 0,
            points: 0,
            written: 0,
            before_since: 0,
            malformed: 0,
            malformed_lines: Vec::new(),
            lines: 0,
            check: None,
        }
    }
}

/// The CRC-32 of the `bytes` bytes before a saved offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub bytes: u64,
    pub crc32: u32,
}

/// What a backfill did so far (or in all): `rows` = `written` +
/// `before_since` + `malformed`.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Rows read.
    pub rows: u64,
    /// Rows written (as `points` points).
    pub written: u64,
    pub points: u64,
    /// Rows before `--since` (not written, as asked).
    pub before_since: u64,
    /// Malformed rows (not written).
    pub malformed: u64,
    /// The line numbers of the first [`NAMED_ROWS`] malformed rows.
    pub malformed_lines: Vec<u64>,
    /// Bytes of the document done.
    pub offset: u64,
    /// The document's length, when the server said.
    pub total: Option<u64>,
    /// The offset an interrupted backfill went on from.
    pub resumed_from: Option<u64>,
    /// Why an interrupted backfill could not go on and started again from
    /// the beginning.
    pub restarted: Option<String>,
}

/// Why a backfill stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The output did not take a batch: what was written to it is
    /// remembered, and the same command later goes on.
    Influx(String),
    /// The document could not be read (to its end): what was written is
    /// remembered, and the same command later goes on.
    Source(String),
    /// Running the same command again will not help until what the message
    /// says is done.
    Stop(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Influx(e) | Error::Source(e) | Error::Stop(e) => f.write_str(e),
        }
    }
}

/// How to backfill.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows per write.
    pub batch_rows: usize,
}

/// The unfinished backfills of the state directory `dir`. A file that is
/// not valid JSON is no progress (with a warning: it is replaced by the
/// next save); one that cannot be read stops the backfill, saying what to
/// do.
pub fn read_progress(dir: &Path) -> Result<BTreeMap<String, Progress>, Error> {
    let path = dir.join(PROGRESS_FILE);
    let shown = path.display();
    match crate::support::fsutil::read_file(&path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(all) => Ok(all),
            Err(e) => {
                tracing::warn!(
                    "{shown} is not valid ({e}): every unfinished backfill it held starts again from the beginning (rows written before are written again, and InfluxDB keeps each once); it is replaced"
                );
                Ok(BTreeMap::new())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(_) if path.is_dir() => Err(Error::Stop(format!(
            "{shown} is a directory, not backfill's progress file: remove it (rmdir {shown}, or rm -r after a look at what it holds) and run again; nothing was written"
        ))),
        Err(e) => Err(Error::Stop(format!(
            "{shown}: cannot read: {e}; make it readable, or delete it to start every unfinished backfill again from the beginning; nothing was written"
        ))),
    }
}

fn write_progress(dir: &Path, all: &BTreeMap<String, Progress>) -> Result<(), Error> {
    let path = dir.join(PROGRESS_FILE);
    let mut bytes = serde_json::to_vec_pretty(all).map_err(|e| Error::Stop(e.to_string()))?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(".{PROGRESS_FILE}.{}.tmp", std::process::id()));
    replace_file(&path, &tmp, &bytes, 0o600).map_err(|e| {
        Error::Stop(format!(
            "{}: cannot write: {e}; the batches before were written, and without it a later backfill starts again from the beginning",
            path.display()
        ))
    })
}

/// Parses batches of whole lines of one source into points.
struct Parser<'a> {
    rows: Box<dyn Rows>,
    devel: &'a str,
    url: &'a str,
    since: Option<DateTime<Utc>>,
}

impl Parser<'_> {
    /// Reads the header line (of a source that has one).
    fn header(&mut self, line: &str) -> Result<(), String> {
        self.rows.header(self.url, line)
    }

    /// The points of one line (a row), or why it is malformed.
    fn row(&self, line: &str) -> Result<(DateTime<Utc>, Vec<Point>), String> {
        self.rows.row(line, self.devel)
    }

    /// The lines of `text` (the first of them line `first` of the
    /// document) as line protocol; counts rows, points and skipped rows.
    fn lines(&self, text: &str, first: u64, out: &mut Vec<String>, report: &mut Report) {
        for (line, n) in text.lines().zip(first..) {
            if line.trim().is_empty() {
                continue;
            }
            report.rows += 1;
            let encoded = self.row(line).and_then(|(t, points)| {
                if self.since.is_some_and(|s| t < s) {
                    return Ok(None);
                }
                points
                    .iter()
                    .map(|p| p.to_line().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            });
            match encoded {
                Ok(Some(lines)) => {
                    report.written += 1;
                    report.points += lines.len() as u64;
                    out.extend(lines);
                }
                Ok(None) => report.before_since += 1,
                Err(why) => {
                    report.malformed += 1;
                    if report.malformed_lines.len() < NAMED_ROWS {
                        report.malformed_lines.push(n);
                        tracing::warn!(
                            "backfill: {}: line {n}: {why}; row skipped (not written)",
                            self.url
                        );
                    } else if report.malformed_lines.len() == NAMED_ROWS
                        && report.malformed == NAMED_ROWS as u64 + 1
                    {
                        tracing::warn!(
                            "backfill: {}: more than {NAMED_ROWS} malformed rows: the others are counted, not named",
                            self.url
                        );
                    }
                }
            }
        }
    }
}

/// The document from where `state` stopped when it is the one read then
/// (see [`resume`]), else from its beginning, `state` started again (with a
/// warning): the stream, the bytes read after the offset, the checked bytes
/// before it, and why it started again.
async fn open(
    ctx: &Context,
    url: &str,
    name: &str,
    output: &str,
    state: &mut Progress,
    has_header: bool,
) -> Result<((Stream, Vec<u8>, Vec<u8>), Option<String>), Error> {
    if state.offset > 0 {
        match resume(&ctx.http, url, state, has_header).await? {
            Ok(r) => return Ok((r, None)),
            Err(why) => {
                tracing::warn!(
                    "backfill {name} to {output}: cannot go on at byte {}: {why}; starting again from the beginning (rows written before are written again, and InfluxDB keeps each once)",
                    state.offset
                );
                *state = Progress::new(state.url.clone(), state.since);
                let s = start(ctx, url).await?;
                return Ok((s, Some(why)));
            }
        }
    }
    Ok((start(ctx, url).await?, None))
}

/// The document from its beginning.
async fn start(ctx: &Context, url: &str) -> Result<(Stream, Vec<u8>, Vec<u8>), Error> {
    let s = ctx
        .http
        .get_stream(url, 0)
        .await
        .map_err(|e| Error::Source(e.to_string()))?;
    Ok((s, Vec::new(), Vec::new()))
}

/// Creates the state directory and holds its backfill lock: one backfill
/// at a time.
fn lock(state_dir: &Path) -> Result<FileLock, Error> {
    std::fs::create_dir_all(state_dir).map_err(|e| {
        Error::Stop(format!(
            "{}: cannot create the directory: {e}",
            state_dir.display()
        ))
    })?;
    let lock = state_dir.join(LOCK_FILE);
    FileLock::try_exclusive(&lock)
        .map_err(|e| Error::Stop(format!("cannot lock {}: {e}", lock.display())))?
        .ok_or_else(|| {
            Error::Stop(format!(
                "another backfill is running ({} is locked): wait for it to end",
                lock.display()
            ))
        })
}

/// `tail` followed by `done`, cut to its last `window` bytes: the last
/// bytes done, for the checksum a resume checks.
fn keep_tail(tail: &mut Vec<u8>, done: &[u8], window: usize) {
    if done.len() >= window {
        tail.clear();
        tail.extend_from_slice(&done[done.len() - window..]);
    } else {
        tail.extend_from_slice(done);
        let over = tail.len().saturating_sub(window);
        tail.drain(..over);
    }
}

impl Report {
    /// The report of a backfill going on from `state`.
    fn of(state: &Progress, total: Option<u64>, restarted: Option<String>) -> Report {
        Report {
            rows: state.rows,
            written: state.written,
            points: state.points,
            before_since: state.before_since,
            malformed: state.malformed,
            malformed_lines: state.malformed_lines.clone(),
            offset: state.offset,
            total,
            resumed_from: (state.offset > 0).then_some(state.offset),
            restarted,
        }
    }
}

impl Progress {
    /// A batch of `len` bytes and `lines` lines written, the checksum of
    /// `tail` (the bytes before the new offset) and the counts of `report`
    /// kept; the report's offset moves with it.
    fn done(&mut self, len: usize, lines: usize, tail: &[u8], report: &mut Report) {
        self.offset += len as u64;
        self.lines += lines as u64;
        self.check = Some(Check {
            bytes: tail.len() as u64,
            crc32: crc32fast::hash(tail),
        });
        self.rows = report.rows;
        self.written = report.written;
        self.points = report.points;
        self.before_since = report.before_since;
        self.malformed = report.malformed;
        self.malformed_lines.clone_from(&report.malformed_lines);
        report.offset = self.offset;
    }
}

/// Position of the `n`-th `\n` (1-based) in `buf`.
fn nth_newline(buf: &[u8], n: usize) -> Option<usize> {
    buf.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.checked_sub(1)?)
        .map(|(i, _)| i)
}

/// The document from the offset `state` saved, when it is the document
/// read before: the stream, the first bytes after the offset, and the
/// checked bytes before it. `Ok(Err(why))` when it is not (or cannot be
/// told).
async fn resume(
    http: &Http,
    url: &str,
    state: &Progress,
    has_header: bool,
) -> Result<Result<(Stream, Vec<u8>, Vec<u8>), String>, Error> {
    let Some(check) = state
        .check
        .filter(|c| c.bytes > 0 && c.bytes <= state.offset)
    else {
        return Ok(Err(
            "no checksum of the bytes before it was saved (by an older version)".to_owned(),
        ));
    };
    if has_header && state.header.is_none() {
        return Ok(Err("no header line was saved".to_owned()));
    }
    let from = state.offset - check.bytes;
    let mut stream = match http.get_stream(url, from).await {
        Ok(s) => s,
        Err(SourceError::HttpStatus { status: 416, .. }) => {
            return Ok(Err(format!(
                "the document is shorter than {from} bytes now (HTTP 416)"
            )));
        }
        Err(e) => return Err(Error::Source(e.to_string())),
    };
    if stream.start > from {
        return Err(Error::Source(format!(
            "{url}: asked for bytes from {from}, got from {}",
            stream.start
        )));
    }
    let mut skip = from - stream.start;
    let want = usize::try_from(check.bytes).unwrap_or(usize::MAX);
    let mut window = Vec::with_capacity(want);
    let mut rest = Vec::new();
    while window.len() < want {
        let Some(mut c) = stream
            .chunk()
            .await
            .map_err(|e| Error::Source(e.to_string()))?
        else {
            return Ok(Err(format!(
                "the document is shorter than {} bytes now",
                state.offset
            )));
        };
        if skip > 0 {
            let n = usize::try_from(skip).unwrap_or(usize::MAX).min(c.len());
            c.drain(..n);
            skip -= n as u64;
        }
        let need = want - window.len();
        if c.len() > need {
            rest = c.split_off(need);
        }
        window.extend_from_slice(&c);
    }
    if crc32fast::hash(&window) != check.crc32 {
        return Ok(Err(format!(
            "the {} bytes before it differ from those read then: the document was replaced or rotated (rows removed at its start)",
            check.bytes
        )));
    }
    Ok(Ok((stream, rest, window)))
}

/// Backfills `source` into `writer` (one output), keeping its progress in
/// `state_dir` under [`progress_key`] of the source and the writer's name;
/// `progress` is called after each batch written. Resumes an interrupted
/// backfill of the same source, output and `since` when the document is the
/// same (else starts again from the beginning, with a warning).
pub async fn backfill(
    source: &Source,
    ctx: &Context,
    writer: &InfluxWriter,
    state_dir: &Path,
    opts: &Options,
    progress: &mut (dyn FnMut(&Report) + Send),
) -> Result<Report, Error> {
    let _guard = lock(state_dir)?;
    let url = join(ctx.source(&source.series.base), source.series.file);
    let key = redact_url(&url);
    let entry = progress_key(source.name, writer.name());
    let output = output_label(writer.name());
    let mut all = read_progress(state_dir)?;
    let mut state = match all.get(&entry) {
        Some(p) if p.url == key && p.since == opts.since => p.clone(),
        _ => Progress::new(key.clone(), opts.since),
    };
    let devel = ctx
        .devel_series()
        .await
        .map_err(|e| Error::Source(e.to_string()))?;
    let rows = (source.series.rows)();
    let has_header = rows.has_header();
    let ((mut stream, mut buf, mut tail), restarted) =
        open(ctx, &url, source.name, &output, &mut state, has_header).await?;
    let mut parser = Parser {
        rows,
        devel: &devel,
        url: &url,
        since: opts.since,
    };
    if let Some(h) = &state.header {
        parser
            .header(h)
            .map_err(|e| Error::Stop(format!("{url}: {e}")))?;
    }
    let mut report = Report::of(&state, stream.total, restarted);
    let batch = opts.batch_rows.max(1);
    let mut newlines = buf.iter().filter(|b| **b == b'\n').count();
    let mut lines = Vec::with_capacity(batch);
    let window = usize::try_from(CHECK_BYTES).unwrap_or(usize::MAX);
    loop {
        let chunk = stream
            .chunk()
            .await
            .map_err(|e| Error::Source(e.to_string()))?;
        let end = chunk.is_none();
        if let Some(c) = chunk {
            newlines += c.iter().filter(|b| **b == b'\n').count();
            buf.extend_from_slice(&c);
        }
        // Whole batches, then (at the end) the rest.
        loop {
            let cut = if newlines >= batch {
                nth_newline(&buf, batch).map(|i| (i + 1, batch))
            } else if end && !buf.is_empty() {
                Some((buf.len(), newlines))
            } else {
                None
            };
            let Some((len, n)) = cut else { break };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let mut body: &str = &text;
            let mut first = state.lines + 1;
            if state.offset == 0 && has_header && state.header.is_none() {
                let (h, rest) = body.split_once('\n').unwrap_or((body, ""));
                let h = h.trim_end_matches('\r');
                parser
                    .header(h)
                    .map_err(|e| Error::Stop(format!("{url}: line 1: {e}")))?;
                state.header = Some(h.to_owned());
                body = rest;
                first += 1;
            }
            lines.clear();
            parser.lines(body, first, &mut lines, &mut report);
            writer
                .write_lines(&lines)
                .await
                .map_err(|(_, e)| Error::Influx(format!("{output}: {e}")))?;
            keep_tail(&mut tail, &buf[..len], window);
            buf.drain(..len);
            newlines -= n;
            state.done(len, n, &tail, &mut report);
            all.insert(entry.clone(), state.clone());
            write_progress(state_dir, &all)?;
            progress(&report);
        }
        if end {
            break;
        }
    }
    all.remove(&entry);
    write_progress(state_dir, &all)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_collectors_select_sources() {
        assert_eq!(
            select("update-excuses").unwrap()[0].series.file,
            "update_excuses.csv"
        );
        assert_eq!(select("ubuntu_archive").unwrap().len(), 3);
        assert!(select("nope").unwrap_err().contains("update_excuses"));
    }

    #[test]
    fn each_output_has_its_own_progress_entry() {
        // The first output keeps the key of the versions before outputs, so
        // their unfinished backfills go on.
        assert_eq!(progress_key("nbs", "influxdb"), "nbs");
        assert_eq!(progress_key("nbs", "vm"), "nbs@vm");
        assert_eq!(output_label("influxdb"), "[influxdb]");
        assert_eq!(output_label("vm"), "[outputs.vm]");
    }

    #[test]
    fn each_line_is_a_row_and_a_malformed_one_costs_that_row_only() {
        let excuses = select("update_excuses").unwrap().remove(0);
        let mut p = Parser {
            rows: (excuses.series.rows)(),
            devel: "zz",
            url: "u",
            since: None,
        };
        p.header("time,valid candidates,not considered,total,median age,backlog")
            .unwrap();
        // Line 3 opens a quote it never closes; line 4 is blank; line 5
        // quotes a field properly and ends with CRLF.
        let text =
            "1577836800000,1,2,3,4,5\n1577836900000,\"1,2,3,4,5\n\n1577837000000,\"1\",2,3,4,5\r\n";
        let mut out = Vec::new();
        let mut r = Report::default();
        p.lines(text, 2, &mut out, &mut r);
        assert_eq!((r.rows, r.written, r.malformed), (3, 2, 1));
        assert_eq!(r.malformed_lines, vec![3]);
        assert_eq!(out.len(), 2);
        assert!(out[1].ends_with(" 1577837000000000000"), "{out:?}");
    }

    #[test]
    fn newlines() {
        assert_eq!(nth_newline(b"a\nb\nc\n", 2), Some(3));
        assert_eq!(nth_newline(b"a\nb", 2), None);
        assert_eq!(nth_newline(b"a\n", 0), None);
    }
}
