//! Launchpad's `Retry-After` and collections that never end (issue 10,
//! item 14), against a purpose-built misbehaving Launchpad on loopback:
//! a wait within the run's budget is honoured (seconds or an HTTP date), a
//! longer one fails at once saying when to come back (no retries), and a
//! collection that keeps linking to a next page stops at its total_size.

mod common;

use common::{NOW, bin};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ubuntu_metrics::sources::SourceError;
use ubuntu_metrics::sources::http::Http;
use ubuntu_metrics::sources::launchpad::Launchpad;

struct BadLaunchpad {
    base: String,
    /// Requests per path (without the query).
    requests: Arc<Mutex<HashMap<String, u64>>>,
}

impl BadLaunchpad {
    fn start() -> BadLaunchpad {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let requests: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (b, r) = (base.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (b, r) = (b.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let target = line.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let n = {
                        let mut m = r.lock().unwrap();
                        let c = m.entry(path.to_owned()).or_default();
                        *c += 1;
                        *c
                    };
                    let _ = conn.write_all(respond(&b, path, query, n).as_bytes());
                });
            }
        });
        BadLaunchpad { base, requests }
    }

    fn requests(&self, path: &str) -> u64 {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn http(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// `n`: the how-manieth request to `path`.
fn respond(base: &str, path: &str, query: &str, n: u64) -> String {
    let ubuntu = json!({"name": "ubuntu"}).to_string();
    match path {
        // 429, come back in 1 s; then the answer.
        "/seconds/ubuntu" if n == 1 => http("429 Too Many Requests", "Retry-After: 1\r\n", ""),
        // 503, come back at a date about 2 s ahead; then the answer.
        "/date/ubuntu" if n == 1 => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(2);
            let at = at.format("%a, %d %b %Y %H:%M:%S GMT");
            http(
                "503 Service Unavailable",
                &format!("Retry-After: {at}\r\n"),
                "",
            )
        }
        "/seconds/ubuntu" | "/date/ubuntu" => http("200 OK", "", &ubuntu),
        // Always: come back in an hour.
        p if p.starts_with("/hour/") => http(
            "429 Too Many Requests",
            "Retry-After: 3600\r\n",
            "Too many requests",
        ),
        // A named operation's result of 600 entries whose pages never end.
        "/endless/ubuntu/count" => http("200 OK", "", "600"),
        "/endless/ubuntu" => {
            let start: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ws.start="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let entries: Vec<Value> = (start..start + 300).map(|i| json!({"n": i})).collect();
            let page = json!({
                "start": start,
                "entries": entries,
                "total_size_link": format!("{base}endless/ubuntu/count"),
                "next_collection_link":
                    format!("{base}endless/ubuntu?ws.op=getThings&ws.size=300&ws.start={}", start + 300),
            });
            http("200 OK", "", &page.to_string())
        }
        _ => http("404 Not Found", "", "no such object"),
    }
}

fn client(server: &BadLaunchpad, prefix: &str) -> Launchpad {
    // A 10 s request timeout: the run's budget for waits.
    let http = Http::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    Launchpad::new(http, format!("{}{prefix}/", server.base))
        .with_retries(3, Duration::from_millis(5))
}

#[tokio::test]
async fn retry_after_in_seconds_is_waited_for() {
    let server = BadLaunchpad::start();
    let lp = client(&server, "seconds");
    let started = Instant::now();
    let v: Value = lp.get("ubuntu", &[]).await.unwrap();
    assert_eq!(v["name"], "ubuntu");
    assert_eq!(server.requests("/seconds/ubuntu"), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as asked"
    );
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_waited_for() {
    let server = BadLaunchpad::start();
    let lp = client(&server, "date");
    let started = Instant::now();
    let v: Value = lp.get("ubuntu", &[]).await.unwrap();
    assert_eq!(v["name"], "ubuntu");
    assert_eq!(server.requests("/date/ubuntu"), 2);
    // The date has whole seconds: 1 to 2 s ahead.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited as asked"
    );
}

#[tokio::test]
async fn retry_after_beyond_the_budget_fails_at_once_saying_when() {
    let server = BadLaunchpad::start();
    let lp = client(&server, "hour");
    let e = lp.get::<Value>("ubuntu", &[]).await.unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, SourceError::RetryLater { .. }), "{e:?}");
    assert!(
        msg.contains("/hour/ubuntu")
            && msg.contains("HTTP 429")
            && msg.contains("come back in 3600 s")
            && msg.contains("budget"),
        "{msg}"
    );
    // The hour asked for, as a date: today or tomorrow, in RFC 3339.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(3600))
        .format("%Y-%m-%dT%H")
        .to_string();
    assert!(msg.contains(&at), "{at} in {msg}");
    // Not retried: one request, where 3 retries used to follow at once.
    assert_eq!(server.requests("/hour/ubuntu"), 1);
}

#[test]
fn a_collector_told_to_come_back_later_fails_saying_when() {
    let server = BadLaunchpad::start();
    let dir = tempfile::tempdir().unwrap();
    let fixtures = common::server();
    let mut config = ubuntu_metrics::config::Config {
        sources: fixtures.sources(),
        ..Default::default()
    };
    config
        .sources
        .set("launchpad", format!("{}hour/", server.base));
    config.influxdb.url = "http://127.0.0.1:9".into();
    config.spool.dir = dir.path().join("spool");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&path)
        .args(["run", "--now", NOW, "upload_queues", "--dry-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("upload_queues") && stderr.contains("come back in 3600 s"),
        "{stderr}"
    );
    assert_eq!(server.requests("/hour/ubuntu"), 1, "{stderr}");
}

#[tokio::test]
async fn a_collection_that_never_ends_stops_at_its_total_size() {
    let server = BadLaunchpad::start();
    let lp = client(&server, "endless");
    let e = lp
        .collection::<Value>("ubuntu", &[("ws.op", "getThings")])
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("does not end") && msg.contains("total_size of 600"),
        "{msg}"
    );
    // The size is asked for after 10 pages; ceil(600 / 300) = 2 pages plus
    // a margin of 2 are long exceeded then: 10 pages and the count, not
    // the 1000 pages it used to follow.
    assert_eq!(server.requests("/endless/ubuntu"), 10);
    assert_eq!(server.requests("/endless/ubuntu/count"), 1);
}
