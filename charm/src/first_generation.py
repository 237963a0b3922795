"""What the first generation's charm (ubuntu-release-metrics-collector) left
on a machine, and the record of moving that station to ubuntu-metrics.

The first generation's station, as its charm set it up:

- InfluxDB 1.x over HTTPS with a self-signed certificate
  (`/etc/ssl/influxdb-selfsigned.crt`), authentication on, database
  `metrics`, users `admin`, `collector` (WRITE) and `grafana` (READ) whose
  passwords are in `/root/.influx_<user>_password`; the marker
  `~ubuntu/influxdb_grafana_password`;
- one `run-metric-collector@NAME.service` and `.timer` per collector in
  `/etc/systemd/system/`, running the old repository copied to
  `/home/ubuntu/ubuntu-release-metrics/` with the credentials of
  `/home/ubuntu/influx.conf`.

Nothing here changes the machine: the charm decides, this module only
reads the old station and keeps the record (`first-generation.json`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

USERS = ("admin", "collector", "grafana")
UNIT_PREFIX = "run-metric-collector@"
# Where the old units, the old repository copy and its credentials file are
# moved (never deleted): README, "Moving a first-generation station".
BACKUP = "var/backups/ubuntu-release-metrics-collector"
# The collectors whose first run catches up on time-series reports, and the
# measurements of those rows (their newest row in the database is where our
# first run starts: the option catch_up_from).
CATCH_UP = {
    "britney": ("update_excuses_stats",),
    "ubuntu_archive": ("nbs_stats", "component_mismatch_stats"),
}


class OldStation:
    """The first generation's files under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        r = self.root
        self.password_files = {u: r / "root" / f".influx_{u}_password" for u in USERS}
        self.marker = r / "home/ubuntu/influxdb_grafana_password"
        self.repository = r / "home/ubuntu/ubuntu-release-metrics"
        self.credentials = r / "home/ubuntu/influx.conf"
        self.units_dir = r / "etc/systemd/system"
        self.backup = r / BACKUP

    def present(self) -> bool:
        """Whether the first generation's station is (still) here: its
        password files or its units."""
        return any(p.exists() for p in self.password_files.values()) or bool(self.unit_files())

    def unit_files(self, name: str | None = None) -> list[Path]:
        """The old units' files and their links (in `*.wants/`), of one
        collector or of all (the template `run-metric-collector@.service`
        of some versions included)."""
        pattern = f"{UNIT_PREFIX}{name}.*" if name is not None else f"{UNIT_PREFIX}*"
        out = [p for p in self.units_dir.glob(pattern) if p.is_file() or p.is_symlink()]
        for wants in sorted(self.units_dir.glob("*.wants")):
            out += [p for p in wants.glob(pattern) if p.is_file() or p.is_symlink()]
        return sorted(out)

    def collectors(self) -> list[str]:
        """The collectors the old units run (`run-metric-collector@NAME.timer`)."""
        names = set()
        for p in self.units_dir.glob(f"{UNIT_PREFIX}*.timer"):
            name = p.name[len(UNIT_PREFIX):-len(".timer")]
            if re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                names.add(name)
        return sorted(names)

    def password(self, user: str) -> str | None:
        p = self.password_files[user]
        return p.read_text().strip() if p.exists() else None


def timer(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.timer"


def service(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.service"


def newest_rows_query(collector: str) -> str:
    """One InfluxQL statement: the newest row of each catch-up measurement
    of `collector`."""
    return "; ".join(f'SELECT * FROM "{m}" ORDER BY time DESC LIMIT 1' for m in CATCH_UP[collector])


def oldest_of_newest(answer: dict) -> str | None:
    """From the answer to `newest_rows_query`: the oldest of the newest
    rows' times (RFC 3339), so that no measurement of the collector misses
    a row; None when no measurement has a row."""
    times = []
    for result in answer.get("results") or []:
        if result.get("error"):
            raise ValueError(result["error"])
        for series in result.get("series") or []:
            cols = series.get("columns") or []
            values = series.get("values") or []
            if "time" in cols and values:
                times.append(values[0][cols.index("time")])
    return min(times) if times else None


class Record:
    """`/etc/ubuntu-metrics/first-generation.json`: what the move from the
    first generation did and still has to do. Written by the charm only."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = json.loads(path.read_text()) if path.exists() else {}

    @property
    def exists(self) -> bool:
        return bool(self.data)

    @property
    def pending(self) -> list[str]:
        """Old collectors whose units are still there: ours have not
        written their first points yet."""
        return [n for n, s in sorted(self.data.get("collectors", {}).items()) if s["state"] != "moved"]

    @property
    def catch_up_from(self) -> dict:
        return dict(self.data.get("catch_up_from", {}))

    @property
    def finished(self) -> bool:
        return self.exists and not self.pending and bool(self.data.get("repository_moved"))

    def save(self) -> bool:
        text = json.dumps(self.data, indent=2, sort_keys=True) + "\n"
        if self.path.exists() and self.path.read_text() == text:
            return False
        tmp = self.path.with_name(self.path.name + ".tmp~")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)
        return True
