//! HTTP/2 where the upstream offers it (issue 17, item 2): the fixture
//! server over TLS with a test CA, offering `h2` and `http/1.1` by ALPN as
//! Launchpad's and Canonical's front ends do, or HTTP/1.1 alone. The
//! program trusts the test CA through `SSL_CERT_FILE` (the system trust
//! store's own override), so nothing in its configuration changes.
mod common;

use common::*;
use fixture_server::{Alpn, Fault, FixtureServer, TestCa};
use std::path::{Path, PathBuf};

/// Every collector that asks HTTP only (images lists rsync).
fn http_collectors() -> Vec<String> {
    ubuntu_metrics::collectors::registry()
        .iter()
        .map(|c| c.name().to_owned())
        .filter(|n| n != "images")
        .collect()
}

/// A configuration pointing every source at `server`, changed by `adjust`.
fn config(
    dir: &Path,
    server: &FixtureServer,
    adjust: impl FnOnce(&mut ubuntu_metrics::config::Config),
) -> PathBuf {
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    adjust(&mut config);
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&config).expect("config serialises")).unwrap();
    path
}

/// Runs every HTTP collector in one process against `server` (dry run),
/// trusting `ca`, and checks each collector's points against its
/// `expected.out`.
fn run_every_collector(dir: &Path, server: &FixtureServer, ca: &TestCa, max_per_host: usize) {
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let config = config(dir, server, |c| c.http.max_per_host = max_per_host);
    for name in http_collectors() {
        let out = bin()
            .arg("--config")
            .arg(&config)
            .args(["run", "--now", NOW, "--dry-run", &name])
            .env("SSL_CERT_FILE", &ca_file)
            .env("UBUNTU_METRICS_STATE_DIR", dir.join("state"))
            .output()
            .expect("ubuntu-metrics runs");
        assert_printed(&out, &format!("{name}/expected.out"));
    }
}

#[test]
fn an_upstream_offering_http2_is_asked_over_http2_within_the_per_host_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate();
    let server = FixtureServer::start_tls(fixtures(), &ca, Alpn::H2AndHttp11).unwrap();
    assert!(server.base().starts_with("https://127.0.0.1:"));
    server.set_latency(std::time::Duration::from_millis(20));
    run_every_collector(dir.path(), &server, &ca, 3);

    let versions = server.versions();
    eprintln!(
        "versions {versions:?}, TLS connections (all, h2) {:?}, at most {} in flight",
        server.tls_connections(),
        server.max_in_flight()
    );
    assert!(
        versions.get("HTTP/2.0").copied().unwrap_or(0) > 50,
        "{versions:?}"
    );
    assert_eq!(versions.get("HTTP/1.1"), None, "{versions:?}");
    // One connection per process (one run per collector), shared by all
    // its requests: a burst of requests to a cold host waits for the first
    // one's connection.
    let (connections, h2) = server.tls_connections();
    assert_eq!(connections, h2, "every connection chose h2");
    assert_eq!(connections, http_collectors().len() as u64);
    // The per-host limit still bounds the requests in flight at once
    // (several went out together: britney's logs, contributors' teams).
    assert!(
        (2..=3).contains(&server.max_in_flight()),
        "{}",
        server.max_in_flight()
    );
}

#[test]
fn an_upstream_offering_only_http1_is_asked_over_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate();
    let server = FixtureServer::start_tls(fixtures(), &ca, Alpn::Http11Only).unwrap();
    run_every_collector(dir.path(), &server, &ca, 8);
    let versions = server.versions();
    assert_eq!(versions.get("HTTP/2.0"), None, "{versions:?}");
    assert!(
        versions.get("HTTP/1.1").copied().unwrap_or(0) > 50,
        "{versions:?}"
    );
    // Up to max_per_host connections per process, as before HTTP/2.
    let (connections, h2) = server.tls_connections();
    eprintln!("versions {versions:?}, TLS connections {connections}");
    assert_eq!(h2, 0);
    assert!(
        connections > http_collectors().len() as u64,
        "{connections}"
    );
}

/// A server whose certificate the system does not trust is refused, over
/// HTTP/2 as over HTTP/1.1: the collector fails naming the URL.
#[test]
fn an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate();
    let server = FixtureServer::start_tls(fixtures(), &ca, Alpn::H2AndHttp11).unwrap();
    let config = config(dir.path(), &server, |_| {});
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "--now", NOW, "--dry-run", "sponsoring"])
        .env("UBUNTU_METRICS_STATE_DIR", dir.path().join("state"))
        .output()
        .expect("ubuntu-metrics runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&server.base()) && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
    assert_eq!(server.versions().values().sum::<u64>(), 0);
}

/// A first request slow to answer holds the others to its host back at
/// most about a second: versions' documents hang while sponsoring's are
/// served, both collectors in one process (versions first), over HTTP/2.
/// Without the bound sponsoring waited for versions' timeout (seen in
/// tests/daemon.rs before the bound).
#[test]
fn a_slow_first_answer_does_not_hold_back_the_other_requests_to_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate();
    let server = FixtureServer::start_tls(fixtures(), &ca, Alpn::H2AndHttp11).unwrap();
    server.set_fault(
        "/versions",
        Fault::Delay(std::time::Duration::from_secs(30)),
    );
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let path = config(dir.path(), &server, |c| {
        c.http.timeout = ubuntu_metrics::model::timespan::TimeSpan::from_secs(4)
    });
    for i in 0..3 {
        let out = bin()
            .arg("--config")
            .arg(&path)
            .args(["run", "--now", NOW, "--dry-run", "versions", "sponsoring"])
            .env("SSL_CERT_FILE", &ca_file)
            .env(
                "UBUNTU_METRICS_STATE_DIR",
                dir.path().join(format!("state-{i}")),
            )
            .output()
            .expect("ubuntu-metrics runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| {
                l.contains("collected")
                    && (l.contains("collector=sponsoring")
                        || l.contains("collector=\"sponsoring\""))
            })
            .unwrap_or_else(|| panic!("sponsoring did not collect:\n{stderr}"));
        let ms: u64 = line
            .split("duration_ms=")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no duration in {line}"));
        assert!(ms < 2500, "sponsoring took {ms} ms:\n{stderr}");
        assert!(
            stderr.contains("versions") && out.status.code() != Some(0),
            "versions should have timed out:\n{stderr}"
        );
    }
}
