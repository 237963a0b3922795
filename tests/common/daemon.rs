//! A `daemon` process in a test: started with a clean environment (its
//! state directory beside its configuration, standard error to `log`),
//! signalled, waited for, and its runs read back from InfluxDB.

use super::influxd::{self, Influxd};
use fixture_server::FixtureServer;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon configuration: every source at `server`, InfluxDB at
/// `influx_url` (database [`influxd::DATABASE`]), no start-up or random
/// delay (every enabled collector is due at start); the rest as the
/// defaults, for the test to set.
pub fn config(server: &FixtureServer, influx_url: &str) -> ubuntu_metrics::config::Config {
    use ubuntu_metrics::model::timespan::TimeSpan;
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.influxdb.url = influx_url.to_owned().into();
    config.influxdb.database = influxd::DATABASE.to_owned();
    config.daemon.startup_delay = TimeSpan::parse("0").unwrap();
    config.daemon.random_delay = TimeSpan::parse("0").unwrap();
    config
}

/// Starts `ubuntu-metrics --config CONFIG daemon`.
pub fn start_daemon(config: &Path, log: &Path) -> Child {
    start_daemon_with(config, log, None)
}

/// [`start_daemon`], with its descriptor limit (`RLIMIT_NOFILE`, soft and
/// hard) set to `nofile` when given, as `ulimit -n` or `LimitNOFILE=` would.
pub fn start_daemon_with(config: &Path, log: &Path, nofile: Option<u64>) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_ubuntu-metrics"));
    super::clean_env(&mut c);
    c.args(["--config", config.to_str().unwrap(), "daemon"])
        // The default spool moves into the test's directory.
        .env(
            "UBUNTU_METRICS_STATE_DIR",
            config.parent().expect("config in a directory"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        let limit = libc::rlimit {
            rlim_cur: n as libc::rlim_t,
            rlim_max: n as libc::rlim_t,
        };
        // SAFETY: setrlimit(2) is async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    c.spawn().unwrap()
}

/// `kill -SIG PID`.
pub fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The exit status within `limit`, or `None` (and the child killed).
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Self-metrics runs of a collector: (time ns, status), in time order.
pub fn runs(db: &Influxd, collector: &str) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = db
        .rows("ubuntu_metrics_run")
        .into_iter()
        .filter(|r| r.get("collector").and_then(|c| c.as_str()) == Some(collector))
        .map(|r| {
            (
                r["time"].as_i64().unwrap(),
                r["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}
