"""The charm's install and config-changed handlers on this machine, against
the real program (target/debug/ubuntu-metrics, or $UBUNTU_METRICS_BIN) and
a real influxd, in a temporary root.

Only the seam's package, snap, service and ownership calls are replaced:
`systemctl restart influxdb.service` restarts the test's influxd with the
influxdb.conf the charm edited. openssl and the program run for real.
"""

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import CHARM_DIR, context
from ops import testing

from charm import System, UbuntuMetricsCharm

REPO = CHARM_DIR.parent


def program_binary() -> Path:
    b = Path(os.environ.get("UBUNTU_METRICS_BIN") or REPO / "target/debug/ubuntu-metrics")
    if not b.is_file():
        pytest.fail(f"{b}: no ubuntu-metrics binary: run `cargo build` first, or set UBUNTU_METRICS_BIN")
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Influxd:
    """A real influxd whose influxdb.conf lives in the root, as the influxdb
    package leaves it: no authentication, plain HTTP."""

    def __init__(self, root: Path):
        exe = shutil.which("influxd") or "/usr/bin/influxd"
        if not Path(exe).exists():
            pytest.fail("influxd not found: apt install influxdb (./scripts/test does)")
        self.exe = exe
        self.root = root
        self.port = free_port()
        self.conf = root / "etc/influxdb/influxdb.conf"
        data = root / "var/lib/influxdb"
        self.conf.parent.mkdir(parents=True)
        self.conf.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{data}/meta"
  logging-enabled = false
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  # auth-enabled = false
  log-enabled = false
  # https-enabled = false
  # https-certificate = "/etc/ssl/influxdb.pem"
[continuous_queries]
  enabled = false
"""
        )
        self.log = root / "influxd.log"
        self.child = None
        self.restarts = 0

    def start(self):
        log = open(self.log, "ab")
        self.child = subprocess.Popen([self.exe, "-config", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                pytest.fail(f"influxd exited: {self.log.read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail("influxd does not listen")

    def stop(self):
        if self.child:
            self.child.kill()
            self.child.wait()
            self.child = None

    def restart(self):
        self.stop()
        self.restarts += 1
        self.start()

    def query(self, q: str, user=None, ca=None):
        """(HTTP status, JSON) of an InfluxQL statement over https, verifying
        the server against the charm's CA."""
        ctx = ssl.create_default_context(cafile=str(ca))
        data = urllib.parse.urlencode({"q": q, "db": "metrics"}).encode()
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/query", data=data)
        if user:
            import base64

            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


class FakeSystem(System):
    """The real System less the machine-wide parts."""

    def __init__(self, influxd: Influxd):
        self.influxd = influxd
        self.calls = []

    def apt_install(self, packages):
        self.calls.append(("apt", *packages))

    def install_deb(self, path):
        self.calls.append(("deb", str(path)))

    def snap_install(self, name):
        self.calls.append(("snap", name))

    def systemctl(self, *args):
        self.calls.append(("systemctl", *args))
        if args == ("restart", "influxdb.service"):
            self.influxd.restart()

    def chown(self, path, user, group):
        self.calls.append(("chown", str(path), user, group))


def run_sponsoring(root: Path, binary: Path) -> subprocess.CompletedProcess:
    """`run sponsoring` with the charm's configuration, its source served
    (as the fixture server does) from tests/fixtures/."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(REPO / "tests/fixtures"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        etc = root / "etc/ubuntu-metrics"
        config = root / "sponsoring.toml"
        config.write_text((etc / "config.toml").read_text() + (
            f'\n[sources]\nsponsoring = "http://127.0.0.1:{server.server_port}/sponsoring/general.json"\n'))
        env = {
            "PATH": os.environ["PATH"],
            "UBUNTU_METRICS_STATE_DIR": str(root / "var/lib/ubuntu-metrics"),
            "CREDENTIALS_DIRECTORY": str(etc),
        }
        return subprocess.run([binary, "--config", config, "run", "--now", "2026-11-24T12:00:00Z", "sponsoring"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()


@pytest.fixture()
def station(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    influxd = Influxd(root)
    influxd.start()
    system = FakeSystem(influxd)

    class Charm(UbuntuMetricsCharm):
        ROOT = root

        def make_system(self):
            return system

    yield root, influxd, system, context(Charm)
    influxd.stop()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def grants(influxd, admin, ca, user):
    status, v = influxd.query(f"SHOW GRANTS FOR {user}", admin, ca)
    assert status == 200, v
    return v["results"][0]["series"][0]["values"]


def test_a_local_station_from_scratch(station):
    root, influxd, system, ctx = station
    binary = program_binary()
    state = testing.State(
        leader=True,
        config={"intervals": "britney=10m,images=2h", "enabled": "versions=false", "retention": "52w"},
        resources=[testing.Resource(name="ubuntu-metrics", path=binary)],
    )
    state = ctx.run(ctx.on.install(), state)
    assert ("apt", "influxdb", "influxdb-client", "rsync", "distro-info-data") in system.calls
    assert ("snap", "grafana") in system.calls
    # The resource (a binary, not a .deb) is installed as the program.
    assert mode(root / "usr/bin/ubuntu-metrics") == 0o755
    assert state.workload_version

    started = time.monotonic()
    state = ctx.run(ctx.on.config_changed(), state)
    print(f"first config-changed: {time.monotonic() - started:.1f} s")
    # Nothing has run yet (the timers' first runs come later): waiting, not
    # "all fine" (status exit 3, UNKNOWN).
    assert state.unit_status == testing.WaitingStatus("9 collectors, nothing has run yet"), (
        state.unit_status, influxd.log.read_text()[-2000:])

    etc = root / "etc/ubuntu-metrics"
    ca = etc / "tls/ca.pem"
    # HTTPS and authentication on, with the charm's certificate.
    conf = influxd.conf.read_text()
    for line in ("auth-enabled = true", "https-enabled = true", f'https-certificate = "{etc}/tls/influxdb.pem"'):
        assert line in conf, conf
    assert influxd.restarts == 1
    assert mode(etc / "tls/influxdb.key") == 0o640 and mode(etc / "tls/ca.key") == 0o600
    assert ("chown", str(etc / "tls/influxdb.key"), "root", "influxdb") in system.calls

    # The rendered configuration: no secret, the CA verified.
    cfg = tomllib.loads((etc / "config.toml").read_text())
    assert mode(etc / "config.toml") == 0o644
    assert cfg["influxdb"] == {
        "url": f"https://127.0.0.1:{influxd.port}",
        "database": "metrics",
        "username": "collector",
        "ca_file": str(ca),
    }
    assert cfg["collectors"] == {
        "britney": {"interval": "10m"},
        "images": {"interval": "2h"},
        "versions": {"enabled": False},
    }
    assert not (etc / "config.toml.new").exists()

    # The database, its retention, the users and their rights.
    for user in ("admin", "collector", "grafana"):
        assert mode(etc / f"secrets/{user}-password") == 0o600
    admin = ("admin", (etc / "secrets/admin-password").read_text().strip())
    status, v = influxd.query("SHOW DATABASES", None, ca)
    assert status == 401, "authentication is on"
    status, v = influxd.query("SHOW DATABASES", admin, ca)
    assert ["metrics"] in v["results"][0]["series"][0]["values"]
    status, v = influxd.query("SHOW USERS", admin, ca)
    users = {row[0]: row[1] for row in v["results"][0]["series"][0]["values"]}
    assert users == {"admin": True, "collector": False, "grafana": False}
    assert grants(influxd, admin, ca, "collector") == [["metrics", "WRITE"]]
    assert grants(influxd, admin, ca, "grafana") == [["metrics", "READ"]]
    status, v = influxd.query("SHOW RETENTION POLICIES ON metrics", admin, ca)
    assert v["results"][0]["series"][0]["values"][0][1] == "8736h0m0s"
    # The services' credential is the collector's password.
    collector_pw = (etc / "secrets/collector-password").read_text().strip()
    assert (etc / "influxdb-password").read_text().strip() == collector_pw
    assert mode(etc / "influxdb-password") == 0o600

    # Grafana: dashboards, data source (trusting the CA), alert rules.
    prov = root / "var/snap/grafana/common/provisioning"
    boards = sorted(p.name for p in (prov / "dashboards/ubuntu-metrics").glob("*.json"))
    assert len(boards) == 4, boards
    ds = (prov / "datasources/ubuntu-metrics.yaml").read_text()
    assert f"url: \"https://127.0.0.1:{influxd.port}\"" in ds and "tlsAuthWithCACert: true" in ds
    assert ca.read_text().splitlines()[1] in ds
    assert (prov / "alerting/ubuntu-metrics.yaml").exists()
    assert f"path: \"{prov}/dashboards/ubuntu-metrics\"" in (prov / "dashboards/ubuntu-metrics.yaml").read_text()
    grafana_pw = (etc / "secrets/grafana-password").read_text().strip()
    assert (etc / "grafana.env").read_text() == f'INFLUXDB_GRAFANA_PASSWORD="{grafana_pw}"\n'
    assert mode(etc / "grafana.env") == 0o600
    dropin = (root / "etc/systemd/system/snap.grafana.grafana.service.d/ubuntu-metrics.conf").read_text()
    assert "Environment=GF_AUTH_ANONYMOUS_ENABLED=true" in dropin

    # The units: a timer per enabled collector, the service with the credential.
    units = root / "etc/systemd/system"
    timers = sorted(p.name for p in units.glob("ubuntu-metrics-*.timer"))
    assert len(timers) == 9 and "ubuntu-metrics-versions.timer" not in timers
    britney = (units / "ubuntu-metrics-britney.timer").read_text()
    # The first generation's timer semantics.
    for line in ("OnBootSec=30s", "OnUnitInactiveSec=10m", "RandomizedDelaySec=1m", "FixedRandomDelay=yes"):
        assert line in britney.splitlines(), britney
    assert "OnUnitInactiveSec=2h" in (units / "ubuntu-metrics-images.timer").read_text()
    assert (units / "timers.target.wants/ubuntu-metrics-britney.timer").is_symlink()
    service = (units / "ubuntu-metrics@.service").read_text()
    assert "RuntimeMaxSec=10m" in service.splitlines() and "DynamicUser=yes" in service.splitlines()
    assert f"ExecStart={root}/usr/bin/ubuntu-metrics --config {etc}/config.toml run %i" in service
    # The credential's path is the program's constant (the real one).
    assert "LoadCredential=influxdb-password:/etc/ubuntu-metrics/influxdb-password" in service
    assert ("systemctl", "enable", "--now", *timers) in system.calls
    assert ("systemctl", "restart", "snap.grafana.grafana.service") in system.calls
    assert ("systemctl", "restart", "influxdb.service") in system.calls

    # The action gives the grafana user's credentials, which read the database.
    ctx.run(ctx.on.action("get-influxdb-grafana-password"), state)
    results = ctx.action_results
    assert results == {"username": "grafana", "password": grafana_pw}
    status, _ = influxd.query("SHOW MEASUREMENTS", ("grafana", grafana_pw), ca)
    assert status == 200
    status, v = influxd.query("CREATE DATABASE nope", ("grafana", grafana_pw), ca)
    assert "error" in json.dumps(v)

    # spool-flush through the real program, with the services' credential.
    ctx.run(ctx.on.action("spool-flush"), state)
    assert "the spool is empty" in ctx.action_results["output"]

    # The station takes the collectors' writes: a collector run as the
    # services run it (the credential from $CREDENTIALS_DIRECTORY), with its
    # source served from the repository's fixtures, writes over verified
    # https as the collector user; the charm's status then says it ran.
    written = run_sponsoring(root, binary)
    assert written.returncode == 0, written.stderr
    status, v = influxd.query("SELECT count(*) FROM sponsoring_queue_stats", admin, ca)
    assert v["results"][0]["series"][0]["values"][0][1] > 0, v
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.ActiveStatus("9 collectors, all fine")
    report = json.loads(subprocess.run(
        [binary, "--config", etc / "config.toml", "status", "--format", "json"], capture_output=True, text=True,
        env={"PATH": os.environ["PATH"], "UBUNTU_METRICS_STATE_DIR": str(root / "var/lib/ubuntu-metrics")}).stdout)
    assert [c["last_run"]["result"] for c in report["collectors"] if c["name"] == "sponsoring"] == ["ok"]

    # Again: nothing changes, nothing restarts.
    before = list(system.calls)
    state = ctx.run(ctx.on.config_changed(), state)
    assert state.unit_status == testing.ActiveStatus("9 collectors, all fine")
    assert system.calls == before, system.calls[len(before):]
    assert influxd.restarts == 1

    # A bad value: blocked with the program's message, nothing applied.
    config_before = (etc / "config.toml").read_text()
    units_before = {p.name: p.read_text() for p in units.glob("ubuntu-metrics*")}
    state = ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, config={**state.config, "intervals": "britney=0s", "enabled": "images=false"},
        stored_states=state.stored_states, resources=state.resources))
    assert isinstance(state.unit_status, testing.BlockedStatus)
    assert "collectors.britney.interval" in state.unit_status.message, state.unit_status.message
    assert "at least 1s" in state.unit_status.message
    assert (etc / "config.toml").read_text() == config_before
    assert {p.name: p.read_text() for p in units.glob("ubuntu-metrics*")} == units_before
    assert system.calls == before
    state = ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, config={**state.config, "intervals": "nope=5m"},
        stored_states=state.stored_states, resources=state.resources))
    assert "unknown collector [collectors.nope]" in state.unit_status.message
    state = ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, config={**state.config, "intervals": "", "enabled": "images=maybe"},
        stored_states=state.stored_states, resources=state.resources))
    assert state.unit_status.message.endswith('invalid type: string "maybe", expected a boolean'), (
        state.unit_status.message)
    state = ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, config={**state.config, "intervals": "", "enabled": "versions=false", "retention": "5m"},
        stored_states=state.stored_states, resources=state.resources))
    assert "retention" in state.unit_status.message and "1h" in state.unit_status.message
    assert (etc / "config.toml").read_text() == config_before
    assert system.calls == before

    # The daemon instead: the timers go, the daemon is enabled.
    state = ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, config={"mode": "daemon", "retention": "52w"},
        stored_states=state.stored_states, resources=state.resources))
    assert state.unit_status == testing.ActiveStatus("10 collectors, all fine"), state.unit_status
    assert not list(units.glob("ubuntu-metrics*"))
    new = system.calls[len(before):]
    assert ("systemctl", "disable", "--now", *timers) in new
    assert ("systemctl", "enable", "--now", "ubuntu-metrics.service") in new
    assert ("systemctl", "restart", "influxdb.service") not in new
    assert tomllib.loads((etc / "config.toml").read_text())["daemon"] == {"listen": "127.0.0.1:9273"}
