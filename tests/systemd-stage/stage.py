#!/usr/bin/env python3
"""The station as it really runs: the .deb installed in a Debian bookworm
container booted with systemd 252 as PID 1 (systemd-nspawn), driven from
outside with nsenter, every upstream on the fixture server, a real influxd
on the host's loopback. Each scenario asserts points counted in InfluxDB or
the units' state, never only an exit code.

    tests/systemd-stage/stage.py --deb target/debian/X.deb \
        --fixture-server target/debug/fixture-server [--only NAME ...]

Run by scripts/systemd-stage (which installs debootstrap and
systemd-container and builds both), itself run by scripts/test.
"""

import argparse
import json
import shutil
import sys
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the tree
sys.path.insert(0, str(Path(__file__).parent))
from lib import (Container, FixtureServer, Influxd, StageError, base_rootfs, log,  # noqa: E402
                 previous_deb, wait_for)

ROOT = Path(__file__).resolve().parents[2]
STATE = "/var/lib/private/ubuntu-metrics"
CONFIG = "/etc/ubuntu-metrics/config.toml"
SECRETS = "/etc/ubuntu-metrics/secrets"
# The collectors the stage runs (each with its measurements): quick ones
# whose fixtures read the same whatever the date.
COLLECTORS = {
    "sponsoring": "sponsoring_queue_stats",
    "autopkgtest": "autopkgtest_queue_size",
}
ALL = ["autopkgtest", "britney", "cnf", "contributors", "images", "rls_bugs",
       "sponsoring", "ubuntu_archive", "upload_queues", "versions"]


class Stage:
    def __init__(self, args):
        self.args = args
        self.work = ROOT / "target/systemd-stage"
        self.run_dir = self.work / "run"
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        self.base = base_rootfs(self.work / "cache")
        self.influxd = None
        self.influxds = 0
        self.fixtures = FixtureServer(Path(args.fixture_server), self.run_dir)
        self.deb = Path(args.deb)
        self.charm = Path(args.charm)
        self.charm_venv = Path(args.charm_venv)
        self.containers = []

    def fresh_influxd(self, create=True):
        """A new influxd for the next scenario (the last one stops), with
        the database `metrics` unless `create` is false."""
        if self.influxd:
            self.influxd.stop()
        self.influxds += 1
        self.influxd = Influxd(self.run_dir / f"influxd-{self.influxds}")
        self.influxd.start()
        if create:
            self.influxd.create_database()
        return self.influxd

    def container(self, name):
        c = Container(name, self.base, self.run_dir)
        self.containers.append(c)
        c.boot()
        return c

    def config(self, *, timers=False, influx_extra="", extra="", interval="15s"):
        """The station's configuration: the collectors of COLLECTORS every
        `interval`, the others off, every upstream on the fixture server."""
        lines = [
            "[influxdb]",
            f'url = "{self.influxd.url}"',
            influx_extra,
            "[daemon]",
            'startup_delay = "1s"',
            'random_delay = "0"',
            'shutdown_grace = "5s"',
            "[systemd]",
            f"timers = {'true' if timers else 'false'}",
        ]
        for name in ALL:
            lines.append(f"[collectors.{name}]")
            if name in COLLECTORS:
                lines.append(f'interval = "{interval}"')
            else:
                lines.append("enabled = false")
        lines.append(extra)
        lines.append(self.fixtures.sources)
        return "\n".join(lines) + "\n"

    def points(self):
        return {m: self.influxd.points(m) for m in COLLECTORS.values()}

    def close(self):
        for c in self.containers:
            try:
                c.remove()
            except Exception as e:  # keep tearing down the rest
                log(f"[{c.name}] teardown: {e}")
        self.fixtures.stop()
        if self.influxd:
            self.influxd.stop()


def check(cond, what):
    if not cond:
        raise StageError(what)
    log(f"  ok: {what}")


def grew(stage, before, what):
    """Waits until every stage measurement has more points than `before`."""
    def more():
        now = stage.points()
        return now if all(now[m] > before.get(m, 0) for m in now) else None
    after = wait_for(what, more, timeout=180)
    log(f"  ok: {what}: {before} -> {after}")
    return after


# ------------------------------------------------------------ scenarios

def scenario_daemon(stage):
    """The README's station from scratch with the daemon: provision, the
    collector's password file, the daemon through READY=1, STATUS=, reload,
    a bad configuration refused (its reason at priority err), an exec
    collector in the sandbox, `status`, a manual root run, a daemon that
    cannot start, and the watchdog."""
    influx = stage.fresh_influxd(create=False)
    ct = stage.container("daemon")
    ct.install_deb(stage.deb)
    provision(stage, ct)
    # README step 3: the collector's user and password file.
    ct.write(CONFIG, stage.config(
        influx_extra=f'username = "collector"\npassword_file = "{SECRETS}/collector-password"',
        extra=EXEC_COLLECTOR))
    ct.write("/usr/local/lib/ubuntu-metrics/homecheck.sh", HOMECHECK, mode="0755")
    # ... checked by hand as root, then handed to systemd.
    dry = ct.sh("ubuntu-metrics run --all --dry-run")
    check("sponsoring_queue_stats" in dry.stdout, "step 3: run --all --dry-run prints the points")
    ct.sh("ubuntu-metrics run --all")
    first = stage.points()
    check(all(first.values()), f"step 3: a root run --all wrote {first}")
    ct.sh("ubuntu-metrics systemd apply")
    # README step 4: the daemon.
    ct.sh("systemctl enable --now ubuntu-metrics.service")
    props = wait_for("ubuntu-metrics.service active",
                     lambda: (p := ct.show("ubuntu-metrics.service", "ActiveState", "SubState",
                                           "StatusText", "MainPID", "NRestarts"))
                     ["ActiveState"] == "active" and p, timeout=60)
    check(props["NRestarts"] == "0", f"the daemon started at once (NRestarts={props['NRestarts']})")
    grew(stage, first, "the daemon's points in InfluxDB (as collector, password by credential)")
    status_text = wait_for("a STATUS= line", lambda: ct.show("ubuntu-metrics.service", "StatusText")
                           ["StatusText"], timeout=30)
    check("collectors" in status_text, f"StatusText={status_text!r}")
    esc = [ln for ln in ct.journal("ubuntu-metrics.service").splitlines() if "\x1b" in ln]
    check(not esc, f"no terminal escapes in the journal ({esc[:1]})")
    home = wait_for("the exec collector's point", lambda: influx.points("homecheck"), timeout=60)
    check(home > 0, f"the exec collector wrote {home} point(s) with a writable HOME in the sandbox")
    # systemctl reload: RELOADING=1 then READY=1; the daemon stays, same PID.
    pid = props["MainPID"]
    ct.sh("systemctl reload ubuntu-metrics.service")
    p = settled(ct)
    check(p == {"ActiveState": "active", "MainPID": pid}, f"reload kept the daemon ({p})")
    # A bad configuration, reloaded: refused, the old one kept, the reason
    # shown by journalctl -p err.
    good = (ct.root / CONFIG.lstrip("/")).read_text()
    ct.write(CONFIG, good.replace('interval = "15s"', 'interval = "banana"', 1))
    ct.sh("systemctl reload ubuntu-metrics.service", check=False)
    errors = wait_for("the refused reload's reason at priority err",
                      lambda: (j := ct.journal("ubuntu-metrics.service", "err")) and "banana" in j and j,
                      timeout=30)
    check('invalid time span "banana"' in errors, "journalctl -p err shows the reason: "
          + [ln for ln in errors.splitlines() if "banana" in ln][0].strip())
    p = settled(ct)
    check(p == {"ActiveState": "active", "MainPID": pid}, f"the bad reload was refused ({p})")
    ct.write(CONFIG, good)
    ct.sh("systemctl reload ubuntu-metrics.service")
    # status, as root, reading the real units.
    st = ct.sh("ubuntu-metrics status", check=False)
    check(st.returncode == 0, f"status exit {st.returncode}: {st.stdout.splitlines()[0] if st.stdout else st.stderr}")

    # A manual root run on the running station: refused, nothing left that
    # the service cannot read; the command it names runs the collector as
    # the station does.
    before = stage.points()
    manual = ct.sh("ubuntu-metrics run sponsoring", check=False)
    check(manual.returncode == 77 and "systemctl start --wait ubuntu-metrics@sponsoring.service"
          in manual.stderr, f"a manual root run is refused (exit {manual.returncode}): "
          + manual.stderr.strip().splitlines()[0])
    rootowned = ct.sh(f"find {STATE} -uid 0", check=False).stdout.split()
    check(not rootowned, f"no root-owned file in the state directory ({rootowned})")
    # spool flush as root: refused too; the systemd-run line it prints (the
    # charm's spool-flush action runs it) works as the services' user.
    flush = ct.sh("ubuntu-metrics spool flush", check=False)
    line = next((ln.strip() for ln in flush.stderr.splitlines()
                 if ln.strip().startswith("sudo systemd-run ")), "")
    check(flush.returncode == 77 and "LoadCredential=influxdb.password_file:" in line,
          "spool flush as root is refused, naming a systemd-run line with the credential")
    as_service = ct.sh(line.removeprefix("sudo "), check=False)
    check(as_service.returncode == 0 and "spool" in as_service.stdout,
          f"that line flushes as the services' user: {as_service.stdout.strip()!r}")
    rootowned = ct.sh(f"find {STATE} -uid 0", check=False).stdout.split()
    check(not rootowned, f"still no root-owned file in the state directory ({rootowned})")
    ct.sh("systemctl start --wait ubuntu-metrics@sponsoring.service")
    after = stage.influxd.points("sponsoring_queue_stats")
    check(after > before["sponsoring_queue_stats"],
          f"`systemctl start --wait ubuntu-metrics@sponsoring.service` wrote points "
          f"({before['sponsoring_queue_stats']} -> {after})")

    # The watchdog: a frozen daemon is killed and restarted, and the points
    # it had spooled while InfluxDB was away are all written. (WatchdogSec
    # shortened by a drop-in: the mechanism is the unit's, the 2 min wait
    # is not what is tested.)
    ct.write("/etc/systemd/system/ubuntu-metrics.service.d/stage.conf",
             "[Service]\nWatchdogSec=10s\nRestartSec=1s\n")
    ct.sh("systemctl daemon-reload && systemctl restart ubuntu-metrics.service")
    wait_for("the daemon active again", lambda: ct.show("ubuntu-metrics.service", "ActiveState")
             ["ActiveState"] == "active", timeout=60)
    outage = now_rfc3339()
    influx.stop()
    spooled = wait_for("points in the spool of runs made while InfluxDB is away",
                       lambda: spooled_since(ct, outage), timeout=120)
    pid = ct.show("ubuntu-metrics.service", "MainPID")["MainPID"]
    restarts = int(ct.show("ubuntu-metrics.service", "NRestarts")["NRestarts"])
    ct.sh(f"kill -STOP {pid}")
    wait_for("the watchdog to restart the frozen daemon",
             lambda: (p := ct.show("ubuntu-metrics.service", "NRestarts", "MainPID", "ActiveState"))
             and int(p["NRestarts"]) > restarts and p["MainPID"] not in ("0", pid)
             and p["ActiveState"] == "active", timeout=120)
    check("watchdog" in ct.journal("ubuntu-metrics.service").lower(),
          "the journal says the watchdog fired")
    back = now_rfc3339()
    influx.start(auth=True)
    wait_for("the spool written after the restart", lambda: spool_points(status_doc(ct)) == 0, timeout=120)
    every_spooled_run_written(stage, ct, outage, back, spooled)
    bad = ct.sh(f"find {STATE} -name '*.bad'", check=False).stdout.split()
    check(not bad, f"no segment moved aside as .bad ({bad})")

    # A daemon that cannot start: status says so (CRITICAL, exit 2).
    ct.write(CONFIG, good.replace(f"{SECRETS}/collector-password", f"{SECRETS}/missing-password"))
    ct.sh("ubuntu-metrics systemd apply", check=False)
    # (Its first attempt is not yet "cannot start": status waits for the
    # failure, then the restarts.)
    st = wait_for("status to report the daemon that cannot start", lambda: (
        r := ct.sh("ubuntu-metrics status", check=False)).returncode == 2 and "cannot start" in r.stdout
        and r, timeout=90)
    check(True, "status reports the daemon that cannot start (exit 2): "
          + next(ln for ln in st.stdout.splitlines() if "cannot start" in ln))
    reason = ct.journal("ubuntu-metrics.service", "err")
    check("missing-password" in reason, "journalctl -p err names the missing password file")
    ct.write(CONFIG, good)
    ct.sh("ubuntu-metrics systemd apply")
    wait_for("the daemon active with the good configuration", lambda: ct.show(
        "ubuntu-metrics.service", "ActiveState")["ActiveState"] == "active", timeout=60)
    stage.containers.remove(ct)
    ct.remove()


def settled(ct):
    """The daemon's state once a reload is over: `systemctl reload` returns
    when ExecReload= (the signal) is done, and the unit stays `reloading`
    until the daemon says READY=1 again."""
    return wait_for("the daemon out of `reloading`", lambda: (
        p := ct.show("ubuntu-metrics.service", "ActiveState", "MainPID"))["ActiveState"] != "reloading"
        and p, timeout=60)


EXEC_COLLECTOR = """
[collectors.homecheck]
type = "exec"
interval = "15s"
command = ["/usr/local/lib/ubuntu-metrics/homecheck.sh"]
[collectors.homecheck.measurements.homecheck]
fields = { writable = "int" }
"""
# launchpadlib needs a writable $HOME (its cache): so does this script.
HOMECHECK = """#!/bin/sh
set -e
[ -n "$HOME" ] || { echo "no HOME" >&2; exit 1; }
mkdir -p "$HOME/.launchpadlib/cache"
echo x > "$HOME/.launchpadlib/cache/probe"
echo "homecheck writable=1i"
"""


def now_rfc3339():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def every_spooled_run_written(stage, ct, start, end, spooled):
    """The runs made while InfluxDB was away (timed from `start` to `end`)
    are all in it, each whole: as many rows as a run written before the
    outage (a run may repeat a series, which InfluxDB keeps once), and
    nothing was set aside as a dead letter."""
    runs = {}
    for m in COLLECTORS.values():
        n = max(stage.influxd.rows_between(m, "2000-01-01T00:00:00Z", start).values())
        times = stage.influxd.rows_between(m, start, end)
        short = {t: c for t, c in times.items() if c != n}
        check(times and not short, f"{m}: {len(times)} run(s) made while InfluxDB was away, "
              f"each with its {n} rows ({short or 'none short'})")
        runs[m] = len(times)
    doc = status_doc(ct)
    dead = sum(o.get("dead_letter_batches", 0) for o in doc.get("outputs", []))
    check(dead == 0 and spool_points(doc) == 0,
          f"the {spooled} spooled points are written: spool empty, {dead} dead letters, runs {runs}")


def spooled_since(ct, since):
    """The points waiting in the spool once every stage collector has run
    after `since` (an RFC 3339 time; `status --format json` gives each
    last run's start to the second), else 0. Points in the spool alone do
    not say that a run was made while InfluxDB was away: a run made just
    before, whose write InfluxDB failed as it went down, is spooled too."""
    def at(t):
        return datetime.fromisoformat(t.replace("Z", "+00:00"))
    doc = status_doc(ct)
    runs = {c["name"]: c.get("last_run") for c in doc.get("collectors", [])}
    if all(runs.get(n) and at(runs[n]["time"]) > at(since) for n in COLLECTORS):
        return spool_points(doc)
    return 0


def status_doc(ct):
    """What `ubuntu-metrics status --format json` says in `ct`, parsed."""
    return json.loads(ct.sh("ubuntu-metrics status --format json", check=False).stdout)


def spool_points(doc):
    """Points waiting in the spool, from a status document (`status_doc`)."""
    return sum(o.get("points", 0) for o in doc.get("outputs", []))


def scenario_timers(stage):
    """The timers path exactly as the README writes it, `status` reading
    the real timers, and turning the timers off."""
    influx = stage.fresh_influxd()
    ct = stage.container("timers")
    ct.install_deb(stage.deb)
    ct.write(CONFIG, stage.config(timers=True, interval="20s"))
    ct.sh("ubuntu-metrics systemd apply")
    timers = ct.sh("systemctl list-timers --no-legend 'ubuntu-metrics-*'").stdout
    check(len(timers.splitlines()) == len(COLLECTORS),
          f"{len(COLLECTORS)} timers scheduled after `systemd apply`:\n{timers}")
    acc = ct.show("ubuntu-metrics-sponsoring.timer", "AccuracyUSec")["AccuracyUSec"]
    check(acc == "1s", f"AccuracySec=1s (systemd reads {acc})")
    grew(stage, {}, "the timers' runs wrote points")
    st = ct.sh("ubuntu-metrics status", check=False)
    check(st.returncode == 0, f"status OK with the timers (exit {st.returncode}): {st.stdout.splitlines()[0]}")

    def next_runs():
        # (While a collector's service runs, its timer has no next elapse:
        # OnUnitInactiveSec counts from the end of the run.)
        rows = status_doc(ct)
        got = {c["name"]: (c.get("next_run_source"), c.get("next_run")) for c in rows["collectors"]}
        return got if all(src == "timer" for src, _ in got.values()) else None
    got = wait_for("status to take every next run from the timers", next_runs, timeout=60)
    check(True, f"status takes each next run from the monotonic timers ({got})")
    # A stopped timer is noticed.
    ct.sh("systemctl stop ubuntu-metrics-sponsoring.timer")
    st = ct.sh("ubuntu-metrics status", check=False)
    check(st.returncode != 0 and "stopped" in st.stdout,
          f"status notices the stopped timer (exit {st.returncode})")
    # Off again: no timer, nothing failed, the system not degraded.
    ct.write(CONFIG, stage.config(timers=False))
    ct.sh("ubuntu-metrics systemd apply")
    left = ct.sh("systemctl list-units --all --no-legend 'ubuntu-metrics-*' 'ubuntu-metrics@*'").stdout
    check(not left.strip(), f"no unit left after turning the timers off ({left.strip()})")
    failed = ct.sh("systemctl --failed --no-legend").stdout.strip()
    state = ct.sh("systemctl is-system-running", check=False).stdout.strip()
    check(not failed and state == "running", f"nothing failed, the system {state}")
    stage.containers.remove(ct)
    ct.remove()


def scenario_install(stage):
    """`ubuntu-metrics systemd install` as the README gives it, with the
    credentials `influxdb provision` recommends; a configuration the
    services could not read is refused."""
    stage.fresh_influxd(create=False)
    ct = stage.container("install")
    ct.install_deb(stage.deb)
    provision(stage, ct)
    ct.write("/root/um.toml", stage.config())
    bad = ct.sh("ubuntu-metrics --config /root/um.toml systemd install", check=False)
    check(bad.returncode != 0 and "home directory" in bad.stderr,
          "install refuses a configuration in /root: " + bad.stderr.strip()[:160])
    ct.write(CONFIG, stage.config(
        interval="20s",
        influx_extra=f'username = "collector"\npassword_file = "{SECRETS}/collector-password"'))
    out = ct.sh(f"ubuntu-metrics --config {CONFIG} systemd install").stdout
    check("timers enabled and started" in out, out.strip().splitlines()[-1])
    timers = ct.sh("systemctl list-timers --no-legend 'ubuntu-metrics-*'").stdout
    check(len(timers.splitlines()) == len(COLLECTORS), f"{len(COLLECTORS)} timers scheduled")
    grew(stage, {}, "the installed timers wrote points (as collector, password by credential)")
    failed = ct.sh("systemctl --failed --no-legend").stdout.strip()
    check(not failed, f"no failed unit ({failed})")
    score = ct.sh("systemd-analyze security ubuntu-metrics@sponsoring.service --no-pager",
                  check=False).stdout
    line = [ln for ln in score.splitlines() if "Overall exposure level" in ln]
    check(line and "1.1" in line[0], line[0] if line else score[-300:])
    st = ct.sh("ubuntu-metrics status", check=False)
    check(st.returncode == 0, f"status OK (exit {st.returncode})")
    stage.containers.remove(ct)
    ct.remove()


def provision(stage, ct):
    """README step 2: provision on a server without auth, switch auth on,
    provision again (nothing changes)."""
    influx = stage.influxd
    ct.sh(f"ubuntu-metrics influxdb provision --url {influx.url} --retention 52w")
    influx.stop()
    influx.start(auth=True)
    influx.auth = ("admin", (ct.root / SECRETS.lstrip("/") / "admin-password").read_text().strip())
    again = ct.sh(f"ubuntu-metrics influxdb provision --url {influx.url}").stdout
    check("admin" in influx.users() and "collector" in influx.users(),
          f"provision made the users {sorted(influx.users())}; second run: {again.strip()[:120]}")


def scenario_upgrade(stage):
    """Install, upgrade and removal run the maintainer scripts: an upgrade
    from the previous .deb (no maintainer scripts) restarts the daemon and
    keeps its spool."""
    influx = stage.fresh_influxd()
    ct = stage.container("upgrade")
    old = previous_deb(stage.deb, stage.run_dir)
    ct.install_deb(old, "previous.deb")
    ct.write(CONFIG, stage.config(interval="15s"))
    ct.sh("systemctl enable --now ubuntu-metrics.service")
    grew(stage, stage.points(), "the previous package's daemon wrote points")
    outage = now_rfc3339()
    influx.stop()
    spooled = wait_for("points spooled of runs made while InfluxDB is away",
                       lambda: spooled_since(ct, outage), timeout=120)
    pid = ct.show("ubuntu-metrics.service", "MainPID")["MainPID"]
    ct.install_deb(stage.deb)
    p = wait_for("the daemon restarted by the upgrade",
                 lambda: (q := ct.show("ubuntu-metrics.service", "MainPID", "ActiveState"))
                 ["MainPID"] not in ("0", pid) and q["ActiveState"] == "active" and q, timeout=60)
    check(True, f"postinst restarted the daemon (MainPID {pid} -> {p['MainPID']})")
    version = ct.sh("dpkg-query -W -f '${Version}' ubuntu-metrics").stdout
    check(version != "0.0.1~previous", f"upgraded to {version}")
    back = now_rfc3339()
    influx.start(auth=False)
    wait_for("the kept spool written", lambda: spool_points(status_doc(ct)) == 0, timeout=120)
    every_spooled_run_written(stage, ct, outage, back, spooled)
    # Removal stops the daemon; the state (the spool) stays.
    ct.sh("DEBIAN_FRONTEND=noninteractive dpkg -r ubuntu-metrics")
    state = ct.show("ubuntu-metrics.service", "ActiveState", "LoadState")
    check(state["ActiveState"] in ("inactive", "failed") and state["LoadState"] == "not-found",
          f"removal stopped the daemon ({state})")
    check(ct.sh(f"test -d {STATE}", check=False).returncode == 0, "removal kept the state directory")
    stage.containers.remove(ct)
    ct.remove()


# ------------------------------------------------------------ issue 27

class Findings:
    """The assertions of issue 27's "Tests", each recorded (ok or not) so
    that one run says every one that does not hold yet; the scenario fails
    at its end naming them."""

    def __init__(self):
        self.failed = []

    def expect(self, cond, what, why=""):
        if cond:
            log(f"  ok: {what}")
        else:
            self.failed.append(what + (f" ({why})" if why else ""))
            log(f"  NOT OK: {what}" + (f" ({why})" if why else ""))
        return bool(cond)

    def done(self):
        if self.failed:
            raise StageError(f"{len(self.failed)} of issue 27's assertions do not hold:\n  - "
                             + "\n  - ".join(self.failed))


# The newest rows the first generation wrote of the time-series sources
# (update_excuses.csv, nbs.csv): the rows of the fixtures newer than these
# are what our first runs after the switch catch up. Half past the hour:
# no fixture row falls on the history's hourly points.
BRITNEY_END = datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)
ARCHIVE_END = datetime(2026, 11, 22, 18, 30, tzinfo=timezone.utc)
# Our collectors on the switched station: the stand-ins' four (the old
# station's collectors), the others off; the two that write now's points
# every 30 s, so that the scenario need not wait out 5 min.
FG_ENABLED = " ".join(f"{n}=false" for n in ALL
                      if n not in ("sponsoring", "autopkgtest", "britney", "ubuntu_archive"))
FG_INTERVALS = "sponsoring=30s autopkgtest=30s"
# Where the fixtures' distro-info data is in the containers (the fixture
# server names its path on the host).
FG_DISTRO_INFO = "/var/lib/stage-fixtures/distro-info/ubuntu.csv"


def source_pairs(stage):
    """The fixture server's [sources] as the charm's option `sources`:
    NAME=URL pairs (distro_info a path in the container)."""
    pairs = []
    for line in stage.fixtures.sources.splitlines():
        key, eq, value = line.partition("=")
        if not eq or line.startswith("["):
            continue
        key, value = key.strip(), value.strip().strip('"')
        if key == "distro_info":
            value = FG_DISTRO_INFO
        pairs.append(f"{key}={value}")
    return " ".join(pairs)


def put_distro_info(ct):
    dest = ct.root / FG_DISTRO_INFO.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests/fixtures/distro-info/ubuntu.csv", dest)


def our_timers(ct):
    out = ct.sh("systemctl list-timers --all --no-legend --plain 'ubuntu-metrics-*'", check=False).stdout
    return sorted(w for line in out.splitlines() for w in line.split() if w.endswith(".timer")
                  and w.startswith("ubuntu-metrics-"))


def collectors_ran(ct, names):
    """The collectors of `names` whose last run `status --format json`
    reports (None while one has not run yet)."""
    try:
        rows = {c["name"]: c for c in status_doc(ct)["collectors"]}
    except (ValueError, KeyError, TypeError):
        return None
    done = {n: (rows.get(n) or {}).get("last_run") for n in names}
    return done if all(done.values()) else None


def scenario_first_generation(stage):
    """Issue 27: a first-generation station (the old charm's InfluxDB with
    its TLS, users, passwords and marker, its run-metric-collector@ units
    writing through the collector user, a week of history) moved to our
    charm, both ways. Side by side first, while the station is still the
    first generation's (its old certificate, its timers running): a new
    machine whose charm has the external-InfluxDB options, run-collector,
    status, the old timers stopped, the new machine's points counted; the
    new machine then goes and the old timers start again (that path's
    rollback). Then in place: the charm's handlers run in the station's
    container as `juju refresh --switch` runs them (upgrade-charm,
    config-changed, later update-status). Each of the issue's assertions is
    recorded; the scenario fails at its end naming those that do not
    hold."""
    from first_generation import STANDINS, Station
    found = Findings()
    ct = stage.container("first-gen")
    station = Station(ct, FIXTURES, {"britney": BRITNEY_END, "ubuntu_archive": ARCHIVE_END})
    station.build()
    # Their first runs now, through the old units (rather than waiting for
    # the timers' OnBootSec=30s and random delay of up to 1 min).
    ct.sh("systemctl start --wait " + " ".join(f"run-metric-collector@{n}.service" for n in STANDINS), timeout=300)
    wrote = wait_for("the first generation's units to write", lambda: standins_wrote(station), timeout=150)
    check(True, f"the run-metric-collector@ units wrote through the collector user: {wrote}")
    recorded = datetime.now(timezone.utc).replace(microsecond=0)
    history = {
        "counts": station.counts(recorded),
        "totals": station.totals(),
        "series": {m: station.client.series(m, *station.history_range(m, recorded))
                   for m in STANDINS.values()},
        "recorded": recorded,
    }
    log(f"  row counts of the history before the switch: {history['counts']} "
        f"(all points: {history['totals']})")
    put_distro_info(ct)
    config = {"sources": source_pairs(stage), "enabled": FG_ENABLED, "intervals": FG_INTERVALS}
    t = time.monotonic()
    fg_side_by_side(stage, station, found, config)
    log(f"  side by side: {time.monotonic() - t:.0f} s")
    t = time.monotonic()
    fg_in_place(stage, station, found, config, history)
    log(f"  in place: {time.monotonic() - t:.0f} s")
    log(f"  row counts of the history at the end: {station.counts(recorded)}")
    found.done()
    stage.containers.remove(ct)
    ct.remove()


FIXTURES = ROOT / "tests/fixtures"
# The stand-ins whose points are stamped now (the others write rows).
FG_CURRENT = ["sponsoring_queue_stats", "autopkgtest_queue_size"]


def standins_wrote(station):
    """Each stand-in's point(s) beyond the history, or None."""
    from first_generation import HISTORY_HOURS, STANDINS
    now = datetime.now(timezone.utc)
    got = {}
    for name, m in STANDINS.items():
        end = station.ends.get(name)
        if end:
            got[m] = station.client.count(m, end, end)
        else:
            got[m] = (station.client.count(m, station.history[m][0], now)
                      - HISTORY_HOURS * len(station.series[name]))
    return got if all(v > 0 for v in got.values()) else None


def first_line(p):
    return (p.stdout.strip().splitlines() or p.stderr.strip().splitlines() or ["(no output)"])[0]


def fg_side_by_side(stage, station, found, config):
    """Issue 27's second path: a new machine whose charm writes to the
    running station's InfluxDB (its old certificate as the CA, the
    collector user, the password a Juju secret)."""
    from first_generation import CharmDriver
    client = station.client
    ct2 = stage.container("side-by-side")
    # The packages APT_PACKAGES names are there as apt leaves them, the
    # local InfluxDB masked: this machine's charm uses the station's.
    ct2.sh("systemctl mask influxdb.service")
    ct2.install_cached("influxdb", "influxdb-client", start=False)
    put_distro_info(ct2)
    charm = CharmDriver(ct2, stage.charm, stage.charm_venv, stage.deb)
    config = dict(config, **{"influxdb-url": station.url, "influxdb-user": "collector",
                             "influxdb-ca-cert": station.cert_pem})
    secret = {"password": station.passwords["collector"]}
    for event in ("install", "config-changed"):
        r = charm.run(event, config, secret=secret)
        ok = found.expect(not r.get("error") and (r.get("status") or {}).get("name") != "blocked",
                          f"side by side: {event} with the external-InfluxDB options",
                          r.get("error") or (r.get("status") or {}).get("message", ""))
        if not ok:
            break
    rc = charm.run("action:run-collector", config, params={"name": "sponsoring"}, secret=secret)
    count = (rc.get("action_results") or {}).get("count")
    found.expect(int(count or 0) > 0, f"side by side: run-collector sponsoring gives points ({count})",
                 rc.get("action_failed") or rc.get("error", ""))
    pair = "ubuntu-metrics@sponsoring.service ubuntu-metrics@autopkgtest.service"
    if our_timers(ct2):
        # The timers' first runs, started now rather than after the new
        # machine's OnBootSec and random delay.
        ct2.sh(f"systemctl start --wait {pair}", check=False, timeout=300)
        wait_for("the new machine's first runs", lambda: collectors_ran(ct2, ["sponsoring", "autopkgtest"]),
                 timeout=150)
    st = ct2.sh("ubuntu-metrics status", check=False)
    found.expect(st.returncode == 0, f"side by side: `ubuntu-metrics status` OK (exit {st.returncode}): "
                 f"{first_line(st)}")
    # The old timers stop, ours write: from now on the new machine alone.
    station.stop_old()
    stopped = datetime.now(timezone.utc)
    if our_timers(ct2):
        # Their next runs (due an interval later), now.
        ct2.sh(f"systemctl start --wait {pair}", check=False, timeout=300)

    def counted_or_kept():
        # Points in the station's InfluxDB, or kept in the new machine's
        # spool (a write refused: no use waiting).
        got = {m: client.count(m, stopped + timedelta(seconds=1), stopped + timedelta(days=1))
               for m in FG_CURRENT}
        if all(got.values()):
            return {"counted": got}
        kept = spool_points(status_doc(ct2))
        return {"counted": got, "kept": kept} if kept else None
    got = wait_for("the new machine's points in the station's InfluxDB", counted_or_kept, timeout=120) \
        if our_timers(ct2) else {"counted": None}
    why = ""
    if got.get("kept"):
        lines = [ln for ln in ct2.journal("ubuntu-metrics@sponsoring.service").splitlines()
                 if "could not take the points" in ln]
        why = f"{got['kept']} points kept in its spool: " + (lines[-1] if lines else "")
    found.expect(got["counted"] and all(got["counted"].values()),
                 f"side by side: the new machine's points counted in the station's InfluxDB: {got['counted']}",
                 why or "no timer scheduled there")
    # That path's rollback: the new machine goes, the old timers start
    # again; the station is the first generation's for the switch in place.
    stage.containers.remove(ct2)
    ct2.remove()
    station.ct.sh("systemctl start " + " ".join(f"run-metric-collector@{n}.timer" for n in station.series))


def fg_in_place(stage, station, found, config, history):
    """Issue 27's first path: `juju refresh --switch` on the station's
    machine, asserting the issue's list."""
    from first_generation import STANDINS, USERS, CharmDriver, csv_rows_after, snapshot, unit_starts
    ct, client = station.ct, station.client
    active = [u for u in station.old_units_active() if u.endswith(".timer")]
    check(len(active) == len(STANDINS), f"the old timers run before the switch ({active})")
    charm = CharmDriver(ct, stage.charm, stage.charm_venv, stage.deb)
    for event in ("upgrade-charm", "config-changed"):
        r = charm.run(event, config)
        if r.get("error"):
            found.expect(False, f"the charm's {event} handler ran", r["error"])
            return
    found.expect((r.get("status") or {}).get("name") != "blocked",
                 "config-changed adopts the station (the unit is not blocked)",
                 (r.get("status") or {}).get("message", ""))
    want = sorted(f"ubuntu-metrics-{n}.timer" for n in STANDINS)
    ours = our_timers(ct)
    found.expect(ours == want, f"our timers are scheduled: {ours}", f"expected {want}")
    if ours:
        ran = wait_for("our collectors' first runs", lambda: collectors_ran(ct, list(STANDINS)), timeout=150)
        log(f"  our first runs: { {n: r.get('result') for n, r in ran.items()} }")
    charm.run("update-status", config)
    # The old units: stopped, out of /etc/systemd/system, moved aside.
    left = station.old_units()
    found.expect(not left, "the old units are gone from /etc/systemd/system", f"still there: {left}")
    active = station.old_units_active()
    found.expect(not active, "the old units are stopped", f"still active: {active}")
    aside = ct.sh("find / -xdev -name 'run-metric-collector@sponsoring.timer' "
                  "-not -path '/etc/systemd/system/*' 2>/dev/null", check=False).stdout.split()
    found.expect(aside, f"the old units are moved aside, not deleted: {aside}")
    repo = ct.sh("find / -xdev -path '*/metrics/collectors/sponsoring/__init__.py' 2>/dev/null",
                 check=False).stdout.split()
    found.expect(repo, f"the old repository copy is kept: {repo}")
    if active or left:
        station.stop_old()
        log("  (the stage stopped the old timers itself: what follows sees our points only)")
    found.expect(our_timers(ct) == want and all(
        ct.show(t, "ActiveState")["ActiveState"] == "active" for t in want), "our timers are active")

    # New points in the same series.
    mark = datetime.now(timezone.utc)
    if ours:
        def new_points():
            got = {m: client.series(m, mark, after=True) for m in FG_CURRENT}
            return got if all(got.values()) else None
        try:
            new = wait_for("our points in the old series", new_points, timeout=120)
        except StageError as e:
            log(f"  {e}")
            new = {m: client.series(m, mark, after=True) for m in FG_CURRENT}
        for m in FG_CURRENT:
            old = history["series"][m]
            found.expect(new[m] and new[m] == old,
                         f"{m}: our new points are in the old series ({len(new[m])} of {len(old)})",
                         f"new {sorted(new[m] - old)[:3]}, missing {sorted(old - new[m])[:3]}")
    else:
        found.expect(False, "our new points in the old series", "none of our timers is scheduled")
    # britney's and ubuntu_archive's first runs catch up from the newest
    # row in the database (the old station's), not from an empty mark.
    for name, rel, cols, tail in (("britney", "britney/proposed-migration/update_excuses.csv", 6, None),
                                  ("ubuntu_archive", "ubuntu_archive/nbs.csv", 3, 2048)):
        m, end = STANDINS[name], station.ends[name]
        # (90 days back at most: the default max_catch_up.)
        since = max(end, datetime.now(timezone.utc) - timedelta(days=90))
        want_rows = csv_rows_after(FIXTURES, rel, cols, since, tail=tail)
        got_rows = client.times(m, end)
        found.expect(len(got_rows) == len(want_rows) and client.series(m, end, after=True) <= history["series"][m],
                     f"{m}: our first {name} run caught up from the newest row ({end:%Y-%m-%dT%H:%MZ}): "
                     f"{len(got_rows)} row(s) after it, of {len(want_rows)}")
    # Every history row still there.
    counts, totals = station.counts(history["recorded"]), station.totals()
    log(f"  row counts of the history after the switch: {counts} (all points: {totals})")
    diff = {m: counts[m] - n for m, n in history["counts"].items() if counts[m] != n}
    found.expect(not diff, "every history row is still there (counts over its range equal)",
                 f"rows gained (+) or lost (-) inside the history's range: {diff}; a gain in "
                 f"{STANDINS['britney']} or {STANDINS['ubuntu_archive']} is a catch-up reaching back "
                 "past the newest row")
    found.expect(all(totals[m] >= n for m, n in history["totals"].items()),
                 "no measurement has fewer points than before")
    # The three passwords unchanged, each still logging in.
    for user in USERS:
        kept = (ct.root / f"root/.influx_{user}_password").read_text().strip()
        found.expect(kept == station.passwords[user], f"/root/.influx_{user}_password unchanged")
        found.expect(client.authenticates(user, station.passwords[user]),
                     f"{user} still logs in with its old password")
    served = ct.sh(f"openssl s_client -connect 127.0.0.1:{station.port} </dev/null 2>/dev/null "
                   "| openssl x509", check=False).stdout
    log("  the certificate InfluxDB serves: "
        + ("the old one" if served.strip() == station.cert_pem.strip() else "re-issued"))
    st = ct.sh("ubuntu-metrics status", check=False)
    found.expect(st.returncode == 0, f"`ubuntu-metrics status` OK (exit {st.returncode}): {first_line(st)}")
    us = charm.run("update-status", config)
    found.expect((us.get("status") or {}).get("name") == "active",
                 f"the unit is active: {(us.get('status') or {}).get('message')!r}")
    pw = charm.run("action:get-influxdb-grafana-password", config)
    res = pw.get("action_results") or {}
    same = res.get("password") == station.passwords["grafana"]
    found.expect(res == {"username": "grafana", "password": station.passwords["grafana"]},
                 "get-influxdb-grafana-password returns the grafana user's old password",
                 pw.get("action_failed") or f"got user {res.get('username')!r}, "
                 f"{'the same' if same else 'another'} password")
    # A second run of the handlers changes nothing.
    dirs = ["/etc/ubuntu-metrics", "/etc/systemd/system", "/etc/influxdb"]
    units = ["ubuntu-metrics*.timer", "ubuntu-metrics.service", "influxdb.service"]
    files, starts = snapshot(ct, dirs), unit_starts(ct, units)
    charm.run("upgrade-charm", config)
    charm.run("config-changed", config)
    files2, starts2 = snapshot(ct, dirs), unit_starts(ct, units)
    changed = sorted(k for k in set(files) | set(files2) if files.get(k) != files2.get(k))
    found.expect(not changed, "a second run of the handlers leaves every file as it was", f"changed: {changed}")
    restarted = sorted(u for u in set(starts) | set(starts2) if starts.get(u) != starts2.get(u))
    found.expect(not restarted, "a second run of the handlers restarts no unit",
                 f"{[(u, starts.get(u), starts2.get(u)) for u in restarted]}")


SCENARIOS = {
    "daemon": scenario_daemon,
    "timers": scenario_timers,
    "install": scenario_install,
    "upgrade": scenario_upgrade,
    "first_generation": scenario_first_generation,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb", required=True)
    ap.add_argument("--fixture-server", required=True)
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--charm", default=str(ROOT / "charm"),
                    help="the charm whose handlers first_generation runs (default: charm/)")
    ap.add_argument("--charm-venv", default=str(ROOT / "target/charm-venv"),
                    help="the virtual environment with ops[testing] and PyYAML (charm/run-tests makes it)")
    args = ap.parse_args()
    t0 = time.monotonic()
    stage = Stage(args)
    failed = []
    try:
        for name, fn in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            t = time.monotonic()
            log(f"scenario {name}")
            try:
                fn(stage)
                log(f"scenario {name}: passed in {time.monotonic() - t:.0f} s")
            except Exception as e:
                failed.append(name)
                log(f"scenario {name}: FAILED after {time.monotonic() - t:.0f} s: {e}")
                traceback.print_exc()
                for c in list(stage.containers):
                    log(f"[{c.name}] journal (last 60 lines):\n"
                        + "\n".join(c.journal().splitlines()[-60:]))
                    c.remove()
                    stage.containers.remove(c)
    finally:
        stage.close()
    ran = [n for n in SCENARIOS if not args.only or n in args.only]
    log(f"{len(ran) - len(failed)} scenario(s) passed, {len(failed)} failed "
        f"({', '.join(failed) or 'none'}); the stage took {time.monotonic() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
