//! `backfill` throughput and memory: a generated `update_excuses.csv` of
//! 1,000,000 rows (one every 15 minutes, ~38 MB) served by the project's
//! fixture server, streamed by the release-built binary into a real
//! `influxd` (Debian package `influxdb`).
//!
//!     cargo bench --bench backfill                     # 1,000,000 rows
//!     cargo bench --bench backfill -- --rows 3000000 --batch 10000
//!
//! Prints rows per second (wall time of the `backfill` process, from its
//! start to its exit, InfluxDB's writes included), its CPU time and its peak
//! resident memory (`wait4`'s `ru_maxrss`), and checks that InfluxDB holds
//! exactly one point per row. Run by `cargo test --all-targets` (without
//! cargo bench's `--bench`), it does a quick 20,000-row round as a smoke test.

#[path = "../tests/common/influxd.rs"]
#[allow(dead_code)]
mod influxd;

use fixture_server::FixtureServer;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ubuntu_metrics::config::Config;

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

fn copy_fixtures(dir: &Path) -> PathBuf {
    let root = dir.join("fixtures");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let ok = Command::new("cp")
        .arg("-r")
        .arg(&fixtures)
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot copy the fixtures");
    root
}

fn generate(path: &Path, rows: usize) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create the CSV"));
    writeln!(
        f,
        "time,valid candidates,not considered,total,median age,backlog"
    )
    .unwrap();
    let start = 1_577_836_800_000i64; // 2020-01-01
    for i in 0..rows {
        let ms = start + i as i64 * 15 * 60 * 1000;
        writeln!(
            f,
            "{ms},{},{},{},{},{}",
            i % 1000,
            i % 777,
            i,
            i % 30,
            i % 500
        )
        .unwrap();
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4, which also gives its resource usage"
)]
fn main() {
    let mut rows = None;
    let mut batch = None;
    let mut benching = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => benching = true,
            "--rows" => rows = args.next().and_then(|n| n.parse::<usize>().ok()),
            "--batch" => batch = args.next(),
            _ => {}
        }
    }
    let rows = rows.unwrap_or(if benching { 1_000_000 } else { 20_000 });
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = copy_fixtures(dir.path());
    let csv = root.join("britney/proposed-migration/update_excuses.csv");
    let bytes = generate(&csv, rows);
    let server = FixtureServer::start(&root).expect("fixture server");
    let influx = influxd::Influxd::start();
    let mut config = Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.influxdb.url = influx.url().into();
    config.influxdb.database = influxd::DATABASE.to_owned();
    config.spool.dir = dir.path().join("spool");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();

    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ubuntu-metrics"));
    cmd.arg("--config")
        .arg(&config_path)
        .args(["backfill", "update_excuses"]);
    if let Some(b) = &batch {
        cmd.args(["--batch", b]);
    }
    let child = cmd
        .env_remove("RUST_LOG")
        .env_remove("UBUNTU_METRICS_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ubuntu-metrics runs");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "backfill failed"
    );
    // InfluxDB 1.x answers 204 once a write is in its WAL and cache; a count
    // right after a large backfill (one shard per week: ~1,500 shards for
    // 28 years of rows) has been seen short by a few hundred points while
    // caches were snapshotted, then right: the count is retried for 30 s
    // and the wait reported.
    let count = || {
        let v = influx.query("SELECT count(\"total\") FROM update_excuses_stats");
        v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    };
    let checked = Instant::now();
    let mut written = count();
    while written != rows as i64 && checked.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        written = count();
    }
    if checked.elapsed() > Duration::from_secs(1) {
        println!(
            "(InfluxDB's count reached {written} after {:.1} s)",
            checked.elapsed().as_secs_f64()
        );
    }
    println!(
        "backfill of update_excuses.csv: {rows} rows, {:.1} MB, batch {}",
        bytes as f64 / 1e6,
        batch.as_deref().unwrap_or("5000 (default)")
    );
    println!(
        "wall {:.2} s   {:.0} rows/s   CPU {:.2} s   peak RSS {:.1} MiB   points in InfluxDB {written}",
        wall.as_secs_f64(),
        rows as f64 / wall.as_secs_f64(),
        (timeval(usage.ru_utime) + timeval(usage.ru_stime)).as_secs_f64(),
        usage.ru_maxrss as f64 / 1024.0
    );
    assert_eq!(
        written, rows as i64,
        "InfluxDB does not hold one point per row"
    );
}
