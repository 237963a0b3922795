//! The images collector's `rsync` still runs under the units' system call
//! filter (issue 10, item 20). This machine has no systemd as PID 1, so
//! `systemd-run` cannot start a sandboxed unit; instead the test builds
//! the same seccomp filter systemd builds from the units' settings
//! (`SystemCallFilter=@system-service`, `SystemCallFilter=~@privileged
//! @resources`, `SystemCallErrorNumber=EPERM`, `SystemCallArchitectures=
//! native`): the sets are read from `systemd-analyze syscall-filter`, the
//! names resolved and the BPF program compiled by the system's libseccomp
//! (as systemd does), and the filter is loaded in the child before exec.
//! Under it, `ubuntu-metrics run --dry-run images` (the program and its
//! rsync children) must print exactly what it prints unfiltered; and a
//! call outside the sets (`setpriority`, in `@resources`) is refused, so
//! the filter is known to be in force.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, c_char, c_int, c_uint, c_void};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use ubuntu_metrics::schedule::systemd::HARDENING;

/// Every group of `systemd-analyze syscall-filter`: name -> members
/// (system calls and `@groups`).
fn groups() -> BTreeMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager"])
        .output()
        .expect("systemd-analyze runs");
    assert!(out.status.success());
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
            groups.entry(line.trim().to_owned()).or_default();
        } else if line.starts_with(char::is_whitespace) {
            let item = line.trim();
            if let Some(g) = &current
                && !item.is_empty()
                && !item.starts_with('#')
            {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        } else {
            current = None;
        }
    }
    groups
}

fn expand(groups: &BTreeMap<String, Vec<String>>, name: &str, out: &mut BTreeSet<String>) {
    for item in groups
        .get(name)
        .unwrap_or_else(|| panic!("no group {name}"))
    {
        if item.starts_with('@') {
            expand(groups, item, out);
        } else {
            out.insert(item.clone());
        }
    }
}

/// The system calls the units allow, from the `SystemCallFilter=` lines of
/// [`HARDENING`] (an allow list, then `~` lists taken away).
fn allowed() -> BTreeSet<String> {
    let groups = groups();
    let mut allowed = BTreeSet::new();
    let mut filters = 0;
    for line in HARDENING.lines() {
        let Some(value) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        filters += 1;
        match value.strip_prefix('~') {
            None => {
                for g in value.split_whitespace() {
                    expand(&groups, g, &mut allowed);
                }
            }
            Some(deny) => {
                for g in deny.split_whitespace() {
                    let mut set = BTreeSet::new();
                    expand(&groups, g, &mut set);
                    allowed.retain(|s| !set.contains(s));
                }
            }
        }
    }
    assert_eq!(filters, 2, "{HARDENING}");
    assert!(HARDENING.contains("SystemCallErrorNumber=EPERM\n"));
    assert!(HARDENING.contains("SystemCallArchitectures=native\n"));
    allowed
}

type Init = unsafe extern "C" fn(u32) -> *mut c_void;
type Resolve = unsafe extern "C" fn(*const c_char) -> c_int;
type RuleAdd = unsafe extern "C" fn(*mut c_void, u32, c_int, c_uint, *const c_void) -> c_int;
type Export = unsafe extern "C" fn(*const c_void, c_int) -> c_int;

const SCMP_ACT_ALLOW: u32 = 0x7fff_0000;
const fn scmp_act_errno(e: i32) -> u32 {
    0x0005_0000 | (e as u32 & 0xffff)
}

/// The BPF program of the units' filter, compiled by libseccomp.
fn filter_program() -> Vec<libc::sock_filter> {
    let names = allowed();
    assert!(names.len() > 200, "{names:?}");
    unsafe {
        let lib = libc::dlopen(c"libseccomp.so.2".as_ptr(), libc::RTLD_NOW);
        assert!(
            !lib.is_null(),
            "libseccomp.so.2 is needed (apt-get install libseccomp2: systemd depends on it)"
        );
        let sym = |name: &std::ffi::CStr| {
            let p = libc::dlsym(lib, name.as_ptr());
            assert!(!p.is_null(), "{name:?}");
            p
        };
        let init: Init = std::mem::transmute(sym(c"seccomp_init"));
        let resolve: Resolve = std::mem::transmute(sym(c"seccomp_syscall_resolve_name"));
        let rule_add: RuleAdd = std::mem::transmute(sym(c"seccomp_rule_add_array"));
        let export: Export = std::mem::transmute(sym(c"seccomp_export_bpf"));
        let ctx = init(scmp_act_errno(libc::EPERM));
        assert!(!ctx.is_null());
        let mut added = 0;
        for n in &names {
            let nr = resolve(CString::new(n.as_str()).unwrap().as_ptr());
            if nr < 0 {
                continue; // not a system call of this architecture
            }
            assert_eq!(
                rule_add(ctx, SCMP_ACT_ALLOW, nr, 0, std::ptr::null()),
                0,
                "{n}"
            );
            added += 1;
        }
        assert!(added > 200);
        let mut file = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(export(ctx, file.as_raw_fd()), 0);
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert!(!bytes.is_empty() && bytes.len() % 8 == 0);
        bytes
            .chunks(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }
}

/// Runs `cmd`, filtered by `program` when given.
fn run(mut cmd: Command, program: Option<&'static [libc::sock_filter]>) -> Output {
    if let Some(program) = program {
        unsafe {
            cmd.pre_exec(move || {
                // Only system calls here: the child of a fork.
                let prog = libc::sock_fprog {
                    len: program.len() as u16,
                    filter: program.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                        &prog as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output().unwrap()
}

#[test]
fn rsync_and_the_images_collector_run_under_the_units_syscall_filter() {
    let program: &'static [libc::sock_filter] = Box::leak(filter_program().into_boxed_slice());
    let server = server_with_rsync();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let images = || {
        let mut c = bin();
        c.arg("--config")
            .arg(&config)
            .args(["run", "--now", NOW, "--dry-run", "images"]);
        c
    };
    let free = run(images(), None);
    let sandboxed = run(images(), Some(program));
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(free.status.code(), Some(0), "{}", text(&free));
    assert_eq!(sandboxed.status.code(), Some(0), "{}", text(&sandboxed));
    let lines = String::from_utf8_lossy(&sandboxed.stdout);
    assert!(
        lines
            .lines()
            .filter(|l| l.starts_with("daily_image_details"))
            .count()
            > 3,
        "{lines}"
    );
    assert_eq!(free.stdout, sandboxed.stdout, "{}", text(&sandboxed));
    eprintln!(
        "images under the filter: {} points, the same as without it",
        lines.lines().count()
    );

    // The filter is in force: a call outside the sets is refused.
    let nice = || {
        let mut c = Command::new("nice");
        c.args(["-n", "-5", "true"]);
        c
    };
    let refused = run(nice(), Some(program));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cannot set niceness"),
        "setpriority was not refused: {:?}",
        refused
    );
    if unsafe { libc::geteuid() } == 0 {
        let allowed = run(nice(), None);
        assert!(allowed.status.success() && allowed.stderr.is_empty());
    }
}

/// A script collector (issue 12) runs as the daemon does, under the same
/// filter: starting it in a process group of its own and killing that
/// group are allowed calls, and Python itself runs there.
#[test]
fn a_script_collector_runs_under_the_units_syscall_filter() {
    let program: &'static [libc::sock_filter] = Box::leak(filter_program().into_boxed_slice());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.py");
    std::fs::write(
        &script,
        "import subprocess\nsubprocess.run([\"true\"])\nprint(\"sandboxed count=1i\")\n",
    )
    .unwrap();
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[collectors.sandboxed]\ntype = \"exec\"\ncommand = [\"{python}\", \"{}\"]\n[collectors.sandboxed.measurements.sandboxed]\nfields = {{ count = \"int\" }}\n",
            script.display()
        ),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.arg("--config")
        .arg(&config)
        .args(["run", "--now", NOW, "--dry-run", "sandboxed"]);
    let out = run(cmd, Some(program));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sandboxed count=1i 1795521600000000000\n"
    );
}

/// A declared http collector's jq filter runs in a process of its own
/// (issue 22, item 1), under the same filter: starting it (the program
/// again, in a process group of its own) and its memory limit (the
/// program's allocator: no system call of `@resources`) work there; the
/// other collector's points are printed.
#[test]
fn a_jq_filter_process_and_its_memory_limit_work_under_the_units_syscall_filter() {
    let program: &'static [libc::sock_filter] = Box::leak(filter_program().into_boxed_slice());
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/declared/autopkgtest_queues.toml"),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[sources]\nautopkgtest_queues_production = \"{}\"\nautopkgtest_queues_staging = \"{}\"\n\n{example}\n[collectors.greedy]\ntype = \"http\"\nurl = \"{}\"\nfilter = 'reduce range(30) as $i (\"x\"; . + .)'\n[collectors.greedy.measurements.m]\nfields = {{ x = \"int\" }}\n\n[daemon]\nrun_timeout = \"30s\"\n",
            server.url("autopkgtest/production/queue_size.json"),
            server.url("autopkgtest/staging/queue_size.json"),
            server.url("autopkgtest/production/queue_size.json"),
        ),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.arg("--config").arg(&config).args([
        "run",
        "--now",
        NOW,
        "--dry-run",
        "autopkgtest_queues",
        "greedy",
    ]);
    let out = run(cmd, Some(program));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("collector greedy failed") && stderr.contains("memory limit"),
        "{stderr}"
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    got.sort();
    let want: Vec<String> = expected("autopkgtest/expected.out")
        .into_iter()
        .filter(|l| l.starts_with("autopkgtest_queue_size,"))
        .collect();
    assert!(want.len() > 10);
    assert_eq!(got, want, "{stderr}");
}
