//! A real `influxd` (Debian package `influxdb`, 1.6.x) for tests: started on
//! free loopback ports in a temporary directory, stopped when dropped.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DATABASE: &str = "metrics";
/// The admin user created when `auth` is on.
pub const ADMIN: (&str, &str) = ("admin", "admin-test-pw");

/// Options for the server (plain HTTP without auth by default).
#[derive(Default, Clone)]
pub struct Options {
    /// `[http] auth-enabled = true`.
    pub auth: bool,
    /// Serve https with this certificate and key (PEM files).
    pub https: Option<(PathBuf, PathBuf)>,
    /// Do not create the database.
    pub no_database: bool,
    /// With `auth`: do not create the admin user either (a fresh server).
    pub no_admin: bool,
}

pub struct Influxd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    options: Options,
    rpc_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The path of `influxd`, or a failure saying how to install it.
pub fn influxd_binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = Path::new(dir).join("influxd");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "influxd not found: these tests need a real InfluxDB 1.x server. Install it with \
         `sudo apt-get install influxdb` (or run ./scripts/test, which does)."
    );
}

impl Influxd {
    pub fn start() -> Influxd {
        Influxd::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Influxd {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Influxd {
            port: free_port(),
            rpc_port: free_port(),
            dir,
            child: None,
            options,
        };
        server.launch();
        if server.options.auth && !server.options.no_admin {
            // Allowed without credentials while the server has no user.
            server.query_as(
                &format!(
                    "CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
                    ADMIN.0, ADMIN.1
                ),
                None,
            );
        }
        if !server.options.no_database {
            server.query_admin(&format!("CREATE DATABASE {DATABASE}"));
        }
        server
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path();
        let https = match &self.options.https {
            Some((cert, key)) => format!(
                "https-enabled = true\n  https-certificate = \"{}\"\n  https-private-key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let conf = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  auth-enabled = {auth}
  {https}
[continuous_queries]
  enabled = false
"#,
            rpc = self.rpc_port,
            d = d.display(),
            port = self.port,
            auth = self.options.auth,
        );
        let path = d.join("influxdb.conf");
        std::fs::write(&path, conf).expect("write influxdb.conf");
        path
    }

    fn launch(&mut self) {
        let conf = self.write_config();
        let log = std::fs::File::create(self.dir.path().join("influxd.log")).expect("log file");
        let child = Command::new(influxd_binary())
            .arg("-config")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("influxd starts");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("influxd exited early ({status}); its log:\n{}", self.log());
            }
            if self.ping() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "influxd did not answer /ping within 60 s; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let scheme = if self.options.https.is_some() {
            "https"
        } else {
            "http"
        };
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{scheme}://127.0.0.1:{}/ping", self.port))
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout) == "204",
            Err(_) => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("influxd.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn url(&self) -> String {
        let scheme = if self.options.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL), keeping its data for a restart.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs an InfluxQL statement with admin rights (none needed without
    /// auth) and returns the JSON answer.
    pub fn query_admin(&self, q: &str) -> serde_json::Value {
        self.query_as(q, self.options.auth.then_some(ADMIN))
    }

    /// The write requests influxd has answered since it started (its own
    /// count, `httpd.writeReq` of `/debug/vars`: no stand-in in between).
    #[allow(dead_code)] // not every test binary counts requests
    pub fn write_requests(&self) -> i64 {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("{}/debug/vars", self.url())])
            .output()
            .expect("curl runs");
        let vars: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("influxd's /debug/vars");
        vars.as_object()
            .unwrap()
            .values()
            .filter(|v| v["name"] == "httpd")
            .map(|v| v["values"]["writeReq"].as_i64().unwrap_or(0))
            .sum()
    }

    /// Runs an InfluxQL query against the test database (as admin).
    pub fn query(&self, q: &str) -> serde_json::Value {
        self.query_admin(q)
    }

    pub fn query_as(&self, q: &str, user: Option<(&str, &str)>) -> serde_json::Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-XPOST"]);
        if user.is_some() {
            cmd.arg("--config").arg("-");
        }
        let url = format!("{}/query", self.url());
        cmd.arg(url)
            .arg("--data-urlencode")
            .arg(format!("db={DATABASE}"))
            .arg("--data-urlencode")
            .arg(format!("q={q}"))
            .arg("--data-urlencode")
            .arg("epoch=ns");
        let out = if let Some((u, p)) = user {
            // Credentials through stdin, never argv.
            use std::io::Write;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("curl");
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "user = \"{u}:{p}\"").expect("write");
            drop(stdin);
            child.wait_with_output().expect("curl")
        } else {
            cmd.output().expect("curl runs")
        };
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "query {q:?}: bad answer {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Writes line protocol to the test database (without authentication),
    /// asserting InfluxDB took it.
    pub fn write(&self, lines: &str) {
        let out = Command::new("curl")
            .args(["-sk", "-w", "%{http_code}", "-XPOST"])
            .arg(format!("{}/write?db={DATABASE}", self.url()))
            .arg("--data-binary")
            .arg(lines)
            .output()
            .expect("curl runs");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(answer.ends_with("204"), "write {lines:?}: {answer}");
    }

    /// Every row of `SELECT * FROM <measurement>` as (column -> value)
    /// maps, with `epoch=ns` times.
    pub fn rows(&self, measurement: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let v = self.query(&format!(
            "SELECT * FROM \"{}\"",
            measurement.replace('"', "\\\"")
        ));
        let mut out = Vec::new();
        for series in v["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let cols: Vec<String> = series["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().unwrap_or("").to_owned())
                .collect();
            for row in series["values"].as_array().cloned().unwrap_or_default() {
                let mut m = serde_json::Map::new();
                for (c, val) in cols.iter().zip(row.as_array().expect("row")) {
                    if !val.is_null() {
                        m.insert(c.clone(), val.clone());
                    }
                }
                out.push(m);
            }
        }
        out
    }

    /// Field keys and their types for a measurement (`SHOW FIELD KEYS`).
    pub fn field_types(&self, measurement: &str) -> Vec<(String, String)> {
        let v = self.query(&format!("SHOW FIELD KEYS FROM \"{measurement}\""));
        v["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or("").to_owned(),
                    r[1].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}
