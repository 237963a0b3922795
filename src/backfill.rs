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
//! skipping N bytes when the server ignores ranges). A batch that was
//! written but whose offset was not saved yet is written again: the same
//! points (same series, same time), which InfluxDB keeps once. When the
//! source is done its entry is removed.
//!
//! One backfill at a time per state directory (`backfill.lock`).

use crate::collector::Context;
use crate::collectors::britney::{ExcusesColumns, PROPOSED_MIGRATION};
use crate::collectors::ubuntu_archive::{ARCHIVE_TEAM, mismatch_row, nbs_row};
use crate::config::{SourceUrl, redact_url};
use crate::fsutil::replace_file;
use crate::point::Point;
use crate::sinks::influxdb::InfluxWriter;
use crate::sinks::spool::FileLock;
use crate::sources::http::join;
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

/// How the rows of a source become points.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `update_excuses.csv`: columns by header name.
    Excuses,
    /// `nbs.csv`: `time,removable,total`.
    Nbs,
    /// `component-mismatches*.csv`, with the `pocket` tag.
    Mismatches(&'static str),
}

/// A time-series source that can be backfilled.
#[derive(Debug)]
pub struct Source {
    /// Its name on the command line.
    pub name: &'static str,
    /// The collector that reads it every run.
    pub collector: &'static str,
    base: &'static SourceUrl,
    file: &'static str,
    kind: Kind,
}

/// Every source `backfill` knows.
pub static SOURCES: [Source; 4] = [
    Source {
        name: "update_excuses",
        collector: "britney",
        base: &PROPOSED_MIGRATION,
        file: "update_excuses.csv",
        kind: Kind::Excuses,
    },
    Source {
        name: "nbs",
        collector: "ubuntu_archive",
        base: &ARCHIVE_TEAM,
        file: "nbs.csv",
        kind: Kind::Nbs,
    },
    Source {
        name: "component_mismatches",
        collector: "ubuntu_archive",
        base: &ARCHIVE_TEAM,
        file: "component-mismatches.csv",
        kind: Kind::Mismatches("release"),
    },
    Source {
        name: "component_mismatches_proposed",
        collector: "ubuntu_archive",
        base: &ARCHIVE_TEAM,
        file: "component-mismatches-proposed.csv",
        kind: Kind::Mismatches("proposed"),
    },
];

/// The sources `name` means: a source's name, or a collector's (all its
/// sources); `-` and `_` alike.
pub fn select(name: &str) -> Result<Vec<&'static Source>, String> {
    let name = name.replace('-', "_");
    let by_name: Vec<&Source> = SOURCES.iter().filter(|s| s.name == name).collect();
    if !by_name.is_empty() {
        return Ok(by_name);
    }
    let by_collector: Vec<&Source> = SOURCES.iter().filter(|s| s.collector == name).collect();
    if !by_collector.is_empty() {
        return Ok(by_collector);
    }
    Err(format!(
        "no time-series source {name:?}; known: {} (or a collector: britney, ubuntu_archive)",
        SOURCES
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    ))
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
}

/// What a backfill did so far (or in all).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rows: u64,
    pub points: u64,
    /// Rows skipped: malformed, or before `since`.
    pub skipped: u64,
    /// Bytes of the document done.
    pub offset: u64,
    /// The document's length, when the server said.
    pub total: Option<u64>,
    /// The offset an interrupted backfill went on from.
    pub resumed_from: Option<u64>,
}

/// How to backfill.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows per write.
    pub batch_rows: usize,
}

/// The unfinished backfills of the state directory `dir`.
pub fn read_progress(dir: &Path) -> Result<BTreeMap<String, Progress>, String> {
    let path = dir.join(PROGRESS_FILE);
    match crate::fsutil::read_file(&path) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("{}: not valid: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

fn write_progress(dir: &Path, all: &BTreeMap<String, Progress>) -> Result<(), String> {
    let path = dir.join(PROGRESS_FILE);
    let mut bytes = serde_json::to_vec_pretty(all).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(".{PROGRESS_FILE}.{}.tmp", std::process::id()));
    replace_file(&path, &tmp, &bytes, 0o600)
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Parses batches of whole lines of one source into points.
struct Parser<'a> {
    kind: Kind,
    devel: &'a str,
    url: &'a str,
    columns: Option<ExcusesColumns>,
    since: Option<DateTime<Utc>>,
}

impl Parser<'_> {
    /// Reads the header line (of a source that has one).
    fn header(&mut self, line: &str) -> Result<(), String> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(line.as_bytes());
        let rec = rdr
            .records()
            .next()
            .ok_or("an empty header line")?
            .map_err(|e| format!("unreadable CSV header: {e}"))?;
        self.columns = Some(ExcusesColumns::of(self.url, &rec).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// The lines of `text` as line protocol; counts rows and skipped rows.
    fn lines(&self, text: &str, out: &mut Vec<String>, report: &mut Report) {
        let keep = |t: DateTime<Utc>| self.since.is_none_or(|s| t >= s);
        let mut push = |points: &mut dyn Iterator<Item = Point>| {
            for p in points {
                match p.to_line() {
                    Ok(l) => out.push(l),
                    Err(e) => tracing::warn!("backfill: {}: {e}", self.url),
                }
            }
        };
        match (self.kind, &self.columns) {
            (Kind::Excuses, Some(cols)) => {
                let mut rdr = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .trim(csv::Trim::All)
                    .from_reader(text.as_bytes());
                for rec in rdr.records() {
                    report.rows += 1;
                    match rec
                        .map_err(|e| e.to_string())
                        .and_then(|r| cols.point(&r, self.devel))
                    {
                        Ok((t, p)) if keep(t) => push(&mut std::iter::once(p)),
                        Ok(_) => report.skipped += 1,
                        Err(why) => {
                            tracing::debug!("backfill: {}: {why}; row skipped", self.url);
                            report.skipped += 1;
                        }
                    }
                }
            }
            (Kind::Excuses, None) => {}
            (Kind::Nbs, _) | (Kind::Mismatches(_), _) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    report.rows += 1;
                    let row = match self.kind {
                        Kind::Nbs => nbs_row(line, self.devel).map(|(t, p)| (t, vec![p])),
                        Kind::Mismatches(pocket) => mismatch_row(line, self.devel, pocket),
                        Kind::Excuses => None,
                    };
                    match row {
                        Some((t, ps)) if keep(t) => push(&mut ps.into_iter()),
                        _ => report.skipped += 1,
                    }
                }
            }
        }
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

/// Backfills `source` into `writer`, keeping its progress in `state_dir`;
/// `progress` is called after each batch written. Resumes an interrupted
/// backfill of the same source and `since`.
pub async fn backfill(
    source: &Source,
    ctx: &Context,
    writer: &InfluxWriter,
    state_dir: &Path,
    opts: &Options,
    progress: &mut (dyn FnMut(&Report) + Send),
) -> Result<Report, String> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("{}: cannot create the directory: {e}", state_dir.display()))?;
    let lock = state_dir.join(LOCK_FILE);
    let _guard = FileLock::try_exclusive(&lock)
        .map_err(|e| format!("cannot lock {}: {e}", lock.display()))?
        .ok_or_else(|| format!("another backfill is running ({} is locked)", lock.display()))?;
    let url = join(ctx.source(source.base), source.file);
    let key = redact_url(&url);
    let mut all = read_progress(state_dir)?;
    let mut state = match all.get(source.name) {
        Some(p) if p.url == key && p.since == opts.since => p.clone(),
        _ => Progress {
            url: key,
            since: opts.since,
            offset: 0,
            header: None,
            rows: 0,
            points: 0,
        },
    };
    let devel = ctx.devel_series().await.map_err(|e| e.to_string())?;
    let mut parser = Parser {
        kind: source.kind,
        devel: &devel,
        url: &url,
        columns: None,
        since: opts.since,
    };
    if let Some(h) = &state.header {
        parser.header(h)?;
    }
    let mut report = Report {
        rows: state.rows,
        points: state.points,
        offset: state.offset,
        resumed_from: (state.offset > 0).then_some(state.offset),
        ..Default::default()
    };
    let mut stream = ctx
        .http
        .get_stream(&url, state.offset)
        .await
        .map_err(|e| e.to_string())?;
    if stream.start > state.offset {
        return Err(format!(
            "{url}: asked for bytes from {}, got from {}",
            state.offset, stream.start
        ));
    }
    report.total = stream.total.map(|t| t + stream.start);
    let mut skip = state.offset - stream.start;
    let batch = opts.batch_rows.max(1);
    let mut buf: Vec<u8> = Vec::new();
    let mut newlines = 0usize;
    let mut lines = Vec::with_capacity(batch);
    loop {
        let chunk = stream.chunk().await.map_err(|e| e.to_string())?;
        let end = chunk.is_none();
        if let Some(mut c) = chunk {
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(c.len());
                c.drain(..n);
                skip -= n as u64;
            }
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
            if state.offset == 0 && matches!(source.kind, Kind::Excuses) && state.header.is_none() {
                let (h, rest) = body.split_once('\n').unwrap_or((body, ""));
                parser.header(h.trim_end_matches('\r'))?;
                state.header = Some(h.trim_end_matches('\r').to_owned());
                body = rest;
            }
            lines.clear();
            parser.lines(body, &mut lines, &mut report);
            writer
                .write_lines(&lines)
                .await
                .map_err(|(_, e)| format!("InfluxDB: {e}"))?;
            buf.drain(..len);
            newlines -= n;
            state.offset += len as u64;
            state.rows = report.rows;
            report.points += lines.len() as u64;
            state.points = report.points;
            report.offset = state.offset;
            all.insert(source.name.to_owned(), state.clone());
            write_progress(state_dir, &all)?;
            progress(&report);
        }
        if end {
            break;
        }
    }
    all.remove(source.name);
    write_progress(state_dir, &all)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_collectors_select_sources() {
        assert_eq!(
            select("update-excuses").unwrap()[0].file,
            "update_excuses.csv"
        );
        assert_eq!(select("ubuntu_archive").unwrap().len(), 3);
        assert!(select("nope").unwrap_err().contains("update_excuses"));
    }

    #[test]
    fn newlines() {
        assert_eq!(nth_newline(b"a\nb\nc\n", 2), Some(3));
        assert_eq!(nth_newline(b"a\nb", 2), None);
        assert_eq!(nth_newline(b"a\n", 0), None);
    }
}
