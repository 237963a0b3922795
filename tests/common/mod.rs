//! Shared test helpers: the fixture server, a fixed clock, and comparison of
//! a collector's points with the expected line protocol next to its
//! fixtures (`tests/fixtures/<collector>/expected.out`, Telegraf-style).
#![allow(dead_code)]

pub mod daemon;
pub mod influxd;
pub mod rogue;
pub mod victoria;

use chrono::{DateTime, Utc};
use fixture_server::FixtureServer;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use ubuntu_metrics::collectors::registry;
use ubuntu_metrics::sources::http::Http;
use ubuntu_metrics::{CollectorError, Context, Point};

/// Every environment variable the program reads. Commands the tests start
/// are cleared of them, so the developer's environment cannot leak in.
pub const PROGRAM_ENV: &[&str] = &[
    "INFLUXDB_HOSTNAME",
    "INFLUXDB_PORT",
    "INFLUXDB_USERNAME",
    "INFLUXDB_PASSWORD",
    "INFLUXDB_DATABASE",
    "INFLUXDB_SSL",
    "INFLUXDB_ADMIN_USER",
    "INFLUXDB_ADMIN_PASSWORD",
    "UBUNTU_METRICS_STATE_DIR",
    "RUST_LOG",
    "JOURNAL_STREAM",
    "NO_COLOR",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// Clears `c` of [`PROGRAM_ENV`] and points `UBUNTU_METRICS_CONFIG` at an
/// empty file (defaults), so a machine's /etc configuration is never read;
/// `--config` still wins.
pub fn clean_env(c: &mut Command) -> &mut Command {
    for v in PROGRAM_ENV {
        c.env_remove(v);
    }
    c.env("UBUNTU_METRICS_CONFIG", "/dev/null")
}

/// Clears `c` of the variables `cargo test` sets for a test process
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `OUT_DIR`, ...), so a nested cargo
/// run sees a developer's shell environment. Build scripts name some of
/// them in `rerun-if-env-changed` (ring: `CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`), so a nested run that kept them re-ran ring's build
/// script and recompiled ring, rustls, reqwest, the crate and every test
/// binary, twice (once for it, once again for the suite after it).
pub fn outside_cargo(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k == "OUT_DIR"
            || k == "CARGO_MANIFEST_DIR"
            || k == "CARGO_MANIFEST_PATH"
            || k == "CARGO_CRATE_NAME"
            || k == "CARGO_BIN_NAME"
            || k == "CARGO_PRIMARY_PACKAGE"
            || k == "CARGO_TARGET_TMPDIR"
            || k == "CARGO_RUSTC_CURRENT_DIR"
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_")
        {
            c.env_remove(&*k);
        }
    }
    c
}

/// The `ubuntu-metrics` binary under test, with a clean environment.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ubuntu-metrics"));
    clean_env(&mut c);
    c
}

/// Writes a configuration pointing every source at `server` and InfluxDB at
/// `influx_url` (database [`influxd::DATABASE`]), with a spool of its own
/// under `dir`. Returns its path.
pub fn write_config(dir: &Path, server: &FixtureServer, influx_url: &str) -> PathBuf {
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.influxdb.url = influx_url.to_owned().into();
    config.influxdb.database = influxd::DATABASE.to_owned();
    config.spool.dir = dir.join("spool");
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&config).expect("config serialises"))
        .expect("write config");
    path
}

/// `ubuntu-metrics --config CONFIG run ARGS... --now NOW`, whatever its
/// exit status.
pub fn run_now(config: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .args(["--now", NOW])
        .output()
        .expect("ubuntu-metrics runs")
}

/// A process's output as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ubuntu-metrics --config CONFIG run --now NOW --all`, asserted to exit 0.
pub fn run_all(config: &Path) -> std::process::Output {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(["run", "--now", NOW, "--all"])
        .output()
        .expect("ubuntu-metrics runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "run --all failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `systemd-analyze verify` of `units`: it must succeed and say nothing.
pub fn verify_units<P: AsRef<std::ffi::OsStr> + std::fmt::Debug>(units: &[P]) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(units)
        .output()
        .expect("systemd-analyze runs (install it: sudo apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {units:?}:\n{stderr}"
    );
}

/// The fixed "now" of every fixture test.
pub const NOW: &str = "2026-11-24T12:00:00Z";

pub fn now() -> DateTime<Utc> {
    NOW.parse().expect("valid time")
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixtures in `dir/fixtures`, for a test that changes
/// documents.
pub fn fixtures_copy(dir: &Path) -> PathBuf {
    let root = dir.join("fixtures");
    let st = Command::new("cp")
        .arg("-r")
        .arg(fixtures())
        .arg(&root)
        .status()
        .expect("cp runs");
    assert!(
        st.success(),
        "cp -r {} {}",
        fixtures().display(),
        root.display()
    );
    root
}

pub fn server() -> FixtureServer {
    FixtureServer::start(fixtures()).expect("fixture server starts")
}

/// The fixture server plus a real rsync daemon serving the images tree.
pub fn server_with_rsync() -> FixtureServer {
    server()
        .with_rsync()
        .expect("rsync daemon starts (install rsync: sudo apt-get install rsync)")
}

/// A context pointing every source at `server`, with the fixed clock.
pub fn context(server: &FixtureServer) -> Context {
    let http = Http::new(Duration::from_secs(5), Duration::from_secs(10)).expect("http client");
    Context::new(http, Arc::new(server.sources()), now())
}

/// Runs one collector (by name) with `ctx` and its `options`.
pub async fn collect_with(
    name: &str,
    ctx: &Context,
    options: toml::Table,
) -> Result<Vec<Point>, CollectorError> {
    let reg = registry();
    let c = reg
        .iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no collector {name}"));
    let ctx = ctx.for_collector(options);
    c.collect(&ctx).await
}

pub async fn collect(name: &str, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
    collect_with(name, ctx, toml::Table::new()).await
}

/// Points as sorted lines of line protocol.
pub fn lines(points: &[Point]) -> Vec<String> {
    let mut v: Vec<String> = points
        .iter()
        .map(|p| p.to_line().expect("encodable point"))
        .collect();
    v.sort();
    v
}

/// The expected lines of `tests/fixtures/<rel>`, sorted; blank lines and
/// `#` comments are ignored.
pub fn expected(rel: &str) -> Vec<String> {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Asserts that a finished command exited 0 and printed exactly the lines
/// of `tests/fixtures/<rel>` on stdout, in any order.
pub fn assert_printed(out: &std::process::Output, rel: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut got: Vec<&str> = stdout.lines().collect();
    got.sort();
    assert_eq!(got, expected(rel));
}

/// Asserts that `points` are exactly the lines of `tests/fixtures/<rel>`,
/// showing the difference when they are not.
pub fn assert_points(points: &[Point], rel: &str) {
    let got = lines(points);
    let want = expected(rel);
    if got != want {
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).collect();
        let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).collect();
        panic!(
            "points differ from {rel}\nmissing ({}):\n  {}\nunexpected ({}):\n  {}\n",
            missing.len(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            extra.len(),
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

/// A TCP server on a free loopback port that accepts connections and never
/// answers (holding them open): a hung upstream.
pub fn silent_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// The `.rs` files under `dir`, in a stable (sorted) order.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}
