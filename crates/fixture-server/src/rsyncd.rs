//! A real rsync daemon standing in for `rsync://cdimage.ubuntu.com/cdimage/`.
//!
//! [`RsyncDaemon::start`] builds a file tree in a temporary directory from a
//! description file (`tests/fixtures/images/tree.txt`), writes an
//! `rsyncd.conf` exporting it as the read-only module `cdimage`, and runs
//! `rsync --daemon --no-detach` on a free loopback port until the value is
//! dropped. The collector under test then runs the real `rsync` client
//! against `rsync://127.0.0.1:PORT/cdimage/`.
//!
//! The description has one entry per line (`#` starts a comment line):
//!
//! ```text
//! # <size in bytes> <modification time, UTC> <path>
//! 6012345678 2026-11-24T05:30:00Z daily-live/20261124/tumbling-desktop-amd64.iso
//! # <path> -> <symbolic link target>
//! daily-live/current -> 20261124
//! ```
//!
//! Files are created *sparse* (`set_len`), so gigabyte images cost nothing,
//! with the given modification time. Directories are created as needed.
//! Paths are relative and may not contain `..` (link targets may).

use chrono::{DateTime, Utc};
use std::io::{Error, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The module name the daemon exports.
pub const MODULE: &str = "cdimage";

/// How long the daemon may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One entry of a tree description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry {
    File {
        size: u64,
        modified: DateTime<Utc>,
        path: PathBuf,
    },
    Link {
        path: PathBuf,
        target: PathBuf,
    },
}

/// Parses a tree description; errors name the line.
pub fn parse_tree(text: &str) -> Result<Vec<TreeEntry>, String> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = if let Some((path, target)) = line.split_once(" -> ") {
            TreeEntry::Link {
                path: relative(path.trim()).map_err(|e| format!("line {n}: {e}"))?,
                target: PathBuf::from(target.trim()),
            }
        } else {
            let mut parts = line.splitn(3, char::is_whitespace);
            let (Some(size), Some(time), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "line {n}: expected `<size> <YYYY-MM-DDTHH:MM:SSZ> <path>` or `<path> -> <target>`: {raw:?}"
                ));
            };
            TreeEntry::File {
                size: size
                    .parse()
                    .map_err(|_| format!("line {n}: size {size:?} is not a number of bytes"))?,
                modified: time
                    .parse()
                    .map_err(|_| format!("line {n}: time {time:?} is not YYYY-MM-DDTHH:MM:SSZ"))?,
                path: relative(path.trim()).map_err(|e| format!("line {n}: {e}"))?,
            }
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// A path inside the tree: relative, without `..`.
fn relative(path: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    if path.is_empty()
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("path {path:?} must be relative and without `..`"));
    }
    Ok(p)
}

/// Creates the entries under `root`: sparse files with their modification
/// times, and symbolic links.
pub fn build_tree(entries: &[TreeEntry], root: &Path) -> std::io::Result<()> {
    for entry in entries {
        match entry {
            TreeEntry::File {
                size,
                modified,
                path,
            } => {
                let file = root.join(path);
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = std::fs::File::create(&file)?;
                f.set_len(*size)?;
                f.set_modified(SystemTime::from(*modified))?;
            }
            TreeEntry::Link { path, target } => {
                let link = root.join(path);
                if let Some(dir) = link.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::os::unix::fs::symlink(target, &link)?;
            }
        }
    }
    Ok(())
}

/// A running `rsync --daemon`, killed when dropped.
pub struct RsyncDaemon {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl RsyncDaemon {
    /// Builds the tree described by the file `description` and serves it.
    pub fn start(description: &Path) -> std::io::Result<RsyncDaemon> {
        RsyncDaemon::start_with(description, None)
    }

    /// The same, the daemon setting `socket options` (rsyncd.conf) on
    /// every connection, e.g. `TCP_NODELAY`: the daemon's small writes go
    /// out at once instead of waiting for the client's delayed ACK.
    pub fn start_with(
        description: &Path,
        socket_options: Option<&str>,
    ) -> std::io::Result<RsyncDaemon> {
        let text = std::fs::read_to_string(description)
            .map_err(|e| Error::new(e.kind(), format!("{}: {e}", description.display())))?;
        let entries = parse_tree(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{}: {e}", description.display()),
            )
        })?;
        RsyncDaemon::serve_with(&entries, socket_options, 0)
    }

    /// [`RsyncDaemon::start`] on loopback port `port` (0: any free port),
    /// so that a configuration naming it stays valid across restarts.
    pub fn start_on(description: &Path, port: u16) -> std::io::Result<RsyncDaemon> {
        let text = std::fs::read_to_string(description)
            .map_err(|e| Error::new(e.kind(), format!("{}: {e}", description.display())))?;
        let entries = parse_tree(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{}: {e}", description.display()),
            )
        })?;
        RsyncDaemon::serve_with(&entries, None, port)
    }

    /// Builds a tree from `entries` and serves it.
    pub fn serve(entries: &[TreeEntry]) -> std::io::Result<RsyncDaemon> {
        RsyncDaemon::serve_with(entries, None, 0)
    }

    fn serve_with(
        entries: &[TreeEntry],
        socket_options: Option<&str>,
        port: u16,
    ) -> std::io::Result<RsyncDaemon> {
        let dir = tempfile::Builder::new()
            .prefix("ubuntu-metrics-rsyncd-")
            .tempdir()?;
        let tree = dir.path().join(MODULE);
        std::fs::create_dir(&tree)?;
        build_tree(entries, &tree)?;
        if port != 0 {
            // Taken by another program, the port would answer our readiness
            // probe although our daemon failed to bind it.
            drop(TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
                Error::new(e.kind(), format!("rsync daemon on 127.0.0.1:{port}: {e}"))
            })?);
            let (addr, child) = spawn(dir.path(), &tree, socket_options, port).map_err(|e| {
                Error::new(e.kind(), format!("rsync daemon on 127.0.0.1:{port}: {e}"))
            })?;
            return Ok(RsyncDaemon { addr, child, dir });
        }
        // A port taken between our probe and the daemon's bind makes the
        // daemon exit: try a few ports.
        let mut last = None;
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            match spawn(dir.path(), &tree, socket_options, port) {
                Ok((addr, child)) => return Ok(RsyncDaemon { addr, child, dir }),
                Err(e) if e.kind() == ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::other("rsync daemon did not start")))
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `rsync://127.0.0.1:PORT/cdimage/`: the value of `sources.cdimage_rsync`.
    pub fn url(&self) -> String {
        format!("rsync://{}/{MODULE}/", self.addr)
    }

    /// The directory the module exports.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join(MODULE)
    }

    /// The daemon's log so far (for diagnosing a failing test).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyncd.log")).unwrap_or_default()
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        // The daemon and every connection it forked (same process group).
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process
            // group; it touches no memory of ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a daemon on `port` and waits until it accepts connections.
fn spawn(
    dir: &Path,
    tree: &Path,
    socket_options: Option<&str>,
    port: u16,
) -> std::io::Result<(SocketAddr, Child)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = dir.join("rsyncd.log");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(dir.join("rsyncd.pid"));
    let conf = dir.join("rsyncd.conf");
    std::fs::write(&conf, config(dir, tree, port, socket_options)?)?;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("rsync")
        // Its own process group: the daemon forks one process per
        // connection, and dropping the daemon kills them all.
        .process_group(0)
        .arg("--daemon")
        .arg("--no-detach")
        .arg(format!("--config={}", conf.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    "the rsync program was not found: install rsync (apt install rsync)",
                )
            } else {
                Error::new(e.kind(), format!("cannot run rsync --daemon: {e}"))
            }
        })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let kind = if text.contains("Address already in use") {
                ErrorKind::AddrInUse
            } else {
                ErrorKind::Other
            };
            return Err(Error::new(
                kind,
                format!("rsync --daemon exited ({status}): {}", text.trim()),
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok((addr, child));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "rsync --daemon did not accept connections on {addr} within {START_TIMEOUT:?}"
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's configuration. A daemon started as root switches to
/// `nobody`, who cannot read our private temporary directory: it is told
/// to stay root then. A daemon not started as root must not be given
/// `uid`/`gid` (it fails on `setgroups`).
fn config(
    dir: &Path,
    tree: &Path,
    port: u16,
    socket_options: Option<&str>,
) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let as_root = std::fs::metadata(dir)?.uid() == 0;
    let d = dir.display();
    Ok(format!(
        "# written by ubuntu-metrics' fixture server\n\
         port = {port}\n\
         address = 127.0.0.1\n\
         pid file = {d}/rsyncd.pid\n\
         lock file = {d}/rsyncd.lock\n\
         log file = {d}/rsyncd.log\n\
         use chroot = no\n\
         reverse lookup = no\n\
         {ids}{sockopts}\
         \n\
         [{MODULE}]\n\
         path = {tree}\n\
         read only = yes\n\
         comment = fixture tree\n",
        ids = if as_root { "uid = 0\ngid = 0\n" } else { "" },
        sockopts = socket_options.map_or(String::new(), |o| format!("socket options = {o}\n")),
        tree = tree.display(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_files_links_and_comments() {
        let text = "# comment\n\n10 2026-11-24T05:30:00Z a/b.iso\n  a/current -> 2026 \n";
        assert_eq!(
            parse_tree(text).unwrap(),
            vec![
                TreeEntry::File {
                    size: 10,
                    modified: Utc.with_ymd_and_hms(2026, 11, 24, 5, 30, 0).unwrap(),
                    path: "a/b.iso".into()
                },
                TreeEntry::Link {
                    path: "a/current".into(),
                    target: "2026".into()
                },
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, want) in [
            ("x 2026-11-24T05:30:00Z a", "line 1: size"),
            ("\n1 yesterday a", "line 2: time"),
            ("1 2026-11-24T05:30:00Z", "line 1: expected"),
            ("1 2026-11-24T05:30:00Z ../a", "line 1: path"),
            ("1 2026-11-24T05:30:00Z /etc/a", "line 1: path"),
            ("/a -> b", "line 1: path"),
        ] {
            let e = parse_tree(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn builds_sparse_files_with_times_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let entries =
            parse_tree("5000000000 2026-11-24T05:30:00Z d/20261124/x.iso\nd/current -> 20261124\n")
                .unwrap();
        build_tree(&entries, dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join("d/current/x.iso")).unwrap();
        assert_eq!(meta.len(), 5_000_000_000);
        let modified: DateTime<Utc> = meta.modified().unwrap().into();
        assert_eq!(
            modified,
            Utc.with_ymd_and_hms(2026, 11, 24, 5, 30, 0).unwrap()
        );
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() < 100, "not sparse: {} blocks", meta.blocks());
    }
}
