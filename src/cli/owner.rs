//! Who may write the state directory (and the spool directories): checked
//! before a command that writes there starts, and before it writes
//! anything (no log, no lock file).
//!
//! Under the packaged units the state directory belongs to the services'
//! dynamic user (`DynamicUser=yes`, `StateDirectory=ubuntu-metrics`). Root
//! may write there, but what it leaves (spool segments, `status.json`, the
//! answers kept for conditional requests) is root's, mode 0600: the
//! services can no longer read it, so the points a root run kept would
//! never be written. So root is refused when the directory belongs to
//! another uid, and told how to run the command as its owner; a user
//! who cannot write there is told so up front, naming the directory. A
//! dry run writes nothing in a directory of another owner instead of
//! being refused (see [`Check::ReadOnly`]).

use super::{Command, EXIT_NOPERM, SpoolCommand};
use crate::collector::Collector;
use crate::config::Config;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The uids systemd gives dynamic users (`DynamicUser=yes`): see
/// systemd's `DYNAMIC_UID_MIN` and `DYNAMIC_UID_MAX`.
pub const DYNAMIC_UIDS: std::ops::RangeInclusive<u32> = 61184..=65519;

/// What the check says.
#[derive(Debug, PartialEq)]
pub(super) enum Check {
    /// Go on as usual.
    Go,
    /// A dry run by root in a state directory of another owner: it runs,
    /// but writes nothing there (no answers kept for conditional requests;
    /// scripts get the inherited `HOME`). The note says so.
    ReadOnly(String),
    /// Refused: the message (lines, each to print after `ubuntu-metrics: `
    /// or indented) was printed; exit with this status.
    Refused(i32),
}

/// What the command does, for the advice of a refusal.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// `run NAME...` (`--all`: the enabled collectors).
    Run(Vec<String>),
    Daemon,
    /// `run --dry-run`, `backfill`, `spool flush`.
    Other,
}

/// Why a directory cannot be written.
#[derive(Debug)]
enum Problem {
    /// Root, in a directory of `owner`.
    Root { owner: u32 },
    /// Not root, and the directory cannot be written.
    Denied {
        owner: Option<u32>,
        mode: Option<u32>,
        error: std::io::Error,
    },
}

/// Checks the directories `command` writes into; prints the refusal.
pub(super) fn check(
    command: &Command,
    registry: &[Box<dyn Collector>],
    config: &Config,
    argv: &[OsString],
) -> Check {
    let state = config.state_dir();
    let spools: Vec<PathBuf> = config.outputs().into_iter().map(|o| o.spool_dir).collect();
    let (kind, dirs, dry_run) = match command {
        Command::Run(args) => {
            let names = if args.all {
                registry
                    .iter()
                    .map(|c| c.name())
                    .filter(|n| config.enabled(n))
                    .map(str::to_owned)
                    .collect()
            } else {
                args.names
                    .iter()
                    .map(|n| super::normalise_name(n))
                    .collect()
            };
            if args.dry_run {
                (Kind::Other, vec![state], true)
            } else {
                let mut dirs = vec![state];
                dirs.extend(spools);
                (Kind::Run(names), dirs, false)
            }
        }
        Command::Daemon => {
            let mut dirs = vec![state];
            dirs.extend(spools);
            (Kind::Daemon, dirs, false)
        }
        Command::Spool(SpoolCommand::Flush) => {
            let mut dirs = vec![state];
            dirs.extend(spools);
            (Kind::Other, dirs, false)
        }
        Command::Backfill(_) => (Kind::Other, vec![state], false),
        _ => return Check::Go,
    };
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    for dir in &dirs {
        let Some(problem) = judge(dir, euid) else {
            continue;
        };
        if dry_run {
            match problem {
                Problem::Root { owner } => {
                    return Check::ReadOnly(format!(
                        "the state directory {} belongs to uid {owner}: this dry run as root writes nothing there (no answers kept for conditional requests; scripts get the inherited HOME)",
                        dir.display()
                    ));
                }
                // A dry run that cannot write the answers still prints the
                // points (warning that it keeps no answers).
                Problem::Denied { .. } => return Check::Go,
            }
        }
        let label = if *dir == config.state_dir() {
            "the state directory"
        } else {
            "the spool directory"
        };
        let lines = message(dir, label, &problem, &kind, argv)
            .into_iter()
            .map(|l| l.replace(CREDENTIALS_PLACEHOLDER, &credential_properties(config)))
            .collect::<Vec<_>>();
        for (i, l) in lines.iter().enumerate() {
            if i == 0 {
                eprintln!("ubuntu-metrics: {l}");
            } else {
                eprintln!("    {l}");
            }
        }
        return Check::Refused(EXIT_NOPERM);
    }
    Check::Go
}

/// Whether `euid` may write `dir` (or it is not there yet: created as
/// usual, by whoever runs).
fn judge(dir: &Path, euid: u32) -> Option<Problem> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) if euid != 0 => {
            return Some(Problem::Denied {
                owner: None,
                mode: None,
                error: e,
            });
        }
        // Root: the command's own error names it.
        Err(_) => return None,
    };
    if !meta.is_dir() {
        // The command's own error says what it is.
        return None;
    }
    if euid == 0 {
        return (meta.uid() != 0).then_some(Problem::Root { owner: meta.uid() });
    }
    if meta.uid() == euid {
        return None;
    }
    // Another user's directory may still be writable (a shared group).
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())).ok()?;
    // SAFETY: access(2) on a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        return None;
    }
    Some(Problem::Denied {
        owner: Some(meta.uid()),
        mode: Some(meta.permissions().mode() & 0o7777),
        error: std::io::Error::last_os_error(),
    })
}

/// The refusal: the first line says what and where, the next ones how to
/// run the command as the directory's owner.
fn message(
    dir: &Path,
    label: &str,
    problem: &Problem,
    kind: &Kind,
    argv: &[OsString],
) -> Vec<String> {
    let mut lines = Vec::new();
    let owner = match problem {
        Problem::Root { owner } => {
            lines.push(format!(
                "refusing to run as root: {label} {} belongs to uid {owner}{}; what root would write there (spool segments, status.json, the answers kept for conditional requests) could not be read by its owner, and the points it keeps would never be written. Nothing was written",
                dir.display(),
                who(*owner)
            ));
            Some(*owner)
        }
        Problem::Denied { owner, mode, error } => {
            let of = match (owner, mode) {
                (Some(o), Some(m)) => format!(" (owner uid {o}{}, mode {m:04o})", who(*o)),
                _ => String::new(),
            };
            lines.push(format!(
                "cannot write in {label} {}{of}: {error}. Nothing was written",
                dir.display()
            ));
            *owner
        }
    };
    let Some(owner) = owner else {
        lines.push(
            "run it as the user who owns that directory, or set UBUNTU_METRICS_STATE_DIR (and [spool] dir) to a directory of your own"
                .to_owned(),
        );
        return lines;
    };
    let command = command_line(argv);
    if DYNAMIC_UIDS.contains(&owner) {
        match kind {
            Kind::Run(names) if !names.is_empty() => {
                let units: Vec<String> = names
                    .iter()
                    .map(|n| format!("ubuntu-metrics@{n}.service"))
                    .collect();
                lines.push("run it as the services do, then read its log:".to_owned());
                lines.push(format!("sudo systemctl start --wait {}", units.join(" ")));
                lines.push(format!("journalctl -u {}", units.join(" -u ")));
            }
            Kind::Daemon => {
                lines.push("start the packaged service, then read its log:".to_owned());
                lines.push("sudo systemctl start ubuntu-metrics.service".to_owned());
                lines.push("journalctl -u ubuntu-metrics.service".to_owned());
            }
            Kind::Run(_) | Kind::Other => {
                lines.push("run it as the services' dynamic user:".to_owned());
                lines.push(format!(
                    "sudo systemd-run --wait --pipe --quiet --property=User=ubuntu-metrics --property=DynamicUser=yes --property=StateDirectory=ubuntu-metrics{} --property=EnvironmentFile=-{} --setenv=UBUNTU_METRICS_STATE_DIR=/var/lib/ubuntu-metrics {command}",
                    CREDENTIALS_PLACEHOLDER,
                    crate::schedule::systemd::DEFAULT_CREDENTIALS,
                ));
            }
        }
    } else {
        let env = std::env::var_os(crate::config::STATE_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(String::new, |d| {
                format!(
                    "env {}={} ",
                    crate::config::STATE_DIR_ENV,
                    shell_quote(&d.to_string_lossy())
                )
            });
        lines.push("run it as the directory's owner:".to_owned());
        let user = if owner == 0 {
            String::new()
        } else {
            format!("-u '#{owner}' ")
        };
        lines.push(format!("sudo {user}{env}{command}"));
    }
    lines
}

/// ` (a systemd dynamic user ...)` for a uid of [`DYNAMIC_UIDS`].
fn who(uid: u32) -> &'static str {
    if DYNAMIC_UIDS.contains(&uid) {
        " (a systemd dynamic user: the services' DynamicUser=yes)"
    } else {
        ""
    }
}

/// Where [`message`] puts the `LoadCredential=` properties of the
/// configuration ([`credential_properties`]).
const CREDENTIALS_PLACEHOLDER: &str = " --property=LoadCredential=...";

/// The services' `LoadCredential=` lines for a `systemd-run` command line:
/// the packaged password credential and each secret file the configuration
/// names (as the generator hands them to the units), those whose file is
/// there (systemd refuses to start a unit whose credential file is
/// missing).
fn credential_properties(config: &Config) -> String {
    let packaged = (
        crate::config::PASSWORD_CREDENTIAL.to_owned(),
        PathBuf::from(crate::schedule::systemd::DEFAULT_PASSWORD_CREDENTIAL),
    );
    std::iter::once(packaged)
        .chain(config.secret_files())
        .filter(|(_, file)| file.exists())
        .map(|(id, file)| {
            format!(
                " --property=LoadCredential={id}:{}",
                shell_quote(&file.display().to_string())
            )
        })
        .collect()
}

/// The command again, for a shell: this program's path and its arguments,
/// quoted where needed.
fn command_line(argv: &[OsString]) -> String {
    let program = std::env::current_exe()
        .map_or_else(|_| "ubuntu-metrics".to_owned(), |p| p.display().to_string());
    std::iter::once(shell_quote(&program))
        .chain(
            argv.iter()
                .skip(1)
                .map(|a| shell_quote(&a.to_string_lossy())),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` as one word of a POSIX shell.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_systemd_run_line_hands_over_each_secret_file_that_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("collector-password");
        std::fs::write(&secret, "pw\n").unwrap();
        let mut config = Config::default();
        config.influxdb.password_file = Some(secret.clone());
        let got = credential_properties(&config);
        assert!(
            got.contains(&format!(
                " --property=LoadCredential=influxdb.password_file:{}",
                secret.display()
            )),
            "{got}"
        );
        config.influxdb.password_file = Some(dir.path().join("missing"));
        assert!(!credential_properties(&config).contains("influxdb.password_file"));
    }

    #[test]
    fn root_in_a_dynamic_users_directory_is_told_the_units() {
        let lines = message(
            Path::new("/var/lib/ubuntu-metrics"),
            "the state directory",
            &Problem::Root { owner: 61234 },
            &Kind::Run(vec!["sponsoring".into()]),
            &argv(&["ubuntu-metrics", "run", "sponsoring"]),
        );
        assert!(
            lines[0].starts_with(
                "refusing to run as root: the state directory /var/lib/ubuntu-metrics belongs to uid 61234 (a systemd dynamic user"
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines[2..],
            [
                "sudo systemctl start --wait ubuntu-metrics@sponsoring.service",
                "journalctl -u ubuntu-metrics@sponsoring.service"
            ]
        );
        let lines = message(
            Path::new("/var/lib/ubuntu-metrics"),
            "the state directory",
            &Problem::Root { owner: 61234 },
            &Kind::Run(vec!["a".into(), "b".into()]),
            &argv(&["ubuntu-metrics", "run", "a", "b"]),
        );
        assert_eq!(
            lines[2..],
            [
                "sudo systemctl start --wait ubuntu-metrics@a.service ubuntu-metrics@b.service",
                "journalctl -u ubuntu-metrics@a.service -u ubuntu-metrics@b.service"
            ]
        );
        let lines = message(
            Path::new("/var/lib/ubuntu-metrics"),
            "the state directory",
            &Problem::Root { owner: 61234 },
            &Kind::Daemon,
            &argv(&["ubuntu-metrics", "daemon"]),
        );
        assert_eq!(lines[2], "sudo systemctl start ubuntu-metrics.service");
        let lines = message(
            Path::new("/var/lib/ubuntu-metrics"),
            "the state directory",
            &Problem::Root { owner: 61234 },
            &Kind::Other,
            &argv(&["ubuntu-metrics", "spool", "flush"]),
        );
        assert!(
            lines[2].starts_with("sudo systemd-run --wait --pipe --quiet --property=User=ubuntu-metrics --property=DynamicUser=yes --property=StateDirectory=ubuntu-metrics")
                && lines[2].ends_with(" spool flush"),
            "{lines:?}"
        );
    }

    #[test]
    fn root_in_a_real_users_directory_is_told_sudo_u() {
        let lines = message(
            Path::new("/srv/um"),
            "the state directory",
            &Problem::Root { owner: 1000 },
            &Kind::Run(vec!["sponsoring".into()]),
            &argv(&[
                "ubuntu-metrics",
                "--config",
                "/etc/a b.toml",
                "run",
                "sponsoring",
            ]),
        );
        assert!(
            lines[0].contains("/srv/um belongs to uid 1000;"),
            "{lines:?}"
        );
        assert!(lines[2].starts_with("sudo -u '#1000' "), "{lines:?}");
        assert!(
            lines[2].ends_with(" --config '/etc/a b.toml' run sponsoring"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_user_who_cannot_write_is_told_where() {
        let lines = message(
            Path::new("/var/lib/ubuntu-metrics"),
            "the state directory",
            &Problem::Denied {
                owner: Some(0),
                mode: Some(0o700),
                error: std::io::Error::from_raw_os_error(libc::EACCES),
            },
            &Kind::Run(vec!["x".into()]),
            &argv(&["ubuntu-metrics", "run", "x"]),
        );
        assert!(
            lines[0].starts_with(
                "cannot write in the state directory /var/lib/ubuntu-metrics (owner uid 0, mode 0700): Permission denied"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("run"), "run");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    /// Root in its own directory, anyone in a missing one: no problem.
    #[test]
    fn own_and_missing_directories_are_fine() {
        let d = tempfile::tempdir().unwrap();
        // SAFETY: geteuid(2).
        let euid = unsafe { libc::geteuid() };
        assert!(judge(d.path(), euid).is_none());
        assert!(judge(&d.path().join("missing"), euid).is_none());
    }
}
