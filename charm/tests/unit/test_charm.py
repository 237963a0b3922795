"""Unit tests with ops.testing (state transitions): every event and action,
the Blocked paths, the secret, and nothing half-applied on a bad option.
The seam is a FakeSystem; files go to a temporary root."""

import ast
import json
import re
import stat
import tomllib

import pytest
from conftest import CHARM_DIR, charmcraft, context
from fake import COLLECTORS, FakeSystem
from ops import testing

import charm as charm_module
from charm import UbuntuMetricsCharm

INFLUXDB_CONF = """reporting-disabled = false
[meta]
  dir = "/var/lib/influxdb/meta"
[http]
  # enabled = true
  # bind-address = ":8086"
  # auth-enabled = false
  # https-enabled = false
"""


@pytest.fixture()
def env(tmp_path):
    root = tmp_path / "root"
    (root / "etc/influxdb").mkdir(parents=True)
    (root / "etc/influxdb/influxdb.conf").write_text(INFLUXDB_CONF)
    system = FakeSystem(root)

    class Charm(UbuntuMetricsCharm):
        ROOT = root

        def make_system(self):
            return system

    deb = tmp_path / "ubuntu-metrics.deb"
    deb.write_bytes(b"!<arch>\ndebian-binary")
    return root, system, context(Charm), testing.Resource(name="ubuntu-metrics", path=deb)


def installed(env, **config):
    """The state after install."""
    root, system, ctx, deb = env
    return ctx.run(ctx.on.install(), testing.State(leader=True, config=config, resources=[deb]))


def configured(env, **config):
    _, _, ctx, _ = env
    return ctx.run(ctx.on.config_changed(), installed(env, **config))


def again(ctx, event, state, **config):
    """`event` on `state` with other options."""
    return ctx.run(event, testing.State(
        leader=True, config={**state.config, **config}, stored_states=state.stored_states,
        resources=state.resources, relations=state.relations, secrets=state.secrets))


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


# charmcraft.yaml and the code ------------------------------------------------

def test_charmcraft_yaml_and_the_code_agree():
    cc = charmcraft()
    source = (CHARM_DIR / "src/charm.py").read_text()
    # Every option is read by read_options, and nothing else is read.
    tree = ast.parse(source)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "read_options")
    read = {
        n.slice.value if isinstance(n, ast.Subscript) else n.args[0].value
        for n in ast.walk(fn)
        if (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant))
        or (isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "get" and n.args
            and isinstance(n.args[0], ast.Constant))
    }
    declared = set(cc["config"]["options"])
    assert read == declared, (read - declared, declared - read)
    # Elsewhere the code reads options only through read_options (dry_run
    # and mode aside, read again for the status and cos-agent).
    other = set(re.findall(r'self\.config\["([^"]+)"\]', source))
    assert other <= declared, other - declared
    # Every action has its handler, and every handler its action.
    assert set(charm_module.ACTIONS) == set(cc["actions"])
    for method in charm_module.ACTIONS.values():
        assert callable(getattr(UbuntuMetricsCharm, method))
    # Every relation is observed, and only those.
    relations = set(cc.get("requires", {})) | set(cc.get("provides", {}))
    assert set(re.findall(r'on\["([a-z-]+)"\]\.relation_', source)) == relations
    assert set(re.findall(r'get_relation\("([a-z-]+)"\)|relations\["([a-z-]+)"\]', source)) <= {
        (r, "") for r in relations} | {("", r) for r in relations}
    # Every action's params are declared as the code reads them.
    assert set(re.findall(r'event\.params\["([a-z-]+)"\]', source)) == {"name"}
    assert cc["actions"]["run-collector"]["required"] == ["name"]
    # The machine charm's bases and the part that carries the program.
    assert cc["base"] == "ubuntu@24.04" and set(cc["platforms"]) == {"amd64", "arm64"}
    assert cc["parts"]["ubuntu-metrics-deb"]["prime"] == ["ubuntu-metrics.deb"]
    assert cc["config"]["options"]["influxdb-password-secret"]["type"] == "secret"
    assert cc["config"]["options"]["grafana-anonymous"]["default"] is True


CHARMCRAFT_CHECK = """
import json, yaml
from charmcraft import parts
from charmcraft.models import project
parts.setup_parts()
p = project.CharmcraftProject.unmarshal(yaml.safe_load(open("charmcraft.yaml")))
print(json.dumps({
    "model": type(p).__name__, "name": p.name, "base": p.base, "platforms": sorted(p.platforms),
    "parts": sorted(p.parts), "actions": sorted(p.actions), "options": sorted(p.config["options"]),
    "resources": sorted(p.resources), "requires": sorted(p.requires), "provides": sorted(p.provides),
}))
"""


def test_charmcraft_accepts_the_project():
    """charmcraft's own project model (plugins, platforms, actions, options)
    takes charmcraft.yaml; charm/run-tests installs charmcraft for this."""
    import os
    import subprocess

    python = os.environ.get("CHARMCRAFT_PYTHON")
    if not python:
        pytest.skip("CHARMCRAFT_PYTHON unset: charm/run-tests installs charmcraft and sets it")
    r = subprocess.run([python, "-c", CHARMCRAFT_CHECK], cwd=CHARM_DIR, capture_output=True, text=True,
                       env={**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")})
    assert r.returncode == 0, r.stderr
    cc = charmcraft()
    assert json.loads(r.stdout.splitlines()[-1]) == {
        "model": "PlatformCharm", "name": "ubuntu-metrics", "base": "ubuntu@24.04",
        "platforms": ["amd64", "arm64"], "parts": ["charm", "ubuntu-metrics-deb"],
        "actions": sorted(cc["actions"]), "options": sorted(cc["config"]["options"]),
        "resources": ["ubuntu-metrics"], "requires": ["ingress"], "provides": ["cos-agent"],
    }


def test_the_deb_part_takes_the_package_of_the_target_architecture(tmp_path):
    """The override-build script of the part that carries the program, as
    craft-parts runs it (in the part's build directory, with its variables)."""
    import subprocess

    script = charmcraft()["parts"]["ubuntu-metrics-deb"]["override-build"]
    build, install = tmp_path / "build", tmp_path / "install"
    build.mkdir()
    for name in ("ubuntu-metrics_0.1.0-1_amd64.deb", "ubuntu-metrics_0.2.0-1_amd64.deb",
                 "ubuntu-metrics_0.2.0-1_arm64.deb", "README.md"):
        (build / name).write_text(name)

    def run(arch):
        return subprocess.run(["bash", "-c", script], cwd=build, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "CRAFT_ARCH_BUILD_FOR": arch,
                                   "CRAFT_PART_INSTALL": str(install / arch)})

    for arch in ("amd64", "arm64"):
        r = run(arch)
        assert r.returncode == 0, r.stderr
        assert (install / arch / "ubuntu-metrics.deb").read_text() == f"ubuntu-metrics_0.2.0-1_{arch}.deb"
    r = run("riscv64")
    assert r.returncode == 1
    assert "no ubuntu-metrics_*_riscv64.deb in charm/debs/: run ./scripts/build-deb" in r.stderr


def test_every_declared_event_and_action_runs(env):
    """Each action runs (results or a failure) and each event is handled."""
    root, system, ctx, deb = env
    state = configured(env)
    for action in charmcraft()["actions"]:
        params = {"name": "sponsoring"} if action == "run-collector" else {}
        ctx.run(ctx.on.action(action, params=params), state)
        assert ctx.action_results, action


# install ---------------------------------------------------------------------

def test_install_installs_the_packages_grafana_and_the_program(env):
    root, system, ctx, deb = env
    out = installed(env)
    assert system.machine_calls() == [
        ("apt", "influxdb", "influxdb-client", "rsync", "distro-info-data"),
        ("snap", "grafana"),
        ("deb", str(root / "var/cache/ubuntu-metrics/ubuntu-metrics-resource.deb")),
    ]
    assert out.workload_version == "0.9.1"
    assert out.unit_status == testing.WaitingStatus("waiting for the configuration")


def test_a_binary_resource_replaces_the_program(env, tmp_path):
    root, system, ctx, _ = env
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF...")
    ctx.run(ctx.on.install(), testing.State(resources=[testing.Resource(name="ubuntu-metrics", path=binary)]))
    assert (root / "usr/bin/ubuntu-metrics").read_bytes() == b"\x7fELF..."
    assert mode(root / "usr/bin/ubuntu-metrics") == 0o755
    assert not [c for c in system.calls if c[0] == "deb"]


@pytest.mark.parametrize("kind,message", [
    ("apt", "apt-get install failed: E: Unable to locate package influxdb"),
    ("snap", "snap install failed: error: cannot install \"grafana\""),
    ("deb", "apt-get install failed: dpkg: error"),
])
def test_an_install_failure_blocks_with_its_reason(env, kind, message):
    root, system, ctx, deb = env
    system.fail[kind] = message
    out = installed(env)
    assert out.unit_status == testing.BlockedStatus(f"install failed: {message}")
    # config-changed tries again, and then goes on.
    del system.fail[kind]
    out = ctx.run(ctx.on.config_changed(), out)
    assert out.unit_status == testing.ActiveStatus("10 collectors, all fine")


def test_install_without_a_program_blocks(env):
    root, system, ctx, deb = env
    # Deployed without the resource: Juju gives an empty file.
    empty = deb.path.with_name("empty")
    empty.write_bytes(b"")
    out = ctx.run(ctx.on.install(), testing.State(resources=[testing.Resource(name="ubuntu-metrics", path=empty)]))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert "no ubuntu-metrics.deb in the charm and no ubuntu-metrics resource" in out.unit_status.message


def test_a_new_binary_restarts_the_daemon(env, tmp_path):
    root, system, ctx, _ = env
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"\x7fELF old")
    new.write_bytes(b"\x7fELF new")
    state = ctx.run(ctx.on.install(), testing.State(
        config={"mode": "daemon"}, resources=[testing.Resource(name="ubuntu-metrics", path=old)]))
    state = ctx.run(ctx.on.config_changed(), state)
    system.calls.clear()
    # juju attach-resource: upgrade-charm with the new file.
    ctx.run(ctx.on.upgrade_charm(), testing.State(
        config={"mode": "daemon"}, stored_states=state.stored_states,
        resources=[testing.Resource(name="ubuntu-metrics", path=new)]))
    assert (root / "usr/bin/ubuntu-metrics").read_bytes() == b"\x7fELF new"
    assert system.machine_calls()[-1] == ("systemctl", "restart", "ubuntu-metrics.service")
    # The same file again: nothing to restart.
    system.calls.clear()
    ctx.run(ctx.on.upgrade_charm(), testing.State(
        config={"mode": "daemon"}, stored_states=state.stored_states,
        resources=[testing.Resource(name="ubuntu-metrics", path=new)]))
    assert ("systemctl", "restart", "ubuntu-metrics.service") not in system.calls


def test_upgrade_charm_installs_the_program_again(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.calls.clear()
    ctx.run(ctx.on.upgrade_charm(), state)
    assert ("deb", str(root / "var/cache/ubuntu-metrics/ubuntu-metrics-resource.deb")) in system.calls


def test_start_and_update_status_only_report(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.calls.clear()
    for event in (ctx.on.start(), ctx.on.update_status()):
        out = ctx.run(event, state)
        assert out.unit_status == testing.ActiveStatus("10 collectors, all fine")
    assert system.machine_calls() == []


# config-changed: the local InfluxDB --------------------------------------------

def test_config_changed_sets_up_a_local_station(env):
    root, system, ctx, deb = env
    out = configured(env, intervals="britney=10m, images=1h", enabled="versions=false", retention="52w")
    assert out.unit_status == testing.ActiveStatus("9 collectors, all fine")
    etc = root / "etc/ubuntu-metrics"
    cfg = tomllib.loads((etc / "config.toml").read_text())
    assert cfg["influxdb"] == {
        "url": "https://127.0.0.1:8086", "database": "metrics",
        "username": "collector", "ca_file": str(etc / "tls/ca.pem"),
    }
    assert cfg["collectors"] == {"britney": {"interval": "10m"}, "images": {"interval": "1h"},
                                 "versions": {"enabled": False}}
    assert "daemon" not in cfg
    # TLS and authentication on InfluxDB, restarted once, then provisioned.
    conf = (root / "etc/influxdb/influxdb.conf").read_text()
    assert "  auth-enabled = true" in conf and "  https-enabled = true" in conf
    assert f'  https-private-key = "{etc}/tls/influxdb.key"' in conf
    assert mode(etc / "tls/influxdb.key") == 0o640
    assert ("chown", str(etc / "tls/influxdb.key"), "root", "influxdb") in system.calls
    provision = next(r for r in system.runs if r[2:4] == ["influxdb", "provision"] and "--help" not in r)
    assert provision[4:] == ["--secrets-dir", str(etc / "secrets"), "--retention", "52w"]
    assert (etc / "influxdb-password").read_text() == "collector-pw\n"
    assert mode(etc / "influxdb-password") == 0o600
    # Grafana.
    assert (etc / "grafana.env").read_text() == 'INFLUXDB_GRAFANA_PASSWORD="grafana-pw"\n'
    dropin = (root / "etc/systemd/system/snap.grafana.grafana.service.d/ubuntu-metrics.conf").read_text()
    assert "Environment=GF_AUTH_ANONYMOUS_ENABLED=true" in dropin
    assert f"EnvironmentFile={etc}/grafana.env" in dropin
    export = next(r for r in system.runs if r[2:4] == ["dashboards", "export"])
    assert export[export.index("--user") + 1] == "grafana"
    timers = [f"ubuntu-metrics-{c}.timer" for c in COLLECTORS if c != "versions"]
    assert [c for c in system.calls if c[0] == "systemctl"] == [
        ("systemctl", "enable", "influxdb.service"),
        ("systemctl", "restart", "influxdb.service"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "restart", "snap.grafana.grafana.service"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", *timers),
    ]
    assert testing.TCPPort(3000) in out.opened_ports


def test_a_second_config_changed_restarts_nothing(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.calls.clear()
    state = ctx.run(ctx.on.config_changed(), state)
    assert system.machine_calls() == []
    assert state.unit_status == testing.ActiveStatus("10 collectors, all fine")


def test_a_changed_interval_restarts_only_its_timer(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.calls.clear()
    state = again(ctx, ctx.on.config_changed(), state, intervals="britney=7m", enabled="images=false")
    assert system.machine_calls() == [
        ("systemctl", "stop", "ubuntu-metrics-images.timer"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "restart", "ubuntu-metrics-britney.timer"),
    ]


def test_grafana_anonymous_off_restarts_grafana_only(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.calls.clear()
    again(ctx, ctx.on.config_changed(), state, **{"grafana-anonymous": False})
    dropin = (root / "etc/systemd/system/snap.grafana.grafana.service.d/ubuntu-metrics.conf").read_text()
    assert "Environment=GF_AUTH_ANONYMOUS_ENABLED=false" in dropin
    assert system.machine_calls() == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "restart", "snap.grafana.grafana.service"),
    ]


def test_dry_run_makes_the_timers_print(env):
    root, system, ctx, deb = env
    state = configured(env, dry_run=True)
    dropin = root / "etc/systemd/system/ubuntu-metrics@.service.d/dry-run.conf"
    assert "run --dry-run %i" in dropin.read_text()
    assert state.unit_status == testing.ActiveStatus("10 collectors, all fine (dry run: nothing written)")
    system.calls.clear()
    again(ctx, ctx.on.config_changed(), state, dry_run=False)
    assert not dropin.exists()
    assert system.machine_calls() == [("systemctl", "daemon-reload")]


def test_daemon_mode(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.calls.clear()
    state = again(ctx, ctx.on.config_changed(), state, mode="daemon")
    units = root / "etc/systemd/system"
    assert not list(units.glob("ubuntu-metrics*")) and not list(units.glob("timers.target.wants/*"))
    timers = [f"ubuntu-metrics-{c}.timer" for c in COLLECTORS]
    assert system.machine_calls() == [
        ("systemctl", "disable", "--now", *timers),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "ubuntu-metrics.service"),
    ]
    cfg = tomllib.loads((root / "etc/ubuntu-metrics/config.toml").read_text())
    assert cfg["daemon"] == {"listen": "127.0.0.1:9273"}
    # A new interval: reloaded (SIGHUP), not restarted.
    system.calls.clear()
    state = again(ctx, ctx.on.config_changed(), state, intervals="cnf=1h")
    assert system.machine_calls() == [("systemctl", "reload-or-restart", "ubuntu-metrics.service")]
    # Back to the timers.
    system.calls.clear()
    again(ctx, ctx.on.config_changed(), state, mode="timers")
    assert ("systemctl", "disable", "--now", "ubuntu-metrics.service") in system.calls
    assert system.calls[-1][:3] == ("systemctl", "enable", "--now")


# Blocked, and nothing half-applied ---------------------------------------------

def test_an_invalid_value_blocks_with_the_programs_message_and_applies_nothing(env):
    root, system, ctx, deb = env
    state = configured(env, intervals="britney=10m")
    etc = root / "etc/ubuntu-metrics"
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    system.calls.clear()
    system.config_error = 'collectors.britney.interval = "0s": at least 1s (the next run starts one interval after the previous one ended)'
    out = again(ctx, ctx.on.config_changed(), state, intervals="britney=0s", mode="daemon", dry_run=False)
    assert out.unit_status == testing.BlockedStatus(
        f'invalid configuration: {etc}/config.toml: collectors.britney.interval = "0s": at least 1s '
        "(the next run starts one interval after the previous one ended)")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files
    assert system.machine_calls() == []
    assert [r[2:4] for r in system.runs[-1:]] == [["config", "show"]]
    # The status stays blocked until the option is fixed.
    out = ctx.run(ctx.on.update_status(), out)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    system.config_error = None
    out = again(ctx, ctx.on.config_changed(), out, intervals="britney=10m", mode="timers")
    assert out.unit_status == testing.ActiveStatus("10 collectors, all fine")


@pytest.mark.parametrize("config,message", [
    ({"intervals": "britney"}, "option intervals: 'britney' is not NAME=VALUE"),
    ({"enabled": "images=false,=true"}, "option enabled: '=true' is not NAME=VALUE"),
    ({"mode": "cron"}, "option mode: 'cron': use timers or daemon"),
    ({"mode": "daemon", "dry_run": True}, "option dry_run needs mode=timers"),
    ({"retention": "5m"}, "option retention: invalid value '5m' for '--retention <SPAN>'"),
    ({"influxdb-url": "https://influx:8086"}, "option influxdb-url is set: set influxdb-user too"),
    ({"influxdb-url": "https://influx:8086", "influxdb-user": "u"}, "set influxdb-password-secret"),
    ({"influxdb-ca-cert": "hello"}, "option influxdb-ca-cert: not a PEM certificate"),
])
def test_bad_options_block_before_anything_is_applied(env, config, message):
    root, system, ctx, deb = env
    state = installed(env)
    system.calls.clear()
    out = again(ctx, ctx.on.config_changed(), state, **config)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert message in out.unit_status.message, out.unit_status.message
    assert not (root / "etc/ubuntu-metrics/config.toml").exists()
    assert not (root / "etc/ubuntu-metrics/config.toml.new").exists()
    assert system.machine_calls() == []


def test_a_failed_provision_blocks(env):
    root, system, ctx, deb = env
    real = system.program

    def program(binary, args, env_):
        if args[2:4] == ["influxdb", "provision"] and "--help" not in args:
            return charm_module.Result(1, "", "ubuntu-metrics: influxdb provision: the server requires authentication\n")
        return real(binary, args, env_)

    system.program = program
    out = configured(env)
    assert out.unit_status == testing.BlockedStatus("influxdb provision: the server requires authentication")


def test_influxdb_not_answering_blocks(env):
    root, system, ctx, deb = env
    system.fail["influxdb-down"] = "Connection refused"
    out = configured(env)
    assert out.unit_status == testing.BlockedStatus(
        "InfluxDB does not answer https://127.0.0.1:8086/ping (Connection refused) 60 s after its restart")


def test_the_local_port_comes_from_influxdb_conf(env):
    root, system, ctx, deb = env
    conf = root / "etc/influxdb/influxdb.conf"
    conf.write_text(INFLUXDB_CONF.replace('# bind-address = ":8086"', 'bind-address = "127.0.0.1:18086"'))
    configured(env)
    cfg = tomllib.loads((root / "etc/ubuntu-metrics/config.toml").read_text())
    assert cfg["influxdb"]["url"] == "https://127.0.0.1:18086"


# The external InfluxDB and its secret ------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def external(env, content, **config):
    root, system, ctx, deb = env
    secret = testing.Secret(tracked_content=content)
    state = installed(env)
    opts = {"influxdb-url": "https://influx.example.com:8086", "influxdb-user": "kpi",
            "influxdb-password-secret": secret.id, **config}
    return secret, ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, config=opts, secrets=[secret], stored_states=state.stored_states, resources=[deb]))


def test_an_external_influxdb_with_its_password_in_a_secret(env):
    root, system, ctx, deb = env
    secret, out = external(env, {"password": "s3cret-Pw"}, **{"influxdb-ca-cert": PEM})
    assert out.unit_status == testing.ActiveStatus("10 collectors, all fine")
    etc = root / "etc/ubuntu-metrics"
    text = (etc / "config.toml").read_text()
    assert tomllib.loads(text)["influxdb"] == {
        "url": "https://influx.example.com:8086", "database": "metrics",
        "username": "kpi", "ca_file": str(etc / "influxdb-ca.pem"),
    }
    assert (etc / "influxdb-ca.pem").read_text() == PEM + "\n"
    assert (etc / "influxdb-password").read_text() == "s3cret-Pw\n"
    assert mode(etc / "influxdb-password") == 0o600
    # The secret is nowhere else: not in the configuration, on a command
    # line, in the status or in the files Grafana reads (but its 0600 env).
    assert "s3cret" not in text and "s3cret" not in json.dumps(system.runs)
    assert "s3cret" not in out.unit_status.message
    for p in root.rglob("*"):
        if p.is_file() and "s3cret" in p.read_text(errors="replace"):
            assert p in (etc / "influxdb-password", etc / "grafana.env"), p
            assert mode(p) == 0o600
    # No local InfluxDB set-up.
    assert not any(r[2:4] == ["influxdb", "provision"] for r in system.runs)
    assert ("systemctl", "restart", "influxdb.service") not in system.calls
    assert "https-enabled" not in (root / "etc/influxdb/influxdb.conf").read_text().replace("# https-enabled", "")
    # Grafana reads as the same user; the action says so.
    ctx.run(ctx.on.action("get-influxdb-grafana-password"), out)
    assert ctx.action_results == {"username": "kpi", "password": "s3cret-Pw"}


def test_a_separate_grafana_user_in_the_secret(env):
    root, system, ctx, deb = env
    secret, out = external(env, {"password": "pw1", "grafana-username": "viewer", "grafana-password": "pw2"})
    assert (root / "etc/ubuntu-metrics/grafana.env").read_text() == 'INFLUXDB_GRAFANA_PASSWORD="pw2"\n'
    export = next(r for r in system.runs if r[2:4] == ["dashboards", "export"])
    assert export[export.index("--user") + 1] == "viewer"
    ctx.run(ctx.on.action("get-influxdb-grafana-password"), out)
    assert ctx.action_results == {"username": "viewer", "password": "pw2"}


def test_a_secret_without_a_password_blocks(env):
    secret, out = external(env, {"pass": "x"})
    assert out.unit_status == testing.BlockedStatus("option influxdb-password-secret: the secret has no key password")


def test_a_secret_not_granted_blocks(env):
    root, system, ctx, deb = env
    state = installed(env)
    out = ctx.run(ctx.on.config_changed(), testing.State(
        leader=True, stored_states=state.stored_states, resources=[deb],
        config={"influxdb-url": "https://influx:8086", "influxdb-user": "kpi",
                "influxdb-password-secret": "secret:cvh7kruupa1s46bqvuig"}))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert "cannot read the secret" in out.unit_status.message and "grant" in out.unit_status.message
    assert not (root / "etc/ubuntu-metrics/config.toml").exists()


def test_secret_changed_writes_the_new_password_and_touches_no_service(env):
    root, system, ctx, deb = env
    secret, out = external(env, {"password": "old-pw"})
    system.calls.clear()
    new = testing.Secret(tracked_content={"password": "new-pw"}, id=secret.id)
    ctx.run(ctx.on.secret_changed(new), testing.State(
        leader=True, config=out.config, secrets=[new], stored_states=out.stored_states, resources=[deb]))
    assert (root / "etc/ubuntu-metrics/influxdb-password").read_text() == "new-pw\n"
    # The timers read the credential at each run: nothing to restart but Grafana.
    assert system.machine_calls() == [("systemctl", "restart", "snap.grafana.grafana.service")]


# Status ---------------------------------------------------------------------------

def test_status_points_spooled(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.status = {"status": "problem", "problems": ["spool: 12 points waiting since 40m"], "spool": {"points": 12}}
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == testing.WaitingStatus("12 points spooled; spool: 12 points waiting since 40m")


def test_status_a_failing_collector(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.status = {"status": "problem", "problems": ["failing: sponsoring"], "spool": {"points": 0}}
    system.status_code = 1
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == testing.ActiveStatus("10 collectors: failing: sponsoring")


def test_status_nothing_ran_yet(env):
    # A fresh station: status exits 3 (UNKNOWN) with its report; the unit
    # waits for the first runs instead of saying "all fine" or failing.
    root, system, ctx, deb = env
    state = configured(env)
    system.status = {"status": "unknown", "verdict": "UNKNOWN", "exit_status": 3, "problems": [], "spool": {"points": 0}}
    system.status_code = 3
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == testing.WaitingStatus("10 collectors, nothing has run yet")


def test_status_a_configuration_error(env):
    root, system, ctx, deb = env
    state = configured(env)
    real = system.program

    def program(binary, args, env_):
        if args[2:3] == ["status"]:
            return charm_module.Result(2, "", "ubuntu-metrics: configuration error: /etc/x: bad\n")
        return real(binary, args, env_)

    system.program = program
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == testing.BlockedStatus("invalid configuration: /etc/x: bad")


# Relations -----------------------------------------------------------------------

def test_ingress_publishes_grafana_and_uses_its_url(env):
    root, system, ctx, deb = env
    state = configured(env)
    rel = testing.Relation("ingress", remote_app_data={"ingress": json.dumps({"url": "https://lb.example/m-grafana"})})
    out = ctx.run(ctx.on.relation_changed(rel), testing.State(
        leader=True, relations=[rel], stored_states=state.stored_states, resources=[deb]))
    data = out.get_relation(rel.id).local_app_data
    assert json.loads(data["port"]) == 3000 and json.loads(data["name"]) == "ubuntu-metrics"
    assert json.loads(data["scheme"]) == "http"
    assert "ip" in out.get_relation(rel.id).local_unit_data
    dropin = (root / "etc/systemd/system/snap.grafana.grafana.service.d/ubuntu-metrics.conf").read_text()
    assert "Environment=GF_SERVER_ROOT_URL=https://lb.example/m-grafana" in dropin
    # Joined and broken run the same configuration.
    ctx.run(ctx.on.relation_joined(out.get_relation(rel.id)), out)
    out = ctx.run(ctx.on.relation_broken(out.get_relation(rel.id)), out)
    assert out.unit_status == testing.ActiveStatus("10 collectors, all fine")


def test_cos_agent_scrapes_the_daemon(env):
    root, system, ctx, deb = env
    state = configured(env, mode="daemon")
    rel = testing.Relation("cos-agent")
    for event in (ctx.on.relation_joined(rel), ctx.on.relation_changed(rel)):
        out = ctx.run(event, testing.State(leader=True, config={"mode": "daemon"}, relations=[rel],
                                           stored_states=state.stored_states, resources=[deb]))
        data = json.loads(out.get_relation(rel.id).local_unit_data["config"])
        assert data["metrics_scrape_jobs"] == [{
            "job_name": "ubuntu_metrics", "metrics_path": "/metrics",
            "static_configs": [{"targets": ["127.0.0.1:9273"]}]}]


# Actions -------------------------------------------------------------------------

def test_run_collector_gives_the_points(env):
    root, system, ctx, deb = env
    state = configured(env)
    ctx.run(ctx.on.action("run-collector", params={"name": "sponsoring"}), state)
    assert ctx.action_results["count"] == 2
    assert [json.loads(p)["fields"]["n"] for p in ctx.action_results["points"].splitlines()] == [1, 2]
    assert ["run", "sponsoring", "--dry-run", "--format", "json"] in [r[2:] for r in system.runs]


def test_run_collector_failing_in_part_gives_its_points_and_fails(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.dry_run = charm_module.Result(1, '{"measurement":"m","fields":{"n":1}}\n',
                                         "ubuntu-metrics: sponsoring: HTTP 503 from upstream\n")
    with pytest.raises(testing.ActionFailed) as e:
        ctx.run(ctx.on.action("run-collector", params={"name": "sponsoring"}), state)
    assert e.value.message == "run sponsoring --dry-run (exit 1): sponsoring: HTTP 503 from upstream"
    assert ctx.action_results == {"count": 1, "points": '{"measurement":"m","fields":{"n":1}}'}


def test_run_collector_unknown_fails_with_the_programs_message(env):
    root, system, ctx, deb = env
    state = configured(env)
    with pytest.raises(testing.ActionFailed) as e:
        ctx.run(ctx.on.action("run-collector", params={"name": "nope"}), state)
    assert e.value.message == "run nope --dry-run (exit 2): unknown collector nope"


def test_spool_status(env):
    root, system, ctx, deb = env
    ctx.run(ctx.on.action("spool-status"), configured(env))
    assert ctx.action_results == {"dir": "/var/lib/ubuntu-metrics/spool", "records": "2", "points": "7",
                                  "dead-letter-batches": "0"}


def test_spool_flush(env):
    root, system, ctx, deb = env
    state = configured(env)
    ctx.run(ctx.on.action("spool-flush"), state)
    assert ctx.action_results == {"output": "wrote 0 points from the spool\nthe spool is empty"}
    system.flush = charm_module.Result(75, "wrote 0 points from the spool\n",
                                       "ubuntu-metrics: 7 points in 2 records still wait in /var/lib/x\n")
    with pytest.raises(testing.ActionFailed) as e:
        ctx.run(ctx.on.action("spool-flush"), state)
    assert e.value.message == "spool flush (exit 75): 7 points in 2 records still wait in /var/lib/x"


def test_spool_flush_of_a_station_whose_services_own_the_spool_runs_as_them(env):
    root, system, ctx, deb = env
    state = configured(env)
    system.flush = charm_module.Result(
        77, "",
        "ubuntu-metrics: refusing to run as root: the state directory /var/lib/ubuntu-metrics belongs to uid 61234\n"
        "    run it as the services' dynamic user:\n"
        "    sudo systemd-run --wait --pipe --quiet --property=User=ubuntu-metrics --property=DynamicUser=yes"
        " --property=StateDirectory=ubuntu-metrics --property=LoadCredential=influxdb.password_file:/etc/x"
        " /usr/bin/ubuntu-metrics --config /etc/ubuntu-metrics/config.toml spool flush\n")
    ctx.run(ctx.on.action("spool-flush"), state)
    assert ctx.action_results == {"output": "wrote 7 points from the spool\nthe spool is empty"}
    assert any(r[:2] == ["systemd-run", "--wait"] for r in system.runs)


def test_actions_before_the_configuration_fail(env):
    root, system, ctx, deb = env
    state = installed(env)
    for action, params in (("spool-status", {}), ("spool-flush", {}), ("run-collector", {"name": "cnf"}),
                           ("get-influxdb-grafana-password", {})):
        with pytest.raises(testing.ActionFailed):
            ctx.run(ctx.on.action(action, params=params), state)


def test_get_influxdb_grafana_password_local(env):
    root, system, ctx, deb = env
    ctx.run(ctx.on.action("get-influxdb-grafana-password"), configured(env))
    assert ctx.action_results == {"username": "grafana", "password": "grafana-pw"}


def test_the_programs_message_is_picked_from_its_stderr():
    toml = """2026-12-01T05:21:22.512140Z ERROR e.toml: TOML parse error at line 2, column 9
ubuntu-metrics: configuration error: /etc/ubuntu-metrics/config.toml: TOML parse error at line 2, column 9
  |
2 | enabled="maybe"
  |         ^^^^^^^
invalid type: string "maybe", expected a boolean
"""
    assert charm_module.program_message(toml) == (
        '/etc/ubuntu-metrics/config.toml: TOML parse error at line 2, column 9: '
        'invalid type: string "maybe", expected a boolean')
    two = "ubuntu-metrics: InfluxDB could not take the points now: timeout\nubuntu-metrics: 7 points wait\n"
    assert charm_module.program_message(two) == "InfluxDB could not take the points now: timeout; 7 points wait"
    clap = "error: invalid value 'x' for '--retention <SPAN>': bad\n\nFor more information, try '--help'.\n"
    assert charm_module.program_message(clap) == "invalid value 'x' for '--retention <SPAN>': bad"
    assert charm_module.program_message("something\nelse\n") == "else"


def test_sources_become_the_configurations_sources_table(env):
    root, system, ctx, deb = env
    out = configured(env, sources="sponsoring=http://mirror.internal/sponsoring/general.json,"
                                  " images=rsync://mirror.internal/cdimage/")
    cfg = tomllib.loads((root / "etc/ubuntu-metrics/config.toml").read_text())
    assert cfg["sources"] == {"sponsoring": "http://mirror.internal/sponsoring/general.json",
                              "images": "rsync://mirror.internal/cdimage/"}
    # The program judges the names and URLs (config show): its refusal blocks.
    system.config_error = "sources.nope: unknown source"
    out = again(ctx, ctx.on.config_changed(), out, sources="nope=http://x/")
    assert out.unit_status == testing.BlockedStatus(
        f"invalid configuration: {root}/etc/ubuntu-metrics/config.toml: sources.nope: unknown source")
    out = again(ctx, ctx.on.config_changed(), out, sources="sponsoring")
    assert "option sources: 'sponsoring' is not NAME=VALUE" in out.unit_status.message
