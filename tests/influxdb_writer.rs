//! The InfluxDB writer against a real influxd: tricky values come back
//! verbatim, batches are split, and the server's refusals become clear errors.

mod common;

use chrono::TimeZone;
use common::influxd::{DATABASE, Influxd, Options};
use serde_json::json;
use ubuntu_metrics::Point;
use ubuntu_metrics::config::InfluxConfig;
use ubuntu_metrics::model::point::encode_lines;
use ubuntu_metrics::model::timespan::TimeSpan;
use ubuntu_metrics::sinks::influxdb::{InfluxWriter, WriteError};

fn writer_for(url: &str, database: &str) -> InfluxWriter {
    let cfg = InfluxConfig {
        url: url.into(),
        database: database.to_owned(),
        timeout: TimeSpan::parse("5s").unwrap(),
        ..InfluxConfig::default()
    };
    InfluxWriter::new(&cfg, None).unwrap()
}

fn t(sec: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 24, 12, 0, sec)
        .unwrap()
}

#[tokio::test]
async fn tricky_values_read_back_verbatim() {
    let db = Influxd::start();
    let w = writer_for(&db.url(), DATABASE);
    let tricky = [
        "with space",
        "comma,inside",
        "equals=inside",
        "quote\"inside",
        "back\\slash",
        "ünïcødé ☃",
        "all , = \" mixed",
    ];
    let mut points = Vec::new();
    for (i, v) in tricky.iter().enumerate() {
        points.push(
            Point::new("tricky measurement,x")
                .tag("tag key, =", *v)
                .field("field key, =", *v)
                .field("n", i as i64)
                .field("f", 0.1 + i as f64)
                .field("b", i % 2 == 0)
                .field("multi", "line one\nline two \\ \"q\"")
                .at(t(i as u32)),
        );
    }
    let (lines, errors) = encode_lines(&points);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(w.write_lines(&lines).await.unwrap(), tricky.len());

    eprintln!("{}", db.query("SELECT * FROM \"tricky measurement,x\""));
    let rows = db.rows("tricky measurement,x");
    assert_eq!(rows.len(), tricky.len(), "{rows:?}");
    for (i, v) in tricky.iter().enumerate() {
        let ts = t(i as u32).timestamp_nanos_opt().unwrap();
        let row = rows
            .iter()
            .find(|r| r["time"] == json!(ts))
            .unwrap_or_else(|| panic!("no row at {ts}: {rows:?}"));
        assert_eq!(row["tag key, ="], json!(v));
        assert_eq!(row["field key, ="], json!(v));
        assert_eq!(row["n"], json!(i));
        assert_eq!(row["f"].as_f64().unwrap(), 0.1 + i as f64);
        assert_eq!(row["b"], json!(i % 2 == 0));
        assert_eq!(row["multi"], json!("line one\nline two \\ \"q\""));
    }
    let types = db.field_types("tricky measurement,x");
    for (k, ty) in [
        ("n", "integer"),
        ("f", "float"),
        ("b", "boolean"),
        ("multi", "string"),
    ] {
        assert!(
            types.contains(&(k.to_owned(), ty.to_owned())),
            "{k} should be {ty}: {types:?}"
        );
    }
}

#[tokio::test]
async fn large_writes_are_batched_and_all_arrive() {
    let db = Influxd::start();
    let w = writer_for(&db.url(), DATABASE);
    let points: Vec<Point> = (0..12_001)
        .map(|i| {
            Point::new("bulk")
                .tag("k", format!("{}", i % 7))
                .field("v", i)
                .at(t(0) + chrono::Duration::microseconds(i))
        })
        .collect();
    let (lines, _) = encode_lines(&points);
    assert_eq!(w.write_lines(&lines).await.unwrap(), 12_001);
    let v = db.query("SELECT count(v) FROM bulk");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], json!(12_001));
}

#[tokio::test]
async fn missing_database_says_how_to_create_it() {
    let db = Influxd::start_with(Options {
        no_database: true,
        ..Options::default()
    });
    let w = writer_for(&db.url(), "nosuchdb");
    let err = w.write_batch("m v=1i 1\n").await.unwrap_err();
    assert!(
        matches!(err, WriteError::DatabaseNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("CREATE DATABASE") && msg.contains("nosuchdb"),
        "{msg}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn field_type_conflict_is_a_400_quoting_the_server() {
    let db = Influxd::start();
    let w = writer_for(&db.url(), DATABASE);
    w.write_batch("conflict v=1i 1\n").await.unwrap();
    let err = w.write_batch("conflict v=1.5 2\n").await.unwrap_err();
    match &err {
        WriteError::BadRequest { message } => {
            assert!(message.contains("field type conflict"), "{message}")
        }
        other => panic!("expected BadRequest, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn bad_credentials_are_named() {
    let db = Influxd::start_with(Options {
        auth: true,
        no_database: true,
        ..Options::default()
    });
    let cfg = InfluxConfig {
        url: db.url().into(),
        username: Some("nobody".into()),
        ..InfluxConfig::default()
    };
    let w = InfluxWriter::new(&cfg, Some("wrong-password-123".into())).unwrap();
    let err = w.write_batch("m v=1i 1\n").await.unwrap_err();
    assert!(
        matches!(err, WriteError::Auth { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("credentials") && !msg.contains("wrong-password-123"),
        "{msg}"
    );
}

#[tokio::test]
async fn connection_refused_and_timeout_are_retryable() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = writer_for(&format!("http://127.0.0.1:{port}"), DATABASE);
    let err = w.write_batch("m v=1i 1\n").await.unwrap_err();
    assert!(matches!(err, WriteError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());

    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = InfluxConfig {
        url: format!("http://{}", silent.local_addr().unwrap()).into(),
        timeout: TimeSpan::parse("500ms").unwrap(),
        ..InfluxConfig::default()
    };
    let w = InfluxWriter::new(&cfg, None).unwrap();
    let err = w.write_batch("m v=1i 1\n").await.unwrap_err();
    assert!(matches!(err, WriteError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    drop(silent);
}

/// A proxy answering for InfluxDB: a redirect to its login page, a 200
/// with an HTML page, a 400 or 413 with an HTML page. None of them stores
/// the points: they stay in the spool (nothing dead-lettered), the message
/// says what answered and what to fix; a real influxd then gets them all.
#[tokio::test]
async fn a_proxy_answering_for_influxdb_never_counts_as_written_nor_refused() {
    use common::rogue::{Rogue, response};
    use std::sync::Arc;
    use ubuntu_metrics::runner::{self, Outcome, Status};
    use ubuntu_metrics::sinks::influxdb::RetryPolicy;
    use ubuntu_metrics::sinks::influxdb::output::InfluxOutput;
    use ubuntu_metrics::sinks::spool::Spool;

    let html = b"<html><body>Please log in</body></html>".as_slice();
    let cases: Vec<(&str, Rogue, &str)> = vec![
        (
            "302 to /login",
            Rogue::start(move |r| {
                Some(if r.path.starts_with("/login") {
                    response("200 OK", &[("Content-Type", "text/html")], html)
                } else {
                    response("302 Found", &[("Location", "/login?next=/write")], b"")
                })
            }),
            "/login",
        ),
        (
            "200 with HTML",
            Rogue::start(move |_| Some(response("200 OK", &[("Content-Type", "text/html")], html))),
            "X-Influxdb-Version",
        ),
        (
            "400 with HTML",
            Rogue::start(move |_| {
                Some(response(
                    "400 Bad Request",
                    &[("Content-Type", "text/html")],
                    html,
                ))
            }),
            "HTTP 400",
        ),
        (
            "413 with HTML",
            Rogue::start(move |_| {
                Some(response(
                    "413 Payload Too Large",
                    &[("Content-Type", "text/html")],
                    html,
                ))
            }),
            "HTTP 413",
        ),
    ];
    let db = Influxd::start();
    for (i, (what, proxy, expect)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).unwrap());
        let w = writer_for(&proxy.url(), DATABASE).with_retry_policy(RetryPolicy {
            retries: 1,
            base: std::time::Duration::from_millis(10),
            max: std::time::Duration::from_millis(10),
            jitter: true,
        });
        let out = InfluxOutput::new(Arc::new(w), Some(spool.clone()));
        let outcome = Outcome {
            name: "alpha".into(),
            status: Status::Ok,
            time: t(i as u32),
            points: (0..3)
                .map(|k| {
                    Point::new("proxied")
                        .tag("k", k.to_string())
                        .field("v", k)
                        .at(t(i as u32))
                })
                .collect(),
            error: None,
            duration: std::time::Duration::from_millis(1),
            requests: 1,
            hosts: Default::default(),
            newest: Default::default(),
        };
        let d = runner::deliver_to(&[outcome], &out, true).await;
        assert_eq!(
            (d.written, d.dead_lettered, d.lost, d.spooled),
            (0, 0, 0, 4),
            "{what}: {d:?}"
        );
        let e = d.error.expect("the reason is given").to_string();
        assert!(e.contains(expect) && e.contains("spool"), "{what}: {e}");
        assert!(proxy.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        assert!(!spool.dead_letter_path().exists(), "{what}: dead-lettered");
        // The real InfluxDB then takes every kept point.
        let up = InfluxOutput::new(Arc::new(writer_for(&db.url(), DATABASE)), Some(spool));
        let r = up.replay(std::time::Duration::ZERO).await;
        assert_eq!(r.written, 4, "{what}: {r:?}");
    }
    assert_eq!(db.rows("proxied").len(), 12);
}

/// `send` writes in batches of `batch_size`; a batch the server refuses is
/// split in halves until only the refused line is left, which is reported
/// with the server's answer; everything else is written, once.
#[tokio::test]
async fn send_narrows_a_refused_batch_down_to_the_refused_line() {
    let db = Influxd::start();
    let cfg = InfluxConfig {
        url: db.url().as_str().into(),
        database: DATABASE.to_owned(),
        batch_size: 4,
        ..InfluxConfig::default()
    };
    let w = InfluxWriter::new(&cfg, None).unwrap();
    let mut lines: Vec<String> = (0..10)
        .map(|i| format!("sendt v={i}i {}", 1_795_521_600_000_000_000u64 + i))
        .collect();
    lines[6] = "sendt v= 6".into();
    let report = w.send(&lines).await;
    assert_eq!(report.written, 9, "{report:?}");
    assert!(report.kept.is_none(), "{report:?}");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].0, ["sendt v= 6"]);
    assert!(matches!(report.refused[0].1, WriteError::BadRequest { .. }));
    // Requests: [0,4) ok, [4,8) refused, [4,6) ok, [6,8) refused, [6,7)
    // refused, [7,8) ok, [8,10) ok.
    let (log, dropped) = w.take_write_log();
    let outcomes: Vec<(usize, &str)> = log.iter().map(|s| (s.points, s.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (4, "ok"),
            (4, "bad_request"),
            (2, "ok"),
            (2, "bad_request"),
            (1, "bad_request"),
            (1, "ok"),
            (2, "ok")
        ]
    );
    assert_eq!(dropped, 0);
    let v = db.query("SELECT count(v) FROM sendt");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], json!(9));
}

/// A failure that is not the data's fault (no server) stops the sending:
/// the failed batch and every one after it are kept, with the reason,
/// after the policy's retries (each one a request).
#[tokio::test]
async fn send_keeps_every_line_from_the_first_batch_the_server_cannot_take() {
    let cfg = InfluxConfig {
        url: "http://127.0.0.1:1".into(),
        database: DATABASE.to_owned(),
        batch_size: 2,
        ..InfluxConfig::default()
    };
    let w = InfluxWriter::new(&cfg, None).unwrap().with_retry_policy(
        ubuntu_metrics::support::retry::RetryPolicy {
            retries: 2,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(1),
            jitter: false,
        },
    );
    let lines: Vec<String> = (0..5).map(|i| format!("kept v={i}i {i}")).collect();
    let report = w.send(&lines).await;
    assert_eq!(report.written, 0);
    assert!(report.refused.is_empty());
    let (kept, e) = report.kept.expect("kept");
    assert_eq!(kept, lines);
    assert!(e.is_retryable(), "{e}");
    let (log, _) = w.take_write_log();
    assert_eq!(
        log.len(),
        3,
        "the first try and 2 retries of the first batch"
    );
}

/// The narrowing of refused lines stops after 64 extra requests (32
/// splits): past it, what is still refused is reported as it is. 64 bad
/// lines in one batch: 1 + 64 requests, 33 refused pieces holding all 64.
#[tokio::test]
async fn send_stops_narrowing_after_64_extra_requests() {
    let db = Influxd::start();
    let cfg = InfluxConfig {
        url: db.url().as_str().into(),
        database: DATABASE.to_owned(),
        batch_size: 64,
        ..InfluxConfig::default()
    };
    let w = InfluxWriter::new(&cfg, None).unwrap();
    let lines: Vec<String> = (0..64).map(|i| format!("bad v= {i}")).collect();
    let report = w.send(&lines).await;
    assert_eq!(report.written, 0);
    assert!(report.kept.is_none());
    assert_eq!(report.refused.len(), 33, "{report:?}");
    let refused: Vec<String> = report.refused.iter().flat_map(|(l, _)| l.clone()).collect();
    assert_eq!(refused, lines, "every line refused once, in order");
    assert_eq!(w.take_write_log().0.len(), 65);
}

/// A server whose certificate is not trusted: a TLS error naming the
/// output's ca_file, kept (not retried, not refused); a connection
/// refused is a connection error; neither shows the URL's credentials.
#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error_and_no_server_a_connection_error() {
    use rcgen::{CertificateParams, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("self.pem"), dir.path().join("self.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let db = Influxd::start_with(Options {
        https: Some((cert_path, key_path)),
        ..Options::default()
    });
    let with_user = db
        .url()
        .replacen("https://", "https://collector:s3cret@", 1);
    let w = InfluxWriter::for_output(
        "vm",
        &InfluxConfig {
            url: with_user.as_str().into(),
            ..InfluxConfig::default()
        },
        None,
    )
    .unwrap();
    let e = w.write_batch("m v=1i 1\n").await.unwrap_err();
    assert!(matches!(e, WriteError::Tls { .. }), "{e:?}");
    assert_eq!(e.kind(), "tls");
    assert!(!e.is_retryable());
    let text = e.to_string();
    assert!(
        text.contains("outputs.vm.ca_file") && !text.contains("s3cret"),
        "{text}"
    );

    let w = writer_for("http://collector:s3cret@127.0.0.1:1", DATABASE);
    let e = w.write_batch("m v=1i 1\n").await.unwrap_err();
    assert!(matches!(e, WriteError::Connect { .. }), "{e:?}");
    assert!(e.is_retryable());
    let text = e.to_string();
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("s3cret"),
        "{text}"
    );
    // The causes, each once, joined by ": ".
    assert!(!text.contains(": : ") && !text.ends_with(": "), "{text}");
}
