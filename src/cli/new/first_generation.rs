//! `new NAME --first-generation CHECKOUT`: runs the first generation's
//! collector `metrics.collectors.NAME` of CHECKOUT once through the adapter
//! (`contrib/first-generation/run-collector.py`) and prints its ready
//! `[collectors.NAME]` block, with `measurements` declared from the points
//! it returned: moving an old collector takes no hand-written schema.

use super::super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::model::point::Point;
use crate::model::schema::FieldType;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the Debian package installs the adapter.
pub const INSTALLED_ADAPTER: &str = "/usr/share/ubuntu-metrics/first-generation/run-collector.py";

/// The adapter, for a run where it is not installed.
const ADAPTER: &str = include_str!("../../../contrib/first-generation/run-collector.py");

/// What the points of one measurement carry.
#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    pub tags: BTreeSet<String>,
    pub fields: BTreeMap<String, FieldType>,
}

/// A field seen with two types in one measurement (InfluxDB keeps one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "measurement {measurement}: field {field} is {before} in one point and {now} in another: InfluxDB keeps one type per field, so make the collector return one (e.g. float(...))"
)]
pub struct TwoTypes {
    pub measurement: String,
    pub field: String,
    pub before: &'static str,
    pub now: &'static str,
}

/// The measurements of `points`, their tag keys and field types; an error
/// names a field seen with two types (InfluxDB keeps one).
pub fn measurements(points: &[Point]) -> Result<BTreeMap<String, Seen>, TwoTypes> {
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for p in points {
        let seen = out.entry(p.measurement.clone()).or_default();
        seen.tags.extend(p.tags.keys().cloned());
        for (k, v) in &p.fields {
            let t = FieldType::of(v);
            match seen.fields.get(k) {
                Some(before) if *before != t => {
                    return Err(TwoTypes {
                        measurement: p.measurement.clone(),
                        field: k.clone(),
                        before: before.name(),
                        now: t.name(),
                    });
                }
                _ => {
                    seen.fields.insert(k.clone(), t);
                }
            }
        }
    }
    Ok(out)
}

/// `s` as a TOML key: bare when it can be, else quoted.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// `s` as a TOML string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The block of collector `name` running the old collector `old` of
/// `checkout` through `adapter`, declaring `seen`.
pub fn block(
    name: &str,
    old: &str,
    checkout: &str,
    adapter: &str,
    points: usize,
    seen: &BTreeMap<String, Seen>,
) -> String {
    let command = ["python3", adapter, "--checkout", checkout, old]
        .iter()
        .map(|a| quoted(a))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        r#"# The first generation's collector metrics.collectors.{old}, run by
# ubuntu-metrics through the adapter (it does not write to InfluxDB
# itself). Its measurements below are those of the {points} points it
# returned when `new` ran it: field types as seen. Paste this into the
# configuration (/etc/ubuntu-metrics/config.toml), then try it with
#   ubuntu-metrics run {name} --dry-run
[collectors.{name}]
type = "exec"
description = "first-generation collector {old} (through run-collector.py)"
command = [{command}]
interval = "10m"
timeout = "2m"
# A collector reading Launchpad may want these:
# pass_env = ["HTTPS_PROXY", "https_proxy"]
"#
    );
    for (m, s) in seen {
        let tags = s
            .tags
            .iter()
            .map(|t| quoted(t))
            .collect::<Vec<_>>()
            .join(", ");
        let fields = s
            .fields
            .iter()
            .map(|(k, t)| format!("{} = \"{}\"", key(k), t.name()))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "\n[collectors.{name}.measurements.{}]\ntags = [{tags}]\nfields = {{ {fields} }}\n",
            key(m)
        ));
    }
    out
}

/// The adapter to run now: `chosen` if it exists, else a copy of the
/// embedded one in a temporary file (removed when dropped).
enum Runnable {
    Installed(PathBuf),
    Temporary(PathBuf),
}

impl Runnable {
    fn path(&self) -> &Path {
        match self {
            Runnable::Installed(p) | Runnable::Temporary(p) => p,
        }
    }
}

impl Drop for Runnable {
    fn drop(&mut self) {
        if let Runnable::Temporary(p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn runnable(chosen: &Path) -> Result<Runnable, String> {
    if chosen.is_file() {
        return Ok(Runnable::Installed(chosen.to_path_buf()));
    }
    let path = std::env::temp_dir().join(format!(
        "ubuntu-metrics-run-collector-{}.py",
        std::process::id()
    ));
    // A new file only: never through a link someone left in the way.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, ADAPTER.as_bytes()));
    match written {
        Ok(()) => Ok(Runnable::Temporary(path)),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_file(&path);
            }
            Err(format!(
                "cannot write the adapter to {}: {e}",
                path.display()
            ))
        }
    }
}

pub(in crate::cli) fn main(
    name: &str,
    builtin: bool,
    checkout: &Path,
    adapter: Option<&Path>,
) -> i32 {
    // The old collector keeps its name; the new one cannot take a
    // built-in collector's.
    let old = name;
    let new_name = if builtin {
        format!("old_{name}")
    } else {
        name.to_owned()
    };
    if !crate::custom::valid_name(&new_name) {
        eprintln!(
            "ubuntu-metrics: new: {new_name:?}: a collector's name is lower-case letters, digits and `_`, starting with a letter"
        );
        return EXIT_USAGE;
    }
    let checkout = std::path::absolute(checkout).unwrap_or_else(|_| checkout.to_path_buf());
    let collectors = checkout.join("metrics/collectors");
    if !collectors.join(old).is_dir() && !collectors.join(format!("{old}.py")).is_file() {
        eprintln!(
            "ubuntu-metrics: new: {}: no {old}/ nor {old}.py: is {} a checkout of the first generation's repository, and {old} one of its collectors?",
            collectors.display(),
            checkout.display()
        );
        return EXIT_USAGE;
    }
    let chosen = adapter.map_or_else(|| PathBuf::from(INSTALLED_ADAPTER), Path::to_path_buf);
    let chosen = std::path::absolute(&chosen).unwrap_or(chosen);
    if adapter.is_some() && !chosen.is_file() {
        eprintln!(
            "ubuntu-metrics: new: --adapter {}: no such file",
            chosen.display()
        );
        return EXIT_USAGE;
    }
    let (points, seen) = match run_once(&chosen, &checkout, old) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ubuntu-metrics: new: {e}");
            return EXIT_FAILED;
        }
    };
    if builtin {
        eprintln!(
            "ubuntu-metrics: {old} is a built-in collector's name: the block is named {new_name}"
        );
    }
    if !chosen.is_file() {
        eprintln!(
            "ubuntu-metrics: note: the block runs {}, which is not on this machine: install the package, or give the adapter's path with --adapter",
            chosen.display()
        );
    }
    print!(
        "{}",
        block(
            &new_name,
            old,
            &checkout.display().to_string(),
            &chosen.display().to_string(),
            points.len(),
            &seen
        )
    );
    EXIT_OK
}

/// Runs the first generation's collector `old` once through the adapter
/// `chosen`: its points and the measurements they show; an error is the
/// message after `ubuntu-metrics: new: `.
fn run_once(
    chosen: &Path,
    checkout: &Path,
    old: &str,
) -> Result<(Vec<Point>, BTreeMap<String, Seen>), String> {
    let run = runnable(chosen)?;
    eprintln!(
        "ubuntu-metrics: running metrics.collectors.{old} of {} once through the adapter",
        checkout.display()
    );
    let out = Command::new("python3")
        .arg(run.path())
        .arg("--checkout")
        .arg(checkout)
        .arg(old)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    drop(run);
    let out = out.map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "metrics.collectors.{old} failed ({}): its messages are above",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let points = crate::custom::points::parse_output(&stdout)
        .map_err(|e| format!("metrics.collectors.{old} returned what is not points: {e}"))?;
    if points.is_empty() {
        return Err(format!(
            "metrics.collectors.{old} returned no points: nothing to declare its measurements from (run it when its source has data)"
        ));
    }
    let seen = measurements(&points).map_err(|e| format!("metrics.collectors.{old}: {e}"))?;
    Ok((points, seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::point::FieldValue;

    #[test]
    fn measurements_are_declared_as_seen_and_a_changing_type_is_refused() {
        let a = Point::new("q")
            .tag("series", "noble")
            .field("count", FieldValue::Integer(3))
            .field("ok", FieldValue::Boolean(true));
        let b = Point::new("q")
            .tag("arch", "amd64")
            .field("ratio", FieldValue::Float(0.5));
        let seen = measurements(&[a.clone(), b]).unwrap();
        let text = block("q2", "q", "/srv/old", "/a.py", 2, &seen);
        let table: toml::Table = text.parse().unwrap();
        let m = &table["collectors"]["q2"]["measurements"]["q"];
        assert_eq!(m["tags"].as_array().unwrap().len(), 2);
        assert_eq!(m["fields"]["count"].as_str(), Some("int"));
        assert_eq!(m["fields"]["ratio"].as_str(), Some("float"));
        assert_eq!(m["fields"]["ok"].as_str(), Some("bool"));
        let c = Point::new("q").field("count", FieldValue::Float(3.5));
        let e = measurements(&[a, c]).unwrap_err().to_string();
        assert!(
            e.contains("field count is int in one point and float"),
            "{e}"
        );
        assert_eq!(key("a.b"), "\"a.b\"");
    }
}
