"""The first generation's station (the Juju charm
ubuntu-release-metrics-collector) as issue 27 describes it, built in a
booted stage container; and our charm's handlers run in a container as
`juju refresh ubuntu-release-metrics-collector --switch <our charm>` would
run them (`CharmDriver`, with charm_driver.py inside the container).

What the old charm leaves on its machine, made here the way it made it:
InfluxDB 1.x from the archive, HTTPS with a self-signed certificate
(`openssl req -x509`, CN the host name, no subjectAltName), authentication
on, the database `metrics`, the users admin / collector / grafana with their
passwords in /root/.influx_*_password and the marker
~ubuntu/influxdb_grafana_password; /home/ubuntu/influx.conf; the old
repository's copy in /home/ubuntu/ubuntu-release-metrics/ and one
run-metric-collector@NAME.service and .timer per collector in
/etc/systemd/system/, from the old charm's templates.

The collectors are stand-ins: each writes the current point(s) of one
measurement its successor of the same name writes, the series (tag keys and
values) and field types taken from the fixtures' expected.out (what our
collector writes from the fixtures the fixture server serves), over HTTPS
without verifying the certificate, as the old python-influxdb client did.
A history writer puts a week of those series in the database first (one
point an hour). Grafana (a snap) is absent: the stage has no snapd.

Standard library only: the stage runs it with the host's python3.
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import ssl
import string
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lib import StageError, free_port, log, wait_for

HOME = "/home/ubuntu"
REPO = f"{HOME}/ubuntu-release-metrics"
INFLUX_CONF = f"{HOME}/influx.conf"
CERT = "/etc/ssl/influxdb-selfsigned.crt"
KEY = "/etc/ssl/influxdb-selfsigned.key"
USERS = ("admin", "collector", "grafana")
HISTORY_HOURS = 7 * 24

# The stand-ins: collector -> the one measurement it writes (one our
# collector of the same name writes). britney's and ubuntu_archive's are
# time-series CSV rows (their points carry the row's time): their history
# ends where the scenario says, the newest row our catch-up starts from.
STANDINS = {
    "sponsoring": "sponsoring_queue_stats",
    "autopkgtest": "autopkgtest_queue_size",
    "britney": "update_excuses_stats",
    "ubuntu_archive": "nbs_stats",
}

# The old charm's templates (charm/releasemetrics.py of
# ubuntu-release-metrics), $METRIC and $DRY_RUN filled in as it did, the
# proxies empty.
SERVICE_TEMPLATE = """[Unit]
Description=Run $METRIC metric

[Service]
DynamicUser=yes
Environment=DRY_RUN=$DRY_RUN
Environment=http_proxy=
Environment=https_proxy=
Environment=no_proxy=
EnvironmentFile=/home/ubuntu/influx.conf
ExecStart=/usr/bin/python3 -c 'from metrics.collectors.$METRIC import run_metric; run_metric(dry_run=$DRY_RUN, verbose=True)'
NoNewPrivileges=yes
PrivateMounts=yes
PrivateUsers=yes
ProtectClock=yes
ProtectControlGroups=yes
ProtectHostname=yes
ProtectKernelLogs=yes
ProtectKernelModules=yes
ProtectKernelTunables=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictRealtime=yes
RestrictSUIDSGID=yes
RuntimeMaxSec=10m
Type=simple
WorkingDirectory=/home/ubuntu/ubuntu-release-metrics/"""
TIMER_TEMPLATE = """[Unit]
Description=Run run-metric-collector@$METRIC.service on a timer
After=timers.target

[Timer]
OnBootSec=30s
OnUnitInactiveSec=5m
FixedRandomDelay=yes
RandomizedDelaySec=1m
Unit=run-metric-collector@$METRIC.service

[Install]
WantedBy=timers.target"""

# The old collectors' write: influxdb-python's
# InfluxDBClient(hostname, port, username, password, database, ssl=True,
# verify_ssl=False).write_points(...), with the standard library.
STANDIN_LIB = '''"""The stage's stand-in for the first generation's Metric.run(): points
written as influxdb-python's InfluxDBClient(..., ssl=True, verify_ssl=False)
wrote them: HTTPS, the self-signed certificate not verified, as the user of
/home/ubuntu/influx.conf (the unit's EnvironmentFile=)."""

import base64
import os
import ssl
import sys
import urllib.parse
import urllib.request


def points(series, ts=None):
    """Line protocol for each (series key, fields) at `ts` (ns; None: the
    server's time, as a point without "time" was)."""
    return [f"{key} {fields}" + (f" {ts}" if ts is not None else "") for key, fields in series]


def write(lines, dry_run=False, verbose=False):
    if dry_run:
        print("[dry-run] Would submit:\\n" + "\\n".join(lines))
        return
    env = os.environ
    url = (f"https://{env['INFLUXDB_HOSTNAME']}:{env['INFLUXDB_PORT']}/write?"
           + urllib.parse.urlencode({"db": env["INFLUXDB_DATABASE"], "precision": "ns"}))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    token = base64.b64encode(f"{env['INFLUXDB_USERNAME']}:{env['INFLUXDB_PASSWORD']}".encode()).decode()
    for i in range(0, len(lines), 5000):
        req = urllib.request.Request(url, data="\\n".join(lines[i:i + 5000]).encode(), method="POST")
        req.add_header("Authorization", "Basic " + token)
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            if r.status != 204:
                sys.exit(f"InfluxDB answered {r.status}")
    if verbose:
        print(f"wrote {len(lines)} point(s)", file=sys.stderr)
'''

STANDIN_COLLECTOR = '''"""Stand-in for the first generation's {name} collector (the stage's,
tests/systemd-stage/first_generation.py): the current point(s) of
{measurement}, in the series our {name} collector writes."""

from metrics.lib.standin import points, write

SERIES = {series!r}
# The row's time (ns) for a time-series source; None: now.
TIME = {ts!r}


def run_metric(dry_run=False, verbose=False):
    write(points(SERIES, TIME), dry_run, verbose)
'''

HISTORY_WRITER = '''"""Writes the stage's week of first-generation history (a plan of series
and times, JSON) as the collector user, once, at setup."""

import json
import sys

from metrics.lib.standin import points, write

lines = []
for m in json.load(open(sys.argv[1])):
    for ts in m["times"]:
        lines += points(m["series"], ts)
write(lines, verbose=True)
'''


def ns(t: datetime) -> int:
    return int(t.timestamp()) * 10**9


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_line(line: str):
    """(series key, fields, timestamp) of a line-protocol line: split at the
    unescaped spaces outside quoted strings."""
    parts, cur, esc, quoted = [], "", False, False
    for ch in line:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == '"':
            cur += ch
            quoted = not quoted
        elif ch == " " and not quoted and len(parts) < 2:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    if len(parts) != 3:
        raise StageError(f"not a line-protocol line with a timestamp: {line!r}")
    return parts[0], parts[1], int(parts[2])


def fixture_series(fixtures: Path, collector: str, measurement: str):
    """The series (key, fields) of `measurement` in the collector's
    expected.out: what our collector writes from the same fixtures."""
    out = []
    path = fixtures / collector / "expected.out"
    for line in path.read_text().splitlines():
        if line.startswith(measurement + ",") or line.startswith(measurement + " "):
            key, fields, _ = split_line(line)
            if key not in [k for k, _ in out]:
                out.append((key, fields))
    if not out:
        raise StageError(f"{path}: no {measurement} line: the stand-in needs its series")
    return out


def csv_rows_after(fixtures: Path, rel: str, columns: int, after: datetime, tail=None):
    """The times of the well-formed rows (`columns` base-10 integers, the
    first a time in Unix ms) of a fixture CSV newer than `after`: the rows a
    catch-up from `after` writes. `tail`: only the last `tail` bytes are
    read (a Range request), their first line a fragment."""
    data = (fixtures / rel).read_bytes()
    lines = data.decode().splitlines()
    if tail is not None and len(data) > tail:
        lines = data[-tail:].decode().splitlines()[1:]
    out = []
    for line in lines:
        cells = line.split(",")
        if len(cells) != columns or not all(c.strip().lstrip("-").isdigit() for c in cells):
            continue
        t = int(cells[0]) // 1000
        if t > int(after.timestamp()):
            out.append(datetime.fromtimestamp(t, timezone.utc))
    return out


class Client:
    """Queries to the station's InfluxDB from the host (it shares the
    host's loopback), over HTTPS: the self-signed certificate is not
    verified (it names the host name, not 127.0.0.1)."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.admin = None  # (user, password)

    def request(self, path, params=None, data=None, user=None):
        """(HTTP status, JSON answer or None)."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None)
        if user:
            token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                body = r.read()
                return r.status, json.loads(body) if body else None
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body) if body else None
            except ValueError:
                return e.code, {"error": body.decode(errors="replace")}

    def ping(self):
        try:
            return self.request("/ping")[0] == 204
        except (urllib.error.URLError, OSError):
            return False

    def execute(self, q, user=None):
        """An InfluxQL statement (POST), failing on an error."""
        status, got = self.request("/query", data={"q": q}, user=user or self.admin)
        err = (got or {}).get("error") or ((got or {}).get("results") or [{}])[0].get("error")
        if status != 200 or err:
            shown = q.split(" WITH PASSWORD ")[0]
            raise StageError(f"InfluxDB refused `{shown}` (HTTP {status}): {err}")
        return got

    def query(self, q, db="metrics", user=None):
        status, got = self.request("/query", params={"db": db, "q": q}, user=user or self.admin)
        if status != 200:
            raise StageError(f"InfluxDB answered {status} to {q!r}: {got}")
        result = got["results"][0]
        if result.get("error"):
            raise StageError(f"InfluxDB refused {q!r}: {result['error']}")
        return result

    def authenticates(self, user, password):
        """Whether `user` logs in with `password` (401 is a refusal)."""
        status, _ = self.request("/query", params={"q": "SHOW DATABASES"}, user=(user, password))
        return status == 200

    def count(self, measurement, start: datetime, end: datetime):
        """Points of `measurement` timed from `start` to `end` (inclusive):
        the largest count of any of its fields."""
        got = self.query(f'SELECT count(*) FROM "{measurement}" '
                         f"WHERE time >= '{rfc3339(start)}' AND time <= '{rfc3339(end)}'")
        series = got.get("series") or []
        if not series:
            return 0
        return max(v for v in series[0]["values"][0][1:] if v is not None)

    def series(self, measurement, start: datetime, end: datetime | None = None, after=False):
        """The tag sets of `measurement` with points from `start` (or after
        it, `after`) to `end` (None: any time later)."""
        cond = f"time {'>' if after else '>='} '{rfc3339(start)}'"
        if end is not None:
            cond += f" AND time <= '{rfc3339(end)}'"
        got = self.query(f'SELECT count(*) FROM "{measurement}" WHERE {cond} GROUP BY *')
        return {tuple(sorted((s.get("tags") or {}).items())) for s in got.get("series") or []}

    def times(self, measurement, start: datetime, after=True):
        """The distinct point times of `measurement` after `start`."""
        op = ">" if after else ">="
        got = self.query(f"SELECT * FROM \"{measurement}\" WHERE time {op} '{rfc3339(start)}'")
        rows = (got.get("series") or [{}])[0].get("values") or []
        return sorted({r[0] for r in rows})


class Station:
    """A first-generation station in the booted container `ct`.

    `ends` gives, per stand-in whose source is a time series (britney,
    ubuntu_archive), the time of the newest row the old station wrote: its
    history ends there and its stand-in writes that row again at each run.
    """

    def __init__(self, ct, fixtures: Path, ends: dict):
        self.ct = ct
        self.fixtures = fixtures
        self.ends = ends
        self.port = free_port()
        self.rpc_port = free_port()
        self.client = Client(self.port)
        alphabet = string.ascii_letters + string.digits
        # The old charm's passwords: 20 letters and digits.
        self.passwords = {u: "".join(secrets.choice(alphabet) for _ in range(20)) for u in USERS}
        self.series = {c: fixture_series(fixtures, c, m) for c, m in STANDINS.items()}
        self.history = {}  # measurement -> (first, last) time of its history
        self.hostname = None
        self.cert_pem = None

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def build(self):
        t = time.monotonic()
        self._influxdb()
        self._users()
        self._collectors()
        self._units()
        self._history()
        log(f"[{self.ct.name}] first-generation station built in {time.monotonic() - t:.0f} s "
            f"(InfluxDB https://127.0.0.1:{self.port}, CN={self.hostname})")

    def _influxdb(self):
        ct = self.ct
        # The archive's InfluxDB 1.x (and its CLI, as the old charm
        # installed both), not started before it is configured: the
        # container shares the host's network, where 8086 and 8088 may be
        # taken.
        ct.install_cached("influxdb", "influxdb-client", start=False)
        # The certificate as InfluxDB's docs and the old charm make it (the
        # old charm said 3650 days and a longer subject; the CN alone, no
        # subjectAltName, is what matters to a client).
        self.hostname = ct.sh("hostname").stdout.strip()
        ct.sh(f"openssl req -x509 -nodes -newkey rsa:2048 -keyout {KEY} -out {CERT} "
              f"-days 365 -subj /CN={self.hostname} 2>/dev/null && chown influxdb:influxdb {KEY} {CERT}")
        self.cert_pem = (ct.root / CERT.lstrip("/")).read_text()
        conf = ct.root / "etc/influxdb/influxdb.conf"
        text = conf.read_text()
        if "\n[http]\n" not in text or '# bind-address = "127.0.0.1:8088"' not in text:
            raise StageError(f"{conf}: not the influxdb package's configuration (no [http] section "
                             "or commented RPC bind-address)")
        # The old charm's [http] block, on a free loopback port; the RPC
        # (backup/restore, "meta") bind-address on another. Usage reporting
        # off: the stage leaves no loopback (the old station reported).
        text = text.replace('# bind-address = "127.0.0.1:8088"',
                            f'bind-address = "127.0.0.1:{self.rpc_port}"', 1)
        text = text.replace("# reporting-disabled = false", "reporting-disabled = true", 1)
        if "\nreporting-disabled = true" not in text:
            text = "reporting-disabled = true\n" + text
        text = text.replace("\n[http]\n", textwrap.dedent(f"""
            [http]
              enabled = true
              bind-address = "127.0.0.1:{self.port}"
              auth-enabled = true
              log-enabled = true
              write-tracing = false
              https-enabled = true
              https-certificate = "{CERT}"
              https-private-key = "{KEY}"
            """), 1)
        conf.write_text(text)
        # A name for the collectors' INFLUXDB_HOSTNAME=localhost (never a
        # DNS query: the stage stays on loopback).
        hosts = ct.root / "etc/hosts"
        if "localhost" not in (hosts.read_text() if hosts.exists() else ""):
            hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
        ct.sh("systemctl enable influxdb.service >/dev/null 2>&1; systemctl restart influxdb.service")
        wait_for(f"the station's InfluxDB to answer https://127.0.0.1:{self.port}/ping",
                 self.client.ping, timeout=60)

    def _users(self):
        c, pw = self.client, self.passwords
        # The first user may be made without credentials (auth is on and no
        # user exists yet); the rest as admin, as the old charm did with the
        # influx CLI.
        c.execute(f"CREATE USER admin WITH PASSWORD '{pw['admin']}' WITH ALL PRIVILEGES", user=None)
        c.admin = ("admin", pw["admin"])
        c.execute("CREATE DATABASE metrics")
        c.execute(f"CREATE USER collector WITH PASSWORD '{pw['collector']}'")
        c.execute("GRANT WRITE ON metrics TO collector")
        c.execute(f"CREATE USER grafana WITH PASSWORD '{pw['grafana']}'")
        c.execute("GRANT READ ON metrics TO grafana")
        ct = self.ct
        for user in USERS:
            # (The old charm wrote them without a newline.)
            ct.write(f"/root/.influx_{user}_password", pw[user], mode="0600")
        ct.sh("id ubuntu >/dev/null 2>&1 || useradd --create-home --shell /bin/bash ubuntu")
        # Home directories were 0755 on the old station's Ubuntu: the
        # collectors' dynamic users read the repository copy in it.
        ct.sh(f"chmod 0755 {HOME}")
        ct.write(f"{HOME}/influxdb_grafana_password", pw["grafana"])
        ct.write(INFLUX_CONF, "\n".join([
            "INFLUXDB_HOSTNAME=localhost",
            f"INFLUXDB_PORT={self.port}",
            "INFLUXDB_USERNAME=collector",
            f"INFLUXDB_PASSWORD={pw['collector']}",
            "INFLUXDB_DATABASE=metrics",
        ]))

    def _collectors(self):
        ct = self.ct
        root = ct.root / REPO.lstrip("/")
        for pkg in ("metrics", "metrics/collectors", "metrics/lib"):
            (root / pkg).mkdir(parents=True, exist_ok=True)
            (root / pkg / "__init__.py").write_text("")
        (root / "metrics/lib/standin.py").write_text(STANDIN_LIB)
        for name, measurement in STANDINS.items():
            end = self.ends.get(name)
            d = root / "metrics/collectors" / name
            d.mkdir(exist_ok=True)
            (d / "__init__.py").write_text(STANDIN_COLLECTOR.format(
                name=name, measurement=measurement, series=self.series[name],
                ts=ns(end) if end else None))
        ct.sh(f"chown -R ubuntu:ubuntu {REPO} && chmod -R a+rX {REPO}")

    def _units(self):
        ct = self.ct
        for name in STANDINS:
            service = SERVICE_TEMPLATE.replace("$METRIC", name).replace("$DRY_RUN", "False")
            ct.write(f"/etc/systemd/system/run-metric-collector@{name}.service", service)
            ct.write(f"/etc/systemd/system/run-metric-collector@{name}.timer",
                     TIMER_TEMPLATE.replace("$METRIC", name))
        ct.sh("systemctl daemon-reload && systemctl enable --now "
              + " ".join(f"run-metric-collector@{n}.timer" for n in STANDINS))

    def _history(self):
        """A week of history, one point an hour per series, written once as
        the collector user: ending an hour before now for the stand-ins that
        write now's point, at the newest row's time for the others (whose
        stand-ins write that row)."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        plan = []
        for name, measurement in STANDINS.items():
            end = self.ends.get(name) or now
            times = [end - timedelta(hours=h) for h in range(HISTORY_HOURS, 0, -1)]
            self.history[measurement] = (times[0], end if self.ends.get(name) else None)
            plan.append({"series": self.series[name], "times": [ns(t) for t in times]})
        self.ct.write("/root/stage-history.json", json.dumps(plan), mode="0600")
        self.ct.write("/root/stage-history.py", HISTORY_WRITER, mode="0600")
        out = self.ct.sh(f"cd {REPO} && export PYTHONPATH={REPO} && set -a && . {INFLUX_CONF} && set +a && "
                         "python3 /root/stage-history.py /root/stage-history.json")
        log(f"[{self.ct.name}] history: {out.stderr.strip()}")

    # ---------------------------------------------------------- what it holds

    def history_range(self, measurement, until: datetime):
        """The time range of `measurement`'s history: its first point to its
        last (the newest row), or to `until` for the stand-ins writing now."""
        first, last = self.history[measurement]
        return first, last or until

    def counts(self, until: datetime):
        return {m: self.client.count(m, *self.history_range(m, until)) for m in STANDINS.values()}

    def totals(self):
        epoch = datetime(2000, 1, 1, tzinfo=timezone.utc)
        far = datetime.now(timezone.utc) + timedelta(days=3650)
        return {m: self.client.count(m, epoch, far) for m in STANDINS.values()}

    def old_units(self):
        """The run-metric-collector@ files in /etc/systemd/system."""
        d = self.ct.root / "etc/systemd/system"
        return sorted(p.name for p in d.glob("run-metric-collector@*"))

    def old_units_active(self):
        """The old units systemd still has active or activating."""
        out = self.ct.sh("systemctl list-units --all --no-legend --plain 'run-metric-collector@*'",
                         check=False).stdout
        return sorted(line.split()[0] for line in out.splitlines()
                      if len(line.split()) >= 4 and line.split()[2] in ("active", "activating", "reloading"))

    def stop_old(self):
        """Stops the old timers and waits out a run in progress."""
        self.ct.sh("systemctl stop 'run-metric-collector@*.timer'", check=False)
        wait_for("the old collectors' runs to end", lambda: not self.old_units_active(), timeout=120)


def snapshot(ct, dirs):
    """Every file and link under `dirs` of the container: path -> sha256
    (or the link's target)."""
    out = {}
    for d in dirs:
        base = ct.root / d.lstrip("/")
        for p in sorted(base.rglob("*")) if base.exists() else []:
            rel = "/" + str(p.relative_to(ct.root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def unit_starts(ct, patterns):
    """The units matching `patterns` that systemd has loaded: name ->
    (ActiveState, the monotonic time it last became active, its main PID).
    A restart changes the time."""
    out = ct.sh("systemctl list-units --all --no-legend --plain " + " ".join(f"'{p}'" for p in patterns),
                check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.split()]
    got = {}
    for name in names:
        p = ct.show(name, "ActiveState", "ActiveEnterTimestampMonotonic", "MainPID")
        got[name] = (p.get("ActiveState"), p.get("ActiveEnterTimestampMonotonic"), p.get("MainPID"))
    return got


# ------------------------------------------------------------ our charm

class CharmDriver:
    """Our charm's handlers inside container `ct` (charm_driver.py run with
    the container's python3 through nsenter): the charm's src/,
    charmcraft.yaml and tests/conftest.py (its `context()`), the host's
    charm virtual environment's site-packages (ops[testing], PyYAML: the
    same Python 3.11 as bookworm's), and our .deb as the charm's
    ubuntu-metrics.deb. The charm's stored state is kept between runs in
    the container (a JSON file), as Juju keeps it."""

    DIR = "/var/lib/stage-charm"

    def __init__(self, ct, charm_dir: Path, venv: Path, deb: Path):
        self.ct = ct
        site = sorted(venv.glob("lib/python3*/site-packages"))
        if not site:
            raise StageError(f"{venv}: no site-packages: run charm/run-tests once (it makes the "
                             "virtual environment with ops[testing] and PyYAML)")
        # Pure Python but for PyYAML's extension: the same minor version.
        theirs = ct.sh("python3 -c 'import sys; print(\"python%d.%d\" % sys.version_info[:2])'").stdout.strip()
        if site[0].parent.name != theirs:
            raise StageError(f"{site[0]} is for {site[0].parent.name}, the container has {theirs}: "
                             f"make {venv} with a {theirs} (PYTHON=... charm/run-tests)")
        dest = ct.root / self.DIR.lstrip("/")
        if dest.exists():
            shutil.rmtree(dest)
        junk = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(charm_dir / "src", dest / "src", ignore=junk)
        shutil.copy(charm_dir / "charmcraft.yaml", dest / "charmcraft.yaml")
        (dest / "tests").mkdir()
        shutil.copy(charm_dir / "tests/conftest.py", dest / "tests/conftest.py")
        shutil.copytree(site[0], dest / "site-packages",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "pip", "pip-*",
                                                      "_pytest", "pytest", "pytest-*", "setuptools",
                                                      "pkg_resources", "_distutils_hack"))
        shutil.copy(deb, dest / "ubuntu-metrics.deb")
        shutil.copy(Path(__file__).parent / "charm_driver.py", dest / "charm_driver.py")
        # apt takes the .deb's Depends from its archive cache as a machine
        # with a network would download them: the stage's cache, no network.
        ct.sh("cp /var/cache/stage-debs/*.deb /var/cache/apt/archives/")
        self.runs = []

    def run(self, event, config, *, params=None, secret=None, timeout=600):
        """Runs `event` (an event name, or `action:NAME`) with the charm's
        options `config`; `secret`: the content of the Juju secret the
        option influxdb-password-secret names (its id kept in the state).
        Returns the driver's answer (unit status, action results, the
        calls the stage's System recorded)."""
        args = {"event": event, "config": config, "params": params or {}, "secret": secret}
        self.ct.write(f"{self.DIR}/request.json", json.dumps(args), mode="0600")
        t = time.monotonic()
        p = self.ct.sh(f"cd {self.DIR} && python3 -B charm_driver.py request.json",
                       check=False, timeout=timeout)
        try:
            answer = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StageError(f"[{self.ct.name}] the charm driver ({event}) exited {p.returncode} "
                             f"without an answer:\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
        answer["seconds"] = round(time.monotonic() - t, 1)
        status = answer.get("status") or {}
        log(f"[{self.ct.name}] charm {event}: {status.get('name')} {status.get('message')!r}"
            + (f", action failed: {answer['action_failed']}" if answer.get("action_failed") else "")
            + (f", error: {answer['error']}" if answer.get("error") else "")
            + f" ({answer['seconds']} s)")
        self.runs.append((event, answer))
        return answer
