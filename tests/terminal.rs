//! At the terminal: `run --all` on a TTY (a pseudo-terminal from util-linux
//! `script`) shows progress and ends with a summary table; in a pipe, only
//! log lines. Shell completions and man pages render and name every
//! subcommand.

mod common;

use common::influxd::Influxd;
use common::*;
use std::process::{Command, Stdio};
use ubuntu_metrics::collectors::registry;

const BIN: &str = env!("CARGO_BIN_EXE_ubuntu-metrics");

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn has_table(text: &str) -> bool {
    text.contains("COLLECTOR") && text.contains("REQUESTS") && text.contains("DURATION")
}

#[test]
fn in_a_pipe_only_log_lines() {
    let server = server_with_rsync();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(dir.path(), &server, &db.url());
    let out = common::clean_env(&mut Command::new(BIN))
        .args([
            "--config",
            path.to_str().unwrap(),
            "run",
            "--now",
            NOW,
            "--all",
        ])
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!has_table(&stderr), "a summary table in a pipe:\n{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape sequences in a pipe:\n{stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "progress redraws in a pipe:\n{stderr}"
    );
    // The plain log lines: one per collector, and the write.
    for c in registry() {
        assert!(
            stderr.contains(&format!("collector=\"{}\"", c.name())),
            "no log line for {}:\n{stderr}",
            c.name()
        );
    }
    // The write, said once, naming the output.
    assert_eq!(stderr.matches("[influxdb]: wrote ").count(), 1, "{stderr}");
}

#[test]
fn on_a_terminal_progress_and_a_summary_table() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed for this test (sudo apt-get install util-linux)");
    }
    let server = server_with_rsync();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(dir.path(), &server, &db.url());
    let cmd = format!(
        "{} --config {} run --now {NOW} --all",
        shell_quote(BIN),
        shell_quote(path.to_str().unwrap())
    );
    // `script` runs the command on a pseudo-terminal and copies what it
    // shows to its own standard output.
    let out = common::clean_env(&mut Command::new("script"))
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(has_table(&screen), "no summary table:\n{screen}");
    assert!(screen.contains('\x1b'), "no terminal drawing:\n{screen}");
    // One row per collector, with its status, and the total.
    let table_start = screen.rfind("COLLECTOR").unwrap();
    let table = &screen[table_start..];
    for c in registry() {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{} ", c.name())))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", c.name()));
        assert!(row.contains(" ok "), "{row}");
    }
    let total = table
        .lines()
        .find(|l| l.starts_with("total "))
        .unwrap_or_else(|| panic!("no total row:\n{table}"));
    assert!(total.contains(" ok "), "{total}");
    // The data still reached InfluxDB.
    assert!(!db.rows("sponsoring_queue_stats").is_empty());
}

#[test]
fn completions_render_for_every_shell_and_name_every_subcommand() {
    let subcommands: Vec<String> = ubuntu_metrics::cli::clidoc::command()
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    assert!(subcommands.iter().any(|s| s == "influxdb"));
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = common::clean_env(&mut Command::new(BIN))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for s in &subcommands {
            assert!(text.contains(s.as_str()), "{shell}: no {s}");
        }
    }
    // The bash script is valid bash and completes the subcommands.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ubuntu-metrics.bash");
    let out = common::clean_env(&mut Command::new(BIN))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(ubuntu-metrics inf); COMP_CWORD=1; COMP_LINE='ubuntu-metrics inf'; COMP_POINT=${{#COMP_LINE}}; _ubuntu__metrics ubuntu-metrics inf ubuntu-metrics; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            shell_quote(script.to_str().unwrap())
        ))
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && replies.lines().any(|l| l == "influxdb"),
        "bash completion of `inf`: {replies}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = common::clean_env(&mut Command::new(BIN))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_render_and_name_every_subcommand() {
    let out = common::clean_env(&mut Command::new(BIN))
        .arg("man")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH ubuntu-metrics 1"), "{page}");
    for s in ubuntu_metrics::cli::clidoc::command().get_subcommands() {
        assert!(
            page.contains(s.get_name()),
            "no {} in the man page",
            s.get_name()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("ubuntu-metrics.1");
    std::fs::write(&main, &page).unwrap();
    // groff, when the machine has it, renders it without a warning.
    if let Ok(r) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(&main)
        .output()
    {
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success() && stderr.is_empty(), "groff: {stderr}");
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(text.contains("SUBCOMMANDS") && text.contains("EXIT STATUS"));
    } else {
        eprintln!("groff not installed: the roff source was checked only");
    }

    // --dir: a page per subcommand, nested ones included.
    let pages = dir.path().join("pages");
    let out = common::clean_env(&mut Command::new(BIN))
        .args(["man", "--dir"])
        .arg(&pages)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for name in [
        "ubuntu-metrics.1",
        "ubuntu-metrics-run.1",
        "ubuntu-metrics-influxdb-provision.1",
        "ubuntu-metrics-dashboards-export.1",
        "ubuntu-metrics-systemd-install.1",
        "ubuntu-metrics-completions.1",
        "ubuntu-metrics-man.1",
    ] {
        let p = pages.join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.contains(".TH"), "{name}");
    }
    let provision =
        std::fs::read_to_string(pages.join("ubuntu-metrics-influxdb-provision.1")).unwrap();
    assert!(provision.contains("secrets\\-dir") || provision.contains("secrets-dir"));
}

#[test]
fn now_is_an_option_of_run_not_a_global_flag() {
    let cli = ubuntu_metrics::cli::clidoc::command();
    let has_now = |c: &clap::Command| c.get_arguments().any(|a| a.get_long() == Some("now"));
    assert!(!has_now(&cli), "--now is not global");
    for sub in cli.get_subcommands() {
        assert_eq!(
            has_now(sub),
            // `status --now`: judge as if it were then (lateness, spool age).
            ["run", "status"].contains(&sub.get_name()),
            "--now on {}",
            sub.get_name()
        );
    }
    // Where it has no meaning, it is a usage error naming the flag.
    let out = common::clean_env(&mut Command::new(BIN))
        .args(["--now", NOW, "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--now"));
    let out = common::clean_env(&mut Command::new(BIN))
        .args(["run", "--now", "yesterday", "sponsoring", "-n"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("yesterday"));
}

/// Read through `| head`, a command that only prints ends quietly when its
/// reader goes, as `cat` does (killed by SIGPIPE): no "Broken pipe" panic.
/// The pipe's reading end is closed before the command writes at all.
#[test]
fn a_listing_whose_reader_has_gone_ends_quietly() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    for args in [
        &["list"][..],
        &["config", "show"],
        &["dashboards", "list"],
        &["completions", "bash"],
    ] {
        let mut command = Command::new(BIN);
        common::clean_env(&mut command)
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The pipe is made in the child, after the fork, and its reading end
        // closed there: made in this process, its reading end would also be
        // copied into any child another test forks meanwhile, and a write
        // made before that child's exec would succeed.
        // SAFETY: pipe, dup2 and close are async-signal-safe, and the
        // closure touches nothing of this process's memory.
        unsafe {
            command.pre_exec(|| {
                let mut ends = [0; 2];
                if libc::pipe(ends.as_mut_ptr()) != 0
                    || libc::close(ends[0]) != 0
                    || libc::dup2(ends[1], 1) != 1
                    || libc::close(ends[1]) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}
