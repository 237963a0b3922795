//! britney reads the tail of `update_excuses.csv` (issue 25, item 8): a
//! caught-up round asks for the last bytes and the header with `Range`,
//! never the whole document, and whatever the server does with the
//! `Range` (honours it, ignores it and sends the whole document, refuses
//! it with 416) and whatever happened to the file (it grew, shrank, was
//! replaced, reordered its columns), the points and the newest row are
//! those of the whole document.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use ubuntu_metrics::collectors::britney::{PROPOSED_MIGRATION, excuses_points, read_excuses};
use ubuntu_metrics::model::catch_up::Cutoff;
use ubuntu_metrics::sources::http::join;

const HEADER: &str = "time,valid candidates,not considered,total,median age,backlog";

/// Rows every 15 minutes from `from` up to `until` (included).
fn csv(header: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> String {
    let mut text = format!("{header}\n");
    let mut at = from;
    let mut i = 0;
    while at <= until {
        text.push_str(&format!(
            "{},{i},{},{},{},{}\n",
            at.timestamp_millis(),
            i + 1,
            i + 2,
            i % 10,
            i % 7
        ));
        at += Duration::minutes(15);
        i += 1;
    }
    text
}

/// What a server does with a `Range` request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ranges {
    /// 206 with `Content-Range` (416 when nothing can be given), as Apache.
    Honoured,
    /// 200 with the whole document.
    Ignored,
    /// 416 for every `Range`.
    Refused,
}

/// One file served on loopback (read at every request), answering `Range`
/// as `ranges` says; remembers each request's `Range` header.
struct Server {
    port: u16,
    asked: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    fn start(file: PathBuf, ranges: Ranges) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let a = asked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (file, a) = (file.clone(), a.clone());
                std::thread::spawn(move || serve(conn, &file, ranges, &a));
            }
        });
        Server { port, asked }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/update_excuses.csv", self.port)
    }

    /// The `Range` headers asked for since the last call.
    fn asked(&self) -> Vec<Option<String>> {
        std::mem::take(&mut *self.asked.lock().unwrap())
    }
}

fn serve(mut conn: TcpStream, file: &Path, ranges: Ranges, asked: &Mutex<Vec<Option<String>>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    asked.lock().unwrap().push(range.clone());
    let data = std::fs::read(file).unwrap();
    let total = data.len();
    let part = range.as_deref().map(|r| (r, parse_range(r, total)));
    let (status, extra, body): (&str, String, &[u8]) = match (ranges, part) {
        (Ranges::Refused, Some(_)) | (Ranges::Honoured, Some((_, None))) => (
            "416 Range Not Satisfiable",
            format!("Content-Range: bytes */{total}\r\n"),
            b"",
        ),
        (Ranges::Honoured, Some((_, Some((a, b))))) => (
            "206 Partial Content",
            format!("Content-Range: bytes {a}-{b}/{total}\r\n"),
            &data[a..=b],
        ),
        _ => ("200 OK", String::new(), &data[..]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

/// `bytes=-N`, `bytes=A-`, `bytes=A-B` of `total` bytes; `None` when
/// unsatisfiable.
fn parse_range(r: &str, total: usize) -> Option<(usize, usize)> {
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    if total == 0 {
        return None;
    }
    if a.is_empty() {
        let n: usize = b.parse().ok()?;
        return (n > 0).then(|| (total - n.min(total), total - 1));
    }
    let first: usize = a.parse().ok()?;
    let last = if b.is_empty() {
        total - 1
    } else {
        b.parse::<usize>().ok()?.min(total - 1)
    };
    (first <= last).then_some((first, last))
}

fn ctx() -> ubuntu_metrics::Context {
    let server = server();
    context(&server)
}

/// Reads `url` as britney does (its tail) and as the whole document, and
/// asserts the same points and newest row.
async fn same_as_whole(url: &str, text: &str, cutoff: &Cutoff, what: &str) {
    let got = read_excuses(&ctx(), url, "tumbling", cutoff).await;
    let want = excuses_points(url, text, "tumbling", cutoff);
    match (got, want) {
        (Ok((points, newest)), Ok((want_points, want_newest))) => {
            assert_eq!(lines(&points), lines(&want_points), "{what}");
            assert_eq!(newest, want_newest, "{what}");
        }
        (Err(got), Err(want)) => assert_eq!(got.to_string(), want.to_string(), "{what}"),
        (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

/// The cutoffs of the rounds a station meets, for a file whose newest row
/// is at `last`, read at `now`.
fn cutoffs(now: DateTime<Utc>, last: DateTime<Utc>) -> Vec<(&'static str, Cutoff)> {
    let max = Duration::days(90);
    vec![
        ("a fresh station", Cutoff::new(now, None, None, max)),
        (
            "caught up",
            Cutoff::new(now, Some(last - Duration::minutes(15)), None, max),
        ),
        (
            "down 2 days",
            Cutoff::new(now, Some(now - Duration::days(2)), None, max),
        ),
        (
            "down 2 days, max_catch_up 1d",
            Cutoff::new(now, Some(now - Duration::days(2)), None, Duration::days(1)),
        ),
        (
            "catch_up_from before the file",
            Cutoff::new(now, None, Some(now - Duration::days(30)), max),
        ),
        (
            "the mark newer than every row (the file shrank)",
            Cutoff::new(now, Some(last + Duration::days(1)), None, max),
        ),
    ]
}

#[tokio::test]
async fn every_round_gives_the_whole_documents_points_whatever_the_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("update_excuses.csv");
    let now = now();
    let last = now - Duration::minutes(10);
    let reordered = "backlog,median age,time,extra,total,not considered,valid candidates";
    let documents = [
        ("5 days", csv(HEADER, now - Duration::days(5), last)),
        ("12 hours", csv(HEADER, now - Duration::hours(12), last)),
        ("one row", csv(HEADER, last, last)),
        ("a header only", format!("{HEADER}\n")),
        ("empty", String::new()),
        (
            "columns reordered",
            csv(reordered, now - Duration::days(3), last),
        ),
        ("a header longer than the first head asked for", {
            let header = format!("{HEADER}{}", ",an unused column".repeat(40));
            csv(&header, now - Duration::days(2), last)
        }),
        ("a byte-order mark, CRLF", {
            let text = csv(HEADER, now - Duration::days(2), last);
            format!("\u{feff}{}", text.replace('\n', "\r\n"))
        }),
        ("malformed rows near the end", {
            let mut text = csv(HEADER, now - Duration::days(2), last - Duration::hours(1));
            text.push_str("garbage\n\"1,2\n");
            text.push_str(&format!(
                "{},1,2,3,4,5\n",
                (last - Duration::minutes(5)).timestamp_millis()
            ));
            text
        }),
        ("no newline at the end", {
            let text = csv(HEADER, now - Duration::days(2), last);
            text.trim_end().to_owned()
        }),
    ];
    for ranges in [Ranges::Honoured, Ranges::Ignored, Ranges::Refused] {
        let server = Server::start(file.clone(), ranges);
        for (doc, text) in &documents {
            std::fs::write(&file, text).unwrap();
            for (round, cutoff) in cutoffs(now, last) {
                let what = format!("{ranges:?}, {doc}, {round}");
                same_as_whole(&server.url(), text, &cutoff, &what).await;
            }
        }
    }
}

#[tokio::test]
async fn a_caught_up_round_asks_for_the_tail_and_the_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("update_excuses.csv");
    let now = now();
    let last = now - Duration::minutes(10);
    // A year of rows (~1.2 MB).
    let text = csv(HEADER, now - Duration::days(365), last);
    std::fs::write(&file, &text).unwrap();
    let server = Server::start(file.clone(), Ranges::Honoured);
    let cutoff = Cutoff::new(
        now,
        Some(last - Duration::minutes(15)),
        None,
        Duration::days(90),
    );
    same_as_whole(&server.url(), &text, &cutoff, "caught up").await;
    assert_eq!(
        server.asked(),
        [
            Some("bytes=-4096".to_owned()),
            Some("bytes=0-255".to_owned())
        ]
    );

    // Two days down: the tail grows until it reaches the mark.
    let cutoff = Cutoff::new(now, Some(now - Duration::days(2)), None, Duration::days(90));
    same_as_whole(&server.url(), &text, &cutoff, "down 2 days").await;
    let asked = server.asked();
    assert!(
        asked.iter().all(Option::is_some) && asked.len() <= 4,
        "{asked:?}"
    );

    // The file replaced by a shorter one (the mark is newer than every
    // row): the tail grows to the whole file, the window's rows are read.
    let shorter = csv(HEADER, now - Duration::days(1), now - Duration::hours(6));
    std::fs::write(&file, &shorter).unwrap();
    same_as_whole(&server.url(), &shorter, &cutoff, "replaced").await;
    let cutoff = Cutoff::new(now, Some(last), None, Duration::days(90));
    same_as_whole(&server.url(), &shorter, &cutoff, "shrank").await;

    // A server ignoring the Range: one request, the whole document.
    let server = Server::start(file.clone(), Ranges::Ignored);
    same_as_whole(&server.url(), &shorter, &cutoff, "ignored").await;
    assert_eq!(server.asked(), [Some("bytes=-4096".to_owned())]);
    // One refusing it: then a plain request.
    let server = Server::start(file, Ranges::Refused);
    same_as_whole(&server.url(), &shorter, &cutoff, "refused").await;
    assert_eq!(server.asked(), [Some("bytes=-4096".to_owned()), None]);
}

/// The whole collector against the fixture server, on a station caught up
/// with a year-long `update_excuses.csv`: the CSV is only asked for with
/// `Range`, and the points are the fixture's other points plus the rows of
/// the last 12 hours.
#[tokio::test]
async fn the_collector_reads_a_caught_up_csv_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_copy(dir.path());
    let now = now();
    let last = now - Duration::minutes(10);
    let text = csv(HEADER, now - Duration::days(365), last);
    std::fs::write(
        root.join("britney/proposed-migration/update_excuses.csv"),
        &text,
    )
    .unwrap();
    let server = fixture_server::FixtureServer::start(&root).unwrap();
    let ctx = context(&server);
    let url = join(ctx.source(&PROPOSED_MIGRATION), "update_excuses.csv");
    let mark = last - Duration::minutes(15);
    let marks = BTreeMap::from([("britney".to_owned(), BTreeMap::from([(url.clone(), mark)]))]);
    let ctx = ctx.with_marks(marks);
    let points = collect("britney", &ctx).await.unwrap();

    let cutoff = Cutoff::new(now, Some(mark), None, Duration::days(90));
    let (want, _) = excuses_points(&url, &text, "tumbling", &cutoff).unwrap();
    let got: Vec<String> = lines(&points)
        .into_iter()
        .filter(|l| l.starts_with("update_excuses_stats,"))
        .collect();
    assert_eq!(got, lines(&want));
    // Rows at now - 15 min × k: those after now - 12 h, the newest at
    // now - 15 min.
    assert_eq!(got.len(), 47, "the rows of the last 12 hours");

    let csv_requests: Vec<String> = server
        .document_requests()
        .into_keys()
        .filter(|k| k.contains("update_excuses.csv"))
        .collect();
    assert_eq!(
        csv_requests,
        [
            "/britney/proposed-migration/update_excuses.csv? [bytes=-4096]",
            "/britney/proposed-migration/update_excuses.csv? [bytes=0-255]",
        ],
    );
}
