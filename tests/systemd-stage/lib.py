"""The pieces of the real-systemd stage: a Debian rootfs booted with
systemd-nspawn, driven from outside with nsenter; a real influxd and the
fixture server on the host's loopback (the container shares the host's
network). Standard library only: scripts/systemd-stage runs it with the
machine's python3.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from pathlib import Path

# Debian's systemd 252 (bookworm), the oldest systemd the units support.
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the container needs besides minbase: systemd as PID 1, the package's
# Depends (procps deliberately not: the .deb must bring it, see
# `install_deb`), sh tools the scenarios use; python3 (its whole standard
# library: urllib, ssl) and openssl, which the first generation's station
# needs (its collectors, its self-signed certificate) and the charm's
# handlers run with (first_generation.py).
INCLUDE = ["systemd", "systemd-sysv", "dbus", "rsync", "distro-info-data",
           "ca-certificates", "python3-minimal", "python3", "openssl"]
# Packages fetched into the cache (not installed), by the name that asks
# for them: installed only when the .deb's Depends names them, as apt would,
# or by a scenario that needs them (`install_cached`): InfluxDB 1.x from the
# archive for the first generation's station, and the packages the charm's
# APT_PACKAGES names that the rootfs lacks.
ON_DEMAND = {
    "procps": ["procps", "libproc2-0", "libncursesw6"],
    "influxdb": ["influxdb", "adduser", "lsb-base"],
    "influxdb-client": ["influxdb-client"],
}
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg):
    print(f"systemd-stage: {msg}", flush=True)


class StageError(Exception):
    pass


def wait_for(what, check, timeout=120.0, interval=0.25):
    """Polls `check` until it returns a true value (returned); fails naming
    `what` after `timeout` seconds. Conditions, not guessed sleeps: the
    timeout is only the point where waiting is hopeless."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
        except Exception as e:  # the condition may fail while it settles
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise StageError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise StageError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


# ---------------------------------------------------------------- rootfs

def base_rootfs(cache: Path) -> Path:
    """A Debian bookworm rootfs with systemd, made once by debootstrap and
    kept under target/ (a second run does not download again)."""
    base = cache / f"{SUITE}-base"
    stamp = base / ".stage-complete"
    want = " ".join(INCLUDE) + " | " + json.dumps(ON_DEMAND)
    if stamp.exists() and stamp.read_text() == want:
        return base
    if base.exists():
        shutil.rmtree(base)
    tmp = cache / f"{SUITE}-base.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"building the {SUITE} rootfs with debootstrap (once; cached in {base})")
    t = time.monotonic()
    # The mirror is the one thing out of loopback: a dropped connection is
    # tried again (twice) before the stage fails, naming the mirror.
    for attempt in range(1, 4):
        p = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(INCLUDE),
                 SUITE, str(tmp), MIRROR], check=False, stdout=None, stderr=None)
        if p.returncode == 0:
            break
        log(f"debootstrap from {MIRROR} failed (exit {p.returncode}, attempt {attempt} of 3)")
        shutil.rmtree(tmp, ignore_errors=True)
        if attempt == 3:
            raise StageError(f"debootstrap could not make the {SUITE} rootfs from {MIRROR} "
                             "(3 attempts): the stage needs Debian's mirror once, then its cache")
        time.sleep(5 * attempt)
    # The on-demand packages, downloaded now (with the network debootstrap
    # had) so that the scenarios need none.
    debs = tmp / "var/cache/stage-debs"
    debs.mkdir(parents=True)
    run(["chroot", str(tmp), "apt-get", "update", "-q"], stdout=None)
    for pkgs in ON_DEMAND.values():
        run(["chroot", str(tmp), "sh", "-c",
             "cd /var/cache/stage-debs && apt-get download -q " + " ".join(pkgs)], stdout=None)
    run(["chroot", str(tmp), "apt-get", "clean"])
    # A machine id and a root without password prompts; no getty on the
    # console (the console is a pipe).
    (tmp / "etc/machine-id").write_text("")
    (tmp / "etc/hostname").write_text("stage\n")
    os.symlink("/dev/null", tmp / "etc/systemd/system/console-getty.service")
    (tmp / ".stage-complete").write_text(want)
    tmp.rename(base)
    log(f"rootfs ready in {time.monotonic() - t:.0f} s")
    return base


# ---------------------------------------------------------------- influxd

class Influxd:
    """A real influxd on the host's loopback, in its own directory."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.rpc = free_port()
        self.proc = None
        self.auth = None  # (user, password) for queries once auth is on

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, auth=False):
        exe = shutil.which("influxd")
        if not exe:
            raise StageError("influxd not found: install it with `sudo apt-get install influxdb`")
        d = self.dir
        conf = d / "influxdb.conf"
        conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  auth-enabled = {"true" if auth else "false"}
[continuous_queries]
  enabled = false
""")
        logf = open(d / "influxd.log", "ab")
        self.proc = subprocess.Popen([exe, "-config", str(conf)], stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL)
        wait_for("influxd to answer /ping", self.ping, timeout=60)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def ping(self):
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                return r.status == 204
        except (urllib.error.URLError, OSError):
            return False

    def create_database(self, db="metrics"):
        """What a station's InfluxDB has before the collectors write (the
        scenarios that do not provision it)."""
        req = urllib.request.Request(f"{self.url}/query", method="POST",
                                     data=urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def query(self, q, db="metrics"):
        url = f"{self.url}/query?" + urllib.parse.urlencode({"db": db, "q": q})
        req = urllib.request.Request(url)
        if self.auth:
            token = b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def points(self, measurement, db="metrics"):
        """How many points `measurement` holds (the largest count of any of
        its fields: every point has at least one)."""
        got = self.query(f'SELECT count(*) FROM "{measurement}"', db)
        series = got["results"][0].get("series") or []
        if not series:
            return 0
        return max(v for v in series[0]["values"][0][1:] if v is not None)

    def rows_between(self, measurement, start, end, db="metrics"):
        """The rows of `measurement` timed from `start` to `end` (RFC 3339),
        grouped by time: {time: rows}."""
        got = self.query(f"SELECT * FROM \"{measurement}\" WHERE time >= '{start}' AND time <= '{end}'", db)
        series = got["results"][0].get("series") or []
        out = {}
        for row in (series[0]["values"] if series else []):
            out[row[0]] = out.get(row[0], 0) + 1
        return out

    def users(self):
        got = self.query("SHOW USERS")
        return {row[0]: row[1] for row in got["results"][0]["series"][0]["values"]}


# ---------------------------------------------------------------- fixtures

class FixtureServer:
    """The bundled fixtures served as every upstream (crates/fixture-server),
    with its rsync daemon for the images collector."""

    def __init__(self, exe: Path, workdir: Path):
        self.dir = workdir / "fixtures"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "sources.toml"
        out = self.dir / "url"
        self.proc = subprocess.Popen([str(exe), "--write-config", str(config)],
                                     stdout=open(out, "w"), stderr=open(self.dir / "log", "w"),
                                     stdin=subprocess.DEVNULL)
        wait_for("the fixture server", lambda: out.read_text().strip(), timeout=60)
        self.base = out.read_text().strip()
        # Only the [sources] table (the rest is defaults).
        text = config.read_text()
        start = text.index("[sources]")
        end = text.find("\n[", start + 1)
        self.sources = text[start:] if end < 0 else text[start:end + 1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


# ---------------------------------------------------------------- container

class Container:
    """A copy of the base rootfs booted with systemd as PID 1."""

    def __init__(self, name: str, base: Path, workdir: Path):
        self.name = name
        self.root = workdir / f"ct-{name}"
        if self.root.exists():
            shutil.rmtree(self.root)
        run(["cp", "-a", "--reflink=auto", str(base), str(self.root)])
        self.nspawn = None
        self.pid = None
        self.console = workdir / f"ct-{name}.console"

    def boot(self):
        t = time.monotonic()
        # These three flags are needed where the host's PID 1 is not systemd;
        # no --private-network: the container shares the host's loopback.
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", str(self.root),
             "-b", "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=open(self.console, "wb"), stderr=subprocess.STDOUT)

        def init_pid():
            if self.nspawn.poll() is not None:
                raise StageError(f"systemd-nspawn exited {self.nspawn.returncode}: "
                                 + self.console.read_text(errors="replace")[-2000:])
            for p in Path("/proc").iterdir():
                if p.name.isdigit():
                    try:
                        stat = (p / "stat").read_text()
                    except OSError:
                        continue
                    ppid = int(stat.rsplit(")", 1)[1].split()[1])
                    if ppid == self.nspawn.pid:
                        return int(p.name)
            return None

        self.pid = wait_for("the container's init", init_pid, timeout=30)
        state = wait_for(
            "the container's systemd to finish booting",
            lambda: self.sh("systemctl is-system-running --wait", check=False).stdout.strip()
            in ("running", "degraded") and self.sh("systemctl is-system-running", check=False).stdout.strip(),
            timeout=120)
        log(f"[{self.name}] booted ({state}) in {time.monotonic() - t:.1f} s")

    def sh(self, script, check=True, input=None, timeout=300):
        """Runs `script` with /bin/sh inside the container (every namespace
        of its init: its mounts, its PID 1, its users)."""
        env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
        p = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "/bin/sh", "-c", script],
                           input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise StageError(f"[{self.name}] `{script}` exited {p.returncode}:\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def write(self, path, text, mode="0644"):
        self.sh(f"mkdir -p \"$(dirname '{path}')\" && cat > '{path}' && chmod {mode} '{path}'",
                input=text)

    def show(self, unit, *props):
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit=None, priority=None, since_cursor=None):
        cmd = "journalctl --no-pager -o cat"
        if unit:
            cmd += f" -u {unit}"
        if priority:
            cmd += f" -p {priority}"
        return self.sh(cmd, check=False).stdout

    def install_deb(self, deb: Path, as_name="ubuntu-metrics.deb"):
        """Installs `deb` as `apt install ./deb` would here: the packages
        its Depends names that the rootfs lacks come from the cache
        (downloaded with the rootfs); a name neither installed nor cached
        fails."""
        # (/tmp in the container is its own tmpfs: not the rootfs' folder.)
        (self.root / "var/cache/stage-install").mkdir(exist_ok=True)
        shutil.copy(deb, self.root / "var/cache/stage-install" / as_name)
        depends = run(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
        extra = []
        for alt in depends.split(","):
            name = alt.split("|")[0].split("(")[0].strip()
            if not name:
                continue
            if self.sh(f"dpkg -s {name} >/dev/null 2>&1", check=False).returncode == 0:
                continue
            if name not in ON_DEMAND:
                raise StageError(f"the .deb depends on {name}, which the stage's rootfs lacks: "
                                 "add it to INCLUDE or ON_DEMAND in tests/systemd-stage/lib.py")
            extra += [f"/var/cache/stage-debs/{p}_*.deb" for p in ON_DEMAND[name]]
        return self.sh("DEBIAN_FRONTEND=noninteractive dpkg -i " + " ".join(extra)
                       + f" /var/cache/stage-install/{as_name}")

    def install_cached(self, *names, start=True):
        """Installs the cached packages ON_DEMAND lists under `names` (those
        not installed already), as `apt install NAME` would offline. With
        `start` false, no service a package ships is started (policy-rc.d
        says no) until the scenario has configured it."""
        pkgs = []
        for name in names:
            if name not in ON_DEMAND:
                raise StageError(f"{name} is not in the stage's cache: add it to ON_DEMAND in "
                                 "tests/systemd-stage/lib.py")
            pkgs += [p for p in ON_DEMAND[name]
                     if self.sh(f"dpkg -s {p} >/dev/null 2>&1", check=False).returncode != 0]
        if not pkgs:
            return
        debs = " ".join(f"/var/cache/stage-debs/{p}_*.deb" for p in pkgs)
        policy = "" if start else (
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && ")
        self.sh(policy + f"DEBIAN_FRONTEND=noninteractive dpkg -i {debs}; rc=$?; "
                "rm -f /usr/sbin/policy-rc.d; exit $rc")

    def poweroff(self):
        if not self.nspawn or self.nspawn.poll() is not None:
            return
        self.sh("systemctl poweroff --no-block", check=False)
        try:
            self.nspawn.wait(60)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            self.nspawn.wait()

    def remove(self):
        self.poweroff()
        shutil.rmtree(self.root, ignore_errors=True)


def previous_deb(deb: Path, out: Path) -> Path:
    """The package as the last release without maintainer scripts shipped
    it: this .deb with its version lowered and its postinst, prerm and
    postrm removed."""
    work = Path(tempfile.mkdtemp(dir=out))
    tree = work / "tree"
    run(["dpkg-deb", "-R", str(deb), str(tree)])
    for s in ("postinst", "prerm", "postrm", "preinst"):
        (tree / "DEBIAN" / s).unlink(missing_ok=True)
    control = tree / "DEBIAN/control"
    lines = []
    for line in control.read_text().splitlines():
        if line.startswith("Version:"):
            line = "Version: 0.0.1~previous"
        if line.startswith("Depends:"):
            line = ", ".join(p for p in line.split(", ") if not p.endswith("procps"))
        lines.append(line)
    control.write_text("\n".join(lines) + "\n")
    result = out / "ubuntu-metrics-previous.deb"
    run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(result)])
    shutil.rmtree(work)
    return result
