//! `ubuntu-metrics influxdb provision` against a real influxd with
//! `auth-enabled = true` (and a fresh one without auth): the users it
//! creates can do exactly what they should, the password files are mode
//! 0600, and a second run changes nothing and says so.

mod common;

use common::bin;

use common::influxd::{ADMIN, DATABASE, Influxd, Options};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn provision(db: &Influxd, secrets: &Path, extra: &[&str], admin_pw: Option<&str>) -> Output {
    let mut c = bin();
    c.args(["influxdb", "provision", "--url", &db.url(), "--secrets-dir"])
        .arg(secrets)
        .args(extra);
    if let Some(pw) = admin_pw {
        c.env("INFLUXDB_ADMIN_PASSWORD", pw);
    }
    c.output().expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Writes one line as `user`; returns the HTTP status.
fn write_as(db: &Influxd, user: &str, pw: &str, line: &str) -> u16 {
    let mut child = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-XPOST"])
        .arg(format!("{}/write?db={DATABASE}", db.url()))
        .args(["--data-binary", line, "--config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "user = \"{user}:{pw}\"").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

fn secret(dir: &Path, user: &str) -> String {
    let path = dir.join(format!("{user}-password"));
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    let pw = std::fs::read_to_string(&path)
        .unwrap()
        .trim_end()
        .to_owned();
    assert_eq!(pw.len(), 32, "{pw}");
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
    pw
}

fn error_of(v: &serde_json::Value) -> Option<String> {
    v.get("error")
        .or_else(|| v["results"][0].get("error"))
        .and_then(|e| e.as_str())
        .map(str::to_owned)
}

/// The collector can write but not read; grafana can read but not write.
fn assert_rights(db: &Influxd, dir: &Path) {
    let cpw = secret(dir, "collector");
    let gpw = secret(dir, "grafana");
    assert_ne!(cpw, gpw);
    assert_eq!(write_as(db, "collector", &cpw, "probe value=1i"), 204);
    assert_eq!(write_as(db, "collector", "wrong", "probe value=2i"), 401);
    assert_eq!(write_as(db, "grafana", &gpw, "probe value=3i"), 403);

    let read = db.query_as("SELECT * FROM probe", Some(("grafana", &gpw)));
    assert_eq!(error_of(&read), None, "{read}");
    assert_eq!(read["results"][0]["series"][0]["values"][0][1], 1, "{read}");
    let denied = db.query_as("SELECT * FROM probe", Some(("collector", &cpw)));
    assert!(
        error_of(&denied).is_some_and(|e| e.contains("not authorized")),
        "{denied}"
    );
    let denied = db.query_as("SHOW USERS", Some(("grafana", &gpw)));
    assert!(error_of(&denied).is_some(), "{denied}");
}

#[test]
fn provisions_an_auth_server_and_a_second_run_changes_nothing() {
    let db = Influxd::start_with(Options {
        auth: true,
        no_database: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");

    // Without the admin password: refused, with a hint, nothing created.
    let out = provision(&db, &secrets, &[], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("INFLUXDB_ADMIN_PASSWORD"), "{stderr}");
    assert!(!secrets.exists());

    // A wrong admin password: refused, and never echoed.
    let out = provision(&db, &secrets, &[], Some("not-the-pw-1234"));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("refused the admin credentials"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("not-the-pw-1234"));

    let out = provision(&db, &secrets, &["--retention", "52w"], Some(ADMIN.1));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for want in [
        "unchanged: admin user \"admin\" exists",
        "changed:   created database \"metrics\"",
        "changed:   retention of \"metrics\" (policy \"autogen\"): infinite -> 52w",
        "changed:   created user \"collector\" with a generated password",
        "changed:   granted WRITE on \"metrics\" to \"collector\" (had NO PRIVILEGES)",
        "changed:   created user \"grafana\" with a generated password",
        "changed:   granted READ on \"metrics\" to \"grafana\" (had NO PRIVILEGES)",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(ADMIN.1), "the admin password is printed");
    let dir_mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert!(
        !secrets.join("admin-password").exists(),
        "a given admin password is not written"
    );
    let rps = db.query_admin(&format!("SHOW RETENTION POLICIES ON {DATABASE}"));
    assert_eq!(
        rps["results"][0]["series"][0]["values"][0][1], "8736h0m0s",
        "{rps}"
    );
    assert_rights(&db, &secrets);
    let before = (secret(&secrets, "collector"), secret(&secrets, "grafana"));

    // Again: nothing changes, passwords are kept.
    let out = provision(&db, &secrets, &["--retention", "52w"], Some(ADMIN.1));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("nothing changed: the server was already provisioned"),
        "{stdout}"
    );
    assert!(!stdout.contains("changed:  "), "{stdout}");
    assert!(
        stdout.contains("unchanged: user \"collector\" has WRITE on \"metrics\""),
        "{stdout}"
    );
    assert_eq!(
        before,
        (secret(&secrets, "collector"), secret(&secrets, "grafana"))
    );
    assert_rights(&db, &secrets);

    // Rights changed behind its back are put right; the admin password
    // from a file works as well as from the environment.
    db.query_admin("GRANT ALL ON metrics TO collector");
    db.query_admin("GRANT ALL PRIVILEGES TO grafana");
    let pwfile = dir.path().join("admin-pw");
    std::fs::write(&pwfile, format!("{}\n", ADMIN.1)).unwrap();
    let out = provision(
        &db,
        &secrets,
        &["--admin-password-file", pwfile.to_str().unwrap()],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("granted WRITE on \"metrics\" to \"collector\" (had ALL PRIVILEGES)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("revoked the admin rights of \"grafana\""),
        "{stdout}"
    );
    assert!(stdout.contains("2 changes"), "{stdout}");
    assert_rights(&db, &secrets);
}

#[test]
fn a_fresh_server_with_auth_gets_its_admin_too() {
    let db = Influxd::start_with(Options {
        auth: true,
        no_admin: true,
        no_database: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("s");
    let out = provision(&db, &secrets, &[], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("created admin user \"admin\" with a generated password"),
        "{stdout}"
    );
    let admin_pw = secret(&secrets, "admin");
    let users = db.query_as("SHOW USERS", Some(("admin", &admin_pw)));
    assert_eq!(error_of(&users), None, "{users}");
    assert_rights(&db, &secrets);

    // The second run finds the admin password in its file.
    let out = provision(&db, &secrets, &[], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(admin_pw, secret(&secrets, "admin"));
}

#[test]
fn a_fresh_server_without_auth_is_provisioned_with_a_warning() {
    // As Debian's influxdb package starts: authentication off.
    let db = Influxd::start_with(Options {
        no_database: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("s");
    let out = provision(&db, &secrets, &["--retention", "inf"], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("authentication is disabled"), "{stdout}");
    assert!(stdout.contains("created admin user"), "{stdout}");
    assert!(stdout.contains("created database"), "{stdout}");
    assert!(
        stdout.contains("unchanged: retention of \"metrics\" (policy \"autogen\") is infinite"),
        "{stdout}"
    );
    secret(&secrets, "admin");
    secret(&secrets, "collector");
    secret(&secrets, "grafana");
    let users = db.query("SHOW USERS");
    let names = users.to_string();
    for u in ["admin", "collector", "grafana"] {
        assert!(names.contains(&format!("\"{u}\"")), "{names}");
    }

    // A user that exists without its password file keeps its password,
    // and a missing user whose password file exists gets that password.
    std::fs::remove_file(secrets.join("grafana-password")).unwrap();
    db.query("DROP USER collector");
    let kept = std::fs::read_to_string(secrets.join("collector-password")).unwrap();
    let out = provision(&db, &secrets, &[], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("created user \"collector\" with the password already in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("user \"grafana\" exists, password kept (no password file"),
        "{stdout}"
    );
    assert_eq!(
        kept,
        std::fs::read_to_string(secrets.join("collector-password")).unwrap()
    );
    assert!(!secrets.join("grafana-password").exists());
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = bin()
        .args(["influxdb", "provision", "--retention", "10m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1h"));
    let out = bin()
        .args([
            "influxdb",
            "provision",
            "--admin-password-file",
            "/nonexistent/pw",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Nobody listens there: a clear connection error.
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["influxdb", "provision", "--url", "http://127.0.0.1:9"])
        .arg("--secrets-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach InfluxDB at http://127.0.0.1:9"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_station_runs_with_the_provisioned_users() {
    // The operator's path: provision, point the configuration at the
    // collector's password file, run; Grafana's user reads the points.
    let fixtures = common::server();
    let db = Influxd::start_with(Options {
        auth: true,
        no_database: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let out = provision(&db, &secrets, &["--retention", "52w"], Some(ADMIN.1));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let mut config = ubuntu_metrics::config::Config {
        sources: fixtures.sources(),
        ..Default::default()
    };
    config.influxdb.url = db.url().into();
    config.influxdb.username = Some("collector".into());
    config.influxdb.password_file = Some(secrets.join("collector-password"));
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let out = bin()
        .args(["--config", path.to_str().unwrap()])
        .args(["run", "--now", common::NOW, "sponsoring", "versions"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let gpw = secret(&secrets, "grafana");
    let v = db.query_as(
        "SELECT count(\"count\") FROM sponsoring_queue_stats",
        Some(("grafana", &gpw)),
    );
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], 4, "{v}");
}
