//! An InfluxDB output's delivery and replay against a real influxd: what
//! InfluxDB cannot take now is spooled, replayed oldest first and removed
//! only once written; what it refuses for good is narrowed down to the
//! refused lines and dead-lettered; 401/404 keep the points.

mod common;

use chrono::TimeZone;
use common::influxd::{DATABASE, Influxd, Options};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use ubuntu_metrics::Point;
use ubuntu_metrics::config::InfluxConfig;
use ubuntu_metrics::model::timespan::TimeSpan;
use ubuntu_metrics::runner::{self, Outcome, Status};
use ubuntu_metrics::sinks::Delivery;
use ubuntu_metrics::sinks::influxdb::output::{InfluxOutput, Replay};
use ubuntu_metrics::sinks::influxdb::{InfluxWriter, RetryPolicy, WriteError};
use ubuntu_metrics::sinks::spool::Spool;

fn fast() -> RetryPolicy {
    RetryPolicy {
        retries: 2,
        base: Duration::from_millis(20),
        max: Duration::from_millis(50),
        jitter: true,
    }
}

fn writer(url: &str, database: &str) -> Arc<InfluxWriter> {
    let cfg = InfluxConfig {
        url: url.into(),
        database: database.to_owned(),
        timeout: TimeSpan::parse("5s").unwrap(),
        ..InfluxConfig::default()
    };
    Arc::new(
        InfluxWriter::new(&cfg, None)
            .unwrap()
            .with_retry_policy(fast()),
    )
}

/// A run delivered by the output of `w` and `spool`.
async fn deliver(
    outcomes: &[Outcome],
    w: &Arc<InfluxWriter>,
    spool: Option<&Arc<Spool>>,
    self_metrics: bool,
) -> Delivery {
    let out = InfluxOutput::new(w.clone(), spool.cloned());
    runner::deliver_to(outcomes, &out, self_metrics).await
}

/// The spool replayed by the output of `w` and `spool`.
async fn replay(spool: &Arc<Spool>, w: &Arc<InfluxWriter>, wait: Duration) -> Replay {
    InfluxOutput::new(w.clone(), Some(spool.clone()))
        .replay(wait)
        .await
}

fn spool_at(dir: &std::path::Path, max: u64) -> Arc<Spool> {
    Arc::new(Spool::open(dir, max).unwrap())
}

/// The spool's replay lock, as another process would hold it. Waited for:
/// a replay that just ended has let it go, but a child process another
/// test forked at that moment (influxd) holds a copy of the lock's file
/// until it execs.
async fn replay_lock_of(spool: &Spool) -> ubuntu_metrics::sinks::spool::FileLock {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(lock) = spool.try_replay_lock().unwrap() {
            return lock;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spool's replay lock is still held after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn t(sec: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 24, 12, 0, sec)
        .unwrap()
}

fn outcome(name: &'static str, run: u32, n: usize) -> Outcome {
    Outcome {
        name: name.into(),
        status: Status::Ok,
        time: t(run),
        points: (0..n)
            .map(|i| {
                Point::new(format!("{name}_m"))
                    .tag("i", i.to_string())
                    .field("v", i)
                    .at(t(run))
            })
            .collect(),
        error: None,
        duration: Duration::from_millis(5),
        requests: 1,
        hosts: Default::default(),
        newest: Default::default(),
    }
}

fn count(db: &Influxd, m: &str) -> u64 {
    let v = db.query(&format!("SELECT count(v) FROM \"{m}\""));
    v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn down_then_up_spools_then_replays_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    let run1 = [outcome("alpha", 0, 3), outcome("beta", 0, 2)];
    let d = deliver(&run1, &down, Some(&spool), true).await;
    assert_eq!(d.total, 7, "5 points and 2 self points");
    assert_eq!((d.written, d.spooled, d.lost), (0, 7, 0), "{d:?}");
    assert!(matches!(d.error, Some(WriteError::Connect { .. })), "{d:?}");
    let recs = spool.records().unwrap();
    let labels: Vec<&str> = recs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["alpha", "beta", "self-metrics"]);

    let db = Influxd::start();
    let up = writer(&db.url(), DATABASE);
    let run2 = [outcome("alpha", 1, 3)];
    let d = deliver(&run2, &up, Some(&spool), true).await;
    assert_eq!((d.replayed, d.written, d.spooled), (7, 4, 0), "{d:?}");
    assert!(d.error.is_none());
    assert_eq!(spool.status().unwrap().records, 0);
    assert_eq!(count(&db, "alpha_m"), 6);
    assert_eq!(count(&db, "beta_m"), 2);
    let rows = db.rows("ubuntu_metrics_run");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter().all(|r| r["spool_dropped"] == json!(0)),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_type_conflict_dead_letters_only_the_refused_lines() {
    let db = Influxd::start();
    let w = writer(&db.url(), DATABASE);
    // A string `v` in the shard of the run's time: alpha's integer `v`
    // lines conflict (field types are fixed per shard).
    let ns = t(0).timestamp_nanos_opt().unwrap();
    w.write_batch(&format!("alpha_m,i=planted v=\"text\" {ns}\n"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    // alpha's 10 points but one conflict; beta is separate. The spool's
    // records go in one request, which InfluxDB refuses (400): they are
    // then written record by record, so beta is written and only alpha's
    // refused lines are dead-lettered, under alpha's label.
    let mut alpha = outcome("alpha", 1, 10);
    alpha.points[4] = Point::new("alpha_ok").field("v", 1i64).at(t(1));
    let beta = outcome("beta", 1, 3);
    let d = deliver(&[alpha, beta], &w, Some(&spool), false).await;
    assert_eq!(d.dead_lettered, 9, "{d:?}");
    assert_eq!(d.written, 4, "{d:?}");
    assert_eq!((d.spooled, d.lost), (0, 0));
    assert_eq!(count(&db, "beta_m"), 3);
    assert_eq!(count(&db, "alpha_ok"), 1);
    let text = std::fs::read_to_string(spool.dead_letter_path()).unwrap();
    assert!(text.contains("field type conflict"), "{text}");
    assert!(text.contains("alpha"), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("alpha_m,")), "{text}");
    assert_eq!(spool.status().unwrap().dead_letter_entries, {
        text.lines().filter(|l| l.starts_with('#')).count()
    });
}

#[tokio::test]
async fn missing_database_and_bad_credentials_keep_the_points() {
    let db = Influxd::start_with(Options {
        no_database: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let w = writer(&db.url(), "nosuchdb");
    let d = deliver(&[outcome("alpha", 0, 2)], &w, Some(&spool), false).await;
    assert_eq!((d.written, d.spooled), (0, 2), "{d:?}");
    let e = d.error.unwrap().to_string();
    assert!(e.contains("CREATE DATABASE"), "{e}");
    // Created: the next delivery writes the kept points.
    db.query_admin("CREATE DATABASE nosuchdb");
    let d = deliver(&[], &w, Some(&spool), false).await;
    assert_eq!(d.replayed, 2, "{d:?}");
    assert_eq!(spool.status().unwrap().points, 0);

    let auth = Influxd::start_with(Options {
        auth: true,
        ..Options::default()
    });
    let cfg = InfluxConfig {
        url: auth.url().into(),
        database: DATABASE.into(),
        username: Some("nobody".into()),
        ..InfluxConfig::default()
    };
    let w = Arc::new(
        InfluxWriter::new(&cfg, Some("wrong".into()))
            .unwrap()
            .with_retry_policy(fast()),
    );
    let d = deliver(&[outcome("beta", 0, 3)], &w, Some(&spool), false).await;
    assert_eq!((d.written, d.spooled), (0, 3), "{d:?}");
    assert!(d.error.unwrap().to_string().contains("credentials"));
}

#[tokio::test]
async fn without_a_spool_unwritable_points_are_counted_lost() {
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    let d = deliver(&[outcome("alpha", 0, 2)], &down, None, false).await;
    assert_eq!((d.lost, d.spooled), (2, 0));
}

#[tokio::test]
async fn replay_stops_at_the_first_record_influxdb_cannot_take_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    for run in 0..3 {
        deliver(&[outcome("alpha", run, 2)], &down, Some(&spool), false).await;
    }
    assert_eq!(spool.status().unwrap().records, 3);
    let r = replay(&spool, &down, Duration::ZERO).await;
    assert_eq!(r.written, 0);
    assert!(r.stopped.is_some());
    assert_eq!(spool.status().unwrap().records, 3);
    // Another process replaying: this one does not wait.
    let guard = replay_lock_of(&spool).await;
    let r = replay(&spool, &down, Duration::ZERO).await;
    assert!(r.busy);
    drop(guard);
    let db = Influxd::start();
    let r = replay(&spool, &writer(&db.url(), DATABASE), Duration::ZERO).await;
    assert_eq!((r.written, r.records), (6, 3), "{r:?}");
    assert_eq!(count(&db, "alpha_m"), 6);
}

/// InfluxDB 1.x keeps a backslash pair in a name as two backslashes (the
/// `influxdb-line-protocol` crate, following 2.x, would read one), keeps
/// tabs and NULs in names, and reads `\\` in a string field as one: the
/// encoder follows 1.x, and what it writes reads back exactly.
#[tokio::test]
async fn backslashes_tabs_and_nuls_in_names_are_kept_by_influxdb_1x() {
    let db = Influxd::start();
    let w = writer(&db.url(), DATABASE);
    let p = Point::new("mx\\\\y\t\0")
        .tag("k\\\\a\t", "v\\\\\\\\x\0")
        .field("f\\\\g", "s\\\\q\\")
        .at(t(0));
    let line = p.to_line().unwrap();
    assert_eq!(w.send(&[line]).await.written, 1);
    // A regular expression: a quoted name would read `\\` as an escape.
    let v = db.query("SELECT * FROM /^mx/");
    let series = &v["results"][0]["series"][0];
    assert_eq!(series["name"], json!("mx\\\\y\t\0"), "{v}");
    let cols: Vec<&str> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let row = &series["values"][0];
    let at = |c: &str| &row[cols.iter().position(|x| *x == c).unwrap()];
    assert_eq!(at("k\\\\a\t"), &json!("v\\\\\\\\x\0"), "{v}");
    assert_eq!(at("f\\\\g"), &json!("s\\\\q\\"), "{v}");
}

/// At the size limit the oldest records are dropped, and the next
/// self-metrics point reports how many points were dropped.
#[tokio::test]
async fn drops_at_the_size_limit_are_reported_in_the_self_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let big = spool_at(dir.path(), 1 << 20);
    let old: Vec<String> = (0..50)
        .map(|i| format!("old_m,i={i} v={i}i 1795521600000000000"))
        .collect();
    big.append(&[ubuntu_metrics::sinks::Batch {
        label: "old".into(),
        lines: old,
    }])
    .unwrap();
    // Room for the old record and 100 bytes more: the next run's points do
    // not fit beside it.
    let spool = spool_at(dir.path(), big.status().unwrap().bytes + 100);
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    let d = deliver(&[outcome("alpha", 0, 3)], &down, Some(&spool), true).await;
    assert_eq!(d.spooled, 4, "{d:?}");
    let st = spool.status().unwrap();
    assert_eq!((st.points, st.dropped_unreported), (4, 50), "{st:?}");

    let db = Influxd::start();
    let up = writer(&db.url(), DATABASE);
    let d = deliver(&[outcome("beta", 1, 1)], &up, Some(&spool), true).await;
    assert_eq!((d.replayed, d.written), (4, 2), "{d:?}");
    assert_eq!(count(&db, "old_m"), 0);
    let rows = db.rows("ubuntu_metrics_run");
    let dropped: Vec<(String, serde_json::Value)> = rows
        .iter()
        .map(|r| (r["collector"].to_string(), r["spool_dropped"].clone()))
        .collect();
    assert_eq!(
        dropped,
        [
            ("\"alpha\"".to_owned(), json!(0)),
            ("\"beta\"".to_owned(), json!(50))
        ],
        "{rows:?}"
    );
    assert_eq!(spool.status().unwrap().dropped_unreported, 0);
}

/// Drops at the size limit over many runs while InfluxDB is down, some of
/// them dropping the very self-metrics points that carried earlier counts:
/// once InfluxDB is back, the `spool_dropped` fields in it add up to the
/// points really dropped (every point is distinct, so the ones missing from
/// InfluxDB are exactly the dropped ones).
#[tokio::test]
async fn spool_dropped_adds_up_to_the_points_really_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    // The size of one run in the spool, then a spool for about 2.5 runs.
    let probe = spool_at(&dir.path().join("probe"), 1 << 20);
    deliver(&[outcome("alpha", 0, 20)], &down, Some(&probe), true).await;
    let one_run = probe.status().unwrap().bytes;
    let spool = spool_at(&dir.path().join("spool"), one_run * 5 / 2);
    let runs = 9;
    for run in 0..runs - 1 {
        deliver(&[outcome("alpha", run, 20)], &down, Some(&spool), true).await;
    }
    let db = Influxd::start();
    let up = writer(&db.url(), DATABASE);
    let d = deliver(&[outcome("alpha", runs - 1, 20)], &up, Some(&spool), true).await;
    assert!(d.error.is_none(), "{d:?}");
    assert_eq!(spool.status().unwrap().points, 0);
    let total = runs as u64 * 21;
    let self_rows = db.rows("ubuntu_metrics_run");
    let stored = count(&db, "alpha_m") + self_rows.len() as u64;
    let reported: u64 = self_rows
        .iter()
        .map(|r| r["spool_dropped"].as_u64().unwrap())
        .sum::<u64>()
        + spool.status().unwrap().dropped_unreported;
    println!(
        "spool_dropped: {total} points, {stored} stored, {} really dropped, {reported} reported",
        total - stored
    );
    assert!(total > stored, "the limit dropped nothing");
    assert_eq!(reported, total - stored);
}

/// The self-metrics `points` field counts the points handed to the writer:
/// not the ones that cannot even be encoded (a NaN).
#[tokio::test]
async fn self_metrics_points_count_only_points_handed_to_the_writer() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let mut o = outcome("alpha", 0, 3);
    o.points[1] = Point::new("alpha_m").field("v", f64::NAN).at(t(0));
    let d = deliver(&[o], &writer(&db.url(), DATABASE), Some(&spool), true).await;
    assert_eq!(d.unencodable.len(), 1, "{d:?}");
    assert_eq!(count(&db, "alpha_m"), 2);
    let rows = db.rows("ubuntu_metrics_run");
    assert_eq!(rows[0]["points"], json!(2), "{rows:?}");
}

/// Two processes delivering at once: the run's points are counted as
/// written whoever of the two replayed them, and nothing stays spooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_points_another_replay_wrote_counts_them_written() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let other = replay_lock_of(&spool).await;
    let run = {
        let spool = spool.clone();
        let w = writer(&db.url(), DATABASE);
        tokio::spawn(
            async move { deliver(&[outcome("alpha", 0, 5)], &w, Some(&spool), true).await },
        )
    };
    // The "other process" replays the spool, the run's segment with it.
    while spool.status().unwrap().points < 6 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(other);
    let r = replay(&spool, &writer(&db.url(), DATABASE), Duration::from_secs(5)).await;
    let d = run.await.unwrap();
    assert_eq!((d.written, d.spooled, d.lost), (6, 0, 0), "{d:?} {r:?}");
    assert_eq!(count(&db, "alpha_m"), 5);
}

/// Spooled records that write the same points again and again (same
/// measurement, tags and time), each write with a higher value: InfluxDB
/// keeps a point's last write, so the values it holds after a replay show
/// that the records were delivered in the order they were appended, with
/// one request per segment and with a batch size that splits the records
/// over many requests.
#[tokio::test]
async fn a_replay_delivers_the_records_in_the_order_appended() {
    let db = Influxd::start();
    for (batch_size, want_requests) in [(5000, 4), (2, 20)] {
        let m = format!("order_{batch_size}");
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_at(dir.path(), 1 << 20);
        let ns = t(0).timestamp_nanos_opt().unwrap();
        // 4 appends (segments) of 2 records of 5 lines: line n writes
        // point k = n % 3 with v = n.
        let mut n = 0;
        let mut segments = Vec::new();
        for a in 0..4 {
            let batches: Vec<ubuntu_metrics::sinks::Batch> = (0..2)
                .map(|r| ubuntu_metrics::sinks::Batch {
                    label: format!("append{a}-record{r}"),
                    lines: (0..5)
                        .map(|_| {
                            n += 1;
                            format!("{m},k={} v={}i {ns}", (n - 1) % 3, n - 1)
                        })
                        .collect(),
                })
                .collect();
            segments.push(spool.append(&batches).unwrap().segment.unwrap());
        }
        let cfg = InfluxConfig {
            url: db.url().into(),
            database: DATABASE.to_owned(),
            batch_size,
            timeout: TimeSpan::parse("5s").unwrap(),
            ..InfluxConfig::default()
        };
        let w = Arc::new(
            InfluxWriter::new(&cfg, None)
                .unwrap()
                .with_retry_policy(fast()),
        );
        let before = db.write_requests();
        let r = replay(&spool, &w, Duration::ZERO).await;
        let requests = db.write_requests() - before;
        assert_eq!((r.written, r.records), (40, 8), "{r:?}");
        assert!(r.stopped.is_none() && r.error.is_none(), "{r:?}");
        let replayed: Vec<&String> = r.segments.iter().map(|(s, _, _)| s).collect();
        assert_eq!(replayed, segments.iter().collect::<Vec<_>>(), "{r:?}");
        assert_eq!(requests, want_requests, "batch size {batch_size}");
        assert_eq!(spool.status().unwrap().records, 0);
        // Three points, each holding its last write: v = 39, 37, 38.
        let mut got: Vec<(String, i64)> = db
            .rows(&m)
            .iter()
            .map(|r| {
                (
                    r["k"].as_str().unwrap().to_owned(),
                    r["v"].as_i64().unwrap(),
                )
            })
            .collect();
        got.sort();
        let want = [("0", 39), ("1", 37), ("2", 38)].map(|(k, v)| (k.to_owned(), v));
        assert_eq!(got, want, "batch size {batch_size}");
    }
}

/// The daemon's write-ahead step: `keep` spools a run without writing it
/// and says what it kept and refused; the output's backlog and status see
/// what waits (an output without a spool has no backlog); the output is
/// known by its name.
#[tokio::test]
async fn keep_spools_the_run_and_the_backlog_and_status_show_it() {
    use ubuntu_metrics::sinks::Output;
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    let out = InfluxOutput::new(down.clone(), Some(spool.clone()));
    assert_eq!(Output::name(&out), "influxdb");
    assert_eq!(Output::label(&out), "[influxdb]");
    assert_eq!(Output::status(&out).await.unwrap().records, 0);
    assert_eq!(Output::backlog(&out).await.map(|s| s.records), Some(0));

    let mut run = [outcome("alpha", 0, 3)];
    // No field: refused before it reaches the spool.
    run[0]
        .points
        .push(Point::new("alpha_m").tag("i", "x").at(t(0)));
    let d = runner::keep_in(&run, &out, false).await;
    assert_eq!((d.total, d.spooled, d.written), (3, 3, 0), "{d:?}");
    assert_eq!(d.unencodable.len(), 1, "{d:?}");
    assert!(d.error.is_none(), "nothing was written: {d:?}");

    let waiting = Output::backlog(&out).await.unwrap();
    assert_eq!((waiting.records, waiting.points), (1, 3), "{waiting:?}");
    let status = Output::status(&out).await.unwrap();
    assert_eq!((status.records, status.points), (1, 3), "{status:?}");
    assert_eq!(spool.status().unwrap().points, 3);

    let without = InfluxOutput::new(down, None);
    assert!(Output::backlog(&without).await.is_none());
    assert_eq!(Output::status(&without).await.unwrap().records, 0);
}

/// Without a spool, a run is written directly: every point counted
/// written (its self-metrics too), and what InfluxDB refuses for good is
/// lost (there is no dead-letter file), not counted written.
#[tokio::test]
async fn without_a_spool_a_run_is_written_directly_and_refused_points_are_lost() {
    let db = Influxd::start();
    let w = writer(&db.url(), DATABASE);
    let d = deliver(&[outcome("alpha", 0, 3)], &w, None, true).await;
    assert_eq!(
        (d.total, d.written, d.lost),
        (4, 4, 0),
        "3 points and a self point: {d:?}"
    );
    assert!(d.error.is_none() && d.spool_errors.is_empty(), "{d:?}");
    assert_eq!(count(&db, "alpha_m"), 3);
    assert_eq!(db.rows("ubuntu_metrics_run").len(), 1);

    // A string `v` where the shard has an integer: beta is refused for
    // good, gamma (another measurement, another batch) written.
    let ns = t(1).timestamp_nanos_opt().unwrap();
    w.write_batch(&format!("beta_m,i=planted v=\"text\" {ns}\n"))
        .await
        .unwrap();
    let d = deliver(
        &[outcome("beta", 1, 2), outcome("gamma", 1, 5)],
        &w,
        None,
        false,
    )
    .await;
    assert_eq!(
        (d.total, d.written, d.lost, d.dead_lettered),
        (7, 5, 2, 0),
        "{d:?}"
    );
    assert_eq!(count(&db, "gamma_m"), 5);
}

/// A spool that cannot take the run (its directory gone): the run is
/// written directly, the spool's error and the refused points reported.
#[tokio::test]
async fn a_spool_that_cannot_take_the_run_has_it_written_directly() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let spool = spool_at(&spool_dir, 1 << 20);
    std::fs::remove_dir_all(&spool_dir).unwrap();
    std::fs::write(&spool_dir, "not a directory").unwrap();
    let mut o = outcome("alpha", 0, 4);
    o.points
        .push(Point::new("alpha_m").field("v", f64::NAN).at(t(0)));
    let d = deliver(&[o], &writer(&db.url(), DATABASE), Some(&spool), false).await;
    assert_eq!(
        (d.total, d.written, d.spooled, d.lost),
        (4, 4, 0, 0),
        "{d:?}"
    );
    assert_eq!(d.unencodable.len(), 1, "{d:?}");
    assert_eq!(d.spool_errors.len(), 1, "{d:?}");
    assert_eq!(count(&db, "alpha_m"), 4);
}

/// A replay waits (up to its `wait`) for another process's replay to end,
/// then writes the spool, and says once what it wrote; a replay with
/// nothing to write says nothing.
#[tokio::test]
async fn a_replay_waits_for_another_replay_then_says_what_it_wrote() {
    let (log, _logging) = log_capture::capture(tracing::Level::INFO);
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let w = writer(&db.url(), DATABASE);
    let r = replay(&spool, &w, Duration::ZERO).await;
    assert_eq!((r.written, r.busy), (0, false), "{r:?}");
    assert!(!log.text().contains("spooled points"), "{}", log.text());

    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);
    let d = deliver(&[outcome("alpha", 0, 3)], &down, Some(&spool), false).await;
    assert_eq!(d.spooled, 3, "{d:?}");
    // Another process replays: this one waits for it (however long the
    // machine takes to get there, the replay is still waiting).
    let other = replay_lock_of(&spool).await;
    let waiting = {
        let (spool, w) = (spool.clone(), w.clone());
        tokio::spawn(async move { replay(&spool, &w, Duration::from_secs(600)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the replay did not wait for the other one"
    );
    drop(other);
    let r = waiting.await.unwrap();
    assert_eq!((r.written, r.busy), (3, false), "{r:?}");
    assert_eq!(count(&db, "alpha_m"), 3);
    let said = log.text();
    assert_eq!(
        said.matches("wrote 3 spooled points to").count(),
        1,
        "{said}"
    );
}

/// What a replay sends. InfluxDB unable to take a write now (503): the
/// segment's records go in one request, retried by the writer's policy,
/// and the replay stops there, keeping everything (it does not go on to
/// write the records one by one). A segment of one record refused for
/// good (400): that record alone is sent, never first "together".
#[tokio::test]
async fn a_replay_sends_a_segment_once_and_stops_when_influxdb_cannot_take_it() {
    use common::rogue::{Rogue, response};
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let down = writer(&format!("http://127.0.0.1:{}", dead_port()), DATABASE);

    let busy = Rogue::start(|_| {
        Some(response(
            "503 Service Unavailable",
            &[("Content-Type", "application/json")],
            b"{\"error\":\"busy\"}",
        ))
    });
    let spool = spool_at(&dir.path().join("busy"), 1 << 20);
    let d = deliver(
        &[outcome("alpha", 0, 3), outcome("beta", 0, 2)],
        &down,
        Some(&spool),
        false,
    )
    .await;
    assert_eq!(d.spooled, 5, "{d:?}");
    let r = replay(&spool, &writer(&busy.url(), DATABASE), Duration::ZERO).await;
    assert!(r.stopped.is_some(), "{r:?}");
    assert_eq!((r.written, r.dead_lettered), (0, 0), "{r:?}");
    // One request, retried twice (`fast()`).
    assert_eq!(busy.requests.load(SeqCst), 3);
    assert_eq!(spool.status().unwrap().points, 5);

    let refusing = || {
        Rogue::start(|_| {
            Some(response(
                "400 Bad Request",
                &[("Content-Type", "application/json")],
                b"{\"error\":\"unable to parse 'alpha_m': bad timestamp\"}",
            ))
        })
    };
    let spool = spool_at(&dir.path().join("refusing"), 1 << 20);
    let d = deliver(&[outcome("alpha", 0, 3)], &down, Some(&spool), false).await;
    assert_eq!(d.spooled, 3, "{d:?}");
    let lines = spool.records().unwrap()[0].lines.clone();
    let replayed = refusing();
    let r = replay(&spool, &writer(&replayed.url(), DATABASE), Duration::ZERO).await;
    assert_eq!((r.written, r.dead_lettered), (0, 3), "{r:?}");
    // As many requests as the writer takes to narrow the record's lines
    // down to the refused ones, sending it alone: no more.
    let alone = refusing();
    let report = writer(&alone.url(), DATABASE).send(&lines).await;
    assert_eq!(report.written, 0);
    assert!(alone.requests.load(SeqCst) > 1);
    assert_eq!(replayed.requests.load(SeqCst), alone.requests.load(SeqCst));
}

/// A run of one collector (one record in its segment, written on its own)
/// counts its points written, not replayed from the spool.
#[tokio::test]
async fn a_run_of_one_record_counts_its_points_written_not_replayed() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_at(dir.path(), 1 << 20);
    let w = writer(&db.url(), DATABASE);
    let d = deliver(&[outcome("alpha", 0, 3)], &w, Some(&spool), false).await;
    assert_eq!((d.written, d.replayed, d.spooled), (3, 0, 0), "{d:?}");
    assert_eq!(count(&db, "alpha_m"), 3);
}
