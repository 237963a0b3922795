//! `run --record DIR` then `run --replay DIR` (issue 14, item 3): a round
//! of every collector on the fixtures (HTTP, Launchpad and rsync), recorded,
//! then replayed with the fixture server gone and every proxy pointing at a
//! closed port: the same points, at the recorded time, and no secret in the
//! recording.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

fn run(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .args(["--all", "--dry-run"])
        .output()
        .expect("ubuntu-metrics runs")
}

/// [`run`] with every HTTP request sent to a proxy at a closed port: one
/// that left the process would fail.
fn run_offline(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .args(["--all", "--dry-run"])
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "")
        .output()
        .expect("ubuntu-metrics runs")
}

fn sorted_lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn a_recorded_round_replays_to_the_same_points_with_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    let server = server_with_rsync();
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    // A source with credentials in its URL: never written to the recording.
    let britney = config
        .sources
        .url(&ubuntu_metrics::collectors::britney::PROPOSED_MIGRATION)
        .to_owned();
    config.sources.set(
        "proposed_migration",
        britney.replacen("http://", "http://user:Sekr1t@", 1),
    );
    config.spool.dir = dir.path().join("spool");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let recorded = run(&path, &["--now", NOW, "--record", rec.to_str().unwrap()]);
    assert_eq!(
        recorded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    drop(server);

    let replayed = run_offline(&path, &["--replay", rec.to_str().unwrap()]);
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let want = sorted_lines(&recorded);
    assert!(want.len() > 100, "{want:?}");
    assert_eq!(sorted_lines(&replayed), want);
    // The same as the fixtures' expected points of a collector.
    let britney: Vec<String> = want
        .iter()
        .filter(|l| {
            ["britney_", "update_excuses"]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .cloned()
        .collect();
    assert_eq!(britney, expected("britney/expected.out"));

    // No secret anywhere in the recording.
    let grep = std::process::Command::new("grep")
        .args(["-rl", "Sekr1t"])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // A request the recording does not hold fails; nothing is fetched.
    std::fs::remove_dir_all(rec.join("answers")).unwrap();
    std::fs::create_dir(rec.join("answers")).unwrap();
    let broken = run_offline(&path, &["--replay", rec.to_str().unwrap()]);
    assert_ne!(broken.status.code(), Some(0));
}

/// A configuration with one declared HTTP collector `src` reading `urls`
/// (`KEY = URL`), each document's `v` one point tagged `src=KEY`, and
/// `more` (e.g. an `[http]` section).
fn declared(dir: &Path, urls: &[(&str, String)], more: &str) -> std::path::PathBuf {
    let urls: Vec<String> = urls.iter().map(|(k, u)| format!("{k} = \"{u}\"")).collect();
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "{more}\n[spool]\ndir = \"{}\"\n\n[collectors.src]\ntype = \"http\"\nurls = {{ {} }}\nformat = \"json\"\nfilter = '{{measurement: \"src\", tags: {{src: $source}}, fields: {{v: .v}}}}'\n[collectors.src.measurements.src]\ntags = [\"src\"]\nfields = {{ v = \"int\" }}\n",
            dir.join("spool").display(),
            urls.join(", ")
        ),
    )
    .unwrap();
    p
}

fn run_one(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .args(["run", "src", "--dry-run"])
        .args(args)
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("ubuntu-metrics runs")
}

/// Issue 22, item 6: a request answered 503 (`Retry-After: 0`) then 200
/// is recorded twice; the next request's answer must not take the place
/// of the second one. The replay gives every request its own answers, in
/// their order.
#[test]
fn a_retried_request_replays_its_own_answers_in_order() {
    use common::rogue::{Rogue, response};
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    let answered_a = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered_a.clone();
    let a = Rogue::start(move |_| {
        let n = count.load(Ordering::SeqCst);
        let r = if n == 0 {
            response("503 Service Unavailable", &[("Retry-After", "0")], b"busy")
        } else {
            response(
                "200 OK",
                &[("Content-Type", "application/json")],
                b"{\"v\": 111}",
            )
        };
        count.fetch_add(1, Ordering::SeqCst);
        Some(r)
    });
    // b answers once a has answered twice: the recording holds a, a, b.
    let seen = answered_a.clone();
    let b = Rogue::start(move |_| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Some(response(
            "200 OK",
            &[("Content-Type", "application/json")],
            b"{\"v\": 222}",
        ))
    });
    let cfg = declared(
        dir.path(),
        &[
            ("a", format!("{}/a.json", a.url())),
            ("b", format!("{}/b.json", b.url())),
        ],
        "",
    );
    let live = run_one(&cfg, &["--now", NOW, "--record", rec.to_str().unwrap()]);
    assert_eq!(
        live.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    assert_eq!(answered_a.load(Ordering::SeqCst), 2, "a was asked twice");
    let want = sorted_lines(&live);
    assert_eq!(want.len(), 2, "{want:?}");
    assert!(want[0].starts_with("src,src=a v=111i "), "{want:?}");
    assert!(want[1].starts_with("src,src=b v=222i "), "{want:?}");
    drop((a, b));

    let replayed = run_one(&cfg, &["--replay", rec.to_str().unwrap()]);
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert_eq!(sorted_lines(&replayed), want);
}

/// Issue 22, item 6: a recording (in the first format: one answer per
/// request, keyed by URL) whose `body` points outside its directory, at a
/// link out of it, at something that is not a regular file, or at a file
/// over `[http] max_body`: the replay refuses it, naming the file, and
/// prints no point.
#[test]
fn a_recording_cannot_make_the_replay_read_outside_it_or_past_max_body() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    std::fs::create_dir_all(rec.join("answers")).unwrap();
    // What must never be read: a file beside the recording.
    let secret = dir.path().join("secret.json");
    std::fs::write(&secret, "{\"v\": 999}").unwrap();
    std::fs::write(rec.join("answers/good"), "{\"v\": 111}").unwrap();
    std::os::unix::fs::symlink(&secret, rec.join("answers/link")).unwrap();
    let mut big = b"{\"v\": 999, \"pad\": \"".to_vec();
    big.resize(4000, b'x');
    big.extend_from_slice(b"\"}");
    std::fs::write(rec.join("answers/big"), &big).unwrap();
    let url = "http://127.0.0.1:9/a.json";
    let cfg = declared(
        dir.path(),
        &[("a", url.into())],
        "[http]\nmax_body = \"1KB\"\n",
    );
    let index = |body: &str| {
        let index = serde_json::json!({
            "now": NOW,
            "marks": {},
            "http": {url: {"status": 200, "headers": {"content-type": "application/json"}, "body": body}},
            "rsync": {},
        });
        std::fs::write(rec.join("recording.json"), index.to_string()).unwrap();
    };

    // The first format is still read.
    index("answers/good");
    let out = run_one(&cfg, &["--replay", rec.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(sorted_lines(&out).len(), 1, "{stderr}");
    assert!(sorted_lines(&out)[0].starts_with("src,src=a v=111i "));

    let secret = secret.to_str().unwrap().to_owned();
    for (body, why) in [
        ("../secret.json", "inside the recording"),
        ("answers/../../secret.json", "inside the recording"),
        (secret.as_str(), "inside the recording"),
        ("answers/link", "symbolic link"),
        ("answers/big", "larger than 1000 bytes"),
        ("answers", "not a regular file"),
        ("/dev/zero", "inside the recording"),
    ] {
        index(body);
        let started = std::time::Instant::now();
        let out = run_one(&cfg, &["--replay", rec.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_ne!(out.status.code(), Some(0), "{body}: {stdout}{stderr}");
        assert!(!stdout.contains("v="), "{body}: {stdout}");
        assert!(stderr.contains(why), "{body}: wanted {why:?}: {stderr}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{body}"
        );
    }
}

/// Issue 22, item 6: a request the recording does not hold is an error
/// naming the request (method and URL).
#[test]
fn a_request_the_recording_does_not_hold_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    std::fs::create_dir_all(rec.join("answers")).unwrap();
    std::fs::write(
        rec.join("recording.json"),
        serde_json::json!({"now": NOW, "http": {}, "rsync": {}}).to_string(),
    )
    .unwrap();
    let cfg = declared(
        dir.path(),
        &[("a", "http://127.0.0.1:9/missing.json".into())],
        "",
    );
    let out = run_one(&cfg, &["--replay", rec.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("GET http://127.0.0.1:9/missing.json"),
        "{stderr}"
    );
}
