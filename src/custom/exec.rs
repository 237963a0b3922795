//! `type = "exec"`: a script in any language, run once per collection.
//!
//! The command is an argument vector (no shell). The child gets a minimal
//! environment ([`Exec::environment`]: `PATH`, `LANG`, `TZ=UTC`, the
//! collector's name and the collection time) plus the configured `env` and
//! `pass_env`; never the InfluxDB settings or credentials. It runs in a
//! process group of its own: at its timeout, when its run is abandoned, and
//! when it has exited, the whole group is killed, so nothing it started
//! outlives its run. Its standard output is the points ([`super::points`]);
//! its standard error goes to the log line by line under the collector's
//! name, and the last lines are in the error of a failed run.

use super::{Section, option_error, points};
use crate::collector::{CollectorError, Context, OptionError};
use crate::point::Point;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// The default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default `max_output`.
pub const DEFAULT_MAX_OUTPUT: u64 = 16_000_000;
/// The lines of standard error kept for a failed run's message.
pub const STDERR_LINES_KEPT: usize = 5;
/// The `PATH` of the child when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Set for the child: the collector's name.
pub const COLLECTOR_ENV: &str = "UBUNTU_METRICS_COLLECTOR";
/// Set for the child: the collection time (RFC 3339), the default time of
/// its points (`run --now` replays set it).
pub const NOW_ENV: &str = "UBUNTU_METRICS_NOW";

/// A checked `exec` declaration.
#[derive(Debug, Clone)]
pub struct Exec {
    command: Vec<String>,
    dir: Option<PathBuf>,
    env: BTreeMap<String, String>,
    pass_env: Vec<String>,
    timeout: Duration,
    max_output: u64,
}

/// Variables a script may never be given, even when listed.
fn forbidden(name: &str) -> bool {
    name.starts_with("INFLUXDB_") || name == "CREDENTIALS_DIRECTORY" || name == "NOTIFY_SOCKET"
}

impl Exec {
    pub(super) fn new(s: &Section) -> Result<Exec, OptionError> {
        let command = match &s.command {
            Some(c) if !c.is_empty() && !c[0].is_empty() => c.clone(),
            _ => {
                return Err(option_error(
                    "command",
                    "an exec collector needs command = [\"PROGRAM\", \"ARGUMENT\", ...]",
                ));
            }
        };
        for name in s.env.keys().chain(&s.pass_env) {
            if forbidden(name) {
                return Err(option_error(
                    if s.env.contains_key(name) {
                        "env"
                    } else {
                        "pass_env"
                    },
                    format!(
                        "{name}: the InfluxDB settings and credentials are never given to a script"
                    ),
                ));
            }
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(option_error(
                    "env",
                    format!("{name:?} is not a variable name"),
                ));
            }
        }
        let timeout = match &s.timeout {
            Some(t) if t.as_usec() == 0 => {
                return Err(option_error("timeout", "must be more than zero"));
            }
            Some(t) => t.as_duration(),
            None => DEFAULT_TIMEOUT,
        };
        let max_output = match &s.max_output {
            Some(m) => crate::config::parse_size(m).map_err(|e| option_error("max_output", e))?,
            None => DEFAULT_MAX_OUTPUT,
        };
        Ok(Exec {
            command,
            dir: s.dir.clone(),
            env: s.env.clone(),
            pass_env: s.pass_env.clone(),
            timeout,
            max_output,
        })
    }

    /// The program, for messages.
    pub fn program(&self) -> &str {
        &self.command[0]
    }

    /// The child's whole environment.
    pub fn environment(&self, name: &str, ctx: &Context) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned()),
        );
        env.insert("LANG".to_owned(), "C.UTF-8".to_owned());
        // A script's naive `datetime.now()` is then UTC, which is how a
        // time without an offset is read back.
        env.insert("TZ".to_owned(), "UTC".to_owned());
        env.insert("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned());
        if let Ok(home) = std::env::var("HOME") {
            env.insert("HOME".to_owned(), home);
        }
        env.insert(COLLECTOR_ENV.to_owned(), name.to_owned());
        env.insert(
            NOW_ENV.to_owned(),
            ctx.now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        );
        for v in &self.pass_env {
            if let Ok(value) = std::env::var(v) {
                env.insert(v.clone(), value);
            }
        }
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    /// Runs the script once: its points, checked against nothing yet (the
    /// caller checks the schema).
    pub async fn collect(&self, name: &str, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let fail = |m: String| CollectorError::Other(format!("{name}: {m}"));
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .env_clear()
            .envs(self.environment(name, ctx))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot start {:?}: {e}", self.command[0])))?;
        let group = Group(child.id().map(|p| p as libc::pid_t));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let max = self.max_output;

        let read_out = async {
            let mut buf = Vec::new();
            let mut limited = stdout.take(max + 1);
            limited
                .read_to_end(&mut buf)
                .await
                .map_err(|e| format!("reading its standard output: {e}"))?;
            if buf.len() as u64 > max {
                group.kill();
                return Err(format!(
                    "its standard output is over the limit of {max} bytes (max_output); the run was stopped"
                ));
            }
            Ok(buf)
        };
        let read_err = async {
            let mut last: VecDeque<String> = VecDeque::new();
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!("{name}: {line}");
                if last.len() == STDERR_LINES_KEPT {
                    last.pop_front();
                }
                last.push_back(line);
            }
            last
        };
        let all = async {
            let (out, err) = tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (out, err, status)
        };
        let Ok((out, err, status)) = tokio::time::timeout(self.timeout, all).await else {
            group.kill();
            return Err(fail(format!(
                "timed out after {:.1} s (timeout): its process group was killed",
                self.timeout.as_secs_f64()
            )));
        };
        // Whatever it left running in its group goes with it.
        group.kill();
        let stderr_tail = || {
            if err.is_empty() {
                "(nothing on standard error)".to_owned()
            } else {
                err.iter().cloned().collect::<Vec<_>>().join(" | ")
            }
        };
        // Over the output limit, it was killed: that is the error.
        let out = out.map_err(fail)?;
        let status = status.map_err(|e| fail(format!("waiting for it: {e}")))?;
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let how = match (status.code(), status.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "failed".to_owned(),
            };
            return Err(fail(format!("{how}: {}", stderr_tail())));
        }
        let text = String::from_utf8(out)
            .map_err(|e| fail(format!("its standard output is not UTF-8: {e}")))?;
        points::parse_output(&text).map_err(|e| fail(format!("standard output {e}")))
    }
}

/// A child's process group, killed on demand and when dropped (a run
/// abandoned at the run timeout drops its future).
struct Group(Option<libc::pid_t>);

impl Group {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals a process group;
            // it touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
