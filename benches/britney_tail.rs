//! Bytes britney's `update_excuses.csv` part costs per round: the whole
//! file (what it read whenever the file had changed, i.e. every 15 minutes
//! upstream) against its tail (`Range`, what a caught-up round reads now),
//! on a generated year-long file (a row every 15 minutes: 35,040 rows)
//! served by the project's fixture server on loopback.
//!
//!     cargo bench --bench britney_tail
//!     cargo bench --bench britney_tail -- --days 730
//!
//! Prints `bytes per round: whole file N, tail M` (response bodies, as the
//! fixture server counts them; each request's headers, a few hundred
//! bytes, come on top of both), the requests each way, and the same for a
//! fresh station and for one catching up after two days down; checks that
//! every way gives the points of the whole document. Not a timed test: run
//! by `cargo test --all-targets` too, it does the same (a second).

use chrono::{DateTime, Duration, Utc};
use fixture_server::FixtureServer;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use ubuntu_metrics::Context;
use ubuntu_metrics::collectors::britney::{PROPOSED_MIGRATION, excuses_points, read_excuses};
use ubuntu_metrics::model::catch_up::Cutoff;
use ubuntu_metrics::sources::http::{Http, join};

/// Writes `rows` rows, one every 15 minutes, the newest 10 minutes before
/// `now`, with counts of the real file's magnitude; returns its size.
fn generate(path: &Path, rows: i64, now: DateTime<Utc>) -> u64 {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the directory");
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create the CSV"));
    writeln!(
        f,
        "time,valid candidates,not considered,total,median age,backlog"
    )
    .expect("write");
    let newest = now - Duration::minutes(10);
    for i in 0..rows {
        let at = newest - Duration::minutes(15 * (rows - 1 - i));
        let valid = 100 + i % 400;
        let not_considered = 3000 + i % 2000;
        writeln!(
            f,
            "{},{valid},{not_considered},{},{},{}",
            at.timestamp_millis(),
            valid + not_considered,
            i % 60,
            2500 + i % 1500
        )
        .expect("write");
    }
    f.flush().expect("write");
    std::fs::metadata(path).expect("the CSV").len()
}

/// Body bytes and requests of `round`, from the fixture server's counts.
async fn measured<T>(server: &FixtureServer, round: impl Future<Output = T>) -> (T, u64, u64) {
    let requests = || server.requests().values().sum::<u64>();
    let (bytes, asked) = (server.bytes_sent(), requests());
    let out = round.await;
    (out, server.bytes_sent() - bytes, requests() - asked)
}

fn main() {
    let mut days = 365;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--days" {
            days = args.next().and_then(|n| n.parse().ok()).unwrap_or(days);
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().expect("a time");
    let rows = days * 96;
    let size = generate(
        &dir.path()
            .join("britney/proposed-migration/update_excuses.csv"),
        rows,
        now,
    );
    let server = FixtureServer::start(dir.path()).expect("the fixture server starts");
    let http = Http::new(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(30),
    )
    .expect("an HTTP client")
    .with_max_body(64_000_000);
    let ctx = Context::new(http, Arc::new(server.sources()), now);
    let url = join(ctx.source(&PROPOSED_MIGRATION), "update_excuses.csv");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let max = Duration::days(90);
    let newest = now - Duration::minutes(10);
    let rounds = [
        (
            "caught up",
            Cutoff::new(now, Some(newest - Duration::minutes(15)), None, max),
        ),
        ("a fresh station", Cutoff::new(now, None, None, max)),
        (
            "2 days down",
            Cutoff::new(now, Some(now - Duration::days(2)), None, max),
        ),
    ];
    println!("update_excuses.csv: {rows} rows ({days} days), {size} bytes");
    runtime.block_on(async {
        let (text, whole, whole_requests) = measured(&server, ctx.http.get_text(&url)).await;
        let text = text.expect("the whole file");
        for (i, (round, cutoff)) in rounds.iter().enumerate() {
            let (got, tail, tail_requests) =
                measured(&server, read_excuses(&ctx, &url, "tumbling", cutoff)).await;
            let (points, newest) = got.expect("the tail's points");
            let (want, want_newest) =
                excuses_points(&url, &text, "tumbling", cutoff).expect("the whole file's points");
            assert!(
                points == want && newest == want_newest,
                "{round}: the tail's points differ from the whole file's"
            );
            if i == 0 {
                println!("bytes per round: whole file {whole}, tail {tail}");
            }
            println!(
                "  {round}: whole file {whole} bytes in {whole_requests} request(s), tail {tail} bytes in {tail_requests} request(s), {} points",
                points.len()
            );
        }
    });
}
