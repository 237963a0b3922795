//! Conditional requests (issue 17, item 1): a document whose last answer
//! had an `ETag` or `Last-Modified` is asked for with `If-None-Match` /
//! `If-Modified-Since`; a `304` reuses the body kept in the state
//! directory, and gives exactly the points of a full answer. The fixture
//! server answers as Apache and lazr.restful do.

mod common;

use common::*;
use std::path::Path;

/// `run --all --dry-run` at the fixtures' time: its points.
fn dry_run(config: &Path, state: &Path) -> String {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(["run", "--all", "--dry-run", "--now", NOW])
        .env("UBUNTU_METRICS_STATE_DIR", state)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn unchanged_documents_come_back_as_304_with_the_same_points() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_copy(dir.path());
    let server = fixture_server::FixtureServer::start(&root)
        .unwrap()
        .with_rsync()
        .unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let state = dir.path().join("state");

    // A first round: every document whole, kept with its validators.
    let first = dry_run(&config, &state);
    assert!(first.lines().count() > 150, "{first}");
    assert_eq!(server.not_modified(), 0);
    let sent_first = server.bytes_sent();
    let kept = std::fs::read_dir(state.join("http-cache")).unwrap().count();
    assert!(kept > 40, "{kept} files kept");

    // A second round, nothing changed: 304s, the same points, a fraction
    // of the bytes.
    let second = dry_run(&config, &state);
    assert_eq!(
        second, first,
        "the points of a 304 are those of a full answer"
    );
    assert!(
        server.not_modified() > 30,
        "{} answers 304",
        server.not_modified()
    );
    let sent_second = server.bytes_sent() - sent_first;
    assert!(
        sent_second * 10 < sent_first,
        "second round {sent_second} bytes, first {sent_first}"
    );

    // A document that changes is fetched whole again: new points.
    let before = server.not_modified();
    let sponsoring = root.join("sponsoring");
    let file = std::fs::read_dir(&sponsoring)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let entries: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = entries.as_array().map_or(0, Vec::len);
    assert!(n > 1, "{}", file.display());
    let fewer = serde_json::Value::Array(entries.as_array().unwrap()[1..].to_vec());
    std::fs::write(&file, fewer.to_string()).unwrap();
    let third = dry_run(&config, &state);
    assert_ne!(third, first);
    let count = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("sponsoring_queue_stats,report=sponsoring "))
            .map(str::to_owned)
    };
    assert!(
        count(&third)
            .unwrap()
            .contains(&format!("count={}i", n - 1)),
        "{:?}",
        count(&third)
    );
    // The other documents were still not modified.
    assert!(server.not_modified() - before > 30);
}

/// The `.json` description in `http-cache` of the kept answer whose URL
/// ends with `suffix`: its path and content.
fn kept_entry(state: &Path, suffix: &str) -> (std::path::PathBuf, serde_json::Value) {
    std::fs::read_dir(state.join("http-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .find_map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            v["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(suffix))
                .then_some((p, v))
        })
        .unwrap_or_else(|| panic!("no kept answer for {suffix}"))
}

/// Issue 22, item 5: a kept body that is a symbolic link (to a file the
/// daemon can read and the planter cannot) is never read, even with a
/// description matching the file's length and CRC: the document is asked
/// for in full, and InfluxDB gets the upstream's points, not the file's.
#[test]
fn a_kept_body_that_is_a_symlink_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = server();
    let db = common::influxd::Influxd::start();
    let config = write_config(dir.path(), &server, &db.url());
    let state = dir.path().join("state");
    let run = || {
        let out = bin()
            .arg("--config")
            .arg(&config)
            .args(["run", "--now", NOW, "sponsoring"])
            .env("UBUNTU_METRICS_STATE_DIR", &state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    run();
    let (meta, mut kept) = kept_entry(&state, "general.json");
    // A file the planter wants read: a queue of its own.
    let target = dir.path().join("private.json");
    let private = br#"[{"date_queued": "11/20/26", "sets": ["planted-leak"], "source_package": "x", "type": "bug"}]"#;
    std::fs::write(&target, private).unwrap();
    let body = meta.with_extension("body");
    std::fs::remove_file(&body).unwrap();
    std::os::unix::fs::symlink(&target, &body).unwrap();
    kept["len"] = private.len().into();
    kept["crc32"] = crc32fast::hash(private).into();
    std::fs::write(&meta, kept.to_string()).unwrap();

    let before = server.not_modified();
    run();
    let rows = db.rows("sponsoring_queue_stats");
    assert!(
        !rows.iter().any(|r| r["report"] == "planted-leak"),
        "the linked file was written into InfluxDB: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["report"] == "sponsoring" && r["count"] == 5),
        "{rows:?}"
    );
    assert_eq!(
        server.not_modified(),
        before,
        "the link was used after a 304"
    );
    assert_eq!(std::fs::read(&target).unwrap(), private);
}

/// A loopback HTTP server for one document at `/doc`: `answer` gets the
/// request's `If-None-Match` (if any) and the number of the request, and
/// returns the raw response. Every request's `If-None-Match` is recorded.
struct Upstream {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl Upstream {
    fn start(answer: impl Fn(Option<&str>, usize) -> Vec<u8> + Send + 'static) -> Upstream {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut inm = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("if-none-match")
                    {
                        inm = Some(v.trim().to_owned());
                    }
                }
                let n = {
                    let mut s = log.lock().unwrap();
                    s.push(inm.clone());
                    s.len()
                };
                let _ = conn.write_all(&answer(inm.as_deref(), n));
            }
        });
        Upstream { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/doc", self.port)
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(status: &str, etag: Option<&str>, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\nContent-Type: text/plain\r\n",
        body.len()
    );
    if let Some(e) = etag {
        out.push_str(&format!("ETag: {e}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn client(state: &Path) -> ubuntu_metrics::sources::http::Http {
    let t = std::time::Duration::from_secs(20);
    ubuntu_metrics::sources::http::Http::new(t, t)
        .unwrap()
        .with_conditional_requests(&state.join("http-cache"))
}

/// Issue 22, item 5: an `ETag` of 70 KB is not kept (sent back, it made
/// every later request fail with 431 until the entry expired): the next
/// request is unconditional and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_etag_is_not_kept_and_the_next_request_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let huge = format!("\"{}\"", "e".repeat(70_000));
    let tag = huge.clone();
    let up = Upstream::start(move |inm, _| match inm {
        Some(v) if v.len() > 8192 => answer("431 Request Header Fields Too Large", None, ""),
        Some(v) if v == tag => answer("304 Not Modified", Some(&tag), ""),
        _ => answer("200 OK", Some(&tag), "the document"),
    });
    let http = client(dir.path());
    for round in 0..3 {
        let got = http.for_run().get_text(&up.url()).await;
        assert_eq!(
            got.as_deref().map_err(|e| e.to_string()),
            Ok("the document"),
            "round {round}"
        );
    }
    assert_eq!(up.seen(), vec![None, None, None]);
}

/// Issue 22, item 5: a conditional request answered with a 4xx drops the
/// entry: the following request is unconditional (the validators are what
/// the server refused, or the document is gone).
#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_to_a_conditional_request_drops_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(|inm, n| match (inm, n) {
        (Some(_), _) => answer("400 Bad Request", None, "bad validators"),
        _ => answer("200 OK", Some("\"v1\""), "the document"),
    });
    let http = client(dir.path());
    assert_eq!(
        http.for_run().get_text(&up.url()).await.unwrap(),
        "the document"
    );
    let e = http.for_run().get_text(&up.url()).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 400"), "{e}");
    assert_eq!(
        http.for_run().get_text(&up.url()).await.unwrap(),
        "the document"
    );
    assert_eq!(
        up.seen(),
        vec![None, Some("\"v1\"".to_owned()), None],
        "the request after the 400 was conditional again"
    );
}

/// Issue 22, item 5: an entry without the length and CRC-32 of its body
/// (one planted, or written by a version that did not record them) is
/// dropped: the document is asked for in full, not the body served.
#[tokio::test(flavor = "multi_thread")]
async fn an_entry_without_a_checksum_is_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(|inm, _| match inm {
        Some("\"v1\"") => answer("304 Not Modified", Some("\"v1\""), ""),
        _ => answer("200 OK", Some("\"v1\""), "the document"),
    });
    let http = client(dir.path());
    assert_eq!(
        http.for_run().get_text(&up.url()).await.unwrap(),
        "the document"
    );
    let (meta, mut kept) = kept_entry(dir.path(), "/doc");
    let obj = kept.as_object_mut().unwrap();
    assert!(obj.remove("len").is_some() && obj.remove("crc32").is_some());
    std::fs::write(&meta, kept.to_string()).unwrap();
    std::fs::write(meta.with_extension("body"), "a planted document").unwrap();
    assert_eq!(
        http.for_run().get_text(&up.url()).await.unwrap(),
        "the document"
    );
    assert_eq!(up.seen(), vec![None, None]);
    // Kept again, with its checksum: the next request is conditional.
    assert_eq!(
        http.for_run().get_text(&up.url()).await.unwrap(),
        "the document"
    );
    assert_eq!(up.seen()[2].as_deref(), Some("\"v1\""));
}

/// A tail (`Range: bytes=-N`) is never asked conditionally, even of a
/// document kept whole: a matching `ETag` would get a 304, and the tail's
/// reader the whole document instead of its last bytes.
#[tokio::test]
async fn a_tail_of_a_kept_document_is_still_only_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let text: String = (0..100).map(|i| format!("line {i:03}\n")).collect();
    std::fs::write(root.join("report.csv"), &text).unwrap();
    let server = fixture_server::FixtureServer::start(&root).unwrap();
    let url = server.url("/report.csv");
    let http = ubuntu_metrics::sources::http::Http::new(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(30),
    )
    .unwrap()
    .with_conditional_requests(&dir.path().join("http-cache"));

    assert_eq!(http.get_text(&url).await.unwrap(), text);
    // Kept: asked again, the document is not modified.
    assert_eq!(http.get_text(&url).await.unwrap(), text);
    assert_eq!(server.not_modified(), 1);

    let tail = http.get_tail(&url, 18).await.unwrap();
    assert_eq!(tail.body, "line 098\nline 099\n");
    assert!(!tail.from_start);
    assert_eq!(server.not_modified(), 1, "the tail was asked conditionally");
}
