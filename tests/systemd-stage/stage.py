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
import sys
import time
import traceback
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
            import shutil
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        self.base = base_rootfs(self.work / "cache")
        self.influxd = None
        self.influxds = 0
        self.fixtures = FixtureServer(Path(args.fixture_server), self.run_dir)
        self.deb = Path(args.deb)
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
    spooled = wait_for("points in the spool while InfluxDB is away", lambda: spool_points(ct),
                       timeout=120)
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
    wait_for("the spool written after the restart", lambda: spool_points(ct) == 0, timeout=120)
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
    import json
    runs = {}
    for m in COLLECTORS.values():
        n = max(stage.influxd.rows_between(m, "2000-01-01T00:00:00Z", start).values())
        times = stage.influxd.rows_between(m, start, end)
        short = {t: c for t, c in times.items() if c != n}
        check(times and not short, f"{m}: {len(times)} run(s) made while InfluxDB was away, "
              f"each with its {n} rows ({short or 'none short'})")
        runs[m] = len(times)
    doc = json.loads(ct.sh("ubuntu-metrics status --format json", check=False).stdout)
    dead = sum(o.get("dead_letter_batches", 0) for o in doc.get("outputs", []))
    check(dead == 0 and spool_points(ct) == 0,
          f"the {spooled} spooled points are written: spool empty, {dead} dead letters, runs {runs}")


def spool_points(ct):
    """Points waiting in the spool, from `status --format json`."""
    import json
    out = ct.sh("ubuntu-metrics status --format json", check=False).stdout
    return sum(o.get("points", 0) for o in json.loads(out).get("outputs", []))


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
        import json
        rows = json.loads(ct.sh("ubuntu-metrics status --format json", check=False).stdout)
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
    spooled = wait_for("points spooled while InfluxDB is away", lambda: spool_points(ct), timeout=120)
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
    wait_for("the kept spool written", lambda: spool_points(ct) == 0, timeout=120)
    every_spooled_run_written(stage, ct, outage, back, spooled)
    # Removal stops the daemon; the state (the spool) stays.
    ct.sh("DEBIAN_FRONTEND=noninteractive dpkg -r ubuntu-metrics")
    state = ct.show("ubuntu-metrics.service", "ActiveState", "LoadState")
    check(state["ActiveState"] in ("inactive", "failed") and state["LoadState"] == "not-found",
          f"removal stopped the daemon ({state})")
    check(ct.sh(f"test -d {STATE}", check=False).returncode == 0, "removal kept the state directory")
    stage.containers.remove(ct)
    ct.remove()


SCENARIOS = {
    "daemon": scenario_daemon,
    "timers": scenario_timers,
    "install": scenario_install,
    "upgrade": scenario_upgrade,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb", required=True)
    ap.add_argument("--fixture-server", required=True)
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS))
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
