//! A real single-node VictoriaMetrics (Debian's `victoria-metrics`) on a
//! free loopback port in a temporary directory: a second engine that takes
//! both InfluxDB write APIs (`/write` and `/api/v2/write`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Victoria {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
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
        let child = Command::new(binary())
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            // The fixtures' points are from 2026: keep them all, and
            // answer queries with the newest samples at once.
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics starts");
        let v = Victoria {
            port,
            _dir: dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while v.get("/health").as_deref() != Some("OK") {
            assert!(Instant::now() < deadline, "victoria-metrics did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        v
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
            let mut labels: Vec<String> = metric
                .iter()
                .filter(|(k, _)| *k != "__name__")
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
