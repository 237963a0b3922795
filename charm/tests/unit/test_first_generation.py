"""Moving the first generation's station (the ubuntu-release-metrics-collector
charm) in place: `juju refresh --switch` runs our upgrade-charm and
config-changed on its machine. The seam is a FakeSystem; the old station's
files are laid out under a temporary root as its charm left them. The same
path against a real systemd and a real InfluxDB: tests/systemd-stage
(scenario first_generation)."""

import json
import tomllib

import pytest
from conftest import context
from fake import FakeSystem
from ops import testing

import first_generation as fg
from charm import UbuntuMetricsCharm

OLD_CONF = """reporting-disabled = false
[meta]
  dir = "/var/lib/influxdb/meta"
[http]
  enabled = true
  bind-address = ":8086"
  auth-enabled = true
  https-enabled = true
  https-certificate = "/etc/ssl/influxdb-selfsigned.crt"
  https-private-key = "/etc/ssl/influxdb-selfsigned.key"
"""
OLD = ["britney", "sponsoring", "upload_queues"]
PASSWORDS = {"admin": "old-admin", "collector": "old-collector", "grafana": "old-grafana"}
BRITNEY = fg.newest_rows_query("britney")
ARCHIVE = fg.newest_rows_query("ubuntu_archive")


def answer(*times):
    """/query's answer to one statement per time (None: no row)."""
    return {"results": [
        {"statement_id": i, **({"series": [{"name": "m", "columns": ["time", "n"], "values": [[t, 1]]}]} if t else {})}
        for i, t in enumerate(times)
    ]}


def old_station(root, collectors=OLD):
    (root / "etc/influxdb").mkdir(parents=True)
    (root / "etc/influxdb/influxdb.conf").write_text(OLD_CONF)
    (root / "etc/ssl").mkdir(parents=True)
    (root / "etc/ssl/influxdb-selfsigned.crt").write_text("OLD CERT\n")
    (root / "etc/ssl/influxdb-selfsigned.key").write_text("OLD KEY\n")
    (root / "root").mkdir()
    for user, pw in PASSWORDS.items():
        (root / f"root/.influx_{user}_password").write_text(pw + "\n")
    home = root / "home/ubuntu"
    (home / "ubuntu-release-metrics/metrics/collectors").mkdir(parents=True)
    (home / "influxdb_grafana_password").write_text(PASSWORDS["grafana"])
    (home / "influx.conf").write_text("INFLUXDB_PASSWORD=old-collector\n")
    units = root / "etc/systemd/system"
    (units / "timers.target.wants").mkdir(parents=True)
    for name in collectors:
        (units / f"run-metric-collector@{name}.service").write_text(f"[Service]\n# {name}\n")
        (units / f"run-metric-collector@{name}.timer").write_text(f"[Timer]\n# {name}\n")
        (units / f"timers.target.wants/run-metric-collector@{name}.timer").symlink_to(
            f"/etc/systemd/system/run-metric-collector@{name}.timer")


@pytest.fixture()
def env(tmp_path):
    root = tmp_path / "root"
    old_station(root)
    system = FakeSystem(root)
    system.newest = {BRITNEY: answer("2026-12-01T06:00:00Z"),
                     ARCHIVE: answer("2026-12-04T09:00:00Z", "2026-12-03T22:00:00Z")}

    class Charm(UbuntuMetricsCharm):
        ROOT = root

        def make_system(self):
            return system

    deb = tmp_path / "ubuntu-metrics.deb"
    deb.write_bytes(b"!<arch>\ndebian-binary")
    return root, system, context(Charm), testing.Resource(name="ubuntu-metrics", path=deb)


def switch(env, **config):
    """What `juju refresh --switch` runs: upgrade-charm, then config-changed,
    on a unit whose stored state is new."""
    _, _, ctx, deb = env
    state = ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, config=config, resources=[deb]))
    return ctx.run(ctx.on.config_changed(), state)


def again(ctx, event, state):
    return ctx.run(event, testing.State(leader=True, config=state.config, stored_states=state.stored_states,
                                        resources=state.resources))


def wrote(system, *names):
    """status says these collectors of ours wrote their first points."""
    for n in names:
        system.collectors[n] = {"last_run": {"result": "ok", "points": 3}, "last_success": "2026-12-05T04:00:00Z",
                                "consecutive_failures": 0}


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else str(p.readlink()) if p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def test_the_switch_keeps_influxdb_its_users_passwords_and_certificate(env):
    root, system, ctx, deb = env
    conf_before = (root / "etc/influxdb/influxdb.conf").read_text()
    out = switch(env)
    # The passwords are the old ones (provision keeps existing users).
    for user, pw in PASSWORDS.items():
        assert (root / f"etc/ubuntu-metrics/secrets/{user}-password").read_text() == pw + "\n"
        assert (root / f"root/.influx_{user}_password").read_text() == pw + "\n"
    assert (root / "etc/ubuntu-metrics/influxdb-password").read_text() == "old-collector\n"
    # The certificate is kept: no openssl, influxdb.conf as it was, no restart.
    assert not [c for c in system.calls if c[0] == "openssl"]
    assert (root / "etc/influxdb/influxdb.conf").read_text() == conf_before
    assert ("systemctl", "restart", "influxdb.service") not in system.calls
    config = tomllib.loads((root / "etc/ubuntu-metrics/config.toml").read_text())
    assert config["influxdb"]["ca_file"] == str(root / "etc/ssl/influxdb-selfsigned.crt")
    assert config["influxdb"]["url"] == "https://127.0.0.1:8086"
    ping = next(c for c in system.calls if c[0] == "ping")
    assert ping[2:] == (str(root / "etc/ssl/influxdb-selfsigned.crt"), True)
    # Grafana cannot verify that certificate for 127.0.0.1: our data source
    # skips the check (loopback); the team's own data source is not touched.
    export = next(r for r in system.runs if r[2:4] == ["dashboards", "export"])
    assert "--tls-skip-verify" in export
    # get-influxdb-grafana-password gives the old password.
    ctx.run(ctx.on.action("get-influxdb-grafana-password"), out)
    assert ctx.action_results == {"username": "grafana", "password": "old-grafana"}


def test_the_old_timers_stop_before_ours_start_and_catch_up_starts_at_the_newest_row(env):
    root, system, ctx, deb = env
    system.active = {"run-metric-collector@sponsoring.service"}

    def finishes(unit):
        # The old sponsoring run under way ends after being asked twice.
        system.calls.append(("is-active", unit))
        if unit in system.active and sum(c == ("is-active", unit) for c in system.calls) >= 2:
            system.active.discard(unit)
        return unit in system.active

    system.unit_active = finishes
    out = switch(env)
    stop = system.calls.index(("systemctl", "stop", *[f"run-metric-collector@{n}.timer" for n in OLD]))
    install = next(i for i, c in enumerate(system.calls) if c[0] == "systemctl" and c[1] == "enable")
    assert stop < install, system.calls
    # The running old collector was let finish, not killed.
    assert ("systemctl", "stop", "run-metric-collector@sponsoring.service") not in system.calls
    # The newest rows were asked as admin, over the kept certificate.
    assert {q[3] for q in system.queries} == {"admin"} and {q[4] for q in system.queries} == {"old-admin"}
    assert all(q[2] is True for q in system.queries)
    config = tomllib.loads((root / "etc/ubuntu-metrics/config.toml").read_text())
    assert config["collectors"]["britney"]["catch_up_from"] == "2026-12-01T06:00:00Z"
    # ubuntu_archive: the older of its two measurements' newest rows.
    assert config["collectors"]["ubuntu_archive"]["catch_up_from"] == "2026-12-03T22:00:00Z"
    # Until ours have written, the old units stay (stopped).
    for n in OLD:
        assert (root / f"etc/systemd/system/run-metric-collector@{n}.timer").exists()
    assert "moving from the first generation" in out.unit_status.message


def test_each_old_collector_goes_once_ours_wrote_its_first_points_then_the_repository(env):
    root, system, ctx, deb = env
    out = switch(env)
    wrote(system, "sponsoring")
    out = again(ctx, ctx.on.update_status(), out)
    backup = root / fg.BACKUP
    assert not list((root / "etc/systemd/system").rglob("run-metric-collector@sponsoring*"))
    assert sorted(p.name for p in (backup / "systemd").iterdir()) == [
        "run-metric-collector@sponsoring.service", "run-metric-collector@sponsoring.timer"]
    assert ("systemctl", "disable", "run-metric-collector@sponsoring.timer") in system.calls
    assert (root / "etc/systemd/system/run-metric-collector@britney.timer").exists()
    assert (root / "home/ubuntu/ubuntu-release-metrics").exists()
    assert "britney" in out.unit_status.message and "sponsoring" not in out.unit_status.message
    wrote(system, "britney", "upload_queues")
    out = again(ctx, ctx.on.update_status(), out)
    assert not list((root / "etc/systemd/system").rglob("run-metric-collector@*"))
    # The old repository and its credentials file are moved aside, not deleted.
    assert (backup / "ubuntu-release-metrics/metrics/collectors").is_dir()
    assert (backup / "influx.conf").read_text() == "INFLUXDB_PASSWORD=old-collector\n"
    assert not (root / "home/ubuntu/ubuntu-release-metrics").exists()
    # The old password files and the marker stay (a rollback needs them).
    assert (root / "home/ubuntu/influxdb_grafana_password").exists()
    assert json.loads((root / "etc/ubuntu-metrics/first-generation.json").read_text())["finished"]
    assert "first generation" not in out.unit_status.message


def test_points_still_spooled_are_not_written_yet(env):
    root, system, ctx, deb = env
    out = switch(env)
    wrote(system, *OLD)
    system.status = dict(system.status, spool={"points": 12})
    again(ctx, ctx.on.update_status(), out)
    assert len(list((root / "etc/systemd/system").glob("run-metric-collector@*.timer"))) == 3


def test_an_old_collector_runs_again_while_ours_fails_and_goes_once_ours_writes(env):
    root, system, ctx, deb = env
    out = switch(env)
    system.collectors["britney"] = {"last_run": {"result": "failed", "points": 0, "error": "cannot reach X"},
                                    "consecutive_failures": 2}
    out = again(ctx, ctx.on.update_status(), out)
    assert ("systemctl", "start", "run-metric-collector@britney.timer") in system.calls
    assert "britney (ubuntu-metrics britney: cannot reach X)" in out.unit_status.message
    wrote(system, "britney")
    again(ctx, ctx.on.update_status(), out)
    assert ("systemctl", "stop", "run-metric-collector@britney.timer") in system.calls
    assert not (root / "etc/systemd/system/run-metric-collector@britney.timer").exists()


def test_an_old_collector_without_a_successor_keeps_running(env):
    root, system, ctx, deb = env
    out = switch(env, enabled="upload_queues=false")
    wrote(system, "britney", "sponsoring")
    out = again(ctx, ctx.on.update_status(), out)
    assert ("systemctl", "start", "run-metric-collector@upload_queues.timer") in system.calls
    assert (root / "etc/systemd/system/run-metric-collector@upload_queues.timer").exists()
    # It still runs from the repository: that stays.
    assert (root / "home/ubuntu/ubuntu-release-metrics").exists()
    assert "upload_queues (no enabled collector" in out.unit_status.message


def test_a_second_run_of_the_handlers_changes_nothing(env):
    root, system, ctx, deb = env
    out = switch(env)
    wrote(system, *OLD)
    out = again(ctx, ctx.on.update_status(), out)
    before = snapshot(root)
    system.calls.clear()
    out = again(ctx, ctx.on.upgrade_charm(), out)
    out = again(ctx, ctx.on.config_changed(), out)
    again(ctx, ctx.on.update_status(), out)
    assert snapshot(root) == before
    assert system.restarts() == [], system.restarts()
    assert system.queries and len(system.queries) == 2  # only at the switch


def test_a_station_without_the_first_generation_is_not_touched_by_it(tmp_path):
    root = tmp_path / "root"
    (root / "etc/influxdb").mkdir(parents=True)
    (root / "etc/influxdb/influxdb.conf").write_text("[http]\n")
    assert not fg.OldStation(root).present()
    assert fg.OldStation(root).collectors() == []


def test_the_oldest_of_the_newest_rows():
    assert fg.oldest_of_newest(answer("2026-12-04T09:00:00Z", "2026-12-03T22:00:00Z")) == "2026-12-03T22:00:00Z"
    assert fg.oldest_of_newest(answer(None, "2026-12-03T22:00:00Z")) == "2026-12-03T22:00:00Z"
    assert fg.oldest_of_newest(answer(None, None)) is None
    with pytest.raises(ValueError):
        fg.oldest_of_newest({"results": [{"error": "authorization failed"}]})


def test_a_switch_that_cannot_be_applied_leaves_the_old_station_running(env):
    root, system, ctx, deb = env
    system.config_error = "collectors.britney.interval: invalid time span"
    out = switch(env)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert not [c for c in system.calls if c[:2] == ("systemctl", "stop")]
    assert not (root / "etc/ubuntu-metrics/first-generation.json").exists()
    system.config_error = None
    system.fail["influxdb-down"] = "connection refused"
    out = again(ctx, ctx.on.config_changed(), out)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert not [c for c in system.calls if c[:2] == ("systemctl", "stop")]
    del system.fail["influxdb-down"]
    again(ctx, ctx.on.config_changed(), out)
    assert ("systemctl", "stop", *[f"run-metric-collector@{n}.timer" for n in OLD]) in system.calls
