//! A real single-node VictoriaMetrics (Debian's `victoria-metrics`) on a
//! free loopback port in a temporary directory: a second engine that takes
//! both InfluxDB write APIs (`/write` and `/api/v2/write`).

use influxdb_line_protocol::{FieldValue, parse_lines};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Victoria {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The path of `victoria-metrics`, or a failure saying how to install it.
pub fn binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin"])
    {
        let p = PathBuf::from(dir).join("victoria-metrics");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "victoria-metrics is not installed; install it with `sudo apt-get install victoria-metrics` (Debian and Ubuntu), or run ./scripts/test which does"
    );
}

impl Victoria {
    pub fn start() -> Victoria {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut v = Victoria {
            port,
            dir,
            child: None,
        };
        v.restart();
        v
    }

    /// Starts it again (same port, same data) after [`Victoria::stop`].
    pub fn restart(&mut self) {
        let child = Command::new(binary())
            .arg(format!("-storageDataPath={}", self.dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            // The fixtures' points are from 2026: keep them all, and
            // answer queries with the newest samples at once.
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.get("/health").as_deref() != Some("OK") {
            assert!(Instant::now() < deadline, "victoria-metrics did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGTERM: it flushes what it took, as it does when its
    /// service stops; a SIGKILL loses its last second of writes, which no
    /// writer can see): its port refuses connections until a restart.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("{}{path}", self.url()))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every sample stored, as `(metric name with sorted labels, ms, value)`:
    /// the export API after a flush of what was just written.
    pub fn export(&self) -> Vec<(String, i64, f64)> {
        self.get("/internal/force_flush");
        let text = self
            .get("/api/v1/export?match[]=%7B__name__%3D~%22.%2B%22%7D")
            .expect("export answers");
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("export is JSON lines");
            let metric = v["metric"].as_object().expect("a metric");
            // (`db`: the label VictoriaMetrics adds from `/write?db=`.)
            let mut labels: Vec<String> = metric
                .iter()
                .filter(|(k, _)| *k != "__name__" && *k != "db")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            labels.sort();
            let name = format!(
                "{}{{{}}}",
                metric["__name__"].as_str().unwrap(),
                labels.join(",")
            );
            let values = v["values"].as_array().unwrap();
            let times = v["timestamps"].as_array().unwrap();
            for (t, x) in times.iter().zip(values) {
                out.push((name.clone(), t.as_i64().unwrap(), x.as_f64().unwrap()));
            }
        }
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The numeric samples of `lines` as VictoriaMetrics names them
/// (`MEASUREMENT_FIELD{tags}`, milliseconds), shifted by `shift_ms`: every
/// value written at that key (images writes a few series twice at one
/// time: InfluxDB keeps the last, VictoriaMetrics may keep either).
pub fn samples(lines: &[String], shift_ms: i64) -> BTreeMap<(String, i64), Vec<f64>> {
    let mut out = BTreeMap::new();
    for line in lines {
        let p = parse_lines(line).next().unwrap().unwrap();
        let mut labels: Vec<String> = p
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        for (field, value) in &p.field_set {
            let v = match value {
                FieldValue::I64(i) => *i as f64,
                FieldValue::U64(u) => *u as f64,
                FieldValue::F64(f) => *f,
                FieldValue::Boolean(b) => f64::from(u8::from(*b)),
                // (VictoriaMetrics keeps numbers only.)
                FieldValue::String(_) => continue,
            };
            let name = format!("{}_{field}{{{}}}", p.series.measurement, labels.join(","));
            out.entry((name, p.timestamp.unwrap() / 1_000_000 + shift_ms))
                .or_insert_with(Vec::new)
                .push(v);
        }
    }
    out
}

/// Fails with what differs (a few of each kind), not both whole maps.
pub fn same(got: &BTreeMap<(String, i64), f64>, want: &BTreeMap<(String, i64), Vec<f64>>) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| !v.contains(g)))
        .take(5)
        .map(|(k, v)| (k, v, got[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && wrong.is_empty(),
        "missing {missing:?}\nextra {extra:?}\nwrong (want, got) {wrong:?}\n({} stored, {} wanted)",
        got.len(),
        want.len()
    );
}

/// The lines of a collector's `expected.out` (without comments).
pub fn expected_lines(collector: &str) -> Vec<String> {
    std::fs::read_to_string(super::fixtures().join(collector).join("expected.out"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
