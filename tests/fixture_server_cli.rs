//! `fixture-server --write-config`, the README's way to point a setup at
//! the bundled fixtures (issue 24, items 3 and 4): the configuration it
//! writes keeps its state beside it (never in /var/lib/ubuntu-metrics), and
//! with `--port` every port is stable, so a restart writes the same
//! configuration and `run images` keeps working without an edit.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The fixture server's binary, built as `scripts/try-offline` builds it
/// (it shares this test build's artefacts: tests/dependencies.rs).
fn fixture_server() -> PathBuf {
    // target/debug/deps/fixture_server_cli-HASH
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    common::outside_cargo(&mut c);
    let out = c
        .args(["build", "--locked", "--offline", "-p", "fixture-server"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build -p fixture-server failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/fixture-server")
}

/// A loopback port `p` with `p + 1` free too (the rsync daemon's port
/// when only `--port` is given).
fn two_free_ports() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// The server, started with `args`, once it printed its URL (it writes the
/// configuration before).
struct Server(Child);

impl Server {
    fn start(bin: &Path, args: &[&str]) -> (Server, String) {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut url = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        if url.is_empty() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "fixture-server {args:?} exited ({}) before serving:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (Server(child), url.trim().to_owned())
    }

    /// SIGTERM, as an operator stops it; waits until it is gone (its rsync
    /// daemon with it).
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.0.wait().unwrap();
        assert!(status.success(), "fixture-server stopped with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_images(config: &Path) {
    let out = common::run_now(config, &["images", "--dry-run"]);
    let stderr = common::text(&out.stderr);
    assert!(
        out.status.success(),
        "run images --dry-run with {}:\n{stderr}",
        config.display()
    );
    assert!(
        common::text(&out.stdout).contains("daily_image_details"),
        "no image points:\n{stderr}"
    );
}

#[test]
fn with_port_a_restart_writes_the_same_configuration_and_run_images_works() {
    let bin = fixture_server();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("um.toml");
    let config_arg = config.to_str().unwrap();
    let port = two_free_ports();
    let port_arg = port.to_string();
    let args = ["--port", &port_arg, "--write-config", config_arg];

    let (server, url) = Server::start(&bin, &args);
    assert_eq!(url, format!("http://127.0.0.1:{port}/"));
    let first = std::fs::read_to_string(&config).unwrap();
    // The rsync daemon on the next port, the state beside the file.
    assert!(
        first.contains(&format!("\"rsync://127.0.0.1:{}/cdimage/\"", port + 1)),
        "{first}"
    );
    let state = dir.path().join("um-state");
    assert!(
        first.contains(&format!("dir = \"{}\"", state.join("spool").display())),
        "{first}"
    );
    run_images(&config);
    assert!(
        state.join("http-cache").is_dir(),
        "the answer cache is not in {}",
        state.display()
    );
    server.stop();

    let (server, _) = Server::start(&bin, &args);
    let second = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        first, second,
        "a restart with --port changed the configuration"
    );
    run_images(&config);
    server.stop();

    // --rsync-port names the daemon's port, --state-dir the state.
    let rsync = two_free_ports();
    let elsewhere = dir.path().join("elsewhere");
    let (server, _) = Server::start(
        &bin,
        &[
            "--port",
            &port_arg,
            "--rsync-port",
            &rsync.to_string(),
            "--state-dir",
            elsewhere.to_str().unwrap(),
            "--write-config",
            config_arg,
        ],
    );
    let third = std::fs::read_to_string(&config).unwrap();
    assert!(
        third.contains(&format!("\"rsync://127.0.0.1:{rsync}/cdimage/\"")),
        "{third}"
    );
    assert!(
        third.contains(&format!("dir = \"{}\"", elsewhere.join("spool").display())),
        "{third}"
    );
    run_images(&config);
    server.stop();
}

#[test]
fn a_taken_rsync_port_is_named() {
    let bin = fixture_server();
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(&bin)
        .args(["--rsync-port", &port.to_string(), "--write-config"])
        .arg(dir.path().join("um.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("in use"),
        "the error names the port: {stderr}"
    );
    assert!(!dir.path().join("um.toml").exists());
}
