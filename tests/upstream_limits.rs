//! Upstream bodies are bounded (issue 10, item 1): a gzip bomb and an
//! endless chunked body, served by a small misbehaving server on loopback,
//! fail only the collectors reading them ("body larger than N"), every
//! other collector reports as usual, and the process's peak RSS (read from
//! `wait4`'s rusage of the real `ubuntu-metrics run --all` child) stays
//! under 100 MB.

mod common;

use common::{NOW, bin, expected, server_with_rsync};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use ubuntu_metrics::collectors::registry;

/// A server answering every request under `/bomb/` with an endless gzip
/// stream of zeros (about 1000:1: each MB on the wire is a GB decoded) and
/// every other request with an endless chunked body of `a`s. Nothing is
/// stored: the bodies are generated as they are sent, until the client
/// hangs up.
fn start_bad_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = answer(conn);
            });
        }
    });
    format!("http://{addr}/")
}

fn answer(mut conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let bomb = request_line.contains(" /bomb/");
    let head = if bomb {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    } else {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    };
    conn.write_all(head.as_bytes())?;
    let mut send_chunk = |data: &[u8]| -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
        conn.write_all(data)?;
        conn.write_all(b"\r\n")
    };
    if bomb {
        let zeros = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Up to 20 GB decoded (about 20 MB on the wire), or until the
        // client hangs up.
        for _ in 0..20 * 1024 {
            gz.write_all(&zeros)?;
            let out = std::mem::take(gz.get_mut());
            send_chunk(&out)?;
        }
        let out = gz.finish()?;
        send_chunk(&out)?;
        conn.write_all(b"0\r\n\r\n")?;
    } else {
        let block = vec![b'a'; 64 * 1024];
        loop {
            send_chunk(&block)?;
        }
    }
    Ok(())
}

/// Runs `cmd` to its end and returns its output and peak RSS in kB (the
/// child's `ru_maxrss`, from `wait4`). The child's address space is capped
/// at 3 GB so that an unbounded reader fails instead of eating the machine.
// The child is reaped by wait4 (for its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: std::process::Command) -> (Option<i32>, String, String, i64) {
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 3 << 30,
                rlim_max: 3 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ubuntu-metrics starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    (
        code,
        out.join().unwrap(),
        err.join().unwrap(),
        usage.ru_maxrss,
    )
}

#[test]
fn a_gzip_bomb_and_an_endless_body_fail_only_their_collectors_in_bounded_memory() {
    let server = server_with_rsync();
    let bad = start_bad_server();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.influxdb.url = "http://127.0.0.1:9".into();
    config.spool.dir = dir.path().join("spool");
    config
        .sources
        .set("sponsoring", format!("{bad}bomb/general.json"));
    config.sources.set("versions", format!("{bad}endless/"));
    config.http.max_body = "16MB".into();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let mut cmd = std::process::Command::new(bin().get_program());
    common::clean_env(&mut cmd);
    cmd.arg("--config")
        .arg(&path)
        .args(["run", "--now", NOW, "--all", "--dry-run"]);
    let (code, stdout, stderr, peak_kb) = run_measured(cmd);
    eprintln!(
        "peak RSS of `run --all --dry-run` with a gzip bomb and an endless body: {peak_kb} kB"
    );

    assert_eq!(code, Some(1), "exit status; stderr:\n{stderr}");
    for (collector, url) in [
        ("sponsoring", "bomb/general.json"),
        ("versions", "endless/"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(collector)
                && l.contains(url)
                && l.contains("body larger than 16000000 bytes")),
            "{collector} fails naming the cap:\n{stderr}"
        );
    }
    for c in registry() {
        if matches!(c.name(), "sponsoring" | "versions") {
            continue;
        }
        for line in expected(&format!("{}/expected.out", c.name())) {
            assert!(
                stdout.lines().any(|l| l == line),
                "{} still reports {line:?}; stderr:\n{stderr}",
                c.name()
            );
        }
    }
    assert!(
        peak_kb < 100 * 1024,
        "peak RSS {peak_kb} kB is over 100 MB; stderr:\n{stderr}"
    );
}

/// Issue 25: a streamed read (backfill's reading of a whole CSV) holds its
/// host's permit until the stream is dropped, as every other request
/// does: with one request per host, the next request to that host waits
/// for the stream.
#[tokio::test]
async fn a_streamed_read_counts_in_the_per_host_limit() {
    use std::time::Duration;
    use ubuntu_metrics::sources::http::Http;
    let server = common::server();
    let http = Http::new(Duration::from_secs(5), Duration::from_secs(10))
        .unwrap()
        .with_max_per_host(1);
    let url = server.url("sponsoring/general.json");
    let mut stream = http.get_stream(&url, 0).await.unwrap();
    assert!(stream.chunk().await.unwrap().is_some());
    let other = http.for_run();
    let waiting = tokio::spawn({
        let url = url.clone();
        async move { other.get_bytes(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a request went out while the stream held the host's only permit"
    );
    drop(stream);
    let body = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the request goes once the stream is dropped")
        .unwrap()
        .unwrap();
    assert!(!body.is_empty());
    assert_eq!(server.requests().get("sponsoring"), Some(&2));
}
