//! Script collectors (`[collectors.NAME] type = "exec"`, issue 12): real
//! Python scripts run by the real binary, their points written to a real
//! influxd and read back with their types; each way a script can fail
//! fails its run (and only its run) with a message naming what is wrong.

mod common;

use common::influxd::{self, Influxd};
use common::*;
use std::path::{Path, PathBuf};

/// The Python of the machine (the system's, which the tests can rely on).
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Writes `script` as `dir/NAME.py` and returns its path.
fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.py"));
    std::fs::write(&p, text).unwrap();
    p
}

/// A configuration writing to `influx_url` (or nowhere useful), plus
/// `extra` (the declared collectors).
fn config(dir: &Path, influx_url: &str, extra: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[influxdb]\nurl = \"{influx_url}\"\ndatabase = \"{}\"\n\n[spool]\ndir = \"{}\"\n\n{extra}",
            influxd::DATABASE,
            dir.join("spool").display()
        ),
    )
    .unwrap();
    p
}

/// An exec collector running `path` with Python, and its schema.
fn declare(name: &str, path: &Path, more: &str, schema: &str) -> String {
    format!(
        "[collectors.{name}]\ntype = \"exec\"\ncommand = [\"{}\", \"{}\"]\n{more}\n{schema}\n",
        python(),
        path.display()
    )
}

const QUEUE_SCHEMA: &str = "[collectors.NAME.measurements.release_queue]\ntags = [\"queue\", \"series\"]\nfields = { count = \"int\", ratio = \"float\", frozen = \"bool\", note = \"string\" }\n";

fn queue_schema(name: &str) -> String {
    QUEUE_SCHEMA.replace("NAME", name)
}

/// A configuration ([`config`]) declaring one exec collector, `name`:
/// [`declare`]d with `more`, writing `release_queue` ([`queue_schema`]).
fn config_one(dir: &Path, influx_url: &str, name: &str, path: &Path, more: &str) -> PathBuf {
    config(
        dir,
        influx_url,
        &declare(name, path, more, &queue_schema(name)),
    )
}

const LINE_PROTOCOL_SCRIPT: &str = r##"
import sys
print("reading the queues", file=sys.stderr)
print("release_queue,queue=new,series=plucky count=5i,ratio=0.5,frozen=true,note=\"a b\"")
print("# a comment, and a blank line")
print()
print("release_queue,queue=unapproved,series=plucky count=7i,ratio=1 1795514400000000000")
print("done", file=sys.stderr)
"##;

const JSON_SCRIPT: &str = r#"
import datetime, json
points = [
    # As the first generation's collect() returned them (write_points).
    {"measurement": "release_queue", "tags": {"queue": "new", "series": "questing"},
     "fields": {"count": 3, "ratio": 5.0, "frozen": False},
     "time": str(datetime.datetime(2026, 11, 24, 11, 0, tzinfo=datetime.timezone.utc))},
    {"measurement": "release_queue", "tags": {"queue": "new", "series": "noble"},
     "fields": {"count": 4, "ratio": 0.25},
     "time": str(datetime.datetime(2026, 11, 24, 10, 30, 0, 123456))},
    # The dry run's shape, epoch nanoseconds.
    {"measurement": "release_queue", "tags": {"queue": "unapproved", "series": "noble"},
     "fields": {"count": 9}, "timestamp": 1795510800000000000},
    # No time: the collection time.
    {"measurement": "release_queue", "tags": {"queue": "done"}, "fields": {"note": "no time"}},
]
for p in points:
    print(json.dumps(p))
"#;

#[test]
fn python_scripts_writing_line_protocol_and_json_lines_reach_influxd_with_their_types() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let lp = script(dir.path(), "lp", LINE_PROTOCOL_SCRIPT);
    let js = script(dir.path(), "js", JSON_SCRIPT);
    let cfg = config(
        dir.path(),
        &db.url(),
        &format!(
            "{}{}",
            declare("lp_queue", &lp, "", &queue_schema("lp_queue")),
            declare("json_queue", &js, "", &queue_schema("json_queue"))
        ),
    );
    // It is listed like every collector.
    let list = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("list")
        .output()
        .unwrap();
    let listed = text(&list.stdout);
    assert!(
        listed.contains("lp_queue") && listed.contains("json_queue"),
        "{listed}"
    );

    let out = run_now(&cfg, &["lp_queue", "json_queue"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Standard error is logged line by line under the collector's name.
    assert!(stderr.contains("lp_queue: reading the queues"), "{stderr}");
    assert!(stderr.contains("lp_queue: done"), "{stderr}");

    let mut rows: Vec<String> = db
        .rows("release_queue")
        .iter()
        .map(|r| serde_json::Value::Object(r.clone()).to_string())
        .collect();
    rows.sort();
    let now_ns = common::now().timestamp_nanos_opt().unwrap();
    let mut want = vec![
        format!(r#"{{"count":5,"frozen":true,"note":"a b","queue":"new","ratio":0.5,"series":"plucky","time":{now_ns}}}"#),
        r#"{"count":7,"queue":"unapproved","ratio":1,"series":"plucky","time":1795514400000000000}"#.to_owned(),
        r#"{"count":3,"frozen":false,"queue":"new","ratio":5,"series":"questing","time":1795518000000000000}"#.to_owned(),
        r#"{"count":4,"queue":"new","ratio":0.25,"series":"noble","time":1795516200123456000}"#.to_owned(),
        r#"{"count":9,"queue":"unapproved","series":"noble","time":1795510800000000000}"#.to_owned(),
        format!(r#"{{"note":"no time","queue":"done","time":{now_ns}}}"#),
    ];
    want.sort();
    assert_eq!(rows, want);
    // 5 stays an integer, 5.0 a float, booleans booleans.
    let mut types = db.field_types("release_queue");
    types.sort();
    assert_eq!(
        types,
        [
            ("count".to_owned(), "integer".to_owned()),
            ("frozen".to_owned(), "boolean".to_owned()),
            ("note".to_owned(), "string".to_owned()),
            ("ratio".to_owned(), "float".to_owned()),
        ]
    );
    // The self-metrics: one point per run, named after the collector.
    let runs = db.rows("ubuntu_metrics_run");
    for name in ["lp_queue", "json_queue"] {
        let r = runs
            .iter()
            .find(|r| r["collector"] == name)
            .unwrap_or_else(|| panic!("no self-metrics for {name}: {runs:?}"));
        assert_eq!(r["status"], "ok");
        assert!(r["points"].as_i64().unwrap() >= 2, "{r:?}");
    }
}

#[test]
fn every_dry_run_format_shows_a_script_collector() {
    let dir = tempfile::tempdir().unwrap();
    let js = script(dir.path(), "js", JSON_SCRIPT);
    let cfg = config_one(dir.path(), "http://127.0.0.1:9", "json_queue", &js, "");
    for format in ["lp", "json", "yaml"] {
        let out = run_now(&cfg, &["json_queue", "--dry-run", "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(
            s.contains("questing") && s.contains("no time"),
            "{format}: {s}"
        );
    }
    // The dry run's JSON is itself a script's output.
    let out = run_now(&cfg, &["json_queue", "--dry-run", "--format", "json"]);
    let replay = dir.path().join("replay.txt");
    std::fs::write(&replay, &out.stdout).unwrap();
    let cat = dir.path().join("cat.py");
    std::fs::write(
        &cat,
        format!(
            "import sys\nsys.stdout.write(open({:?}).read())\n",
            replay.display().to_string()
        ),
    )
    .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 = config_one(dir2.path(), "http://127.0.0.1:9", "replayed", &cat, "");
    let again = run_now(&cfg2, &["replayed", "--dry-run"]);
    let first = run_now(&cfg, &["json_queue", "--dry-run"]);
    assert_eq!(text(&again.stdout), text(&first.stdout));
}

#[test]
fn the_script_gets_a_minimal_environment_without_the_influxdb_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let env = script(
        dir.path(),
        "env",
        "import os, json\nprint(json.dumps({\"measurement\": \"env\", \"fields\": {\"names\": \" \".join(sorted(os.environ)), \"cwd\": os.getcwd(), \"mine\": os.environ.get(\"MINE\", \"\"), \"passed\": os.environ.get(\"PASSED_ON\", \"\"), \"now\": os.environ[\"UBUNTU_METRICS_NOW\"]}}))\n",
    );
    let workdir = dir.path().join("work");
    std::fs::create_dir(&workdir).unwrap();
    let cfg = config(
        dir.path(),
        "http://127.0.0.1:9",
        &declare(
            "env_check",
            &env,
            &format!(
                "dir = \"{}\"\nenv = {{ MINE = \"mine\" }}\npass_env = [\"PASSED_ON\"]",
                workdir.display()
            ),
            "[collectors.env_check.measurements.env]\nfields = { names = \"string\", cwd = \"string\", mine = \"string\", passed = \"string\", now = \"string\" }\n",
        ),
    );
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args([
            "run",
            "env_check",
            "--dry-run",
            "--format",
            "json",
            "--now",
            NOW,
        ])
        .env("INFLUXDB_PASSWORD", "hunter2-secret")
        .env("INFLUXDB_USERNAME", "collector")
        .env("PASSED_ON", "yes")
        .env("NOT_PASSED", "no")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(!s.contains("hunter2") && !s.contains("INFLUXDB"), "{s}");
    assert!(!s.contains("NOT_PASSED"), "{s}");
    let v: serde_json::Value = serde_json::from_str(s.lines().next().unwrap()).unwrap();
    let f = &v["fields"];
    assert_eq!(f["mine"], "mine");
    assert_eq!(f["passed"], "yes");
    assert_eq!(f["now"], "2026-11-24T12:00:00Z");
    assert_eq!(
        f["cwd"],
        workdir.canonicalize().unwrap().display().to_string()
    );
    let names: Vec<&str> = f["names"].as_str().unwrap().split(' ').collect();
    for n in &names {
        assert!(
            [
                "PATH",
                "LANG",
                "TZ",
                "HOME",
                "PYTHONDONTWRITEBYTECODE",
                "UBUNTU_METRICS_COLLECTOR",
                "UBUNTU_METRICS_NOW",
                "MINE",
                "PASSED_ON",
                "LC_CTYPE"
            ]
            .contains(n),
            "unexpected variable {n} in {names:?}"
        );
    }
}

/// Whether a process is still there (a zombie counts as gone: it runs
/// nothing and is waiting for its parent to reap it).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Runs a script that starts a child in a session of its own (out of the
/// script's process group) and both sleep 300 s, declared with `more` and
/// the configuration's `[daemon]` section `daemon`: asserts the run fails
/// within seconds with `want`, and neither process survives.
fn assert_no_orphan(more: &str, daemon: &str, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let slow = script(
        dir.path(),
        "slow",
        &format!(
            "import os, subprocess, time\nchild = subprocess.Popen([\"sleep\", \"300\"], start_new_session=True)\nopen({:?}, \"w\").write(\"%d %d\\n\" % (os.getpid(), child.pid))\nprint(\"release_queue count=1i\", flush=True)\ntime.sleep(300)\n",
            pids.display().to_string()
        ),
    );
    let cfg = config(
        dir.path(),
        "http://127.0.0.1:9",
        &format!(
            "{daemon}\n{}",
            declare("slow_queue", &slow, more, &queue_schema("slow_queue"))
        ),
    );
    let started = std::time::Instant::now();
    let out = run_now(&cfg, &["slow_queue", "--dry-run"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(want), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing written from a run that timed out"
    );
    let ids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    // The script and the child it started are gone (killed, reaped).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ids.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for p in ids {
        assert!(!alive(p), "process {p} survived its collector's timeout");
    }
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_leaves_no_orphan() {
    assert_no_orphan(
        "timeout = \"1s\"",
        "",
        "slow_queue: timed out after 1.0 s (timeout): it and every process it started were killed",
    );
}

#[test]
fn a_run_abandoned_at_the_run_timeout_leaves_no_orphan_either() {
    assert_no_orphan(
        "",
        "[daemon]\nrun_timeout = \"1s\"\n",
        "collector slow_queue timed out after 1.0 s (run timeout; the run was abandoned)",
    );
}

#[test]
fn failing_scripts_fail_their_run_with_what_is_wrong_and_write_nothing() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "exits_3",
            "import sys\nprint(\"release_queue count=1i\")\nfor i in range(8):\n    print(\"problem %d\" % i, file=sys.stderr)\nsys.exit(3)\n",
            vec![
                "exits_3: exited with status 3: problem 3 | problem 4 | problem 5 | problem 6 | problem 7",
            ],
        ),
        (
            "malformed",
            "print(\"release_queue count=1i\")\nprint(\"release_queue count=2i\")\nprint(\"release_queue count=\")\n",
            vec!["malformed: standard output line 3: not line protocol"],
        ),
        (
            "wrong_type",
            "print(\"release_queue count=1i\")\nprint('{\"measurement\": \"release_queue\", \"fields\": {\"count\": 2.5}}')\n",
            vec![
                "wrong_type: outside its declared schema",
                "field \"count\" is float but release_queue declares it int",
            ],
        ),
        (
            "undeclared",
            "print(\"release_queue count=1i\")\nprint(\"other_measurement count=1i\")\n",
            vec![
                "undeclared: outside its declared schema",
                "measurement \"other_measurement\" is not declared",
            ],
        ),
        (
            "too_much",
            "import sys\nfor i in range(200):\n    print(\"release_queue count=%di\" % i)\n",
            vec!["too_much: its standard output is over the limit of 1000 bytes (max_output)"],
        ),
    ];
    let mut decls = String::new();
    for (name, code, _) in &cases {
        let p = script(dir.path(), name, code);
        let more = if *name == "too_much" {
            "max_output = \"1kB\""
        } else {
            ""
        };
        decls.push_str(&declare(name, &p, more, &queue_schema(name)));
    }
    let good = script(
        dir.path(),
        "good",
        "print(\"release_queue,queue=good count=1i\")\n",
    );
    decls.push_str(&declare("good", &good, "", &queue_schema("good")));
    let cfg = config(dir.path(), &db.url(), &decls);
    let mut names: Vec<&str> = cases.iter().map(|(n, _, _)| *n).collect();
    names.push("good");
    let out = run_now(&cfg, &names);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (_, _, wants) in &cases {
        for w in wants {
            assert!(stderr.contains(w), "no {w:?} in:\n{stderr}");
        }
    }
    // No partial write: only the good collector's point is there.
    let rows = db.rows("release_queue");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["queue"], "good");
    let runs = db.rows("ubuntu_metrics_run");
    for (name, _, _) in &cases {
        let r = runs.iter().find(|r| r["collector"] == *name).unwrap();
        assert_eq!(r["status"], "error", "{r:?}");
        assert_eq!(r["points"], 0, "{r:?}");
    }
}

#[test]
fn a_bad_declaration_is_a_configuration_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[collectors.q]\ntype = \"exec\"\ncommand = [\"true\"]\n[collectors.q.measurements.m]\nfields = { count = \"integr\" }\n",
            "collectors.q.measurements.m.fields.count: unknown type \"integr\"",
        ),
        (
            "[collectors.q]\ntype = \"exec\"\n[collectors.q.measurements.m]\nfields = { count = \"int\" }\n",
            "collectors.q.command",
        ),
        (
            "[collectors.q]\ntype = \"exec\"\ncommand = [\"true\"]\npass_env = [\"INFLUXDB_PASSWORD\"]\n[collectors.q.measurements.m]\nfields = { count = \"int\" }\n",
            "collectors.q.pass_env: INFLUXDB_PASSWORD",
        ),
        (
            "[collectors.sponsoring]\ntype = \"exec\"\ncommand = [\"true\"]\n[collectors.sponsoring.measurements.m]\nfields = { count = \"int\" }\n",
            "collectors.sponsoring.type: a built-in collector has this name",
        ),
        (
            "[collectors.q]\ntype = \"exec\"\ncommand = [\"true\"]\n",
            "collectors.q.measurements",
        ),
    ];
    for (toml, want) in cases {
        let cfg = config(dir.path(), "http://127.0.0.1:9", toml);
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .arg("list")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        assert!(
            stderr.contains(want) && stderr.contains(&cfg.display().to_string()),
            "{toml}: no {want:?} and file in {stderr}"
        );
    }
}

#[test]
fn a_link_named_after_a_declared_collector_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let js = script(dir.path(), "js", JSON_SCRIPT);
    let cfg = config_one(dir.path(), "http://127.0.0.1:9", "json_queue", &js, "");
    let link = dir.path().join("json-queue");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ubuntu-metrics"), &link).unwrap();
    let out = clean_env(&mut std::process::Command::new(&link))
        .args(["--config", cfg.to_str().unwrap(), "--now", NOW, "-n"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        text(&run_now(&cfg, &["json_queue", "--dry-run"]).stdout)
    );
    assert_eq!(text(&out.stdout).lines().count(), 4);
}

// ---- Issue 22, item 7: scripts that misbehave cost their run at most, and
// nothing they start outlives it.

/// A shell script (`sh -c`) collector writing `release_queue`.
fn declare_sh(name: &str, code: &str, more: &str) -> String {
    format!(
        "[collectors.{name}]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", {code:?}]\n{more}\n{}\n",
        queue_schema(name)
    )
}

/// Waits (generously) until `pid` has gone; whether it has.
fn gone_within(pid: i32, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// Reads the pids a script wrote to `path`, one a line.
fn pids_in(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Kills `pid` if a failing assertion left it running (base code).
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            // SAFETY: kill(2) touches no memory of ours.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn bytes_that_are_not_utf8_on_standard_error_are_logged_and_cost_nothing() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    // Not UTF-8 first, then enough lines that a reader which stopped at
    // the bad bytes would leave the script writing to a closed pipe.
    let code = "printf 'bad \\377\\376 bytes\\n' >&2; i=0; while [ $i -lt 3000 ]; do echo \"progress $i\" >&2; i=$((i+1)); done; echo 'release_queue,queue=new count=5i'";
    let cfg = config(dir.path(), &db.url(), &declare_sh("latin1_queue", code, ""));
    let out = run_now(&cfg, &["latin1_queue"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("latin1_queue: bad \u{fffd}\u{fffd} bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("latin1_queue: progress 2999"), "{stderr}");
    let rows = db.rows("release_queue");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["count"], 5);
}

#[test]
fn a_child_holding_standard_output_open_does_not_hold_the_run() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The child inherits standard output and keeps it open for 300 s; the
    // script itself has printed its point and exits at once.
    let s = script(
        dir.path(),
        "bg",
        &format!(
            "import subprocess\nchild = subprocess.Popen([\"sleep\", \"300\"])\nopen({:?}, \"w\").write(\"%d\\n\" % child.pid)\nprint(\"release_queue,queue=bg count=1i\", flush=True)\n",
            pids.display().to_string()
        ),
    );
    let cfg = config_one(dir.path(), &db.url(), "bg_queue", &s, "timeout = \"30s\"");
    let started = std::time::Instant::now();
    let out = run_now(&cfg, &["bg_queue"]);
    let took = started.elapsed();
    let ids = pids_in(&pids);
    let _guard = KillOnDrop(ids.clone());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Well under the 30 s timeout: the run ended when the script exited.
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    assert_eq!(db.rows("release_queue").len(), 1);
    assert!(
        gone_within(ids[0], std::time::Duration::from_secs(10)),
        "the child holding standard output survived the run"
    );
}

#[test]
fn a_setsid_grandchild_is_killed_when_the_run_ends() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let ticks = dir.path().join("ticks");
    // A daemonised grandchild (a session of its own, its own process
    // group, nothing inherited), writing a line every 0.1 s for at most a
    // minute, so a failing run leaves nothing for long.
    let s = script(
        dir.path(),
        "daemonises",
        &format!(
            r#"import os, subprocess, time
ticks = {ticks:?}
child = subprocess.Popen(["/bin/sh", "-c", "i=0; while [ $i -lt 600 ]; do echo tick >> '%s'; sleep 0.1; i=$((i+1)); done" % ticks],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open({pids:?}, "w").write("%d\n" % child.pid)
while not os.path.exists(ticks):
    time.sleep(0.01)
print("release_queue,queue=daemon count=1i")
"#,
            ticks = ticks.display().to_string(),
            pids = pids.display().to_string()
        ),
    );
    let cfg = config_one(dir.path(), &db.url(), "setsid_queue", &s, "");
    let out = run_now(&cfg, &["setsid_queue"]);
    let ids = pids_in(&pids);
    let _guard = KillOnDrop(ids.clone());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(db.rows("release_queue").len(), 1);
    assert!(
        gone_within(ids[0], std::time::Duration::from_secs(10)),
        "the setsid grandchild {} survived the run",
        ids[0]
    );
    // And it writes no more.
    let size = std::fs::metadata(&ticks).unwrap().len();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(std::fs::metadata(&ticks).unwrap().len(), size);
}

/// Runs the binary like [`run`], and its peak resident memory (kB, its own
/// and that of the processes it waited for) from wait4(2).
// Reaped by wait4 itself (for its resource usage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_measured(config: &Path, args: &[&str]) -> (std::process::Output, i64) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .args(["--now", NOW])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ubuntu-metrics runs");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        so.read_to_end(&mut b).unwrap();
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        se.read_to_end(&mut b).unwrap();
        b
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only to the two pointers given.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32, "wait4");
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (output, usage.ru_maxrss)
}

/// The peak memory of the same run with a small script: what the program
/// needs anyway.
fn baseline_rss(dir: &Path, influx_url: &str) -> i64 {
    let cfg = config(
        dir,
        influx_url,
        &declare_sh(
            "small_queue",
            "echo 'release_queue,queue=small count=1i'",
            "",
        ),
    );
    let (out, rss) = run_measured(&cfg, &["small_queue", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    rss
}

#[test]
fn a_huge_line_on_standard_error_is_cut_and_costs_no_memory() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let base = baseline_rss(dir.path(), &db.url());
    // 128 MB without a newline, in 1 MB writes, then a last line.
    let s = script(
        dir.path(),
        "noisy",
        "import os\nchunk = b\"x\" * (1 << 20)\nfor _ in range(128):\n    os.write(2, chunk)\nos.write(2, b\"\\nlast words\\n\")\nprint(\"release_queue,queue=noisy count=1i\")\n",
    );
    let cfg = config_one(dir.path(), &db.url(), "noisy_queue", &s, "");
    let (out, rss) = run_measured(&cfg, &["noisy_queue"]);
    let stderr = text(&out.stderr);
    // 128 MB went through; the program held at most a few MB of it.
    eprintln!("peak RSS: {rss} kB (a small script: {base} kB)");
    assert!(
        rss < base + 32 * 1024,
        "peak RSS {rss} kB, a small script's run {base} kB"
    );
    let end: String = stderr
        .chars()
        .skip(stderr.chars().count().saturating_sub(1000))
        .collect();
    assert_eq!(out.status.code(), Some(0), "{end}");
    assert_eq!(db.rows("release_queue").len(), 1);
    assert!(stderr.contains("noisy_queue: last words"), "{end}");
    // The long line is logged cut, saying so; the log stays small.
    assert!(stderr.contains(" bytes cut]"), "{end}");
    assert!(stderr.len() < 100_000, "{} bytes logged", stderr.len());
}

#[test]
fn points_are_capped_per_run_by_max_points() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    // Past the default cap of 100,000 points (3.5 MB: under max_output).
    let many = script(
        dir.path(),
        "many",
        "import sys\nw = sys.stdout.write\nfor i in range(100001):\n    w(\"release_queue,queue=q%d count=1i\\n\" % i)\n",
    );
    // A cap of 5: 5 lines pass, 6 lines or a JSON array of 6 do not.
    let five = script(
        dir.path(),
        "five",
        "for i in range(5):\n    print(\"release_queue,queue=five%d count=%di\" % (i, i))\n",
    );
    let six = script(
        dir.path(),
        "six",
        "for i in range(6):\n    print(\"release_queue,queue=six%d count=%di\" % (i, i))\n",
    );
    let six_json = script(
        dir.path(),
        "six_json",
        "import json\nprint(json.dumps([{\"measurement\": \"release_queue\", \"tags\": {\"queue\": \"j%d\" % i}, \"fields\": {\"count\": i}} for i in range(6)]))\n",
    );
    let cap = "max_points = 5";
    let cfg = config(
        dir.path(),
        &db.url(),
        &[
            declare("many_queue", &many, "", &queue_schema("many_queue")),
            declare("five_queue", &five, cap, &queue_schema("five_queue")),
            declare("six_queue", &six, cap, &queue_schema("six_queue")),
            declare(
                "json_six_queue",
                &six_json,
                cap,
                &queue_schema("json_six_queue"),
            ),
        ]
        .concat(),
    );
    let out = run_now(
        &cfg,
        &["many_queue", "five_queue", "six_queue", "json_six_queue"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "many_queue: its standard output has more than 100000 points (max_points)",
        "six_queue: its standard output has more than 5 points (max_points)",
        "json_six_queue: its standard output has more than 5 points (max_points)",
    ] {
        assert!(stderr.contains(want), "no {want:?} in {stderr}");
    }
    // Only the collector within its cap wrote, all of its points.
    let mut queues: Vec<String> = db
        .rows("release_queue")
        .iter()
        .map(|r| r["queue"].as_str().unwrap().to_owned())
        .collect();
    queues.sort();
    assert_eq!(queues, ["five0", "five1", "five2", "five3", "five4"]);
}

#[test]
fn a_missing_dir_or_a_relative_command_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let schema = "[collectors.q.measurements.m]\nfields = { count = \"int\" }\n";
    let cases = [
        (
            "command = [\"/bin/true\"]\ndir = \"/nonexistent\"".to_owned(),
            "collectors.q.dir: \"/nonexistent\"".to_owned(),
        ),
        (
            format!("command = [\"/bin/true\"]\ndir = \"{}\"", file.display()),
            "is not a directory".to_owned(),
        ),
        (
            "command = [\"./collect.py\"]".to_owned(),
            "collectors.q.command: \"./collect.py\" is a relative path".to_owned(),
        ),
        (
            "command = [\"scripts/collect.py\", \"--flag\"]".to_owned(),
            "collectors.q.command: \"scripts/collect.py\" is a relative path".to_owned(),
        ),
    ];
    for (keys, want) in &cases {
        let cfg = config(
            dir.path(),
            "http://127.0.0.1:9",
            &format!("[collectors.q]\ntype = \"exec\"\n{keys}\n{schema}"),
        );
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .arg("list")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{keys}: {stderr}");
        assert!(
            stderr.contains(want.as_str()) && stderr.contains(&cfg.display().to_string()),
            "{keys}: no {want:?} and file in {stderr}"
        );
    }
    // A bare name is looked up in PATH, an absolute directory is fine.
    let cfg = config(
        dir.path(),
        "http://127.0.0.1:9",
        &format!(
            "[collectors.q]\ntype = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo m count=1i\"]\ndir = \"{}\"\n{schema}",
            dir.path().display()
        ),
    );
    let out = run_now(&cfg, &["q", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("m count=1i "));
}

#[test]
fn a_scripts_standard_error_is_redacted_in_the_log_and_in_the_error() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let code = "echo 'fetching https://bot:hunter2-secret@example.com/report' >&2; echo 'release_queue count=1i'; exit 4";
    let cfg = config(dir.path(), &db.url(), &declare_sh("leaky_queue", code, ""));
    let out = run_now(&cfg, &["leaky_queue"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // Logged (redacted), and the failed run's error holds it (redacted).
    assert!(
        stderr.contains("leaky_queue: fetching https://bot:<redacted>@example.com/report"),
        "{stderr}"
    );
    assert!(
        stderr.contains("exited with status 4: fetching https://bot:<redacted>@example.com/report"),
        "{stderr}"
    );
    assert!(db.rows("release_queue").is_empty());
    let runs = db.rows("ubuntu_metrics_run");
    let r = runs
        .iter()
        .find(|r| r["collector"] == "leaky_queue")
        .unwrap();
    assert_eq!(r["status"], "error");
}

/// A script's `HOME` is a folder of its own in the state directory (a
/// DynamicUser service has none: launchpadlib failed with "Must set $HOME
/// or pass 'launchpadlib_dir'"), mode 0700, the same whatever `HOME` the
/// program was started with, and kept from run to run (issue 23, defect 7).
#[test]
fn a_script_gets_a_writable_home_of_its_own_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let home_script = script(
        dir.path(),
        "home",
        "import json, os\nhome = os.environ['HOME']\nseen = os.path.exists(os.path.join(home, 'cache'))\nwith open(os.path.join(home, 'cache'), 'a') as f:\n    f.write('x')\nprint(json.dumps({'measurement': 'home', 'fields': {'home': home, 'seen': seen}}))\n",
    );
    let cfg = config(
        dir.path(),
        "http://127.0.0.1:9",
        &declare(
            "home_check",
            &home_script,
            "",
            "[collectors.home_check.measurements.home]\nfields = { home = \"string\", seen = \"bool\" }\n",
        ),
    );
    let run = || {
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .args(["run", "home_check", "--dry-run", "--format", "json"])
            .env("UBUNTU_METRICS_STATE_DIR", &state)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(s.lines().next().unwrap()).unwrap();
        v["fields"].clone()
    };
    let want = state.join("home").join("home_check");
    let first = run();
    assert_eq!(first["home"], want.display().to_string());
    assert_eq!(first["seen"], false);
    use std::os::unix::fs::PermissionsExt;
    for d in [state.join("home"), want.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    // The next run finds what the last one left.
    let second = run();
    assert_eq!(second["seen"], true);
    assert_eq!(std::fs::read_to_string(want.join("cache")).unwrap(), "xx");
    // A link planted as the homes' folder is not followed: the script
    // gets the inherited HOME, and nothing is written through the link.
    std::fs::remove_dir_all(state.join("home")).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, state.join("home")).unwrap();
    let third = run();
    assert_eq!(third["home"], dir.path().display().to_string());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
