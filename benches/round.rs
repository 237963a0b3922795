//! One full collection round, end to end: how long, how much CPU and memory,
//! how many upstream requests, and how close to the network's limit.
//!
//!     cargo bench --bench round                       # 20 ms, 5 runs
//!     cargo bench --bench round -- --latency 50ms --runs 9
//!     scripts/bench                                   # this, then the encoder
//!
//! Options (after `--`): `--latency SPAN` added to every HTTP answer
//! (default 20ms); `--rsync-latency SPAN` the round-trip time of the rsync
//! link (default: the same); `--runs N` measured runs (default 5, after one
//! warm-up); `--one-host` serves every HTTP source from one server (so the
//! per-host limit applies to all of them together); `--tls h2` serves them
//! over TLS (a test CA the program trusts through `SSL_CERT_FILE`) offering
//! HTTP/2 and HTTP/1.1 by ALPN, `--tls http1` HTTP/1.1 alone (to compare
//! connections and CPU: the added latency is per answer, so handshakes'
//! round trips are not in the wall time); `--only a,b` runs
//! these collectors instead of `--all` (to see where time goes); `--bin
//! PATH` another `ubuntu-metrics` binary.
//!
//! What it does: starts the project's fixture server (`tests/fixtures/`)
//! once per production host, so that the per-host limit applies as it does
//! against Ubuntu's servers (the hosts of the default `[sources]`:
//! api.launchpad.net, ubuntu-archive-team.ubuntu.com, ...), with the added
//! latency; starts the rsync daemon of the images fixtures behind a TCP
//! proxy that delays every chunk by half the rsync latency each way (so a
//! round trip costs the latency, as an HTTP answer does); then runs
//! `ubuntu-metrics run --now 2026-11-24T12:00:00Z --all --dry-run` (built by
//! cargo in the bench profile, i.e. optimized) in a fresh process per run,
//! output to /dev/null, and reads its resource usage with `wait4`: wall
//! time, CPU (user + sys, including the rsync children it waited for) and
//! peak resident memory. Requests are counted by the fixture servers (per
//! first path segment) and the proxy (one connection per rsync call); the
//! runner's log lines (`collected collector=... requests=N duration_ms=T`)
//! give the per-collector breakdown.
//!
//! The critical path is the longest chain of requests that must follow one
//! another (each needs an answer from the previous), per collector, as the
//! collectors are written and for the bundled fixtures, times the latency:
//! see [`CHAINS`]. For images it is the longer of its Launchpad chain and
//! one rsync listing, measured through the proxy before the runs. It is the
//! round's physical limit with unlimited parallelism; the busiest host's
//! requests divided by the per-host limit is printed as a second bound.
//!
//! Not modelled: connection set-up (the fixture servers answer plain HTTP
//! on loopback: a TCP + TLS handshake to a real host adds 2-3 round trips
//! per new connection, at most `max_per_host` per host, in parallel) and
//! transfer time (the fixtures are small).
//!
//! Run by `cargo test --all-targets` (without cargo bench's `--bench`), it
//! does one quick round as a smoke test and prints the same figures; it
//! asserts nothing about them.

use fixture_server::FixtureServer;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use ubuntu_metrics::config::{Config, Sources};
use ubuntu_metrics::model::timespan::TimeSpan;

/// The fixed clock of the fixtures.
const NOW: &str = "2026-11-24T12:00:00Z";

/// Per collector: the hops of its longest chain of dependent requests
/// against the bundled fixtures, and the chain. images' rsync side is
/// measured (see the module documentation).
const CHAINS: &[(&str, u32, &str)] = &[
    ("sponsoring", 1, "general.json"),
    (
        "autopkgtest",
        1,
        "queue_size.json and running.json of both instances, together",
    ),
    ("rls_bugs", 1, "every rls-*.json, together"),
    ("versions", 2, "reports -> every report, together"),
    (
        "britney",
        4,
        "<series>/update_excuses.html -> log/<series>/<date>/ -> newest log -> next older log (tumbling's newest is incomplete)",
    ),
    (
        "cnf",
        3,
        "ubuntu -> ubuntu/series -> every dists/<series>/main/cnf/, together",
    ),
    (
        "contributors",
        1,
        "members and participants counts of every team, together (plain collections carry total_size)",
    ),
    (
        "ubuntu_archive",
        3,
        "ubuntu -> ubuntu/series -> tumbling/architectures and <devel>_uninst/outdate.txt (the CSVs, priority-mismatches, +activereviews and the searchTasks counts (2 hops) go out at once)",
    ),
    (
        "upload_queues",
        5,
        "ubuntu -> ubuntu/series -> page 1 -> page 2 -> page 3 of tumbling's 700 Unapproved uploads (a named operation answers total_size_link, not total_size: pages follow next_collection_link)",
    ),
    (
        "images",
        2,
        "ubuntu -> ubuntu/series, while rsync lists the 15 paths in one call (the longer of the two counts)",
    ),
];

struct Args {
    latency: Duration,
    rsync_latency: Duration,
    runs: usize,
    warmup: usize,
    one_host: bool,
    /// Serve the HTTP sources over TLS, offering HTTP/2 or not.
    tls: Option<fixture_server::Alpn>,
    only: Option<Vec<String>>,
    bin: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench round -- [--latency 20ms] [--rsync-latency SPAN] [--runs 5] [--one-host] [--tls h2|http1] [--only a,b] [--bin PATH]"
    );
    std::process::exit(2);
}

fn span(s: Option<String>) -> Duration {
    let s = s.unwrap_or_else(|| usage());
    match TimeSpan::parse(&s) {
        Ok(t) => t.as_duration(),
        Err(e) => {
            eprintln!("round: {s:?}: {e}");
            usage()
        }
    }
}

fn parse_args() -> Args {
    let mut latency = Duration::from_millis(20);
    let mut rsync_latency = None;
    let mut runs = None;
    let mut one_host = false;
    let mut tls = None;
    let mut only = None;
    let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_ubuntu-metrics"));
    let mut benching = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // cargo bench passes --bench; cargo test passes nothing.
            "--bench" => benching = true,
            "--latency" => latency = span(args.next()),
            "--rsync-latency" => rsync_latency = Some(span(args.next())),
            "--runs" => {
                runs = Some(
                    args.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n > 0)
                        .unwrap_or_else(|| usage()),
                )
            }
            "--one-host" => one_host = true,
            "--tls" => {
                tls = Some(match args.next().as_deref() {
                    Some("h2") => fixture_server::Alpn::H2AndHttp11,
                    Some("http1") => fixture_server::Alpn::Http11Only,
                    _ => usage(),
                })
            }
            "--only" => {
                only = Some(
                    args.next()
                        .unwrap_or_else(|| usage())
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "--bin" => bin = PathBuf::from(args.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            // `cargo test -- --list` (libtest's listing): nothing to list.
            "--list" => std::process::exit(0),
            // libtest-style arguments cargo may pass (filters, --nocapture).
            _ => {}
        }
    }
    let (runs, warmup) = if benching {
        (runs.unwrap_or(5), 1)
    } else {
        (runs.unwrap_or(1), 0)
    };
    Args {
        latency,
        rsync_latency: rsync_latency.unwrap_or(latency),
        runs,
        warmup,
        one_host,
        tls,
        only,
        bin,
    }
}

/// The fixture servers and the rsync proxy of one benchmark.
struct Upstream {
    /// The CA file the program trusts (`SSL_CERT_FILE`) when serving TLS.
    ca_file: Option<PathBuf>,

    /// Host name (of the default sources) -> its server.
    servers: Vec<(String, FixtureServer)>,
    sources: Sources,
    rsync_calls: Arc<AtomicU64>,
    /// The rsync module without the delaying proxy (no added latency).
    rsync_direct: String,
    /// The same module from a daemon setting `socket options =
    /// TCP_NODELAY`, through a delaying proxy of its own.
    rsync_nodelay: String,
    nodelay_daemon: fixture_server::rsyncd::RsyncDaemon,
    /// Which default host each source key belongs to.
    hosts: BTreeMap<String, String>,
    _runtime: tokio::runtime::Runtime,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A source table as key -> URL string (distro_info left out).
fn source_table(s: &Sources) -> toml::Table {
    let mut t = toml::Table::try_from(s).expect("sources serialise");
    t.remove("distro_info");
    t
}

fn start_upstream(args: &Args) -> Upstream {
    let mut production = Sources::default();
    production.fill_defaults(&ubuntu_metrics::config::declared_sources(
        &ubuntu_metrics::collectors::registry(),
    ));
    let defaults = source_table(&production);
    let mut hosts: BTreeMap<String, String> = BTreeMap::new();
    for (key, url) in &defaults {
        let url = url.as_str().expect("URLs are strings");
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| key.clone());
        hosts.insert(key.clone(), host);
    }
    let mut groups: Vec<String> = hosts
        .iter()
        .filter(|(k, _)| *k != "cdimage_rsync")
        .map(|(_, h)| h.clone())
        .collect();
    groups.sort();
    groups.dedup();
    if args.one_host {
        groups = vec!["(every HTTP source)".into()];
    }
    let mut servers: Vec<(String, FixtureServer)> = Vec::new();
    let ca = fixture_server::TestCa::generate();
    let ca_file = args.tls.map(|_| {
        let f = std::env::temp_dir().join(format!("round-ca-{}.pem", std::process::id()));
        std::fs::write(&f, &ca.ca_pem).expect("CA file written");
        f
    });
    for (i, g) in groups.iter().enumerate() {
        let s = match args.tls {
            None => FixtureServer::start(fixtures()),
            Some(alpn) => FixtureServer::start_tls(fixtures(), &ca, alpn),
        }
        .expect("fixture server starts");
        let s = if i == 0 {
            s.with_rsync()
                .expect("rsync daemon starts (install rsync: sudo apt-get install rsync)")
        } else {
            s
        };
        s.set_latency(args.latency);
        servers.push((g.clone(), s));
    }
    // Each source from the server of its production host.
    let mut table = source_table(&servers[0].1.sources());
    for (key, value) in table.iter_mut() {
        if key == "cdimage_rsync" {
            continue;
        }
        let host = &hosts[key];
        if let Some((_, s)) = servers.iter().find(|(g, _)| g == host) {
            *value = source_table(&s.sources())[key].clone();
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rsync_calls = Arc::new(AtomicU64::new(0));
    let rsync_url = table["cdimage_rsync"].as_str().expect("string").to_owned();
    let rsync_direct = rsync_url.clone();
    let delayed = delayed_url(&runtime, &rsync_url, args.rsync_latency / 2, &rsync_calls);
    table.insert("cdimage_rsync".into(), delayed.into());
    // A second daemon of the same tree setting TCP_NODELAY on its
    // connections, behind its own delaying proxy (the images alternatives).
    let nodelay_daemon = fixture_server::rsyncd::RsyncDaemon::start_with(
        &fixtures().join("images/tree.txt"),
        Some("TCP_NODELAY"),
    )
    .expect("second rsync daemon starts");
    let rsync_nodelay = delayed_url(
        &runtime,
        &nodelay_daemon.url(),
        args.rsync_latency / 2,
        &Arc::new(AtomicU64::new(0)),
    );
    table.insert(
        "distro_info".into(),
        fixtures()
            .join("distro-info/ubuntu.csv")
            .display()
            .to_string()
            .into(),
    );
    let sources: Sources = table.try_into().expect("sources deserialise");
    Upstream {
        servers,
        sources,
        rsync_calls,
        rsync_direct,
        rsync_nodelay,
        nodelay_daemon,
        hosts,
        _runtime: runtime,
        ca_file,
    }
}

impl Upstream {
    /// Requests served so far, by first path segment, over all servers.
    fn requests(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for (_, s) in &self.servers {
            for (k, v) in s.requests() {
                *all.entry(k).or_insert(0) += v;
            }
        }
        all
    }

    /// Body bytes the servers sent so far (a `304` sends none).
    /// TLS connections accepted so far (all, HTTP/2) over all servers.
    fn tls_connections(&self) -> (u64, u64) {
        self.servers
            .iter()
            .map(|(_, s)| s.tls_connections())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    fn bytes_sent(&self) -> u64 {
        self.servers.iter().map(|(_, s)| s.bytes_sent()).sum()
    }

    /// Requests served so far, per server (= production host).
    fn per_host(&self) -> Vec<(String, u64)> {
        self.servers
            .iter()
            .map(|(g, s)| (g.clone(), s.requests().values().sum()))
            .collect()
    }
}

/// `url` (`rsync://127.0.0.1:PORT/...`) through a new delaying proxy
/// (`one_way` each way) counting its connections in `calls`.
fn delayed_url(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    one_way: Duration,
    calls: &Arc<AtomicU64>,
) -> String {
    let mut parsed = url::Url::parse(url).expect("rsync URL");
    let upstream: SocketAddr = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().expect("port")
    )
    .parse()
    .expect("loopback address");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("proxy listens");
    let port = listener.local_addr().expect("address").port();
    runtime.spawn(delay_proxy(listener, upstream, one_way, calls.clone()));
    parsed.set_port(Some(port)).expect("port");
    parsed.to_string()
}

/// Forwards TCP connections to `upstream`, delaying every chunk by
/// `one_way` in each direction (order kept): a link with that latency.
async fn delay_proxy(
    listener: tokio::net::TcpListener,
    upstream: SocketAddr,
    one_way: Duration,
    calls: Arc<AtomicU64>,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        calls.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::join!(pump(ri, wo, one_way), pump(ro, wi, one_way));
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            // An empty chunk stands for the end of the stream.
            if tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if data.is_empty() {
                let _ = to.shutdown().await;
                break;
            }
            if to.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(reader, writer);
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct Run {
    wall: Duration,
    cpu: Duration,
    /// Peak resident set, KiB.
    maxrss_kib: u64,
    exit: i32,
    /// Per collector: (requests, duration ms, ok) from the runner's log.
    collectors: BTreeMap<String, (Option<u64>, Option<u64>, bool)>,
    http: BTreeMap<String, u64>,
    per_host: Vec<(String, u64)>,
    rsync: u64,
    /// Body bytes the HTTP servers sent for this run.
    bytes: u64,
    /// TLS connections the servers accepted for this run (all, HTTP/2).
    tls: (u64, u64),
    log: String,
}

impl Run {
    fn http_total(&self) -> u64 {
        self.http.values().sum()
    }
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Waits for `child` with wait4: its exit code (None when killed by a
/// signal) and its resource usage (with its own children's it waited for).
fn reap(child: &std::process::Child) -> std::io::Result<(Option<i32>, libc::rusage)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return Err(std::io::Error::last_os_error());
    }
    let exit = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok((exit, usage))
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4, which also gives its resource usage"
)]
/// One round in a fresh process; `state` is its state directory (the
/// answers kept for conditional requests live there).
fn run_once(args: &Args, up: &Upstream, config: &Path, state: &Path) -> Run {
    let bytes_before = up.bytes_sent();
    let tls_before = up.tls_connections();
    let before = up.requests();
    let before_hosts = up.per_host();
    let rsync_before = up.rsync_calls.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut child = Command::new(&args.bin)
        .arg("--config")
        .arg(config)
        .args(["run", "--now", NOW, "--dry-run"])
        .args(match &args.only {
            Some(names) => names.clone(),
            None => vec!["--all".to_owned()],
        })
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env("UBUNTU_METRICS_STATE_DIR", state)
        .envs(up.ca_file.iter().map(|f| ("SSL_CERT_FILE", f)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args.bin.display()));
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (exit, usage) = reap(&child).unwrap_or_else(|e| panic!("wait4: {e}"));
    let wall = started.elapsed();
    let log = reader.join().unwrap_or_default();
    let exit = exit.unwrap_or(-1);
    let per_host = up
        .per_host()
        .into_iter()
        .zip(before_hosts)
        .map(|((h, a), (_, b))| (h, a - b))
        .collect();
    Run {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        maxrss_kib: usage.ru_maxrss as u64,
        exit,
        collectors: parse_log(&log),
        http: diff(&up.requests(), &before),
        per_host,
        rsync: up.rsync_calls.load(Ordering::Relaxed) - rsync_before,
        bytes: up.bytes_sent() - bytes_before,
        tls: {
            let (a, b) = up.tls_connections();
            (a - tls_before.0, b - tls_before.1)
        },
        log,
    }
}

/// `key=value` of a log line (value without quotes).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[at..];
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest
        .find(|c: char| c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The runner's per-collector lines: `collected collector=x ...
/// requests=N duration_ms=T`, and `failed` lines.
fn parse_log(log: &str) -> BTreeMap<String, (Option<u64>, Option<u64>, bool)> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some(name) = field(line, "collector") else {
            continue;
        };
        if line.contains(" collected ") || line.contains(": collected ") {
            let n = |k| field(line, k).and_then(|v| v.parse::<u64>().ok());
            out.insert(name.to_owned(), (n("requests"), n("duration_ms"), true));
        } else if line.contains("failed") || line.contains("timed out") {
            out.entry(name.to_owned()).or_insert((None, None, false)).2 = false;
        }
    }
    out
}

/// Runs `commands` (program and arguments), command `i` started `i` ×
/// `spacing` after the first, and waits for all: the wall time until the
/// last ends and the CPU (user + sys) of all of them. None if one failed
/// (an exit other than 0, 23 or 24: rsync's "partial" listings).
#[allow(
    clippy::zombie_processes,
    reason = "each child is reaped with wait4, which also gives its resource usage"
)]
fn run_all(
    commands: &[Vec<std::ffi::OsString>],
    spacing: Duration,
) -> Option<(Duration, Duration)> {
    let started = Instant::now();
    let mut children = Vec::new();
    for (i, argv) in commands.iter().enumerate() {
        let at = started + spacing * i as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        children.push(child);
    }
    let mut cpu = Duration::ZERO;
    let mut ok = true;
    for child in children {
        match reap(&child) {
            Ok((exit, usage)) => {
                ok &= matches!(exit, Some(0 | 23 | 24));
                cpu += timeval(usage.ru_utime) + timeval(usage.ru_stime);
            }
            Err(_) => ok = false,
        }
    }
    ok.then(|| (started.elapsed(), cpu))
}

/// One way of listing the images' 15 paths, measured.
struct Listing {
    what: &'static str,
    /// Median wall time through the delaying proxy, and with no added
    /// latency; the CPU of the median run.
    wall: Duration,
    wall_direct: Duration,
    cpu: Duration,
    processes: usize,
}

/// The ways of listing the images' paths, each timed 3 times through the
/// delaying proxy and 3 times directly: the collector's (one rsync call,
/// over one connection, for all 15 paths), 15 processes 3 ms apart (its
/// fallback, and the way before), one listing alone, one call without
/// incremental recursion (the whole file list in one go), and the first two
/// against a daemon setting `socket options = TCP_NODELAY` (whether
/// cdimage's does is not known here: without it, each of the daemon's
/// small writes after the first waits for the client's delayed ACK).
fn rsync_alternatives(up: &Upstream) -> Vec<Listing> {
    use ubuntu_metrics::collectors::images;
    use ubuntu_metrics::sources::rsync::{Rsync, START_SPACING};
    let Ok(rsync) = Rsync::new(Duration::from_secs(10)) else {
        return Vec::new();
    };
    let argv = |args: Vec<std::ffi::OsString>| {
        let mut v: Vec<std::ffi::OsString> = vec!["rsync".into()];
        v.extend(args);
        v
    };
    let one_process_each = |base: &str| -> Vec<Vec<std::ffi::OsString>> {
        images::urls(base)
            .iter()
            .map(|u| argv(rsync.args(u)))
            .collect()
    };
    // rsync takes several sources from one daemon module in one call.
    let one_connection = |base: &str, extra: &[&str]| -> Vec<Vec<std::ffi::OsString>> {
        let urls = images::urls(base);
        let mut args = rsync.args(&urls[0]);
        // rsync.args(url) ends with the URL and the scratch directory.
        let dest = args.pop().expect("scratch directory");
        args.pop();
        let at = args.len() - 1;
        for (i, e) in extra.iter().enumerate() {
            args.insert(at + i, (*e).into());
        }
        args.extend(urls.into_iter().map(Into::into));
        args.push(dest);
        vec![argv(args)]
    };
    let delayed = up
        .sources
        .get("cdimage_rsync")
        .expect("rsync source")
        .to_owned();
    let direct = up.rsync_direct.clone();
    let nodelay = up.rsync_nodelay.clone();
    let nodelay_direct = up.nodelay_daemon.url();
    // (what, the commands for a module URL, spacing, against the daemon
    // setting TCP_NODELAY)
    type Commands<'a> = Box<dyn Fn(&str) -> Vec<Vec<std::ffi::OsString>> + 'a>;
    let ways: Vec<(&'static str, Commands, Duration, bool)> = vec![
        (
            "one call, one connection (the collector)",
            Box::new(|b: &str| one_connection(b, &[])),
            Duration::ZERO,
            false,
        ),
        (
            "15 processes, 3 ms apart (its fallback; before)",
            Box::new(one_process_each),
            START_SPACING,
            false,
        ),
        (
            "one listing alone (1 of the 15 paths)",
            Box::new(|b: &str| one_process_each(b)[..1].to_vec()),
            Duration::ZERO,
            false,
        ),
        (
            "one call, --no-inc-recursive",
            Box::new(|b: &str| one_connection(b, &["--no-inc-recursive"])),
            Duration::ZERO,
            false,
        ),
        (
            "one call, server with TCP_NODELAY",
            Box::new(|b: &str| one_connection(b, &[])),
            Duration::ZERO,
            true,
        ),
        (
            "15 processes, server with TCP_NODELAY",
            Box::new(one_process_each),
            START_SPACING,
            true,
        ),
    ];
    let mut out = Vec::new();
    for (what, commands, spacing, on_nodelay) in ways {
        let (delayed, direct) = if on_nodelay {
            (&nodelay, &nodelay_direct)
        } else {
            (&delayed, &direct)
        };
        let median = |base: &str| -> Option<(Duration, Duration)> {
            let mut runs: Vec<(Duration, Duration)> = Vec::new();
            for _ in 0..3 {
                runs.push(run_all(&commands(base), spacing)?);
            }
            runs.sort();
            Some(runs[1])
        };
        let (Some((wall, cpu)), Some((wall_direct, _))) = (median(delayed), median(direct)) else {
            println!("  images alternative failed: {what}");
            continue;
        };
        out.push(Listing {
            what,
            wall,
            wall_direct,
            cpu,
            processes: commands(direct).len(),
        });
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn spread<T: Copy + PartialOrd>(mut v: Vec<T>) -> (T, T, T) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let args = parse_args();
    if Command::new("rsync").arg("--version").output().is_err() {
        eprintln!("round: the images fixtures need rsync: sudo apt-get install rsync");
        std::process::exit(2);
    }
    let up = start_upstream(&args);
    let dir = tempfile::tempdir().expect("temporary directory");
    let config_path = dir.path().join("config.toml");
    let config = Config {
        sources: up.sources.clone(),
        ..Default::default()
    };
    // Only [sources]: the rest are defaults, and an older binary (--bin)
    // may not know newer keys.
    let mut file = toml::Table::new();
    file.insert(
        "sources".into(),
        toml::Value::try_from(&config.sources).expect("sources serialise"),
    );
    std::fs::write(
        &config_path,
        toml::to_string_pretty(&file).expect("configuration serialises"),
    )
    .expect("configuration written");

    let lat = args.latency;
    println!("ubuntu-metrics: one round of every collector, in a fresh process per run");
    println!(
        "  command: {} run --now {NOW} --dry-run {} (output to /dev/null)",
        args.bin.display(),
        args.only
            .as_ref()
            .map_or("--all".to_owned(), |n| n.join(" "))
    );
    println!(
        "  added latency: {} ms per HTTP answer; rsync link {} ms per round trip ({} ms each way, delaying proxy)",
        ms(lat),
        ms(args.rsync_latency),
        ms(args.rsync_latency / 2)
    );
    println!(
        "  transport: {}",
        match args.tls {
            None => "plain HTTP/1.1 on loopback",
            Some(fixture_server::Alpn::H2AndHttp11) => {
                "TLS (test CA), HTTP/2 and HTTP/1.1 offered by ALPN (--tls h2)"
            }
            Some(fixture_server::Alpn::Http11Only) => {
                "TLS (test CA), HTTP/1.1 only (--tls http1)"
            }
        }
    );
    if args.one_host {
        println!("  hosts: every HTTP source on one fixture server (--one-host)");
    } else {
        println!(
            "  hosts: {} fixture servers, one per production host of the default [sources]",
            up.servers.len()
        );
    }
    println!(
        "  per-host limit: [http] max_per_host = {} (default)",
        config.http.max_per_host
    );
    println!(
        "  runs: {} measured{}",
        args.runs,
        if args.warmup > 0 {
            " after 1 warm-up"
        } else {
            " (quick mode: run by cargo test; use cargo bench for figures)"
        }
    );

    let alternatives = rsync_alternatives(&up);
    // The collector's own way is the first.
    let one_listing = alternatives.first().map(|l| l.wall);

    // Each run with its own state directory: a first round (nothing kept
    // for conditional requests yet), then a second round in the same
    // directory with every document unchanged.
    let fresh_state = |i: usize, tag: &str| {
        let d = dir.path().join(format!("state-{tag}-{i}"));
        std::fs::create_dir_all(&d).expect("state directory");
        d
    };
    for i in 0..args.warmup {
        run_once(&args, &up, &config_path, &fresh_state(i, "warmup"));
    }
    let mut runs = Vec::new();
    let mut seconds = Vec::new();
    println!();
    println!(
        "run      wall ms   cpu ms   peak RSS MiB   HTTP requests   rsync calls   bytes received   exit"
    );
    let row = |i: usize, what: &str, r: &Run| {
        println!(
            "{:>3} {:<6} {:>6}   {:>6}   {:>12.1}   {:>13}   {:>11}   {:>14}   {:>4}",
            i + 1,
            what,
            ms(r.wall),
            ms(r.cpu),
            r.maxrss_kib as f64 / 1024.0,
            r.http_total(),
            r.rsync,
            r.bytes,
            r.exit
        );
    };
    for i in 0..args.runs {
        let state = fresh_state(i, "run");
        let r = run_once(&args, &up, &config_path, &state);
        row(i, "first", &r);
        runs.push(r);
        let r = run_once(&args, &up, &config_path, &state);
        row(i, "second", &r);
        seconds.push(r);
    }
    let failed: Vec<&Run> = runs
        .iter()
        .chain(&seconds)
        .filter(|r| r.exit != 0)
        .collect();

    println!();
    println!("over {} run(s)          min   median      max", runs.len());
    let (a, b, c) = spread(runs.iter().map(|r| r.wall).collect());
    println!("wall, ms          {:>8} {:>8} {:>8}", ms(a), ms(b), ms(c));
    let wall_median = b;
    let (a, b, c) = spread(runs.iter().map(|r| r.cpu).collect());
    println!("CPU user+sys, ms  {:>8} {:>8} {:>8}", ms(a), ms(b), ms(c));
    let (a, b, c) = spread(runs.iter().map(|r| r.maxrss_kib as f64 / 1024.0).collect());
    println!("peak RSS, MiB     {a:>8.1} {b:>8.1} {c:>8.1}");
    let (a, b, c) = spread(runs.iter().map(|r| r.http_total() + r.rsync).collect());
    println!("upstream requests {a:>8} {b:>8} {c:>8}   (HTTP + rsync calls)");
    let (_, first_bytes, _) = spread(runs.iter().map(|r| r.bytes).collect());
    let (a, b, c) = spread(seconds.iter().map(|r| r.bytes).collect());
    println!(
        "bytes received: first round {first_bytes} (median); second round, documents unchanged: {a} / {b} / {c} (min / median / max), {:.1} % of the first",
        100.0 * b as f64 / first_bytes.max(1) as f64
    );
    if args.tls.is_some() {
        let (a, b, c) = spread(runs.iter().map(|r| r.tls.0).collect());
        let (_, h2, _) = spread(runs.iter().map(|r| r.tls.1).collect());
        println!("TLS connections    {a:>7} {b:>8} {c:>8}   (median {h2} of them HTTP/2)");
    }
    let (a, b, c) = spread(seconds.iter().map(|r| r.wall).collect());
    println!(
        "second round wall, ms {:>4} {:>8} {:>8}",
        ms(a),
        ms(b),
        ms(c)
    );
    let (a, b, c) = spread(seconds.iter().map(|r| r.cpu).collect());
    println!(
        "second round CPU, ms  {:>4} {:>8} {:>8}",
        ms(a),
        ms(b),
        ms(c)
    );

    // The median run (by wall time) for the breakdown.
    let mut by_wall: Vec<&Run> = runs.iter().collect();
    by_wall.sort_by_key(|r| r.wall);
    let median = by_wall[by_wall.len() / 2];

    println!();
    println!("per collector (the median run; requests and duration from the runner's log):");
    println!("collector         duration ms   HTTP requests   chain hops   chain ms");
    let chain_ms = |hops: u32| lat * hops;
    let mut critical: Vec<(String, Duration, String)> = Vec::new();
    let selected = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    };
    for (name, hops, chain) in CHAINS.iter().filter(|(n, _, _)| selected(n)) {
        let (requests, duration, ok) = median
            .collectors
            .get(*name)
            .copied()
            .unwrap_or((None, None, false));
        let mut t = chain_ms(*hops);
        let mut chain = chain.to_string();
        if *name == "images"
            && let Some(l) = one_listing
        {
            if l > t {
                t = l;
            }
            chain = format!("{chain}; its rsync listing: {} ms (measured)", ms(l));
        }
        println!(
            "{:<17} {:>11}   {:>13}   {:>10}   {:>8}{}",
            name,
            duration.map_or("-".into(), |d| d.to_string()),
            requests.map_or("-".into(), |r| r.to_string()),
            hops,
            ms(t),
            if ok { "" } else { "   FAILED" }
        );
        critical.push((name.to_string(), t, chain));
    }
    println!(
        "rsync calls (images): {}; HTTP requests by path: {}",
        median.rsync,
        median
            .http
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let hosts_line: Vec<String> = median
        .per_host
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(h, n)| format!("{h} {n}"))
        .collect();
    println!("HTTP requests by host: {}", hosts_line.join(", "));
    let total = median.http_total() + median.rsync;
    println!(
        "total upstream requests: {} HTTP + {} rsync = {total}",
        median.http_total(),
        median.rsync
    );

    if selected("images") && !alternatives.is_empty() {
        println!();
        println!(
            "images: ways of listing its {} paths (median of 3; CPU of the rsync processes)",
            ubuntu_metrics::collectors::images::urls("rsync://h/m/").len()
        );
        println!(
            "{:<48} processes   wall ms   no latency   (wall - no latency) / latency   cpu ms",
            "way"
        );
        for l in &alternatives {
            println!(
                "{:<48} {:>9}   {:>7}   {:>10}   {:>29.1}   {:>6}",
                l.what,
                l.processes,
                ms(l.wall),
                ms(l.wall_direct),
                l.wall.saturating_sub(l.wall_direct).as_secs_f64()
                    / args.rsync_latency.as_secs_f64().max(1e-9),
                ms(l.cpu)
            );
        }
    }

    critical.sort_by_key(|(_, t, _)| std::cmp::Reverse(*t));
    let (name, t, chain) =
        critical
            .first()
            .cloned()
            .unwrap_or(("(none)".into(), Duration::ZERO, String::new()));
    println!();
    println!("critical path: {} ms, {name}: {chain}", ms(t));
    let busiest = median
        .per_host
        .iter()
        .max_by_key(|(_, n)| *n)
        .cloned()
        .unwrap_or_default();
    let per_host_bound = lat * (busiest.1.div_ceil(config.http.max_per_host as u64) as u32);
    println!(
        "busiest host: {} with {} requests / {} in flight x {} ms = {} ms at least",
        busiest.0,
        busiest.1,
        config.http.max_per_host,
        ms(lat),
        ms(per_host_bound)
    );
    if !t.is_zero() {
        println!(
            "median wall / critical path = {:.2}",
            wall_median.as_secs_f64() / t.as_secs_f64()
        );
    }
    // Which sources share a production host (the grouping used).
    let mut by_host: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, h) in &up.hosts {
        by_host.entry(h.as_str()).or_default().push(k.as_str());
    }
    println!(
        "hosts of the default [sources]: {}",
        by_host
            .iter()
            .map(|(h, ks)| format!("{h} ({})", ks.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );

    if let Some(f) = &up.ca_file {
        let _ = std::fs::remove_file(f);
    }
    if !failed.is_empty() {
        eprintln!();
        eprintln!(
            "round: {} run(s) exited with an error; the last log:\n{}",
            failed.len(),
            failed[failed.len() - 1].log
        );
        std::process::exit(1);
    }
}
