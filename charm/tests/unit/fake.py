"""A stand-in for the seam: records every machine-wide call and plays the
program's commands on files under the test's root."""

import json
import tomllib
from pathlib import Path

from charm import Failure, Result, System

COLLECTORS = [
    "autopkgtest", "britney", "cnf", "contributors", "images",
    "rls_bugs", "sponsoring", "ubuntu_archive", "upload_queues", "versions",
]


class FakeSystem(System):
    def __init__(self, root: Path):
        self.root = root
        self.calls = []  # machine-wide calls: ("apt", ...), ("systemctl", ...)
        self.runs = []  # the program's argument lists
        self.fail = {}  # call kind -> message: that call fails
        self.config_error = None  # what `config show` refuses
        self.status = {"status": "ok", "problems": [], "spool": {"points": 0}}
        self.status_code = 0
        self.flush = Result(0, "wrote 0 points from the spool\nthe spool is empty\n", "")
        self.flush_as_service = Result(0, "wrote 7 points from the spool\nthe spool is empty\n", "")
        self.dry_run = Result(0, '{"measurement":"m","fields":{"n":1}}\n{"measurement":"m","fields":{"n":2}}\n', "")
        self.passwords = {"admin": "admin-pw", "collector": "collector-pw", "grafana": "grafana-pw"}
        self.queries = []  # influx_query's arguments
        self.newest = {}  # InfluxQL -> its answer
        self.active = set()  # units systemctl is-active finds active
        self.collectors = {}  # name -> what status says of that collector

    def _call(self, kind, *args):
        self.calls.append((kind, *args))
        if kind in self.fail:
            raise Failure(self.fail[kind])

    def apt_install(self, packages):
        self._call("apt", *packages)

    def install_deb(self, path):
        self._call("deb", str(path))

    def snap_install(self, name):
        self._call("snap", name)

    def systemctl(self, *args):
        self._call("systemctl", *args)

    def chown(self, path, user, group):
        self._call("chown", str(path), user, group)

    def openssl(self, args, cwd):
        self._call("openssl", args[0])
        for flag in ("-keyout", "-out"):
            if flag in args:
                (Path(cwd) / args[args.index(flag) + 1]).write_text(f"PEM {args[0]}\n")

    def ping(self, url, cafile, timeout, pinned=False):
        self._call("ping", url, str(cafile), pinned)
        return self.fail.get("influxdb-down")

    def influx_query(self, url, cafile, pinned, user, password, q):
        self._call("query", user, q)
        self.queries.append((url, str(cafile), pinned, user, password, q))
        return self.newest.get(q, {"results": [{"statement_id": 0}]})

    def unit_active(self, unit):
        self._call("is-active", unit)
        return unit in self.active

    def machine_calls(self):
        return [c for c in self.calls if c[0] in ("systemctl", "apt", "snap", "deb")]

    def restarts(self):
        """The systemctl calls that (re)start, stop or reload something."""
        return [c for c in self.calls if c[0] == "systemctl" and c[1] != "daemon-reload"]

    def program(self, binary, args, env):
        if Path(binary).name == "systemd-run":
            # The line `spool flush` prints when it refuses to run as root.
            assert "--property=DynamicUser=yes" in args and args[-2:] == ["spool", "flush"], args
            self.runs.append(["systemd-run", *args])
            return self.flush_as_service
        self.runs.append(list(args))
        assert env["CREDENTIALS_DIRECTORY"] == str(self.root / "etc/ubuntu-metrics")
        if args == ["--version"]:
            return Result(0, "ubuntu-metrics 0.9.1\n", "")
        config = Path(args[1])
        cmd = args[2:]
        if cmd[:2] == ["config", "show"]:
            if self.config_error:
                return Result(2, "", f"ERROR x\nubuntu-metrics: configuration error: {config}: {self.config_error}\n")
            return Result(0, config.read_text(), "")
        text = tomllib.loads(config.read_text())
        if cmd[:2] == ["influxdb", "provision"]:
            if "--help" in cmd:
                r = cmd[cmd.index("--retention") + 1]
                if r == "5m":
                    return Result(2, "", f"error: invalid value '{r}' for '--retention <SPAN>': retention \"{r}\": InfluxDB keeps data at least 1h (or `inf` for ever)\n")
                return Result(0, "Usage: ...", "")
            secrets = Path(cmd[cmd.index("--secrets-dir") + 1])
            secrets.mkdir(parents=True, exist_ok=True)
            for user, pw in self.passwords.items():
                f = secrets / f"{user}-password"
                if not f.exists():
                    f.write_text(pw + "\n")
                    f.chmod(0o600)
            return Result(0, "database metrics: exists\n", "")
        if cmd[:2] == ["dashboards", "export"]:
            d = Path(cmd[2])
            user = cmd[cmd.index("--user") + 1]
            (d / "datasources").mkdir(parents=True, exist_ok=True)
            (d / "datasources/ubuntu-metrics.yaml").write_text(f"url: {text['influxdb']['url']}\nuser: {user}\n")
            (d / "dashboards/ubuntu-metrics").mkdir(parents=True, exist_ok=True)
            (d / "dashboards/ubuntu-metrics/queues.json").write_text("{}\n")
            return Result(0, "", "")
        if cmd[:2] == ["systemd", "install"]:
            root = Path(cmd[cmd.index("--root") + 1])
            units = root / "etc/systemd/system"
            (units / "timers.target.wants").mkdir(parents=True, exist_ok=True)
            (units / "ubuntu-metrics@.service").write_text(f"ExecStart={args[1]}\n")
            for name in COLLECTORS:
                c = text.get("collectors", {}).get(name, {})
                timer = units / f"ubuntu-metrics-{name}.timer"
                link = units / "timers.target.wants" / timer.name
                if not c.get("enabled", True):
                    timer.unlink(missing_ok=True)
                    link.unlink(missing_ok=True)
                    continue
                timer.write_text(f"OnUnitInactiveSec={c.get('interval', '5m')}\n")
                if not link.is_symlink():
                    link.symlink_to(f"/etc/systemd/system/{timer.name}")
            return Result(0, "units in ...", "")
        if cmd[:1] == ["status"]:
            enabled = [n for n in COLLECTORS if text.get("collectors", {}).get(n, {}).get("enabled", True)]
            report = dict(self.status, collectors=[dict(self.collectors.get(n, {}), name=n) for n in enabled])
            return Result(self.status_code, json.dumps(report), "")
        if cmd[:2] == ["spool", "status"]:
            return Result(0, "dir: /var/lib/ubuntu-metrics/spool\nrecords: 2\npoints: 7\ndead_letter_batches: 0\n", "")
        if cmd[:2] == ["spool", "flush"]:
            return self.flush
        if cmd[:1] == ["run"]:
            assert cmd[2:] == ["--dry-run", "--format", "json"], cmd
            if cmd[1] == "nope":
                return Result(2, "", "ubuntu-metrics: unknown collector nope\n")
            return self.dry_run
        raise AssertionError(f"unexpected program call {args}")
