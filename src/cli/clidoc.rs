//! Shell completions (clap_complete) and man pages (clap_mangen), both
//! generated from the command-line definition in [`super`] (`crate::cli`), so they
//! cannot drift from it.
//!
//! `ubuntu-metrics completions bash > /usr/share/bash-completion/completions/ubuntu-metrics`
//! `ubuntu-metrics man > ubuntu-metrics.1`, or `ubuntu-metrics man --dir DIR`
//! for `ubuntu-metrics.1` plus one page per subcommand
//! (`ubuntu-metrics-run.1`, `ubuntu-metrics-influxdb-provision.1`, ...).

use super::{Cli, Command, EXIT_FAILED, EXIT_OK, ManArgs};
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Runs the commands that need no configuration (`completions`, `man`);
/// `None` for the others.
pub fn run_early(cmd: &Command) -> Option<i32> {
    match cmd {
        Command::Completions(a) => {
            let mut out = std::io::stdout().lock();
            completions(a.shell, &mut out);
            Some(match out.flush() {
                Ok(()) => EXIT_OK,
                Err(_) => EXIT_FAILED,
            })
        }
        Command::Man(ManArgs { dir: None }) => Some(
            match man_page().and_then(|p| std::io::stdout().lock().write_all(&p)) {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("ubuntu-metrics: man: {e}");
                    EXIT_FAILED
                }
            },
        ),
        Command::Man(ManArgs { dir: Some(dir) }) => Some(match write_man_pages(dir) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("ubuntu-metrics: man: {}: {e}", dir.display());
                EXIT_FAILED
            }
        }),
        _ => None,
    }
}

/// The command-line definition, as the binary parses it.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Writes the completion script of `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = command();
    clap_complete::generate(shell, &mut cmd, "ubuntu-metrics", out);
}

/// The main man page (roff), with every subcommand listed.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let cmd = command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    write_extra_sections(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Environment, files and exit status: what clap does not know.
fn write_extra_sections(out: &mut dyn Write) -> std::io::Result<()> {
    use roff::{Roff, bold, roman};
    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    for (var, text) in [
        (
            "UBUNTU_METRICS_CONFIG",
            "The configuration file when --config is not given (default: /etc/ubuntu-metrics/config.toml when it exists).",
        ),
        (
            "INFLUXDB_HOSTNAME, INFLUXDB_PORT, INFLUXDB_SSL",
            "Build influxdb.url (https unless INFLUXDB_SSL=false; port 8086 by default).",
        ),
        (
            "INFLUXDB_USERNAME, INFLUXDB_PASSWORD, INFLUXDB_DATABASE",
            "Override the credentials and database of the configuration file.",
        ),
        (
            "INFLUXDB_ADMIN_USER, INFLUXDB_ADMIN_PASSWORD",
            "The InfluxDB admin for `influxdb provision`.",
        ),
        ("RUST_LOG", "Log filter (e.g. debug), unless --verbose."),
    ] {
        r.control("TP", []);
        r.text([bold(var)]);
        r.text([roman(text)]);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, text) in [
        (
            "0",
            "Every collector asked for succeeded and its points were written (or printed).",
        ),
        (
            "1",
            "A collector failed (the others still ran and wrote), or writing failed.",
        ),
        ("2", "A usage or configuration error."),
        (
            "75",
            "The points were collected but kept on disk for a later write.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(code)]);
        r.text([roman(text)]);
    }
    r.control("SH", ["FILES"]);
    r.control("TP", []);
    r.text([bold("/etc/ubuntu-metrics/config.toml")]);
    r.text([roman("The configuration.")]);
    r.control("TP", []);
    r.text([bold("/etc/ubuntu-metrics/credentials.env")]);
    r.text([roman(
        "INFLUXDB_USERNAME and INFLUXDB_PASSWORD for the systemd units (mode 0600).",
    )]);
    r.control("TP", []);
    r.text([bold("/etc/ubuntu-metrics/secrets/")]);
    r.text([roman(
        "Password files written by `influxdb provision` (mode 0600).",
    )]);
    out.write_all(r.render().as_bytes())
}

/// Writes `ubuntu-metrics.1` and one page per (nested) subcommand into
/// `dir`; returns the files written.
pub fn write_man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let main = dir.join("ubuntu-metrics.1");
    std::fs::write(&main, man_page()?)?;
    written.push(main);
    let mut cmd = command();
    cmd.build();
    fn walk(
        cmd: &clap::Command,
        prefix: &str,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        // clap's generated `help` subcommands get no page of their own.
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}-{}", sub.get_name());
            let page = sub
                .clone()
                .name(name.clone())
                .version(env!("CARGO_PKG_VERSION"));
            let mut buf = Vec::new();
            clap_mangen::Man::new(page).render(&mut buf)?;
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, buf)?;
            written.push(path);
            walk(sub, &name, dir, written)?;
        }
        Ok(())
    }
    walk(&cmd, "ubuntu-metrics", dir, &mut written)?;
    Ok(written)
}

/// The README's command-line reference: one row per command (each leaf
/// subcommand, as `ubuntu-metrics help` shows it) with every option it
/// takes and its `about`, the first line of its `--help`. Generated, so it
/// cannot drift from the command line; `tests/readme.rs` checks the
/// README's copy.
pub fn markdown_reference() -> String {
    let mut rows = Vec::new();
    let mut cmd = command();
    // Sets what the definition leaves implicit (how many values each
    // argument takes), for every subcommand.
    cmd.build();
    for sub in cmd.get_subcommands() {
        reference_rows(sub, "", &mut rows);
    }
    let mut out = String::from("| command | what it does |\n| --- | --- |\n");
    for (usage, about) in rows {
        out.push_str(&format!(
            "| `{}` | {} |\n",
            usage.replace('|', "\\|"),
            about.replace('|', "\\|")
        ));
    }
    out
}

/// The rows of `cmd` (under `parent`): itself when it has no subcommands,
/// else each of them.
fn reference_rows(cmd: &clap::Command, parent: &str, rows: &mut Vec<(String, String)>) {
    if cmd.get_name() == "help" {
        return;
    }
    let path = format!("{parent}{}", cmd.get_name()).trim().to_owned();
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands() {
            reference_rows(sub, &format!("{path} "), rows);
        }
        return;
    }
    let mut usage = path;
    // One of a required group's arguments (`new`: --exec, --http or
    // --first-generation) is shown as `A|B|C`, where the first of them is.
    let groups: Vec<Vec<&str>> = cmd
        .get_groups()
        .filter(|g| g.is_required_set())
        .map(|g| g.get_args().map(clap::Id::as_str).collect())
        .collect();
    let mut alternatives: Vec<String> = Vec::new();
    for arg in cmd.get_arguments() {
        if arg.is_global_set() || arg.is_hide_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let group = groups.iter().find(|g| g.contains(&id));
        let value = || {
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            if !possible.is_empty() && possible.len() <= 6 {
                possible.join("|")
            } else {
                arg.get_value_names()
                    .and_then(|n| n.first())
                    .map_or_else(|| id.to_uppercase(), ToString::to_string)
            }
        };
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let repeated = matches!(arg.get_action(), clap::ArgAction::Append);
        let text = match (arg.get_long(), arg.get_short()) {
            (None, None) => value(),
            (long, short) => {
                let mut names = Vec::new();
                if let Some(s) = short {
                    names.push(format!("-{s}"));
                }
                if let Some(l) = long {
                    names.push(format!("--{l}"));
                }
                let names = names.join("/");
                if takes_value {
                    format!("{names} {}", value())
                } else {
                    names
                }
            }
        };
        if let Some(group) = group {
            alternatives.push(text);
            if alternatives.len() < group.len() {
                continue;
            }
            usage.push(' ');
            usage.push_str(&alternatives.join("|"));
            alternatives.clear();
            continue;
        }
        let text = if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        };
        let many = repeated
            || (arg.is_positional()
                && takes_value
                && arg.get_num_args().is_some_and(|n| n.max_values() > 1));
        usage.push(' ');
        usage.push_str(&text);
        if many {
            usage.push_str("...");
        }
    }
    let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    rows.push((usage, about));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_lists_every_subcommand() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        for sub in command().get_subcommands() {
            assert!(
                page.contains(sub.get_name()),
                "{} missing from the man page",
                sub.get_name()
            );
        }
        assert!(page.contains("EXIT STATUS") && page.contains("INFLUXDB_PASSWORD"));
    }

    #[test]
    fn completions_name_every_subcommand() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in command().get_subcommands() {
                assert!(
                    text.contains(sub.get_name()),
                    "{shell}: {} missing",
                    sub.get_name()
                );
            }
        }
    }
}
