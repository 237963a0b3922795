//! Security: TLS to InfluxDB verified by default (a real influxd serving
//! https with a certificate from a test CA made here with rcgen, or a
//! self-signed one made by `openssl req -x509` and pinned as ca_file), and
//! passwords never in any output of the program, in argv or in generated
//! unit files; a configuration readable by everyone that holds a password
//! is warned about.

mod common;

use common::influxd::{DATABASE, Influxd, Options};
use common::*;
use fixture_server::FixtureServer;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// (exit status, stdout + stderr)
fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn config(
    dir: &Path,
    server: &FixtureServer,
    edit: impl FnOnce(&mut ubuntu_metrics::config::Config),
) -> PathBuf {
    let mut c = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    c.influxdb.database = DATABASE.to_owned();
    c.influxdb.timeout = ubuntu_metrics::model::timespan::TimeSpan::parse("3s").unwrap();
    c.spool.dir = dir.join("spool");
    edit(&mut c);
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

struct Tls {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A test CA, a server certificate it signed for 127.0.0.1 and localhost,
/// and an unrelated CA.
fn tls_material(dir: &Path) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let issuer = ca("ubuntu-metrics test CA");
    let other = ca("some other CA");
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "influxd test server");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Tls {
        ca: write("ca.pem", issuer.pem()),
        other_ca: write("other-ca.pem", other.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
    }
}

#[test]
fn tls_is_verified_refused_without_ca_file_accepted_with_it() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_material(dir.path());
    let db = Influxd::start_with(Options {
        https: Some((tls.cert.clone(), tls.key.clone())),
        ..Options::default()
    });
    assert!(db.url().starts_with("https://"));
    let sponsoring = |cfg: &Path, now: &str| {
        run(bin()
            .arg("--config")
            .arg(cfg)
            .args(["run", "--now", now, "sponsoring"]))
    };

    // No ca_file: the certificate is not trusted; the points are kept and
    // the message says how to fix it.
    let cfg = config(dir.path(), &server, |c| c.influxdb.url = db.url().into());
    let (code, out) = sponsoring(&cfg, "2026-11-24T12:00:00Z");
    eprintln!("without ca_file:\n{out}");
    assert_eq!(code, Some(75), "{out}");
    assert!(
        out.contains("cannot verify the TLS certificate") && out.contains("set influxdb.ca_file"),
        "{out}"
    );
    assert!(db.rows("sponsoring_queue_stats").is_empty());

    // A CA that did not sign it: refused too.
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.ca_file = Some(tls.other_ca.clone());
    });
    let (code, out) = sponsoring(&cfg, "2026-11-24T12:00:00Z");
    assert_eq!(code, Some(75), "{out}");
    assert!(out.contains("influxdb.ca_file"), "{out}");

    // The right CA: accepted, and the kept points are written too.
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.ca_file = Some(tls.ca.clone());
    });
    let (code, out) = sponsoring(&cfg, "2026-11-24T13:00:00Z");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("insecure"), "{out}");
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 8);

    // insecure_skip_verify: accepted, with a warning.
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.insecure_skip_verify = true;
    });
    let (code, out) = sponsoring(&cfg, "2026-11-24T14:00:00Z");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("WARN") && out.contains("insecure_skip_verify") && out.contains("NOT checked"),
        "{out}"
    );
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 12);

    // It turns the check off even next to a ca_file (whose pinning
    // configuration it replaces): the unrelated CA is no obstacle.
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.ca_file = Some(tls.other_ca.clone());
        c.influxdb.insecure_skip_verify = true;
    });
    let (code, out) = sponsoring(&cfg, "2026-11-24T15:00:00Z");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 16);
}

/// A certificate made as InfluxDB's documentation says, in `dir`:
/// `openssl req -x509 -nodes -newkey rsa:2048 ... -subj /CN=<cn>` (self-signed,
/// basicConstraints CA:TRUE, no subjectAltName); (certificate, key).
fn openssl_self_signed(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let made = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-newkey", "rsa:2048", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "365", "-subj", &format!("/CN={cn}")])
        .output()
        .expect("openssl runs (apt install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CA:TRUE") && !text.contains("Subject Alternative Name"),
        "{text}"
    );
    (cert, key)
}

/// The first generation's InfluxDB certificate (`openssl req -x509`, no
/// subjectAltName, for another host name) given as influxdb.ca_file is
/// pinned: `influxdb provision` and `run` work against that server. Another
/// self-signed certificate in ca_file is refused, naming the file, and the
/// points of that run are kept in the spool and written by the next one.
#[test]
fn an_openssl_self_signed_certificate_in_ca_file_is_pinned() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path(), "influxdb-selfsigned", "somehost");
    let (other, _) = openssl_self_signed(dir.path(), "other", "somehost");
    let db = Influxd::start_with(Options {
        auth: true,
        no_database: true,
        https: Some((cert.clone(), key)),
        ..Options::default()
    });
    let secrets = dir.path().join("secrets");
    let provision = |ca: &Path| {
        let cfg = config(dir.path(), &server, |c| {
            c.influxdb.url = db.url().into();
            c.influxdb.ca_file = Some(ca.to_owned());
        });
        run(bin()
            .arg("--config")
            .arg(&cfg)
            .args(["influxdb", "provision", "--secrets-dir"])
            .arg(&secrets)
            .env("INFLUXDB_ADMIN_PASSWORD", common::influxd::ADMIN.1))
    };

    // Another certificate: refused, naming the file; nothing created.
    let (code, out) = provision(&other);
    eprintln!("provision with another certificate:\n{out}");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "the server's certificate is self-signed and is not one of the certificates in CA file {}",
            other.display()
        )),
        "{out}"
    );
    assert!(!secrets.exists());

    // The server's own: pinned, provisioned.
    let (code, out) = provision(&cert);
    eprintln!("provision with the pinned certificate:\n{out}");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("created database \"metrics\"") && out.contains("created user \"collector\""),
        "{out}"
    );

    let sponsoring = |ca: &Path, now: &str| {
        let cfg = config(dir.path(), &server, |c| {
            c.influxdb.url = db.url().into();
            c.influxdb.ca_file = Some(ca.to_owned());
            c.influxdb.username = Some("collector".into());
            c.influxdb.password_file = Some(secrets.join("collector-password"));
        });
        run(bin()
            .arg("--config")
            .arg(&cfg)
            .args(["run", "--now", now, "sponsoring"]))
    };
    let (code, out) = sponsoring(&other, "2026-11-24T12:00:00Z");
    eprintln!("run with another certificate:\n{out}");
    assert_eq!(code, Some(75), "{out}");
    for want in [
        format!(
            "the server's certificate is self-signed and is not one of the certificates in influxdb.ca_file {}",
            other.display()
        ),
        "set influxdb.ca_file to a copy of InfluxDB's certificate".to_owned(),
    ] {
        assert!(out.contains(&want), "{want:?} missing:\n{out}");
    }
    assert!(db.rows("sponsoring_queue_stats").is_empty());

    let (code, out) = sponsoring(&cert, "2026-11-24T13:00:00Z");
    eprintln!("run with the pinned certificate:\n{out}");
    assert_eq!(code, Some(0), "{out}");
    // The points kept by the refused run are written too.
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 8);
}

/// A CA certificate used as the server's own (what `openssl req -x509`
/// makes) is refused when influxdb.ca_file does not hold it; the message
/// of `run` and of `influxdb provision` gives both ways out, and both
/// work: pinning that certificate, or the openssl commands it gives for a
/// CA and a proper server certificate.
#[test]
fn a_ca_used_as_the_server_certificate_gets_advice_that_works() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = p.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("self.pem"), dir.path().join("self.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let db = Influxd::start_with(Options {
        https: Some((cert_path.clone(), key_path)),
        ..Options::default()
    });
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
    });
    let (code, out) =
        run(bin()
            .arg("--config")
            .arg(&cfg)
            .args(["run", "--now", NOW, "sponsoring"]));
    eprintln!("run with a CA as the server certificate:\n{out}");
    assert_eq!(code, Some(75), "{out}");
    for want in [
        "CaUsedAsEndEntity",
        "set influxdb.ca_file to a copy of InfluxDB's certificate",
        "pinned: trusted as that exact certificate, its host names not checked",
        "basicConstraints=CA:FALSE",
        "openssl req -x509",
        "influxdb.ca_file = \"ca.pem\"",
        "subjectAltName=IP:127.0.0.1",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let secrets = dir.path().join("secrets");
    let (code, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["influxdb", "provision", "--secrets-dir"])
        .arg(&secrets)
        .env("INFLUXDB_ADMIN_PASSWORD", "admin-pw-1"));
    eprintln!("provision with a CA as the server certificate:\n{out}");
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("CaUsedAsEndEntity")
            && out.contains("set influxdb.ca_file to a copy of InfluxDB's certificate")
            && out.contains("basicConstraints=CA:FALSE"),
        "{out}"
    );

    // The first way out: that certificate as influxdb.ca_file.
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.ca_file = Some(cert_path.clone());
    });
    let (code, out) = run(bin().arg("--config").arg(&cfg).args([
        "run",
        "--now",
        "2026-11-24T13:00:00Z",
        "sponsoring",
    ]));
    assert_eq!(code, Some(0), "{out}");
    // The points kept by the first run are written too.
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 8);
    drop(db);

    // The other: the advice's commands, run as given, make certificates
    // that work.
    let work = dir.path().join("openssl");
    std::fs::create_dir(&work).unwrap();
    let recipe = ubuntu_metrics::sinks::influxdb::openssl_recipe("127.0.0.1");
    let made = Command::new("sh")
        .args(["-c", &recipe])
        .current_dir(&work)
        .output()
        .expect("sh runs (openssl is needed: apt install openssl)");
    assert!(
        made.status.success(),
        "{recipe}\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let db = Influxd::start_with(Options {
        https: Some((work.join("influxdb.pem"), work.join("influxdb.key"))),
        ..Options::default()
    });
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.ca_file = Some(work.join("ca.pem"));
    });
    let (code, out) = run(bin().arg("--config").arg(&cfg).args([
        "run",
        "--now",
        "2026-11-24T14:00:00Z",
        "sponsoring",
    ]));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 4);
}

const PASSWORD: &str = "pw-Sekr1t-7731";

/// How the password is given: a name, the configuration, the environment.
type Way = (&'static str, PathBuf, Vec<(&'static str, String)>);

/// The password as it travels in a Basic authorization header.
fn basic(user: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{PASSWORD}");
    let b = input.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, out: &str) {
    assert!(
        !out.contains(PASSWORD),
        "{what}: the password leaked:\n{out}"
    );
    assert!(
        !out.contains(&basic("admin")) && !out.contains(&basic("collector")),
        "{what}: the base64 credentials leaked:\n{out}"
    );
}

#[test]
fn the_password_is_in_no_output_of_a_failing_verbose_run() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let db = Influxd::start_with(Options {
        auth: true,
        ..Options::default()
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pwfile = dir.path().join("password");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut checked = 0;
    for url in [db.url(), format!("http://127.0.0.1:{dead}")] {
        // The password given each possible way: in the file, in a password
        // file, in the environment, inside the URL.
        let ways: Vec<Way> = vec![
            (
                "password in the configuration",
                config(dir.path(), &server, |c| {
                    c.influxdb.url = url.clone().into();
                    c.influxdb.username = Some("admin".into());
                    c.influxdb.password = Some(PASSWORD.into());
                }),
                vec![],
            ),
            (
                "password_file",
                config(dir.path(), &server, |c| {
                    c.influxdb.url = url.clone().into();
                    c.influxdb.username = Some("admin".into());
                    c.influxdb.password_file = Some(pwfile.clone());
                }),
                vec![],
            ),
            (
                "INFLUXDB_PASSWORD",
                config(dir.path(), &server, |c| c.influxdb.url = url.clone().into()),
                vec![
                    ("INFLUXDB_USERNAME", "collector".to_owned()),
                    ("INFLUXDB_PASSWORD", PASSWORD.to_owned()),
                ],
            ),
            (
                "password in the URL",
                config(dir.path(), &server, |c| {
                    c.influxdb.url = url.replace("://", &format!("://admin:{PASSWORD}@")).into();
                }),
                vec![],
            ),
        ];
        for (way, cfg, env) in ways {
            for args in [
                vec!["-v", "run", "--now", NOW, "sponsoring"],
                vec!["-v", "spool", "flush"],
                vec!["-v", "spool", "status"],
                vec!["-v", "config", "show"],
                vec!["-v", "list"],
            ] {
                let mut cmd = bin();
                cmd.arg("--config").arg(&cfg).args(&args);
                cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
                let (code, out) = run(&mut cmd);
                let what = format!("{way}, {url}, {args:?}");
                assert_no_secret(&what, &out);
                if args.contains(&"run") {
                    // Refused (wrong password) or unreachable: kept for
                    // later, never a success.
                    assert_eq!(code, Some(75), "{what}:\n{out}");
                    assert!(out.contains("DEBUG"), "{what}: -v shows debug logs:\n{out}");
                }
                checked += 1;
            }
            // Same run with every library's trace logs (RUST_LOG counts
            // when -v is not given).
            let mut cmd = bin();
            cmd.arg("--config")
                .arg(&cfg)
                .args(["run", "--now", NOW, "sponsoring"])
                .env("RUST_LOG", "trace")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
            let (_, out) = run(&mut cmd);
            assert_no_secret(&format!("{way} RUST_LOG=trace"), &out);
            assert!(out.contains("TRACE") || out.contains("DEBUG"), "{out}");
        }
    }
    eprintln!("checked {checked} outputs for the password");
}

#[test]
fn a_configuration_readable_by_everyone_holding_a_password_is_warned_about() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.password = Some(PASSWORD.into())
    });
    let (code, out) = run(bin().arg("--config").arg(&cfg).args(["config", "show"]));
    assert_eq!(code, Some(0));
    assert!(!out.contains("readable by every user"), "mode 0600: {out}");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        vec!["config", "show"],
        vec!["list"],
        vec!["spool", "status"],
    ] {
        let (code, out) = run(bin().arg("--config").arg(&cfg).args(&args));
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("WARN") && out.contains("readable by every user") && out.contains("chmod"),
            "{args:?}: {out}"
        );
        assert_no_secret("warning", &out);
    }
    // A password inside the URL counts too; a password_file readable by
    // everyone is warned about as well.
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, PASSWORD).unwrap();
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = format!("http://admin:{PASSWORD}@127.0.0.1:9/").into();
    });
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, out) = run(bin().arg("--config").arg(&cfg).args(["config", "show"]));
    assert!(out.contains("readable by every user"), "{out}");
    assert_no_secret("url", &out);
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.password_file = Some(pwfile.clone());
    });
    let (_, out) = run(bin().arg("--config").arg(&cfg).args(["config", "show"]));
    assert!(
        out.contains("password_file") && out.contains("readable by every user"),
        "{out}"
    );
}

#[test]
fn configuration_errors_never_quote_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    for text in [
        format!("[influxdb]\npassword = {PASSWORD}\n"),
        format!("[influxdb]\npassword = \"{PASSWORD}\" junk\n"),
        format!("[influxdb]\nurl = \"http://admin:{PASSWORD}@h:99999/\"\n"),
        format!("[influxdb]\nurl = \"ftp://admin:{PASSWORD}@h/\"\n"),
    ] {
        std::fs::write(&cfg, &text).unwrap();
        let (code, out) = run(bin()
            .arg("--config")
            .arg(&cfg)
            .args(["-v", "config", "show"]));
        assert_eq!(code, Some(2), "{text}: {out}");
        assert_no_secret(&text, &out);
    }
}

#[test]
fn no_password_in_argv_or_in_generated_units() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = "http://127.0.0.1:9".into();
        c.influxdb.username = Some("collector".into());
        c.influxdb.password = Some(PASSWORD.into());
        c.daemon.startup_delay = ubuntu_metrics::model::timespan::TimeSpan::parse("1h").unwrap();
    });
    // A running daemon's command line.
    let mut child = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_no_secret("argv", &String::from_utf8_lossy(&cmdline));

    // Generated and installed units: the password only in the 0600
    // credentials file.
    let root = dir.path().join("root");
    let (code, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["systemd", "install", "--root"])
        .arg(&root));
    assert_eq!(code, Some(0), "{out}");
    assert_no_secret("systemd install output", &out);
    let gen_dir = dir.path().join("gen");
    let (code, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["systemd", "generate"])
        .arg(&gen_dir));
    assert_eq!(code, Some(0), "{out}");
    let mut holders = Vec::new();
    let mut stack = vec![root.clone(), gen_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                if text.contains(PASSWORD) {
                    holders.push((p, meta.permissions().mode() & 0o777));
                }
            }
        }
    }
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].0.ends_with("influxdb-password"), "{holders:?}");
    assert_eq!(holders[0].1, 0o600, "{holders:?}");
}

/// Credentials inside a source URL are redacted wherever the URL is shown:
/// `config show`, a collector's error, the debug log of its request.
#[test]
fn credentials_in_source_urls_are_never_shown() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let with_creds = |url: &str| url.replace("://", &format!("://reader:{PASSWORD}@"));
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = "http://127.0.0.1:9".into();
        c.sources
            .set("sponsoring", with_creds(&server.url("no-such-report.json")));
        c.sources
            .set("launchpad", with_creds(c.sources.get("launchpad").unwrap()));
        c.sources.set(
            "versions",
            server.url("").replace("://", &format!("://{PASSWORD}@")),
        );
    });
    let (code, out) = run(bin().arg("--config").arg(&cfg).args(["config", "show"]));
    assert_eq!(code, Some(0), "{out}");
    assert_no_secret("config show", &out);
    assert!(out.contains("reader:<redacted>@"), "{out}");
    assert!(out.contains("://<redacted>@"), "{out}");
    let (code, out) = run(bin().arg("--config").arg(&cfg).args([
        "-v",
        "run",
        "--now",
        NOW,
        "--dry-run",
        "sponsoring",
    ]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("HTTP 404"), "{out}");
    assert_no_secret("a failing run's errors and logs", &out);
    // rsync URLs are quoted by our own errors (nothing listens on port 9).
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = "http://127.0.0.1:9".into();
        c.sources.set(
            "cdimage_rsync",
            format!("rsync://reader:{PASSWORD}@127.0.0.1:9/cdimage/"),
        );
    });
    let (code, out) = run(bin().arg("--config").arg(&cfg).args([
        "-v",
        "run",
        "--now",
        NOW,
        "--dry-run",
        "images",
    ]));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("rsync://reader:<redacted>@127.0.0.1:9"),
        "{out}"
    );
    assert_no_secret("a failing rsync's errors and logs", &out);
}

/// Under systemd the password comes from `LoadCredential=`: the program
/// reads `$CREDENTIALS_DIRECTORY/influxdb-password` when no other password
/// is configured.
#[test]
fn the_password_is_read_from_the_systemd_credentials_directory() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let db = Influxd::start_with(Options {
        auth: true,
        ..Options::default()
    });
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.influxdb.username = Some(common::influxd::ADMIN.0.into());
    });
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    // Without the credential: refused by InfluxDB, kept in the spool.
    let (code, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--now", NOW, "sponsoring"])
        .env("CREDENTIALS_DIRECTORY", &creds));
    assert_eq!(code, Some(75), "{out}");
    std::fs::write(
        creds.join("influxdb-password"),
        format!("{}\n", common::influxd::ADMIN.1),
    )
    .unwrap();
    let (code, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--now", NOW, "sponsoring"])
        .env("CREDENTIALS_DIRECTORY", &creds));
    assert_eq!(code, Some(0), "{out}");
    assert!(!db.rows("sponsoring_queue_stats").is_empty(), "{out}");
}

/// Secrets in query strings (issue 22, item 4): a source URL carrying
/// `access_token=` / `Signature=` and an output URL carrying `token=` are
/// shown with those values redacted everywhere: `config show`, a run's
/// errors and debug logs, `status.json`, the recording's keys, the daemon's
/// log and its `/status`, `/health` and `/metrics`. Other query values stay
/// (they say which document it was).
#[test]
fn secrets_in_query_strings_are_never_shown() {
    const SECRETS: [&str; 3] = ["QsSrcTok-5517", "QsSig-7702", "QsOutTok-9310"];
    // Every surface is looked at; the leaks are reported together.
    let leaks = std::cell::RefCell::new(Vec::<String>::new());
    let assert_clean = |what: &str, out: &str| {
        for s in SECRETS.iter().filter(|s| out.contains(**s)) {
            leaks.borrow_mut().push(format!("{what}: {s}"));
        }
    };
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cfg = config(dir.path(), &server, |c| {
        c.influxdb.url = db.url().into();
        c.sources.set(
            "sponsoring",
            format!(
                "{}?report=x&access_token={}&Signature={}",
                server.url("no-such-report.json"),
                SECRETS[0],
                SECRETS[1]
            ),
        );
    });
    // A second output whose URL carries a token, at a closed port; the
    // daemon starting at once and answering on `listen`.
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let mut second = toml::Table::new();
    second.insert(
        "url".into(),
        format!("http://127.0.0.1:{dead}/?token={}", SECRETS[2]).into(),
    );
    second.insert("database".into(), DATABASE.into());
    second.insert("timeout".into(), "2s".into());
    let mut outputs = toml::Table::new();
    outputs.insert("second".into(), toml::Value::Table(second));
    t.insert("outputs".into(), toml::Value::Table(outputs));
    let mut daemon = toml::Table::new();
    daemon.insert("startup_delay".into(), "0".into());
    daemon.insert("random_delay".into(), "0".into());
    daemon.insert("shutdown_grace".into(), "5s".into());
    daemon.insert("listen".into(), listen.clone().into());
    t.insert("daemon".into(), toml::Value::Table(daemon));
    std::fs::write(&cfg, toml::to_string(&t).unwrap()).unwrap();

    // `config show`: the secrets gone, the rest of the query kept.
    let (code, out) = run(bin().arg("--config").arg(&cfg).args(["config", "show"]));
    assert_eq!(code, Some(0), "{out}");
    assert_clean("config show", &out);
    assert!(
        out.contains("report=x&access_token=<redacted>") || !leaks.borrow().is_empty(),
        "{out}"
    );

    // A failing run, recorded, with debug logs.
    let rec = dir.path().join("recording");
    let (code, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["-v", "run", "--now", NOW, "--record"])
        .arg(&rec)
        .arg("sponsoring")
        .env("UBUNTU_METRICS_STATE_DIR", &state));
    assert!(code.is_some_and(|c| c != 0), "{out}");
    assert!(out.contains("HTTP 404"), "{out}");
    assert_clean("a failing run's errors and logs", &out);
    let status = std::fs::read_to_string(state.join("status.json")).unwrap();
    assert!(status.contains("HTTP 404"), "{status}");
    assert_clean("status.json", &status);
    let mut recorded = 0;
    let mut stack = vec![rec.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            assert_clean("the recording's file names", &p.to_string_lossy());
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert_clean("the recording", &String::from_utf8_lossy(&bytes));
                recorded += 1;
            }
        }
    }
    assert!(recorded > 0, "nothing recorded");
    // Every library's trace logs.
    let (_, out) = run(bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--now", NOW, "sponsoring"])
        .env("RUST_LOG", "trace")
        .env("UBUNTU_METRICS_STATE_DIR", &state));
    assert!(out.contains("TRACE"), "{out}");
    assert_clean("a run's trace logs", &out);
    // A configuration refused at load quotes the URL.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[influxdb]\nurl = \"http://127.0.0.1:99999/?token={}\"\n[sources]\nsponsoring = \"ftp://h/?access_token={}\"\n",
            SECRETS[2], SECRETS[0]
        ),
    )
    .unwrap();
    let (code, out) = run(bin().arg("--config").arg(&bad).args(["config", "show"]));
    assert_eq!(code, Some(2), "{out}");
    assert_clean("a configuration error", &out);

    // The daemon: its answers and its log.
    let log = dir.path().join("daemon.log");
    let mut child = common::daemon::start_daemon(&cfg, &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let get = |path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&listen).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        Some(raw)
    };
    let answered = loop {
        if let Some(s) = get("/status")
            && s.contains("HTTP 404")
        {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the daemon did not report sponsoring's failure in 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_clean("/status", &answered);
    for path in ["/health", "/metrics"] {
        assert_clean(path, &get(path).unwrap_or_default());
    }
    common::daemon::signal(&child, "-TERM");
    assert!(
        common::daemon::wait_exit(&mut child, Duration::from_secs(30)).is_some(),
        "the daemon did not stop"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("no-such-report.json"), "{logged}");
    assert_clean("the daemon's log", &logged);
    let leaks = leaks.into_inner();
    assert!(leaks.is_empty(), "{} leaks: {leaks:#?}", leaks.len());
}
