//! Listing an rsync server with the `rsync` client, never downloading.
//!
//! Each listing runs
//! `rsync [-4] --dry-run -RL --out-format='%l %M %f' --archive <url> <scratch>`
//! with `TZ=UTC` (rsync prints modification times in its own local time)
//! and `LC_ALL=C` (stable messages and numbers). `--dry-run` makes rsync
//! compare against an empty scratch directory and print what it *would*
//! transfer: one line `<size> <YYYY/MM/DD-HH:MM:SS> <relative path>` per
//! file and directory. `-R` keeps the whole path below the module, `-L`
//! follows symbolic links (the `current` links of cdimage).
//!
//! rsync exits 23 both when a pattern matches nothing and when some file
//! could not be read, and 24 when files vanished during the listing: the
//! lines it printed are valid then and are returned. Any other failure, and
//! a call that does not finish within its timeout (the child is killed), is
//! an error for that call only.
//!
//! `-4` (as the first generation ran it) is passed unless the URL's host is
//! an IPv6 literal, where it could only fail. `--sockopts=TCP_NODELAY`
//! sends the client's small protocol messages at once: without it, Nagle's
//! algorithm holds one of them until the server's delayed ACK (40 ms on
//! Linux), on every call.

use chrono::{DateTime, NaiveDateTime, Utc};
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// One line of an rsync listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (UTC: rsync runs with `TZ=UTC`).
    pub modified: DateTime<Utc>,
    /// Path relative to the module (`-R`), e.g. `daily-live/current/x.iso`.
    pub path: String,
}

/// What one rsync call printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// 0, or 23/24 (a partial listing: see the module documentation).
    pub exit_code: i32,
    /// rsync's messages, on one line (`; `-separated), cut to a sane length.
    pub stderr: String,
}

impl Listing {
    /// Logs (debug) a partial listing of `what`, whose lines are used.
    pub fn log_partial(&self, what: &str) {
        if self.exit_code != 0 {
            tracing::debug!(
                "{what}: rsync exit {} (a pattern matched nothing, or some files were unreadable); its {} lines are used: {}",
                self.exit_code,
                self.entries.len(),
                self.stderr
            );
        }
    }
}

/// Why one rsync call gave no listing. Every variant names the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsyncError {
    #[error(
        "cannot list {url}: the rsync program {program:?} was not found; install rsync (apt install rsync)"
    )]
    NotInstalled { url: String, program: String },
    #[error("{url}: cannot run rsync: {message}")]
    Spawn { url: String, message: String },
    /// The host could not be reached: its name does not resolve, or rsync
    /// could not connect. The message names the host and the cause, not
    /// every pattern asked for.
    #[error("{message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: rsync did not finish within {timeout:?} and was killed")]
    Timeout { url: String, timeout: Duration },
    #[error(
        "{url}: the listing is larger than {max} bytes; rsync was stopped (the limit is [http] max_body; raise it if this listing is genuine)"
    )]
    TooLarge { url: String, max: u64 },
    #[error("{url}: rsync failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Failed {
        url: String,
        status: String,
        stderr: String,
    },
}

/// An rsync client for listings: the program, a per-call timeout, and an
/// empty scratch directory (removed when dropped) used as the destination.
pub struct Rsync {
    program: OsString,
    timeout: Duration,
    max_output: u64,
    scratch: tempfile::TempDir,
    /// A recording being made or replayed.
    tape: Option<std::sync::Arc<crate::sources::tape::Tape>>,
}

const MAX_STDERR: usize = 2000;
/// rsync's messages kept (the rest is read and dropped).
const MAX_STDERR_READ: u64 = 64 * 1024;
/// The largest listing read unless [`Rsync::with_max_output`] says
/// otherwise (the `[http] max_body` default).
const DEFAULT_MAX_OUTPUT: u64 = 64_000_000;

/// The time between the starts of two calls of [`Rsync::list_all`]. An
/// rsync daemon listens with a backlog of 5 connections (rsync's default
/// `listen backlog`): 15 connections opened at the same instant overflow
/// it now and then, and a dropped connection attempt is retried by the
/// kernel only after 1 s. Measured against the fixtures' daemon (20 ms
/// round trips, 15 calls): 6 of 100 rounds took over 0.8 s without
/// spacing, none with 3 ms, at no cost in the median.
pub const START_SPACING: Duration = Duration::from_millis(3);

impl Rsync {
    /// The `rsync` found on `PATH`, with `timeout` per call.
    pub fn new(timeout: Duration) -> std::io::Result<Rsync> {
        Rsync::with_program("rsync", timeout)
    }

    pub fn with_program(program: impl Into<OsString>, timeout: Duration) -> std::io::Result<Rsync> {
        let scratch = tempfile::Builder::new()
            .prefix("ubuntu-metrics-rsync-")
            .tempdir()?;
        Ok(Rsync {
            program: program.into(),
            timeout,
            max_output: DEFAULT_MAX_OUTPUT,
            scratch,
            tape: None,
        })
    }

    /// The same client stopping (killing) an rsync whose listing exceeds
    /// `max` bytes: the call fails with [`RsyncError::TooLarge`] having
    /// buffered at most `max` bytes.
    pub fn with_max_output(mut self, max: u64) -> Rsync {
        self.max_output = max;
        self
    }

    /// The same client recording its listings to `tape`, or (a replay)
    /// answering from it without running rsync.
    pub fn with_tape(mut self, tape: Option<std::sync::Arc<crate::sources::tape::Tape>>) -> Rsync {
        self.tape = tape;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The arguments of the call listing `url` (after the program name).
    pub fn args(&self, url: &str) -> Vec<OsString> {
        self.args_together(&[url])
    }

    /// The arguments of one call listing every URL of `urls` (several
    /// sources of one daemon module: rsync asks for them all over one
    /// connection).
    pub fn args_together(&self, urls: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if !urls.iter().any(|u| host_is_ipv6(u)) {
            args.push("-4".into());
        }
        for a in [
            "--sockopts=TCP_NODELAY",
            "--dry-run",
            "-RL",
            "--out-format=%l %M %f",
            "--archive",
        ] {
            args.push(a.into());
        }
        args.extend(urls.iter().map(OsString::from));
        args.push(self.scratch_arg());
        args
    }

    /// The scratch directory with a trailing `/`, so rsync treats it as a
    /// directory.
    fn scratch_arg(&self) -> OsString {
        let mut s = self.scratch.path().as_os_str().to_owned();
        s.push("/");
        s
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Lists `url` (`rsync://host/module/pattern`) once.
    pub async fn list(&self, url: &str) -> Result<Listing, RsyncError> {
        self.call(url, &[url]).await
    }

    /// Lists every URL of `urls` (`rsync://host/module/pattern`, all of one
    /// module) in one call, over one connection: one listing, sorted as
    /// rsync sorts its file list. A pattern matching nothing makes it a
    /// partial listing (exit 23) as for a single URL; a failure is the
    /// failure of them all, named by the URLs joined with spaces.
    pub async fn list_together(&self, urls: &[String]) -> Result<Listing, RsyncError> {
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        self.call(&urls.join(" "), &urls).await
    }

    /// One rsync call listing `urls`; `url` names it in errors and in a
    /// recording.
    async fn call(&self, url: &str, urls: &[&str]) -> Result<Listing, RsyncError> {
        if let Some(replayed) = self.replayed(url) {
            return replayed;
        }
        // A name that does not resolve fails every call alike, and each
        // rsync would ask the resolver again (seconds each, offline).
        if let Some(first) = urls.first()
            && let Err(e) = crate::sources::http::resolves(first).await
        {
            return Err(RsyncError::Unreachable {
                url: url.to_owned(),
                message: e.to_string(),
            });
        }
        let output = self.run(url, urls).await?;
        let stderr = one_line(&String::from_utf8_lossy(&output.stderr));
        let code = output.status.code().unwrap_or(-1);
        if let Some(t) = &self.tape {
            t.put_rsync(url, code, &output.stdout, &stderr);
        }
        listing_of(url, code, &output.stdout, stderr, || {
            output.status.to_string()
        })
    }

    /// The listing a replayed recording holds for `url`, if one is being
    /// replayed; held to the output limit as a live one is.
    fn replayed(&self, url: &str) -> Option<Result<Listing, RsyncError>> {
        let replayed = self.tape.as_ref()?.get_rsync(url, self.max_output)?;
        let listing = replayed
            .map_err(|e| RsyncError::Spawn {
                url: url.to_owned(),
                message: e.to_string(),
            })
            .and_then(|(code, stdout, stderr)| {
                if stdout.len() as u64 > self.max_output {
                    return Err(RsyncError::TooLarge {
                        url: url.to_owned(),
                        max: self.max_output,
                    });
                }
                listing_of(url, code, &stdout, stderr, || {
                    format!("exit status: {code}")
                })
            });
        Some(listing)
    }

    /// Starts rsync listing `urls`, its output piped.
    fn spawn(&self, url: &str, urls: &[&str]) -> Result<tokio::process::Child, RsyncError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.args_together(urls))
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RsyncError::NotInstalled {
                    url: url.to_owned(),
                    program: self.program.to_string_lossy().into_owned(),
                }
            } else {
                RsyncError::Spawn {
                    url: url.to_owned(),
                    message: e.to_string(),
                }
            }
        })
    }

    /// Runs rsync listing `urls` to its end: its status, its listing (at
    /// most the output limit: over it, rsync is killed) and the start of
    /// its messages; killed after the timeout.
    async fn run(&self, url: &str, urls: &[&str]) -> Result<std::process::Output, RsyncError> {
        let mut child = self.spawn(url, urls)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let max = self.max_output;
        // The future owns the child: dropping it on timeout kills rsync.
        let run = async move {
            // stderr is drained on its own task so that rsync never blocks
            // on a full pipe; only its start is kept.
            let stderr = tokio::spawn(read_capped(stderr, MAX_STDERR_READ, true));
            let (stdout, over) = read_capped(stdout, max, false).await?;
            if over {
                let _ = child.start_kill();
                let _ = child.wait().await;
                stderr.abort();
                return Ok(None);
            }
            let status = child.wait().await?;
            let (stderr, _) = stderr.await.unwrap_or_else(|_| Ok((Vec::new(), false)))?;
            Ok::<_, std::io::Error>(Some(std::process::Output {
                status,
                stdout,
                stderr,
            }))
        };
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => Err(RsyncError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(RsyncError::Spawn {
                url: url.to_owned(),
                message: e.to_string(),
            }),
            Ok(Ok(None)) => Err(RsyncError::TooLarge {
                url: url.to_owned(),
                max,
            }),
            Ok(Ok(Some(o))) => Ok(o),
        }
    }

    /// Lists every URL, at most `concurrency` calls at a time, call `i`
    /// starting no earlier than `i` × [`START_SPACING`]; results in the
    /// order of `urls`.
    pub async fn list_all(
        &self,
        urls: &[String],
        concurrency: usize,
    ) -> Vec<Result<Listing, RsyncError>> {
        // A semaphore and join_all rather than a buffered stream: the
        // stream's closure type makes the future not provably Send.
        let permits = tokio::sync::Semaphore::new(concurrency.max(1));
        let calls = urls.iter().enumerate().map(|(i, url)| {
            let permits = &permits;
            async move {
                tokio::time::sleep(START_SPACING * i as u32).await;
                let _permit = permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.list(url).await
            }
        });
        futures::future::join_all(calls).await
    }
}

/// Reads `r` to its end keeping at most `max` bytes; returns them and
/// whether there was more. Stops at the first byte over `max` unless
/// `drain` (then reads and drops the rest).
async fn read_capped(
    mut r: impl tokio::io::AsyncRead + Unpin,
    max: u64,
    drain: bool,
) -> std::io::Result<(Vec<u8>, bool)> {
    use tokio::io::AsyncReadExt;
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut over = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, over));
        }
        let room = max - out.len();
        if n > room {
            out.extend_from_slice(&buf[..room]);
            over = true;
            if !drain {
                return Ok((out, true));
            }
        } else {
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// Whether the host of `url` is an IPv6 literal (`rsync://[::1]/...`).
fn host_is_ipv6(url: &str) -> bool {
    matches!(
        url::Url::parse(url).ok().as_ref().and_then(|u| u.host()),
        Some(url::Host::Ipv6(_))
    )
}

/// rsync's messages on one line, at most [`MAX_STDERR`] characters.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.chars().count() > MAX_STDERR {
        let cut: String = joined.chars().take(MAX_STDERR).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

/// Parses the lines `<size> <YYYY/MM/DD-HH:MM:SS> <path>` of a listing;
/// other lines (rsync's messages, anything malformed) are skipped.
/// The listing of an rsync call that exited with `code` (0, 23 and 24
/// give one; see the module documentation), or its failure.
fn listing_of(
    url: &str,
    code: i32,
    stdout: &[u8],
    stderr: String,
    status: impl FnOnce() -> String,
) -> Result<Listing, RsyncError> {
    match code {
        0 | 23 | 24 => Ok(Listing {
            entries: parse_listing(&String::from_utf8_lossy(stdout)),
            exit_code: code,
            stderr,
        }),
        // 10: rsync's "error in socket I/O", which it also exits with when
        // it cannot connect.
        10 if unreachable(url, &stderr).is_some() => Err(RsyncError::Unreachable {
            url: url.to_owned(),
            message: unreachable(url, &stderr).unwrap_or_default(),
        }),
        _ => Err(RsyncError::Failed {
            url: url.to_owned(),
            status: status(),
            stderr,
        }),
    }
}

/// `cannot connect to HOST:PORT (why)` or `cannot resolve HOST (why)` when
/// rsync's messages say it could not reach the daemon of `url` (the first
/// of them, when several are listed together).
fn unreachable(url: &str, stderr: &str) -> Option<String> {
    let first = url.split(' ').next().unwrap_or(url);
    let u = url::Url::parse(first).ok()?;
    let host = u.host_str()?;
    let why = if stderr.contains("Connection refused") {
        "connection refused"
    } else if stderr.contains("Network is unreachable") {
        "network unreachable"
    } else if stderr.contains("No route to host") {
        "host unreachable"
    } else if stderr.contains("Connection timed out") {
        "timed out"
    } else if stderr.contains("getaddrinfo") {
        return Some(format!("cannot resolve {host}"));
    } else {
        return None;
    };
    Some(format!(
        "cannot connect to {host}:{} ({why})",
        u.port().unwrap_or(873)
    ))
}

pub fn parse_listing(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let entry = parse_line(line);
            if entry.is_none() && !line.trim().is_empty() {
                tracing::debug!("rsync listing: line not understood, skipped: {line:?}");
            }
            entry
        })
        .collect()
}

/// One listing line. The size may carry thousands separators (`,`), as
/// rsync prints with `--human-readable`; the path is everything after the
/// second space (it may contain spaces).
pub fn parse_line(line: &str) -> Option<Entry> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.splitn(3, ' ');
    let size = parts.next()?;
    let time = parts.next()?;
    let path = parts.next()?;
    if size.is_empty()
        || !size.chars().all(|c| c.is_ascii_digit() || c == ',')
        || !size.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let size: u64 = size.replace(',', "").parse().ok()?;
    let modified = NaiveDateTime::parse_from_str(time, "%Y/%m/%d-%H:%M:%S")
        .ok()?
        .and_utc();
    if path.is_empty() {
        return None;
    }
    Some(Entry {
        size,
        modified,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// rsync's exit 10 with its own words for a daemon out of reach
    /// becomes the short "cannot reach" message; other failures stay.
    #[test]
    fn an_unreachable_daemon_is_said_in_few_words() {
        let url = "rsync://127.0.0.1:1/cdimage/daily*/*.iso rsync://127.0.0.1:1/cdimage/x";
        let refused = "rsync: failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111); rsync error: error in socket IO (code 10) at clientserver.c(139) [Receiver=3.2.7]";
        let e = listing_of(url, 10, b"", refused.into(), || "exit status: 10".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot connect to 127.0.0.1:1 (connection refused)"
        );
        let gai = "rsync: getaddrinfo: cdimage.ubuntu.invalid 873: Name or service not known";
        let e = listing_of(
            "rsync://cdimage.ubuntu.invalid/cdimage/x",
            10,
            b"",
            gai.into(),
            || "exit status: 10".into(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "cannot resolve cdimage.ubuntu.invalid");
        let other = listing_of(url, 5, b"", "@ERROR: Unknown module".into(), || {
            "exit status: 5".into()
        })
        .unwrap_err();
        assert!(matches!(other, RsyncError::Failed { .. }), "{other:?}");
    }

    #[test]
    fn parses_lines_and_skips_the_rest() {
        let text = "4096 2026/11/24-06:00:00 daily-live\n\
                    6012345678 2026/11/24-05:30:00 daily-live/current/tumbling-desktop-amd64.iso\n\
                    1,234,567 2026/01/02-03:04:05 a b/c d.iso\r\n\
                    symlink has no referent: \"x\" (in cdimage)\n\
                    rsync error: some files/attrs were not transferred (code 23)\n\
                    \n\
                    12 2026/13/01-00:00:00 bad-month.iso\n\
                    12 2026-11-01T00:00:00 other-format.iso\n\
                    -5 2026/11/01-00:00:00 negative.iso\n\
                    ,5 2026/11/01-00:00:00 comma.iso\n\
                    99999999999999999999999 2026/11/01-00:00:00 too-big.iso\n\
                    12 2026/11/01-00:00:00\n\
                    12 2026/11/01-00:00:00 \n\
                    12  2026/11/01-00:00:00 two-spaces.iso\n";
        let got = parse_listing(text);
        assert_eq!(
            got,
            vec![
                Entry {
                    size: 4096,
                    modified: Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap(),
                    path: "daily-live".into()
                },
                Entry {
                    size: 6_012_345_678,
                    modified: Utc.with_ymd_and_hms(2026, 11, 24, 5, 30, 0).unwrap(),
                    path: "daily-live/current/tumbling-desktop-amd64.iso".into()
                },
                Entry {
                    size: 1_234_567,
                    modified: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
                    path: "a b/c d.iso".into()
                },
            ]
        );
    }

    #[test]
    fn arguments_as_the_first_generation() {
        let r = Rsync::new(Duration::from_secs(1)).unwrap();
        let args: Vec<String> = r
            .args("rsync://h/cdimage/daily*/*/*.iso")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let scratch = format!("{}/", r.scratch().display());
        assert_eq!(
            args,
            [
                "-4",
                "--sockopts=TCP_NODELAY",
                "--dry-run",
                "-RL",
                "--out-format=%l %M %f",
                "--archive",
                "rsync://h/cdimage/daily*/*/*.iso",
                scratch.as_str()
            ]
        );
        let args = r.args("rsync://[::1]:873/cdimage/x");
        assert!(!args.iter().any(|a| a == "-4"));
    }

    #[test]
    fn stderr_on_one_line() {
        assert_eq!(one_line("a\n\n  b  \n"), "a; b");
        assert!(one_line(&"x".repeat(5000)).chars().count() <= MAX_STDERR + 1);
    }

    #[tokio::test]
    async fn missing_program_says_install_rsync() {
        let r = Rsync::with_program("/nonexistent/rsync-xyz", Duration::from_secs(5)).unwrap();
        let e = r.list("rsync://127.0.0.1:1/cdimage/x").await.unwrap_err();
        assert!(matches!(e, RsyncError::NotInstalled { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("install rsync") && msg.contains("rsync://127.0.0.1:1/cdimage/x"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn endless_output_is_cut_at_the_cap_and_the_child_killed() {
        // A script running `yes` stands in for an rsync whose listing
        // never ends.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("endless-rsync");
        std::fs::write(
            &script,
            "#!/bin/sh\nexec yes '4096 2026/11/24-06:00:00 x.iso'\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = Rsync::with_program(&script, Duration::from_secs(20))
            .unwrap()
            .with_max_output(1_000_000);
        let started = std::time::Instant::now();
        let e = r.list("rsync://127.0.0.1:1/cdimage/x").await.unwrap_err();
        assert_eq!(
            e,
            RsyncError::TooLarge {
                url: "rsync://127.0.0.1:1/cdimage/x".into(),
                max: 1_000_000
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("larger than 1000000 bytes") && msg.contains("max_body"),
            "{msg}"
        );
        // Stopped at the cap, not at the timeout.
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn failure_names_the_url_and_status() {
        // `false` stands in for an rsync that fails at once.
        let r = Rsync::with_program("false", Duration::from_secs(5)).unwrap();
        let e = r.list("rsync://127.0.0.1:1/cdimage/x").await.unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, RsyncError::Failed { .. })
                && msg.contains("rsync://127.0.0.1:1/cdimage/x")
                && msg.contains("exit status: 1"),
            "{msg}"
        );
    }
}
