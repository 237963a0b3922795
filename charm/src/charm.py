#!/usr/bin/env python3
"""The ubuntu-metrics machine charm: a thin layer over the program's commands.

Every decision the program can make is left to it: the configuration is
checked with `ubuntu-metrics config show`, InfluxDB is set up with
`influxdb provision`, Grafana's files come from `dashboards export`, the
timers from `systemd install`, the unit's status from `status --format
json`. The charm renders the configuration from its options, sets up TLS
and authentication on the local InfluxDB, and starts what changed.

Everything that changes the machine beyond the files under `ROOT`
(packages, snaps, services, file ownership, openssl, running the program)
goes through one seam, `System`, which the tests replace.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import ops

import first_generation as fg

logger = logging.getLogger(__name__)

APT_PACKAGES = ["influxdb", "influxdb-client", "rsync", "distro-info-data"]
GRAFANA_SNAP = "grafana"
GRAFANA_PORT = 3000
GRAFANA_SERVICE = "snap.grafana.grafana.service"
INFLUXDB_SERVICE = "influxdb.service"
DAEMON_SERVICE = "ubuntu-metrics.service"
# The daemon's health endpoint (mode=daemon), scraped through cos-agent.
HEALTH_LISTEN = "127.0.0.1:9273"
MODES = ("timers", "daemon")
LOCAL_GRAFANA_USER = "grafana"
LOCAL_COLLECTOR_USER = "collector"

# Every action the charm declares, and the method that runs it (a unit test
# checks this against charmcraft.yaml, both ways).
ACTIONS = {
    "get-influxdb-grafana-password": "_on_get_grafana_password",
    "run-collector": "_on_run_collector",
    "spool-status": "_on_spool_status",
    "spool-flush": "_on_spool_flush",
}


class Failure(Exception):
    """A step failed: the unit is blocked with this message."""


@dataclass
class Result:
    """What a command returned."""

    code: int
    stdout: str
    stderr: str


# The program's exit status for "not as this user" (README, Exit statuses).
EXIT_NOPERM = 77

class System:
    """The one seam: every side effect beyond the files under the root.

    Packages, the snap, services, ownership, openssl and the program itself
    are run from here; the unit tests replace all of it, the integration
    test replaces the package and service parts and keeps the program and
    openssl.
    """

    def _run(self, argv: list[str], env: dict | None = None, cwd: Path | None = None) -> None:
        logger.info("running %s", " ".join(argv))
        r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            raise Failure(f"{argv[0]} {' '.join(argv[1:3])} failed: {last_line(r.stderr or r.stdout)}")

    def apt_install(self, packages: list[str]) -> None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        self._run(["apt-get", "update", "-q"], env=env)
        self._run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)

    def install_deb(self, path: Path) -> None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        self._run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(path)], env=env)

    def snap_install(self, name: str) -> None:
        self._run(["snap", "install", name])

    def systemctl(self, *args: str) -> None:
        self._run(["systemctl", *args])

    def chown(self, path: Path, user: str, group: str) -> None:
        shutil.chown(path, user, group)

    def openssl(self, args: list[str], cwd: Path) -> None:
        self._run(["openssl", *args], cwd=cwd)

    @staticmethod
    def tls_context(cafile: Path, pinned: bool) -> ssl.SSLContext:
        """Verifies InfluxDB against `cafile`; `pinned`: the file is the
        server's own self-signed certificate (the first generation's),
        trusted as that exact certificate whatever names it carries, as the
        program does."""
        ctx = ssl.create_default_context(cafile=str(cafile))
        if pinned:
            ctx.check_hostname = False
        return ctx

    def ping(self, url: str, cafile: Path, timeout: float, pinned: bool = False) -> str | None:
        """Waits until InfluxDB answers `url` (verified against `cafile`):
        None, else the last error."""
        ctx = self.tls_context(cafile, pinned)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                    if r.status == 204:
                        return None
            except (urllib.error.URLError, OSError) as e:
                last = str(getattr(e, "reason", e))
            time.sleep(0.2)
        return last

    def influx_query(self, url: str, cafile: Path, pinned: bool, user: str, password: str, q: str) -> dict:
        """The JSON answer of InfluxDB's /query to the statements `q`
        (database metrics), as `user`."""
        import base64

        data = urllib.parse.urlencode({"q": q, "db": "metrics"}).encode()
        req = urllib.request.Request(f"{url}/query", data=data)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(req, context=self.tls_context(cafile, pinned), timeout=30) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise Failure(f"InfluxDB {url}: {q}: {getattr(e, 'reason', e)}") from None

    def unit_active(self, unit: str) -> bool:
        """Whether `unit` is active (or activating, or reloading)."""
        r = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True)
        return r.stdout.strip() in ("active", "activating", "reloading", "deactivating")

    def program(self, binary: Path, args: list[str], env: dict) -> Result:
        try:
            r = subprocess.run(
                [str(binary), *args], env=env, capture_output=True, text=True, timeout=900
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return Result(127, "", f"ubuntu-metrics: cannot run {binary}: {e}\n")
        return Result(r.returncode, r.stdout, r.stderr)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT")


def program_message(stderr: str) -> str:
    """The program's own message: its `ubuntu-metrics: ...` lines (less the
    prefix), each with the explanation ending a multi-line error (a TOML
    parse error's last line); else clap's `error: ...`; else the last line."""
    msgs: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("ubuntu-metrics: "):
            msgs.append(line[len("ubuntu-metrics: ") :].strip().removeprefix("configuration error: "))
        elif (
            msgs
            and line.strip()
            and not line[0].isspace()
            and "|" not in line
            and not LOG_LINE.match(line)
        ):
            msgs[-1] += ": " + line.strip()
        elif line.startswith("error: ") and not msgs:  # clap
            return line[len("error: ") :].strip()
    return "; ".join(msgs) if msgs else last_line(stderr)


class Paths:
    """Every path the charm writes or reads, under a root (`/` for real)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        r = self.root
        self.etc = r / "etc/ubuntu-metrics"
        self.config = self.etc / "config.toml"
        self.candidate = self.etc / "config.toml.new"
        self.secrets = self.etc / "secrets"
        self.password = self.etc / "influxdb-password"
        self.external_ca = self.etc / "influxdb-ca.pem"
        self.grafana_env = self.etc / "grafana.env"
        self.tls = self.etc / "tls"
        self.ca = self.tls / "ca.pem"
        self.cert = self.tls / "influxdb.pem"
        self.key = self.tls / "influxdb.key"
        self.influxdb_conf = r / "etc/influxdb/influxdb.conf"
        self.state = r / "var/lib/ubuntu-metrics"
        self.units = r / "etc/systemd/system"
        self.dry_run_dropin = self.units / "ubuntu-metrics@.service.d/dry-run.conf"
        self.grafana_dropin = self.units / f"{GRAFANA_SERVICE}.d/ubuntu-metrics.conf"
        # Grafana is a strict snap: it reads its provisioning from $SNAP_COMMON.
        self.grafana_provisioning = r / "var/snap/grafana/common/provisioning"
        self.binary = r / "usr/bin/ubuntu-metrics"
        # The move from the first generation's charm (first_generation.py).
        self.first_generation = self.etc / "first-generation.json"

    def seen(self, p: Path) -> Path:
        """`p` as the real system names it (the root taken off)."""
        return Path("/") / p.relative_to(self.root)


@dataclass
class Options:
    mode: str = "timers"
    dry_run: bool = False
    retention: str = ""
    intervals: dict = field(default_factory=dict)
    enabled: dict = field(default_factory=dict)
    grafana_anonymous: bool = True
    url: str = ""
    database: str = "metrics"
    user: str = ""
    password_secret: str = ""
    ca_cert: str = ""
    sources: dict = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return bool(self.url)


def parse_pairs(option: str, text: str) -> dict:
    """`NAME=VALUE` pairs separated by spaces or commas; the values are the
    program's to judge."""
    out: dict = {}
    for token in re.split(r"[\s,]+", text.strip()):
        if not token:
            continue
        name, eq, value = token.partition("=")
        if not eq or not name or not value:
            raise Failure(f"option {option}: {token!r} is not NAME=VALUE (e.g. \"britney=10m images=1h\")")
        out[name.replace("-", "_")] = value
    return out


def read_options(config) -> Options:
    """The charm's options (every one of charmcraft.yaml's, read here)."""
    o = Options(
        mode=str(config["mode"]).strip(),
        dry_run=bool(config["dry_run"]),
        retention=str(config["retention"]).strip(),
        intervals=parse_pairs("intervals", str(config["intervals"])),
        enabled=parse_pairs("enabled", str(config["enabled"])),
        grafana_anonymous=bool(config["grafana-anonymous"]),
        url=str(config["influxdb-url"]).strip(),
        database=str(config["influxdb-database"]).strip(),
        user=str(config["influxdb-user"]).strip(),
        password_secret=str(config.get("influxdb-password-secret") or "").strip(),
        ca_cert=str(config["influxdb-ca-cert"]).strip(),
        sources=parse_pairs("sources", str(config["sources"])),
    )
    if o.mode not in MODES:
        raise Failure(f"option mode: {o.mode!r}: use timers or daemon")
    if o.dry_run and o.mode == "daemon":
        raise Failure("option dry_run needs mode=timers: the daemon has no dry run")
    if o.external:
        if not o.user:
            raise Failure("option influxdb-url is set: set influxdb-user too")
        if not o.password_secret:
            raise Failure("option influxdb-url is set: set influxdb-password-secret (a Juju secret with the key password)")
        if o.retention:
            raise Failure("option retention applies to the local InfluxDB only: unset it with an external influxdb-url")
    if o.ca_cert and "-----BEGIN CERTIFICATE-----" not in o.ca_cert:
        raise Failure("option influxdb-ca-cert: not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    return o


def toml_str(s: str) -> str:
    # JSON's escapes (with ensure_ascii) are valid in a TOML basic string.
    return json.dumps(s)


def toml_value(v: str) -> str:
    return v if v in ("true", "false") else toml_str(v)


def render_config(o: Options, url: str, user: str, ca_file: Path | None,
                  catch_up_from: dict | None = None) -> str:
    """The configuration the program reads: no secret in it (the password
    is the systemd credential `influxdb-password`). `catch_up_from`:
    collector -> time its first run catches up from (a station taken over
    from the first generation)."""
    catch_up_from = catch_up_from or {}
    out = [
        "# Written by the ubuntu-metrics charm from its options: change them with",
        "# `juju config`, not here. The password is /etc/ubuntu-metrics/influxdb-password",
        "# (mode 0600), handed to the services with LoadCredential=.",
        "[influxdb]",
        f"url = {toml_str(url)}",
        f"database = {toml_str(o.database)}",
        f"username = {toml_str(user)}",
    ]
    if ca_file:
        out.append(f"ca_file = {toml_str(str(ca_file))}")
    if o.mode == "daemon":
        out += ["", "[daemon]", f"listen = {toml_str(HEALTH_LISTEN)}"]
    if o.sources:
        out += ["", "[sources]"]
        out += [f"{toml_str(name)} = {toml_str(url)}" for name, url in sorted(o.sources.items())]
    for name in sorted(set(o.intervals) | set(o.enabled) | set(catch_up_from)):
        out += ["", f"[collectors.{toml_str(name)}]"]
        if name in o.intervals:
            out.append(f"interval = {toml_str(o.intervals[name])}")
        if name in o.enabled:
            out.append(f"enabled = {toml_value(o.enabled[name])}")
        if name in catch_up_from:
            out.append(f"catch_up_from = {toml_str(catch_up_from[name])}")
    return "\n".join(out) + "\n"


def write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Writes `text` (atomically, with `mode`) unless it is there already."""
    if path.exists() and path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp~")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def fingerprint(paths) -> dict:
    out = {}
    for p in paths:
        if p.is_symlink():
            out[str(p)] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def tree(d: Path) -> list:
    return sorted(p for p in d.rglob("*")) if d.exists() else []


def set_section_keys(text: str, section: str, values: dict) -> str:
    """`text` (influxdb.conf) with `key = value` set in `[section]`: an
    existing line (commented out or not) is replaced, else one is added."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == f"[{section}]"), None)
    if start is None:
        lines += ["", f"[{section}]"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    for key, value in values.items():
        pat = re.compile(rf"^\s*#?\s*{re.escape(key)}\s*=")
        hit = next((i for i in range(start + 1, end) if pat.match(lines[i])), None)
        line = f"  {key} = {value}"
        if hit is None:
            lines.insert(start + 1, line)
            end += 1
        else:
            lines[hit] = line
    return "\n".join(lines) + "\n"


def section_value(text: str, section: str, key: str) -> str | None:
    current = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            current = s.strip("[]")
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", s):
            return s.split("=", 1)[1].strip().strip('"')
    return None


class UbuntuMetricsCharm(ops.CharmBase):
    """The station: InfluxDB, Grafana and the collectors on one machine."""

    ROOT = Path("/")
    # The program; None: the root's /usr/bin/ubuntu-metrics.
    BINARY: Path | None = None
    # How long to wait for InfluxDB after its restart.
    PING_TIMEOUT = 60.0
    # How long a first-generation collector's run under way is let finish
    # when the station is taken over (its units' RuntimeMaxSec).
    OLD_RUN_TIMEOUT = 600.0
    # Failed runs of ours in a row after which the first generation's
    # collector runs again, until ours writes its first points.
    FALLBACK_FAILURES = 2

    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._stored.set_default(installed=False, configured=False, blocked="", mode="")
        self.paths = Paths(self.ROOT)
        self.system = self.make_system()
        on = self.on
        framework.observe(on.install, self._on_install)
        framework.observe(on.upgrade_charm, self._on_upgrade_charm)
        framework.observe(on.config_changed, self._on_config_changed)
        framework.observe(on.start, self._on_start)
        framework.observe(on.update_status, self._on_update_status)
        framework.observe(on.secret_changed, self._on_config_changed)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on["ingress"].relation_joined, self._on_config_changed)
        framework.observe(on["ingress"].relation_changed, self._on_config_changed)
        framework.observe(on["ingress"].relation_broken, self._on_config_changed)
        framework.observe(on["cos-agent"].relation_joined, self._on_cos_agent)
        framework.observe(on["cos-agent"].relation_changed, self._on_cos_agent)
        for action, method in ACTIONS.items():
            framework.observe(on[action].action, getattr(self, method))

    def make_system(self) -> System:
        return System()

    @property
    def binary(self) -> Path:
        return self.BINARY or self.paths.binary

    # The program ------------------------------------------------------------

    def env(self) -> dict:
        """The program's environment: the services' state directory, and the
        password credential where the services get it."""
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
            "UBUNTU_METRICS_STATE_DIR": str(self.paths.state),
            "CREDENTIALS_DIRECTORY": str(self.paths.etc),
        }

    def program(self, *args: str, config: Path | None = None) -> Result:
        argv = ["--config", str(config or self.paths.config), *args]
        return self.system.program(self.binary, argv, self.env())

    # Install ----------------------------------------------------------------

    def _on_install(self, event):
        self._install()

    def _on_upgrade_charm(self, event):
        self._install()

    def _install(self) -> bool:
        try:
            self.unit.status = ops.MaintenanceStatus("installing " + ", ".join(APT_PACKAGES))
            self.system.apt_install(APT_PACKAGES)
            self.unit.status = ops.MaintenanceStatus("installing grafana (snap)")
            self.system.snap_install(GRAFANA_SNAP)
            self.unit.status = ops.MaintenanceStatus("installing ubuntu-metrics")
            self._install_program()
        except Failure as e:
            self._block(f"install failed: {e}")
            return False
        self._stored.installed = True
        if self._stored.blocked.startswith("install failed"):
            self._stored.blocked = ""
        return True

    def _resource(self) -> Path | None:
        try:
            path = self.model.resources.fetch("ubuntu-metrics")
        except (ops.ModelError, NameError):
            return None
        return path if path.exists() and path.stat().st_size > 0 else None

    def _install_program(self) -> None:
        bundled = self.charm_dir / "ubuntu-metrics.deb"
        resource = self._resource()
        before = fingerprint([self.binary])
        if not bundled.exists() and resource is None:
            raise Failure("no ubuntu-metrics.deb in the charm and no ubuntu-metrics resource: attach one (juju attach-resource)")
        if bundled.exists():
            self.system.install_deb(bundled)
        if resource is not None:
            with open(resource, "rb") as f:
                is_deb = f.read(8) == b"!<arch>\n"
            if is_deb:
                # apt takes a local package by its .deb name only.
                deb = self.paths.root / "var/cache/ubuntu-metrics/ubuntu-metrics-resource.deb"
                deb.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(resource, deb)
                self.system.install_deb(deb)
            else:
                # Renamed into place: the running daemon keeps its file.
                self.paths.binary.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.paths.binary.with_name("ubuntu-metrics.new~")
                shutil.copyfile(resource, tmp)
                os.chmod(tmp, 0o755)
                os.replace(tmp, self.paths.binary)
        r = self.system.program(self.binary, ["--version"], self.env())
        if r.code != 0:
            raise Failure(f"ubuntu-metrics --version: {last_line(r.stderr)}")
        self.unit.set_workload_version(r.stdout.split()[-1] if r.stdout.split() else "")
        if self._stored.mode == "daemon" and fingerprint([self.binary]) != before:
            # A new program: the daemon runs it from now on (timers start
            # the binary at each run).
            self.system.systemctl("restart", DAEMON_SERVICE)

    # Configure --------------------------------------------------------------

    def _on_start(self, event):
        pass

    def _on_update_status(self, event):
        # collect-unit-status says how the station is; a move from the
        # first generation goes on until ours have written their points.
        if self._stored.configured and not self._stored.blocked:
            try:
                self._adoption_progress()
            except Failure as e:
                logger.warning("moving the first generation's station: %s", e)

    def _on_config_changed(self, event):
        if not self._stored.installed and not self._install():
            return
        try:
            self._configure()
        except Failure as e:
            self._block(str(e))
            return
        self._stored.blocked = ""
        self._stored.configured = True

    def _block(self, message: str) -> None:
        logger.error("blocked: %s", message)
        self._stored.blocked = message
        self.unit.status = ops.BlockedStatus(message)

    def _secret(self, o: Options) -> dict:
        try:
            secret = self.model.get_secret(id=o.password_secret)
            content = secret.get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError) as e:
            raise Failure(
                f"option influxdb-password-secret: cannot read the secret ({type(e).__name__}): "
                "grant it to this application (juju grant-secret)"
            ) from None
        if not content.get("password"):
            raise Failure("option influxdb-password-secret: the secret has no key password")
        return content

    def _check(self, o: Options, text: str) -> None:
        """The program checks the candidate configuration (and the retention);
        nothing is applied when it refuses."""
        p = self.paths
        p.etc.mkdir(parents=True, exist_ok=True)
        write_if_changed(p.candidate, text, 0o644)
        try:
            r = self.program("config", "show", config=p.candidate)
            if r.code != 0:
                msg = program_message(r.stderr).replace(str(p.candidate), str(p.config))
                raise Failure(f"invalid configuration: {msg}")
            if o.retention and not o.external:
                r = self.program("influxdb", "provision", "--retention", o.retention, "--help", config=p.candidate)
                if r.code != 0:
                    raise Failure(f"option retention: {program_message(r.stderr)}")
        except Failure:
            remove(p.candidate)
            raise

    def _configure(self) -> None:
        p = self.paths
        self.unit.status = ops.MaintenanceStatus("checking the configuration")
        o = read_options(self.config)
        secret = self._secret(o) if o.external else {}
        if o.external:
            url, user = o.url, o.user
            ca_file = p.external_ca if o.ca_cert else None
        else:
            port = self._local_port()
            ca_file, pinned = self._influxdb_trust()
            url, user = f"https://127.0.0.1:{port}", LOCAL_COLLECTOR_USER
        # A first-generation station not taken over yet: where our first
        # catch-up runs start (asked before anything changes).
        adoption = None if o.external else self._adoption_plan(url, ca_file, pinned)
        record = fg.Record(p.first_generation)
        catch_up_from = adoption["catch_up_from"] if adoption else record.catch_up_from
        text = render_config(o, url, user, ca_file, None if o.external else catch_up_from)
        self._check(o, text)
        try:
            self._apply(o, secret, user, adoption)
        finally:
            remove(self.paths.candidate)

    def _apply(self, o: Options, secret: dict, user: str, adoption: dict | None = None) -> None:
        """Applies a checked configuration (the candidate file)."""
        p = self.paths
        old_config = p.config.read_text() if p.config.exists() else None
        if o.external:
            if o.ca_cert:
                write_if_changed(p.external_ca, o.ca_cert.strip() + "\n", 0o644)
            else:
                remove(p.external_ca)
            os.replace(p.candidate, p.config)
            password = secret["password"]
            grafana_user = secret.get("grafana-username") or user
            grafana_password = secret.get("grafana-password") or password
        else:
            self._setup_local_influxdb()
            os.replace(p.candidate, p.config)
            self.unit.status = ops.MaintenanceStatus("provisioning InfluxDB")
            args = ["influxdb", "provision", "--secrets-dir", str(p.secrets)]
            if o.retention:
                args += ["--retention", o.retention]
            r = self.program(*args)
            if r.code != 0:
                raise Failure(program_message(r.stderr))  # "influxdb provision: ..."
            password = (p.secrets / f"{LOCAL_COLLECTOR_USER}-password").read_text().strip()
            grafana_user = LOCAL_GRAFANA_USER
            grafana_password = (p.secrets / f"{LOCAL_GRAFANA_USER}-password").read_text().strip()
        os.chmod(p.config, 0o644)
        config_changed = old_config != p.config.read_text()
        password_changed = write_if_changed(p.password, password + "\n", 0o600)

        self._setup_grafana(o, grafana_user, grafana_password)
        if adoption:
            self._adoption_stop_old(adoption)
        self._schedule(o, config_changed, password_changed)
        if not o.external:
            self._adoption_progress()
        self.unit.set_ports(GRAFANA_PORT)
        self._publish_ingress()
        self._publish_cos_agent()
        self._stored.mode = o.mode

    def _local_port(self) -> int:
        conf = self.paths.influxdb_conf
        text = conf.read_text() if conf.exists() else ""
        bind = section_value(text, "http", "bind-address") or ":8086"
        try:
            return int(bind.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            raise Failure(f"{self.paths.seen(conf)}: [http] bind-address {bind!r}: no port") from None

    def _setup_local_influxdb(self) -> None:
        """Authentication and HTTPS, with a certificate signed by a CA of
        the charm's (the program verifies it through influxdb.ca_file)."""
        p = self.paths
        self.unit.status = ops.MaintenanceStatus("setting up InfluxDB's HTTPS and authentication")
        changed = False
        conf = p.influxdb_conf
        if not conf.exists():
            raise Failure(f"{p.seen(conf)} is missing: is the influxdb package installed?")
        text = conf.read_text()
        ca_file, pinned = self._influxdb_trust()
        if pinned:
            # A certificate of the first generation's: kept as it is, so that
            # every client of this InfluxDB (Grafana's data source set by
            # hand) goes on working; the program trusts it pinned.
            keys = {"auth-enabled": "true"}
        else:
            if not (p.ca.exists() and p.cert.exists() and p.key.exists()):
                self._make_certificates()
                changed = True
            keys = {
                "auth-enabled": "true",
                "https-enabled": "true",
                "https-certificate": toml_str(str(p.cert)),
                "https-private-key": toml_str(str(p.key)),
            }
        new = set_section_keys(text, "http", keys)
        if new != text:
            write_if_changed(conf, new, conf.stat().st_mode & 0o777)
            changed = True
        if changed:
            self.system.systemctl("enable", INFLUXDB_SERVICE)
            self.system.systemctl("restart", INFLUXDB_SERVICE)
        self._wait_for_influxdb(self._local_port())

    def _influxdb_trust(self) -> tuple[Path, bool]:
        """What the program verifies the local InfluxDB against: the
        charm's CA, or (pinned) the server certificate InfluxDB already
        serves when that is not the charm's (the first generation's
        self-signed `/etc/ssl/influxdb-selfsigned.crt`)."""
        p = self.paths
        conf = p.influxdb_conf
        text = conf.read_text() if conf.exists() else ""
        enabled = (section_value(text, "http", "https-enabled") or "").lower() == "true"
        cert = section_value(text, "http", "https-certificate") or ""
        if enabled and cert.startswith("/"):
            path = p.root / cert.lstrip("/")
            if path != p.cert and path.is_file():
                return path, True
        return p.ca, False

    def _make_certificates(self) -> None:
        """The openssl commands the program recommends (a CA, and a server
        certificate it signs: TLS refuses a CA as a server's certificate)."""
        p = self.paths
        p.tls.mkdir(parents=True, exist_ok=True)
        os.chmod(p.tls, 0o755)
        umask = os.umask(0o077)  # the keys are never readable by others
        try:
            self._openssl_ca_and_certificate()
        finally:
            os.umask(umask)

    def _openssl_ca_and_certificate(self) -> None:
        p = self.paths
        host = socket.getfqdn()
        san = f"DNS:localhost,IP:127.0.0.1,IP:::1,DNS:{host}"
        ssl_ = self.system.openssl
        ssl_(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
              "/CN=ubuntu-metrics InfluxDB CA", "-keyout", "ca.key", "-out", "ca.pem"], p.tls)
        ssl_(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
              "-keyout", "influxdb.key", "-out", "influxdb.csr"], p.tls)
        (p.tls / "influxdb.ext").write_text(f"basicConstraints=CA:FALSE\nsubjectAltName={san}\n")
        ssl_(["x509", "-req", "-in", "influxdb.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-days", "3650", "-extfile", "influxdb.ext", "-out", "influxdb.pem"], p.tls)
        for name in ("influxdb.csr", "influxdb.ext", "ca.srl"):
            remove(p.tls / name)
        os.chmod(p.tls / "ca.key", 0o600)
        os.chmod(p.ca, 0o644)
        os.chmod(p.cert, 0o644)
        # influxd runs as the user influxdb: it reads its key through the group.
        os.chmod(p.key, 0o640)
        self.system.chown(p.key, "root", "influxdb")

    def _wait_for_influxdb(self, port: int) -> None:
        url = f"https://127.0.0.1:{port}/ping"
        ca_file, pinned = self._influxdb_trust()
        error = self.system.ping(url, ca_file, self.PING_TIMEOUT, pinned)
        if error is not None:
            raise Failure(f"InfluxDB does not answer {url} ({error}) {self.PING_TIMEOUT:.0f} s after its restart")

    def _ingress_url(self) -> str:
        rel = self.model.get_relation("ingress")
        if not rel or not rel.app:
            return ""
        try:
            return json.loads(rel.data[rel.app].get("ingress", "{}")).get("url", "")
        except (ValueError, AttributeError):
            return ""

    def _setup_grafana(self, o: Options, user: str, password: str) -> None:
        p = self.paths
        self.unit.status = ops.MaintenanceStatus("exporting the dashboards to Grafana")
        before = fingerprint(tree(p.grafana_provisioning))
        r = self.program(
            "dashboards", "export", str(p.grafana_provisioning),
            "--user", user,
            "--dashboards-path", str(p.grafana_provisioning / "dashboards/ubuntu-metrics"),
            # Grafana (Go) cannot verify a certificate without the names of
            # 127.0.0.1 (the first generation's, kept): InfluxDB is on loopback.
            *(["--tls-skip-verify"] if not o.external and self._influxdb_trust()[1] else []),
        )
        if r.code != 0:
            raise Failure(program_message(r.stderr))  # "dashboards export: ..."
        changed = before != fingerprint(tree(p.grafana_provisioning))
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        changed |= write_if_changed(p.grafana_env, f'INFLUXDB_GRAFANA_PASSWORD="{quoted}"\n', 0o600)
        env = [
            f"GF_PATHS_PROVISIONING={p.grafana_provisioning}",
            f"GF_AUTH_ANONYMOUS_ENABLED={'true' if o.grafana_anonymous else 'false'}",
            "GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer",
        ]
        ingress = self._ingress_url()
        if ingress:
            env += [f"GF_SERVER_ROOT_URL={ingress}", "GF_SERVER_SERVE_FROM_SUB_PATH=true"]
        dropin = (
            "# Written by the ubuntu-metrics charm.\n[Service]\n"
            f"EnvironmentFile={p.grafana_env}\n"
            + "".join(f"Environment={e}\n" for e in env)
        )
        dropin_changed = write_if_changed(p.grafana_dropin, dropin, 0o644)
        if dropin_changed:
            self.system.systemctl("daemon-reload")
        if changed or dropin_changed:
            self.system.systemctl("restart", GRAFANA_SERVICE)

    def _unit_files(self) -> list:
        u = self.paths.units
        files = [u / "ubuntu-metrics@.service", self.paths.dry_run_dropin]
        files += sorted(u.glob("ubuntu-metrics-*.timer"))
        files += sorted((u / "timers.target.wants").glob("ubuntu-metrics-*.timer"))
        return files

    def _timers(self) -> set:
        return {t.name for t in self.paths.units.glob("ubuntu-metrics-*.timer")}

    def _schedule(self, o: Options, config_changed: bool, password_changed: bool) -> None:
        p = self.paths
        self.unit.status = ops.MaintenanceStatus(f"scheduling the collectors ({o.mode})")
        before = fingerprint(self._unit_files())
        timers_before = self._timers()
        mode_changed = self._stored.mode != o.mode
        if o.mode == "timers":
            if mode_changed and self._stored.mode == "daemon":
                self.system.systemctl("disable", "--now", DAEMON_SERVICE)
            r = self.program("systemd", "install", "--root", str(p.root), "--binary", str(self.binary))
            if r.code != 0:
                raise Failure(program_message(r.stderr))  # "systemd install: ..."
            if o.dry_run:
                dropin = (
                    "# Written by the ubuntu-metrics charm (dry_run=true): the collectors\n"
                    "# print their points to the journal instead of writing them.\n[Service]\nExecStart=\n"
                    f"ExecStart={self.binary} --config {p.config} run --dry-run %i\n"
                )
                write_if_changed(p.dry_run_dropin, dropin, 0o644)
            else:
                remove(p.dry_run_dropin)
            after = fingerprint(self._unit_files())
            timers = self._timers()
            gone = sorted(timers_before - timers)
            if gone:
                # Their files and links are gone already (systemd install):
                # stop them (disable would not find their files).
                self.system.systemctl("stop", *gone)
            if after != before:
                self.system.systemctl("daemon-reload")
            new = sorted(timers - timers_before) if not mode_changed else sorted(timers)
            if new:
                self.system.systemctl("enable", "--now", *new)
            changed = sorted(
                t for t in timers - set(new)
                if before.get(str(p.units / t)) != after.get(str(p.units / t))
            )
            if changed:
                self.system.systemctl("restart", *changed)
        else:
            timers = sorted(timers_before)
            if timers:
                self.system.systemctl("disable", "--now", *timers)
            for f in self._unit_files():
                remove(f)
            if before:
                self.system.systemctl("daemon-reload")
            if mode_changed:
                self.system.systemctl("enable", "--now", DAEMON_SERVICE)
            elif password_changed:
                self.system.systemctl("restart", DAEMON_SERVICE)
            elif config_changed:
                self.system.systemctl("reload-or-restart", DAEMON_SERVICE)

    # The first generation's station ------------------------------------------
    #
    # `juju refresh ubuntu-release-metrics-collector --switch ubuntu-metrics`
    # runs our upgrade-charm and config-changed on the old charm's machine.
    # The move keeps InfluxDB as it is (database, users, passwords,
    # certificate), so Grafana's hand-made data source goes on working; it
    # stops the old timers before ours start (each point is collected once),
    # starts our first britney and ubuntu_archive runs at the newest row the
    # old ones wrote, and moves each old collector's units aside only once
    # ours has written its first points (until then, an old collector whose
    # successor fails runs again). Nothing is deleted: see fg.BACKUP.

    def _adoption_plan(self, url: str, ca_file: Path, pinned: bool) -> dict | None:
        """For a first-generation station not taken over yet: its passwords
        copied (`influxdb provision` then finds its users and keeps them)
        and where our first catch-up runs start. Nothing else changes yet."""
        p = self.paths
        old = fg.OldStation(p.root)
        if fg.Record(p.first_generation).exists or not old.present():
            return None
        self.unit.status = ops.MaintenanceStatus("moving the first generation's station to ubuntu-metrics")
        p.secrets.mkdir(parents=True, exist_ok=True)
        os.chmod(p.secrets, 0o700)
        for user in fg.USERS:
            password = old.password(user)
            mine = p.secrets / f"{user}-password"
            if password and not mine.exists():
                write_if_changed(mine, password + "\n", 0o600)
        # Our first runs of the time-series reports start at the newest row
        # the old collectors wrote (however long ago), not at the last 12 h.
        # Asked while the old ones still run: a row they write meanwhile is
        # written again by ours with the same time and tags (the same point).
        admin_file = p.secrets / "admin-password"
        catch_up_from = {}
        if admin_file.exists():
            admin = admin_file.read_text().strip()
            for collector in sorted(fg.CATCH_UP):
                answer = self.system.influx_query(url, ca_file, pinned, "admin", admin, fg.newest_rows_query(collector))
                try:
                    newest = fg.oldest_of_newest(answer)
                except ValueError as e:
                    raise Failure(f"InfluxDB: the newest rows of {collector}: {e}") from None
                if newest:
                    catch_up_from[collector] = newest
        return {"catch_up_from": catch_up_from, "collectors": old.collectors(), "backup": str(p.seen(old.backup))}

    def _adoption_stop_old(self, adoption: dict) -> None:
        """The old timers stop just before ours start (each interval is
        collected once); a run under way is let finish (RuntimeMaxSec=10m).
        Their units stay until ours have written (`_adoption_progress`)."""
        names = adoption["collectors"]
        if names:
            self.system.systemctl("stop", *[fg.timer(n) for n in names])
            deadline = time.monotonic() + self.OLD_RUN_TIMEOUT
            running = [fg.service(n) for n in names]
            while running and time.monotonic() < deadline:
                running = [u for u in running if self.system.unit_active(u)]
                if running:
                    time.sleep(1)
            if running:
                self.system.systemctl("stop", *running)
        record = fg.Record(self.paths.first_generation)
        record.data = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "catch_up_from": adoption["catch_up_from"],
            "collectors": {n: {"state": "stopped"} for n in names},
            "backup": adoption["backup"],
            "repository_moved": False,
        }
        record.save()

    def _adoption_progress(self) -> None:
        """Moves aside the units of each old collector ours has replaced
        (written its first points), restarts an old one whose successor
        keeps failing, and moves the old repository aside at the end."""
        p = self.paths
        record = fg.Record(p.first_generation)
        if not record.exists or record.finished:
            return
        old = fg.OldStation(p.root)
        ours = {}
        r = self.program("status", "--format", "json")
        try:
            report = json.loads(r.stdout)
            ours = {c["name"]: c for c in report.get("collectors", [])}
            spooled = int((report.get("spool") or {}).get("points") or 0)
        except (ValueError, KeyError, TypeError):
            return  # status says why in collect-unit-status
        moved_any = False
        for name in record.pending:
            state = record.data["collectors"][name]
            c = ours.get(name)
            if c is None:
                # No collector of ours by that name (or disabled): the old
                # one goes on as it was.
                if state["state"] != "running":
                    self.system.systemctl("start", fg.timer(name))
                    state.update(state="running", why="no enabled collector of ubuntu-metrics by that name")
                continue
            last = c.get("last_run") or {}
            if c.get("last_success") and last.get("points") and not spooled:
                if state["state"] == "running":
                    self.system.systemctl("stop", fg.timer(name))
                self._move_old_units(old, name)
                state.clear()
                state.update(state="moved", at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                moved_any = True
            elif (c.get("consecutive_failures") or 0) >= self.FALLBACK_FAILURES and state["state"] != "running":
                # Ours keeps failing: the old collector runs again meanwhile.
                self.system.systemctl("start", fg.timer(name))
                state.update(state="running", why=f"ubuntu-metrics {name}: {last.get('error') or 'failing'}")
        if moved_any:
            self.system.systemctl("daemon-reload")
        if not record.pending and not record.data.get("repository_moved"):
            backup = old.backup
            backup.mkdir(parents=True, exist_ok=True)
            for src in (old.repository, old.credentials):
                if src.exists():
                    os.replace(src, unique(backup / src.name))
            record.data["repository_moved"] = True
            record.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record.save()

    def _move_old_units(self, old: fg.OldStation, name: str) -> None:
        """The units of the old collector `name` (disabled: their links in
        *.wants go too) moved to the backup folder."""
        dest = old.backup / "systemd"
        dest.mkdir(parents=True, exist_ok=True)
        self.system.systemctl("disable", fg.timer(name))
        for f in old.unit_files(name):
            if f.parent != old.units_dir:
                f.unlink()  # a link in *.wants/
            else:
                os.replace(f, unique(dest / f.name))

    # Relations --------------------------------------------------------------

    def _publish_ingress(self) -> None:
        """The ingress (v2) requirer's data: Grafana on port 3000."""
        rel = self.model.get_relation("ingress")
        if not rel:
            return
        if self.unit.is_leader():
            rel.data[self.app].update({
                "model": json.dumps(self.model.name),
                "name": json.dumps(self.app.name),
                "port": json.dumps(GRAFANA_PORT),
                "strip-prefix": json.dumps(False),
                "redirect-https": json.dumps(False),
                "scheme": json.dumps("http"),
            })
        binding = self.model.get_binding(rel)
        ip = str(binding.network.bind_address) if binding and binding.network.bind_address else ""
        rel.data[self.unit].update({"host": json.dumps(socket.getfqdn()), "ip": json.dumps(ip)})

    def _on_cos_agent(self, event):
        self._publish_cos_agent()

    def _publish_cos_agent(self) -> None:
        """cos_agent: the daemon's /metrics (mode=daemon) for the agent to
        scrape; nothing to scrape with the timers."""
        mode = self._stored.mode or str(self.config["mode"])
        jobs = []
        if mode == "daemon":
            jobs = [{
                "job_name": "ubuntu_metrics",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [HEALTH_LISTEN]}],
            }]
        data = json.dumps({
            "metrics_alert_rules": {},
            "log_alert_rules": {},
            "dashboards": [],
            "metrics_scrape_jobs": jobs,
            "log_slots": [],
        })
        for rel in self.model.relations["cos-agent"]:
            rel.data[self.unit]["config"] = data

    # Status -----------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent):
        if self._stored.blocked:
            event.add_status(ops.BlockedStatus(self._stored.blocked))
            return
        if not self._stored.installed:
            event.add_status(ops.MaintenanceStatus("installing"))
            return
        if not self._stored.configured or not self.paths.config.exists():
            event.add_status(ops.WaitingStatus("waiting for the configuration"))
            return
        r = self.program("status", "--format", "json")
        # Exit 2 is a configuration error (no report), or CRITICAL (a
        # report whose verdict says nothing is collected). Exit 3 (UNKNOWN)
        # is a report too: nothing has run yet (a fresh station).
        if r.code == 2:
            try:
                critical = json.loads(r.stdout)
            except ValueError:
                critical = None
            if not isinstance(critical, dict) or critical.get("verdict") != "CRITICAL":
                event.add_status(ops.BlockedStatus(f"invalid configuration: {program_message(r.stderr)}"))
                return
            event.add_status(ops.BlockedStatus("nothing is collected: " + "; ".join(critical.get("problems") or [])))
            return
        try:
            report = json.loads(r.stdout)
            n = len(report["collectors"])
            points = int(report["spool"]["points"] or 0)
            problems = report.get("problems") or []
        except (ValueError, KeyError, TypeError) as e:
            event.add_status(ops.BlockedStatus(f"ubuntu-metrics status: unreadable answer ({e}): {program_message(r.stderr)}"))
            return
        dry = " (dry run: nothing written)" if self.config["dry_run"] else ""
        record = fg.Record(self.paths.first_generation)
        if record.exists and record.pending:
            dry += "; moving from the first generation: " + ", ".join(
                f"{n} ({record.data['collectors'][n].get('why') or 'waiting for its first points'})"
                for n in record.pending
            )
        if points:
            event.add_status(ops.WaitingStatus(f"{points} points spooled" + (f"; {'; '.join(problems)}" if problems else "")))
        elif report.get("verdict") == "UNKNOWN":
            event.add_status(ops.WaitingStatus(f"{n} collectors, nothing has run yet{dry}"))
        elif report.get("status") == "ok":
            event.add_status(ops.ActiveStatus(f"{n} collectors, all fine{dry}"))
        else:
            event.add_status(ops.ActiveStatus(f"{n} collectors: {'; '.join(problems)}{dry}"))

    # Actions ----------------------------------------------------------------

    def _on_get_grafana_password(self, event: ops.ActionEvent):
        o = read_options_or_none(self.config)
        if o is not None and o.external:
            try:
                content = self._secret(o)
            except Failure as e:
                event.fail(str(e))
                return
            event.set_results({
                "username": content.get("grafana-username") or o.user,
                "password": content.get("grafana-password") or content["password"],
            })
            return
        f = self.paths.secrets / f"{LOCAL_GRAFANA_USER}-password"
        if not f.exists():
            event.fail("InfluxDB is not provisioned yet (no grafana password): wait for the configuration")
            return
        event.set_results({"username": LOCAL_GRAFANA_USER, "password": f.read_text().strip()})

    def _configured_or_fail(self, event: ops.ActionEvent) -> bool:
        if not self.paths.config.exists():
            event.fail("not configured yet: no /etc/ubuntu-metrics/config.toml")
            return False
        return True

    def _on_run_collector(self, event: ops.ActionEvent):
        if not self._configured_or_fail(event):
            return
        name = str(event.params["name"])
        r = self.program("run", name, "--dry-run", "--format", "json")
        points = [line for line in r.stdout.splitlines() if line.strip()]
        if points or r.code == 0:
            # A collector that failed in part still gives its other points.
            event.set_results({"count": len(points), "points": "\n".join(points)})
        if r.code != 0:
            event.fail(f"run {name} --dry-run (exit {r.code}): {program_message(r.stderr)}")

    def _on_spool_status(self, event: ops.ActionEvent):
        if not self._configured_or_fail(event):
            return
        r = self.program("spool", "status")
        if r.code != 0:
            event.fail(f"spool status: {program_message(r.stderr)}")
            return
        results = {}
        for line in r.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep and re.fullmatch(r"[a-z_]+", key.strip()):
                results[key.strip().replace("_", "-")] = value.strip()
        event.set_results(results)

    def _on_spool_flush(self, event: ops.ActionEvent):
        if not self._configured_or_fail(event):
            return
        r = self.program("spool", "flush")
        if r.code == EXIT_NOPERM:
            # The spool belongs to the services' dynamic user: the program
            # will not write there as root (what it left would be unreadable
            # to the services) and prints the systemd-run line that runs it
            # as that user, with the services' credentials.
            line = next((ln.strip() for ln in r.stderr.splitlines()
                         if ln.strip().startswith("sudo systemd-run ")), None)
            if line:
                argv = shlex.split(line)[1:]
                r = self.system.program(Path(argv[0]), argv[1:], self.env())
        if r.code != 0:
            event.fail(f"spool flush (exit {r.code}): {program_message(r.stderr)}")
            return
        event.set_results({"output": r.stdout.strip()})


def unique(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`...: the first that does not exist."""
    n, out = 0, path
    while out.exists() or out.is_symlink():
        n += 1
        out = path.with_name(f"{path.name}.{n}")
    return out


def read_options_or_none(config) -> Options | None:
    try:
        return read_options(config)
    except Failure:
        return None


if __name__ == "__main__":  # pragma: nocover
    ops.main(UbuntuMetricsCharm)
