//! `type = "exec"`: a script in any language, run once per collection.
//!
//! The command is an argument vector (no shell). The child gets a minimal
//! environment ([`Exec::environment`]: `PATH`, `LANG`, `TZ=UTC`, a `HOME`
//! of its own in the state directory ([`Exec::home`]), the collector's
//! name and the collection time) plus the configured `env` and
//! `pass_env`; never the InfluxDB settings or credentials. It is started
//! through a reaper of its own ([`reaper`]): when it exits, at its timeout,
//! and when its run is abandoned, its process group and every process it
//! started (even in a session of its own) are killed, so nothing it started
//! outlives its run. Its standard output is the points ([`super::points`]),
//! at most `max_output` bytes and `max_points` points; its standard error
//! goes to the log line by line under the collector's name (as bytes,
//! whatever they are, each line cut at [`STDERR_LINE_MAX`] bytes,
//! credentials redacted), and the last lines are in the error of a failed
//! run.

use super::{Section, option_error, points};
use crate::collector::{CollectorError, Context, OptionError};
use crate::model::point::Point;
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default `max_output`.
pub const DEFAULT_MAX_OUTPUT: u64 = 16_000_000;
/// The default `max_points`: the most points one run may print.
pub const DEFAULT_MAX_POINTS: usize = 100_000;
/// The lines of standard error kept for a failed run's message.
pub const STDERR_LINES_KEPT: usize = 5;
/// The longest line of standard error logged (bytes); a longer one is cut,
/// saying how much was.
pub const STDERR_LINE_MAX: usize = 2_000;
/// How long the output is still read once the script has exited (what it
/// started is being killed meanwhile).
pub const DRAIN: Duration = Duration::from_secs(2);
/// The `PATH` of the child when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Set for the child: the collector's name.
pub const COLLECTOR_ENV: &str = "UBUNTU_METRICS_COLLECTOR";
/// The scripts' homes, in the state directory: `home/<collector>`.
pub const HOMES_DIR: &str = "home";
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
    max_points: usize,
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
        if command[0].contains('/') && !command[0].starts_with('/') {
            return Err(option_error(
                "command",
                format!(
                    "{:?} is a relative path: it would be found from whatever directory the program runs in (a service's is /); give its absolute path, or a bare name looked up in PATH",
                    command[0]
                ),
            ));
        }
        if let Some(dir) = &s.dir {
            if !dir.is_absolute() {
                return Err(option_error(
                    "dir",
                    format!("{dir:?} is a relative path: give an absolute one"),
                ));
            }
            match std::fs::metadata(dir) {
                Err(e) => return Err(option_error("dir", format!("{dir:?}: {e}"))),
                Ok(m) if !m.is_dir() => {
                    return Err(option_error("dir", format!("{dir:?} is not a directory")));
                }
                Ok(_) => {}
            }
        }
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
        let max_points = match s.max_points {
            Some(0) => return Err(option_error("max_points", "must be more than zero")),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_POINTS,
        };
        Ok(Exec {
            command,
            dir: s.dir.clone(),
            env: s.env.clone(),
            pass_env: s.pass_env.clone(),
            timeout,
            max_output,
            max_points,
        })
    }

    /// The program, for messages.
    pub fn program(&self) -> &str {
        &self.command[0]
    }

    /// The child's `HOME`: `<state dir>/home/<name>` (made, mode 0700, when
    /// missing), the same under systemd (whose dynamic user has no home)
    /// and by hand, and kept from run to run (launchpadlib keeps its
    /// cache and credentials there). Without a state directory to write
    /// in (tests, a dry run by root in the services' directory), or when
    /// it cannot be made (said in a warning), the inherited `HOME`.
    pub fn home(name: &str, ctx: &Context) -> Option<PathBuf> {
        let inherited = || std::env::var_os("HOME").map(PathBuf::from);
        let Some(state) = ctx.state_dir() else {
            return inherited();
        };
        let homes = state.join(HOMES_DIR);
        let home = homes.join(name);
        let made = std::fs::create_dir_all(state)
            .map_err(|e| format!("{}: {e}", state.display()))
            .and_then(|()| {
                crate::support::fsutil::private_dir(&homes)
                    .map_err(|e| format!("{}: {e}", homes.display()))
            })
            .and_then(|()| {
                crate::support::fsutil::private_dir(&home)
                    .map_err(|e| format!("{}: {e}", home.display()))
            });
        match made {
            Ok(()) => Some(home),
            Err(e) => {
                tracing::warn!(
                    "{name}: cannot make the script's HOME {}: {e}; it gets the inherited HOME",
                    home.display()
                );
                inherited()
            }
        }
    }

    /// The child's whole environment; `home`: its `HOME` ([`Exec::home`]).
    pub fn environment(
        &self,
        name: &str,
        ctx: &Context,
        home: Option<&Path>,
    ) -> BTreeMap<String, String> {
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
        if let Some(home) = home {
            env.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
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
    ///
    /// The run ends when the script exits: what it started is killed then
    /// (by its reaper, [`reaper`]), and its output is drained for at most
    /// [`DRAIN`], so a child that kept standard output open holds nothing.
    pub async fn collect(&self, name: &str, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let fail = |m: String| CollectorError::Other(format!("{name}: {m}"));
        let home = Exec::home(name, ctx);
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .env_clear()
            .envs(self.environment(name, ctx, home.as_deref()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let (control_read, control) =
            reaper::control_pipe().map_err(|e| fail(format!("cannot start its reaper: {e}")))?;
        let control_fd = control_read.as_raw_fd();
        // SAFETY: the hook runs in the forked child before exec and only
        // makes system calls (see `reaper::fork_script`).
        unsafe {
            cmd.pre_exec(move || reaper::fork_script(control_fd));
        }
        let spawned = cmd.spawn();
        drop(control_read);
        let mut child =
            spawned.map_err(|e| fail(format!("cannot start {:?}: {e}", self.command[0])))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");

        let mut out = Vec::new();
        let mut log = StderrLog::new(name);
        let outcome = {
            let streams = async {
                tokio::try_join!(
                    read_stdout(stdout, self.max_output, &mut out),
                    read_stderr(stderr, &mut log)
                )
                .map(|_| ())
            };
            let run = async {
                tokio::pin!(streams);
                tokio::select! {
                    r = &mut streams => {
                        r?;
                        // Both streams closed: the run is over when it exits.
                        Ok(child.wait().await)
                    }
                    status = child.wait() => {
                        // It has exited and its reaper killed what it left:
                        // what they wrote is read, for a bounded time.
                        match tokio::time::timeout(DRAIN, &mut streams).await {
                            Ok(r) => r?,
                            Err(_) => tracing::warn!(
                                "{name}: its output was still open {:.1} s after it exited; the rest is not read",
                                DRAIN.as_secs_f64()
                            ),
                        }
                        Ok(status)
                    }
                }
            };
            tokio::time::timeout(self.timeout, run).await
        };
        log.finish();
        let status = match outcome {
            Ok(Ok(status)) => status,
            Ok(Err(over_limit)) => {
                reaper::stop(control, &mut child).await;
                return Err(fail(over_limit));
            }
            Err(_) => {
                reaper::stop(control, &mut child).await;
                return Err(fail(format!(
                    "timed out after {:.1} s (timeout): it and every process it started were killed",
                    self.timeout.as_secs_f64()
                )));
            }
        };
        drop(control);
        let status = status.map_err(|e| fail(format!("waiting for it: {e}")))?;
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let how = match (status.code(), status.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "failed".to_owned(),
            };
            return Err(fail(format!("{how}: {}", log.tail())));
        }
        let text = String::from_utf8(out)
            .map_err(|e| fail(format!("its standard output is not UTF-8: {e}")))?;
        points::parse_output_capped(&text, self.max_points).map_err(|e| {
            fail(match e {
                points::OutputError::TooMany(max) => format!(
                    "its standard output has more than {max} points (max_points): nothing of it is written"
                ),
                points::OutputError::Bad(e) => format!("standard output {e}"),
            })
        })
    }
}

/// Reads standard output into `out`, failing past `max` bytes.
async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    max: u64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut limited = stdout.take(max + 1);
    limited
        .read_to_end(out)
        .await
        .map_err(|e| format!("reading its standard output: {e}"))?;
    if out.len() as u64 > max {
        return Err(format!(
            "its standard output is over the limit of {max} bytes (max_output); the run was stopped"
        ));
    }
    Ok(())
}

/// Reads standard error to its end, as bytes (whatever they are), into
/// `log`. Never fails: a script must never write to a closed pipe.
async fn read_stderr(
    mut stderr: tokio::process::ChildStderr,
    log: &mut StderrLog<'_>,
) -> Result<(), String> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => log.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("{}: reading its standard error: {e}", log.name);
                return Ok(());
            }
        }
    }
}

/// A script's standard error, logged line by line under its collector's
/// name: lossily decoded, each line cut at [`STDERR_LINE_MAX`] bytes,
/// credentials redacted; the last [`STDERR_LINES_KEPT`] lines kept for a
/// failed run's error. Its memory is bounded whatever the script writes.
struct StderrLog<'a> {
    name: &'a str,
    line: Vec<u8>,
    cut: u64,
    tail: VecDeque<String>,
}

impl<'a> StderrLog<'a> {
    fn new(name: &'a str) -> StderrLog<'a> {
        StderrLog {
            name,
            line: Vec::new(),
            cut: 0,
            tail: VecDeque::new(),
        }
    }

    /// Bytes of a line kept before it is redacted and cut: a little more
    /// than is shown, so that a credential across the cut is still seen
    /// whole by the redaction.
    const KEPT: usize = STDERR_LINE_MAX + 512;

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, end) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &bytes[bytes.len()..], false),
            };
            let room = Self::KEPT.saturating_sub(self.line.len());
            let taken = part.len().min(room);
            self.line.extend_from_slice(&part[..taken]);
            self.cut += (part.len() - taken) as u64;
            if end {
                self.end_line();
            }
            bytes = rest;
        }
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = crate::config::redact_url(text.trim_end_matches('\r'));
        let mut shown: String = if text.len() > STDERR_LINE_MAX {
            let mut end = STDERR_LINE_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.cut += (text.len() - end) as u64;
            text[..end].to_owned()
        } else {
            text
        };
        if self.cut > 0 {
            shown.push_str(&format!(" [... {} bytes cut]", self.cut));
        }
        tracing::info!("{}: {shown}", self.name);
        if self.tail.len() == STDERR_LINES_KEPT {
            self.tail.pop_front();
        }
        self.tail.push_back(shown);
        self.line.clear();
        self.cut = 0;
    }

    /// The last line, when it did not end with a newline.
    fn finish(&mut self) {
        if !self.line.is_empty() || self.cut > 0 {
            self.end_line();
        }
    }

    /// The last lines, for a failed run's error.
    fn tail(&self) -> String {
        if self.tail.is_empty() {
            "(nothing on standard error)".to_owned()
        } else {
            self.tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }
}

/// Each run's subreaper: the program starts a script through a process of
/// its own, forked in the child before exec ([`fork_script`]). That process
/// is a child subreaper (prctl(PR_SET_CHILD_SUBREAPER)): whatever the
/// script starts, even in a session of its own (`setsid`, a daemon's double
/// fork), stays its descendant. When the script exits, or when the program
/// gives up on the run (timeout, the run abandoned, the program gone: the
/// control pipe closes), it kills the script's process group and every
/// descendant, reaps them, and exits with the script's status. It runs no
/// Rust code that allocates or locks: it is a fork of a threaded process.
mod reaper {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// How long the reaper goes on killing what is left (a process in an
    /// uninterruptible sleep does not die at once).
    const KILL_ROUNDS: u32 = 5_000;

    /// The control pipe: the reaper holds the read end; the program's
    /// write end closing (dropped, or the program gone) means "stop".
    pub(super) fn control_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and ours alone.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    /// Stops a run the program gives up on: the control pipe closes, the
    /// reaper kills everything; it is waited for (a few seconds at most).
    pub(super) async fn stop(control: OwnedFd, child: &mut tokio::process::Child) {
        drop(control);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
    }

    /// In the forked child, before exec: forks again. The new child returns
    /// and goes on to exec the script; this process becomes its reaper and
    /// never returns.
    ///
    /// # Safety
    /// Only in a `pre_exec` hook: async-signal-safe system calls only.
    pub(super) fn fork_script(control: libc::c_int) -> io::Result<()> {
        // SAFETY: system calls only, on descriptors and processes of ours.
        unsafe {
            // Without it (an old kernel), what leaves the script's group
            // escapes; the group and the direct children are still killed.
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            let reaper = libc::getpid();
            let script = libc::fork();
            if script < 0 {
                return Err(io::Error::last_os_error());
            }
            if script == 0 {
                // The script: a process group of its own, and killed if
                // its reaper is.
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != reaper {
                    libc::_exit(127);
                }
                return Ok(());
            }
            reap(script, control)
        }
    }

    unsafe fn reap(script: libc::pid_t, control: libc::c_int) -> ! {
        // SAFETY: system calls only (see fork_script).
        unsafe {
            // Keep the control pipe alone: the script's standard output and
            // error must close when it and its descendants are gone, std's
            // exec-error pipe when the script has started, other runs'
            // control pipes when those runs end.
            const CONTROL: libc::c_int = 3;
            if control != CONTROL {
                libc::dup2(control, CONTROL);
            }
            close_from(CONTROL + 1);
            for fd in 0..CONTROL {
                libc::close(fd);
            }
            // The program's signal handlers are not ours.
            for sig in [
                libc::SIGCHLD,
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGQUIT,
                libc::SIGUSR1,
                libc::SIGUSR2,
                libc::SIGPIPE,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let pidfd = libc::syscall(libc::SYS_pidfd_open, script, 0) as libc::c_int;
            loop {
                let mut fds = [
                    libc::pollfd {
                        fd: CONTROL,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: pidfd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                let (n, wait_ms) = if pidfd >= 0 { (2, 500) } else { (1, 20) };
                libc::poll(fds.as_mut_ptr(), n, wait_ms);
                if script_exited(script) || fds[0].revents != 0 {
                    break;
                }
            }
            // Its group first (no /proc needed), then every descendant:
            // each orphan becomes our child when its parent dies.
            let mut status = None;
            for _ in 0..KILL_ROUNDS {
                if status.is_none() {
                    // Not reaped yet: its process group is still its own.
                    libc::kill(-script, libc::SIGKILL);
                }
                kill_children();
                loop {
                    let mut st = 0;
                    let pid = libc::waitpid(-1, &mut st, libc::WNOHANG);
                    if pid == script {
                        status = Some(st);
                    } else if pid < 0 {
                        exit_as(status);
                    } else if pid == 0 {
                        break;
                    }
                }
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
            exit_as(status)
        }
    }

    /// Whether the script has exited (left unreaped, so that its process
    /// group cannot be reused before it is killed); reaps the orphans that
    /// exited meanwhile.
    unsafe fn script_exited(script: libc::pid_t) -> bool {
        // SAFETY: system calls only.
        unsafe {
            loop {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                if libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                ) != 0
                {
                    return false;
                }
                match info.si_pid() {
                    0 => return false,
                    pid if pid == script => return true,
                    pid => {
                        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                    }
                }
            }
        }
    }

    /// SIGKILL to every child listed in /proc/thread-self/children.
    unsafe fn kill_children() {
        // SAFETY: system calls only, into a buffer on the stack.
        unsafe {
            let fd = libc::open(
                c"/proc/thread-self/children".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return;
            }
            let mut buf = [0u8; 8192];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            if n <= 0 {
                return;
            }
            let n = n as usize;
            let mut pid: libc::pid_t = 0;
            // Each number is followed by a space; one cut by a full buffer
            // waits for the next round.
            for &b in &buf[..n] {
                if b.is_ascii_digit() {
                    pid = pid
                        .saturating_mul(10)
                        .saturating_add((b - b'0') as libc::pid_t);
                } else {
                    if pid > 0 {
                        libc::kill(pid, libc::SIGKILL);
                    }
                    pid = 0;
                }
            }
        }
    }

    /// Closes every descriptor from `first` on.
    unsafe fn close_from(first: libc::c_int) {
        // SAFETY: system calls only.
        unsafe {
            if libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                0,
            ) == 0
            {
                return;
            }
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as libc::c_int
            } else {
                1024
            };
            for fd in first..max {
                libc::close(fd);
            }
        }
    }

    /// Exits as the script did: its exit status, or killed by its signal
    /// (without a core dump of this copy of the program).
    unsafe fn exit_as(status: Option<libc::c_int>) -> ! {
        // SAFETY: system calls only.
        unsafe {
            match status {
                Some(st) if libc::WIFEXITED(st) => libc::_exit(libc::WEXITSTATUS(st)),
                Some(st) if libc::WIFSIGNALED(st) => {
                    let sig = libc::WTERMSIG(st);
                    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
                    libc::signal(sig, libc::SIG_DFL);
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, sig);
                    libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                    libc::kill(libc::getpid(), sig);
                    libc::_exit(128 + sig)
                }
                _ => libc::_exit(125),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_points_cap_holds_for_lines_and_for_an_array() {
        use points::{OutputError, parse_output_capped};
        let lines = "m x=1i\n# not a point\n\nm x=2i\nm x=3i\n";
        assert_eq!(parse_output_capped(lines, 3).unwrap().len(), 3);
        assert_eq!(
            parse_output_capped(lines, 2).unwrap_err(),
            OutputError::TooMany(2)
        );
        let array = r#"[{"measurement": "m", "fields": {"x": 1}}, {"measurement": "m", "fields": {"x": 2}}]"#;
        assert_eq!(parse_output_capped(array, 2).unwrap().len(), 2);
        assert_eq!(
            parse_output_capped(array, 1).unwrap_err(),
            OutputError::TooMany(1)
        );
        // Past the cap the rest is still read as JSON: a syntax error after
        // it is that error, named by its line.
        let broken = "[{\"measurement\": \"m\", \"fields\": {\"x\": 1}},\n{\"measurement\": \"m\", \"fields\": {\"x\": 2}},\n{oops}]";
        match parse_output_capped(broken, 1).unwrap_err() {
            OutputError::Bad(e) => assert!(e.starts_with("line 3: not a JSON array"), "{e}"),
            other => panic!("{other:?}"),
        }
        match parse_output_capped(r#"[{"measurement": "m", "fields": {}}]"#, 5).unwrap_err() {
            OutputError::Bad(e) => assert!(e.contains("point 1 of the array"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn standard_error_is_cut_redacted_and_bounded() {
        let mut log = StderrLog::new("q");
        log.push(b"first\nsecond with \xff\xfe bytes\n");
        let long = vec![b'x'; 10 * STDERR_LINE_MAX];
        log.push(&long);
        log.push(&long);
        log.push(b"\nsee https://u:pw-secret@h/x\nlast without newline");
        assert!(log.line.len() <= StderrLog::KEPT);
        log.finish();
        let tail: Vec<&String> = log.tail.iter().collect();
        assert_eq!(tail.len(), 5);
        assert_eq!(tail[1], "second with \u{fffd}\u{fffd} bytes");
        assert_eq!(
            tail[2],
            &format!(
                "{} [... {} bytes cut]",
                "x".repeat(STDERR_LINE_MAX),
                19 * STDERR_LINE_MAX
            )
        );
        assert_eq!(tail[3], "see https://u:<redacted>@h/x");
        assert_eq!(tail[4], "last without newline");
        assert!(!log.tail().contains("pw-secret"));
    }

    #[test]
    fn a_relative_program_or_a_missing_dir_is_refused() {
        let section =
            |t: &str| -> Section { toml::Value::Table(t.parse().unwrap()).try_into().unwrap() };
        let e = Exec::new(&section("command = [\"bin/x\"]")).unwrap_err();
        assert_eq!(e.key, "command");
        assert!(e.message.contains("relative path"), "{e}");
        assert!(Exec::new(&section("command = [\"python3\", \"x/y.py\"]")).is_ok());
        let e = Exec::new(&section(
            "command = [\"/bin/true\"]\ndir = \"/nonexistent\"",
        ))
        .unwrap_err();
        assert_eq!(e.key, "dir");
        let e = Exec::new(&section("command = [\"/bin/true\"]\ndir = \"tmp\"")).unwrap_err();
        assert!(e.message.contains("relative path"), "{e}");
        let e = Exec::new(&section(
            "command = [\"/bin/true\"]\ndir = \"/etc/hostname\"",
        ))
        .unwrap_err();
        assert!(e.message.contains("is not a directory"), "{e}");
        let e = Exec::new(&section("command = [\"/bin/true\"]\nmax_points = 0")).unwrap_err();
        assert_eq!(e.key, "max_points");
    }
}
