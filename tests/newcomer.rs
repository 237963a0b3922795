//! The newcomer's path, run as a newcomer would take it: the README's two
//! commands as written (not only grepped for), the offline try-out leaving
//! no process or file behind, and `cargo install` installing the product
//! alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use ubuntu_metrics::collectors::registry;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The indented command lines of the README's "On a fresh machine: the two
/// commands" section, in order: the main job, then the test suite.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme
        .find("## On a fresh machine: the two commands")
        .expect("README section 'On a fresh machine: the two commands'");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let commands: Vec<String> = section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(str::to_owned)
        .collect();
    assert!(
        commands.len() >= 2,
        "the README section names fewer than two commands: {commands:?}"
    );
    commands
}

/// The `target` directory this test was built into.
fn target_dir() -> PathBuf {
    // target/debug/deps/newcomer-HASH
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn words(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn readme_main_command_runs_as_written() {
    let commands = readme_commands();
    let main = words(&commands[0]);
    assert_eq!(
        main[..2],
        ["cargo", "run"],
        "the main job is a cargo run: {main:?}"
    );
    // As written, against the fixture server instead of the Ubuntu servers
    // (no network in tests) and at the fixtures' date.
    let server = common::server_with_rsync();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), &server, "http://127.0.0.1:9");
    let mut c = Command::new(&main[0]);
    common::clean_env(&mut c);
    common::outside_cargo(&mut c);
    let out = c
        .args(&main[1..])
        .args(["--now", common::NOW])
        .env("UBUNTU_METRICS_CONFIG", &config)
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(ROOT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{}` failed:\n{}",
        commands[0],
        String::from_utf8_lossy(&out.stderr)
    );
    for c in registry() {
        assert!(
            c.measurements().iter().any(|m| stdout
                .lines()
                .any(|l| l.starts_with(&format!("{m},")) || l.starts_with(&format!("{m} ")))),
            "no point of {} in the output of `{}`",
            c.name(),
            commands[0]
        );
    }
}

#[test]
fn readme_test_command_runs_and_lists_every_test() {
    let commands = readme_commands();
    let test = words(&commands[1]);
    let ci = std::fs::read_to_string(format!("{ROOT}/.ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim() == format!("exec {}", commands[1])),
        ".ci/run does not run the README's test command `{}`",
        commands[1]
    );
    // The whole entry point (installs, fmt, clippy, cargo test), with
    // libtest's --list so that it lists the tests instead of running this
    // one again.
    let mut c = Command::new(&test[0]);
    common::outside_cargo(&mut c);
    let out = c
        .args(&test[1..])
        .args(["--", "--list"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(ROOT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{} -- --list` failed:\n{}\n{}",
        commands[1],
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing this suite already built is compiled again: run with the
    // test process's CARGO_PKG_* and CARGO_MANIFEST_DIR, ring's build
    // script re-ran and ring, rustls, reqwest, the crate and every test
    // binary were compiled once more (and once more again after).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Compiling ring "),
        "the nested run recompiled ring:\n{stderr}"
    );
    for name in [
        "readme_test_command_runs_and_lists_every_test: test",
        "readme_main_command_runs_as_written: test",
    ] {
        assert!(stdout.contains(name), "`{name}` not listed:\n{stdout}");
    }
}

/// Every live process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Run as root in a mount namespace of its own with an empty tmpfs on
/// /var/lib, `try-offline` shows what it would write there (issue 24,
/// item 3: its answer cache went to /var/lib/ubuntu-metrics): the
/// namespace's /var/lib is listed on standard error after the run, each
/// entry on a line of its own after `LEFT_IN_VAR_LIB`. Other programs
/// writing to the real /var/lib meanwhile cannot disturb the count.
const LEFT_IN_VAR_LIB: &str = "left in /var/lib: ";

fn try_offline_command() -> (Command, bool) {
    let script = format!("{ROOT}/scripts/try-offline");
    // SAFETY: geteuid(2) only reads the process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    let isolated = root
        && Command::new("unshare")
            .args(["--mount", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !isolated {
        return (Command::new(script), false);
    }
    let mut c = Command::new("unshare");
    c.args(["--mount", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs try-offline /var/lib || exit 97; \
             \"$@\"; s=$?; \
             find /var/lib -mindepth 1 | sed 's|^|{LEFT_IN_VAR_LIB}|' >&2; exit $s"
        ))
        .arg("sh")
        .arg(script);
    (c, true)
}

#[test]
fn try_offline_leaves_no_process_or_file_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().to_str().unwrap().to_owned();
    let (mut c, isolated) = try_offline_command();
    common::clean_env(&mut c);
    common::outside_cargo(&mut c);
    let out = c
        .arg("sponsoring")
        .arg("images")
        .env("TMPDIR", &tmpdir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "try-offline failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sponsoring_queue_size") || stdout.contains("image_"));
    // The damaged fixtures' warnings are announced before they come.
    let note = stderr
        .find("damaged on purpose")
        .expect("the note up front");
    if let Some(warn) = stderr.find(" WARN ") {
        assert!(note < warn, "the note comes after a warning:\n{stderr}");
    }
    // The fixture server, its rsync daemon and their files are gone.
    let left = processes_mentioning(&tmpdir);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let files = entries(tmp.path());
    assert!(files.is_empty(), "files left in TMPDIR: {files:?}");
    // Nothing written to /var/lib (the station's state directory), even
    // as root: the try-out's state stays in its temporary directory.
    let var_lib: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(LEFT_IN_VAR_LIB))
        .collect();
    assert!(
        var_lib.is_empty(),
        "try-offline wrote to /var/lib: {var_lib:?}"
    );
    if !isolated {
        eprintln!("not root or no mount namespace: /var/lib not checked");
    }
}

#[test]
fn cargo_install_installs_the_product_alone() {
    let root = tempfile::tempdir().unwrap();
    // The README's line as written (a release build), in this target
    // directory: it is the build `readme_main_command_runs_as_written` and
    // the Debian package make too (same package, profile and features), so
    // it costs no compilation of its own. A `--debug` install would not
    // share the test build either: without the dev-dependencies, serde,
    // hyper, tracing and the rest resolve to other features, and the whole
    // tree would be compiled once more.
    let mut c = Command::new("cargo");
    common::outside_cargo(&mut c);
    let out = c
        .args(["install", "--locked", "--offline", "--path", "."])
        .arg("--root")
        .arg(root.path())
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&root.path().join("bin")), ["ubuntu-metrics"]);
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(
        readme.contains("`cargo install --locked --path .`"),
        "the README's install line uses --locked"
    );
}

#[test]
fn with_no_upstream_reachable_each_failure_is_printed_once_and_one_line_says_so() {
    // Every source at a loopback port nobody listens on: what a newcomer
    // without access to the Ubuntu servers sees.
    let server = common::server();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), &server, "http://127.0.0.1:9");
    let base = server.base();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&base, "http://127.0.0.1:1/");
    std::fs::write(&config, text).unwrap();
    drop(server);
    let started = std::time::Instant::now();
    let out = common::bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "--all", "--dry-run", "--now", common::NOW])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // A connection refused is not retried with backoff: the whole run
    // took 2 s before (Launchpad's retries), 0.1 s now.
    assert!(
        took < std::time::Duration::from_secs(5),
        "{took:?} for a run whose every host refuses:\n{stderr}"
    );
    for l in stderr.lines().filter(|l| l.contains(" failed: ")) {
        assert!(
            l.contains("cannot connect to 127.0.0.1:") && l.contains("(connection refused)"),
            "a refused connection not said so: {l}"
        );
    }
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("no upstream source could be reached") && last.contains("try-offline"),
        "the last line does not say it: {last}\n{stderr}"
    );
    let collectors = registry();
    for c in &collectors {
        let said = stderr
            .lines()
            .filter(|l| l.contains(&format!("collector {} failed", c.name())))
            .count();
        assert_eq!(
            said,
            1,
            "{}'s failure printed {said} times:\n{stderr}",
            c.name()
        );
    }
    // One line per collector and the closing line; each kept short.
    let lines = stderr.lines().count();
    assert!(
        lines <= collectors.len() + 1,
        "{lines} lines for {} collectors:\n{stderr}",
        collectors.len()
    );
    // Each collector's line says its host cannot be reached, once per
    // host (it was up to 3.6 KB of URLs, each with the same cause).
    for l in stderr.lines() {
        assert!(l.chars().count() <= 300, "a long line: {l}");
    }
}

/// The README's first command on a machine whose resolver knows none of
/// the Ubuntu hosts: every source under `.invalid` (RFC 6761: never
/// resolves). One short line per collector naming the host it cannot
/// resolve, the hint, and done in seconds: each name is asked once per run
/// (not once per request, nor retried with backoff). Before: 11 lines,
/// 7.7 KB, lines up to 1.1 KB, 16 s (rsync killed after its 10 s timeout,
/// Launchpad's retries).
#[test]
fn offline_each_collector_says_in_one_short_line_which_name_does_not_resolve() {
    let dir = tempfile::tempdir().unwrap();
    // Every collector's production URL, its host under `.invalid`.
    let host = regex::Regex::new(r"://([^/:]+)").unwrap();
    let mut sources = std::collections::BTreeMap::new();
    for c in registry() {
        for s in c.sources() {
            let url = host.replace(&s.default, "://${1}.invalid").into_owned();
            sources.insert(s.key.to_string(), url);
        }
    }
    assert_eq!(
        sources.get("launchpad").map(String::as_str),
        Some("https://api.launchpad.net.invalid/devel/")
    );
    let config = dir.path().join("config.toml");
    let mut text = "[sources]\n".to_owned();
    for (k, v) in &sources {
        text.push_str(&format!("{k} = {v:?}\n"));
    }
    std::fs::write(&config, text).unwrap();
    let started = std::time::Instant::now();
    let out = common::bin()
        .arg("--config")
        .arg(&config)
        .env("UBUNTU_METRICS_STATE_DIR", dir.path().join("state"))
        .args(["run", "--all", "--dry-run", "--now", common::NOW])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let collectors = registry();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        collectors.len() + 1,
        "one line per collector and the hint:\n{stderr}"
    );
    for c in &collectors {
        let said: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains(&format!("collector {} failed: cannot resolve ", c.name())))
            .collect();
        assert_eq!(said.len(), 1, "{}:\n{stderr}", c.name());
        assert!(said[0].contains(".invalid"), "{}", said[0]);
    }
    for l in &lines {
        assert!(l.chars().count() <= 300, "a long line: {l}");
        assert!(!l.contains("dns error"), "{l}");
    }
    assert!(lines[collectors.len()].contains("try-offline"), "{stderr}");
    // A resolver that answers at once makes it a fraction of a second; one
    // that drops queries costs its timeout (glibc: 5 s, tried twice) once
    // per name, all names at once.
    assert!(
        took < std::time::Duration::from_secs(12),
        "{took:?}:\n{stderr}"
    );
}
