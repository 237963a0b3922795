"""Runs one of our charm's handlers inside a stage container, against the
real systemd, as Juju would run it on the machine (the systemd stage's
first_generation scenario; copied there with the charm by
first_generation.CharmDriver, run with the container's python3).

    python3 charm_driver.py request.json

The request: {"event": "upgrade-charm" | "config-changed" | "install" |
"update-status" | "action:NAME", "config": {option: value}, "params":
{...}, "secret": {key: value} or null}. The charm's stored state and the
events it deferred are kept between runs in state.json beside this file
(ops.testing's State in, State out), as Juju keeps them between hooks; the
Juju secret's id is the same in every run.
The answer, one JSON line on stdout: the unit status, the action's results
or failure, the calls the stage's System recorded, the charm's log.

The System is the charm's own except two calls the stage cannot make:
`apt_install` checks that the packages are installed (the container has no
network: the stage's rootfs carries what APT_PACKAGES names) and fails
naming those that are not; `snap_install` records the call (no snapd in the
container: Grafana is absent here), and so does `systemctl` for Grafana's
unit; the charm's files for Grafana are written as on a real machine.
"""

import dataclasses
import json
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "site-packages"), str(HERE / "tests"), str(HERE / "src")]

from conftest import charmcraft, context  # noqa: E402
from ops import testing  # noqa: E402

import charm  # noqa: E402
from charm import Failure, System, UbuntuMetricsCharm  # noqa: E402

GRAFANA_SERVICE = getattr(charm, "GRAFANA_SERVICE", "snap.grafana.grafana.service")

STATE = HERE / "state.json"
# The secret's id, the same in every run (Juju's secret URI).
SECRET_ID = "secret:d0s7agef1rs7gen5ec2e"


class StageSystem(System):
    """The charm's System, less apt's network and snapd."""

    def __init__(self):
        self.calls = []

    def apt_install(self, packages):
        self.calls.append(["apt", *packages])
        missing = [p for p in packages
                   if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
        if missing:
            raise Failure(f"not installed in the stage's container (it has no network): {' '.join(missing)}: "
                          "add them to INCLUDE or ON_DEMAND in tests/systemd-stage/lib.py")

    def snap_install(self, name):
        # No snapd in the container: Grafana is absent from the stage.
        self.calls.append(["snap", name])

    def install_deb(self, path):
        self.calls.append(["deb", str(path)])
        super().install_deb(path)

    def systemctl(self, *args):
        self.calls.append(["systemctl", *args])
        # Grafana's unit comes with its snap, absent here: the calls that
        # name it are recorded only.
        if GRAFANA_SERVICE in args:
            args = tuple(a for a in args if a != GRAFANA_SERVICE)
            if not [a for a in args if not a.startswith("-")][1:]:
                return
        super().systemctl(*args)


SYSTEM = StageSystem()


class Charm(UbuntuMetricsCharm):
    def make_system(self):
        return SYSTEM


def event_of(ctx, name, params):
    if name.startswith("action:"):
        return ctx.on.action(name.split(":", 1)[1], params=params)
    return {
        "install": ctx.on.install,
        "upgrade-charm": ctx.on.upgrade_charm,
        "config-changed": ctx.on.config_changed,
        "update-status": ctx.on.update_status,
        "start": ctx.on.start,
    }[name]()


def main():
    req = json.loads(Path(sys.argv[1]).read_text())
    saved = json.loads(STATE.read_text()) if STATE.exists() else {}
    answer = {"event": req["event"]}
    declared = set((charmcraft().get("config") or {}).get("options") or {})
    unknown = sorted(set(req["config"]) - declared)
    if unknown:
        answer["error"] = (f"the charm declares no option {', '.join(unknown)} (charm/charmcraft.yaml): "
                           "the scenario needs it")
        print(json.dumps(answer))
        return 3
    config = dict(req["config"])
    secrets = []
    if req.get("secret") is not None:
        secrets.append(testing.Secret(tracked_content=req["secret"], id=SECRET_ID))
        config["influxdb-password-secret"] = SECRET_ID
    # The resource as Charmhub attaches it to a charm deployed without one:
    # an empty file (the charm then installs its bundled ubuntu-metrics.deb).
    empty = HERE / "empty-resource"
    empty.write_bytes(b"")
    state = testing.State(
        leader=True,
        config=config,
        secrets=secrets,
        resources=[testing.Resource(name="ubuntu-metrics", path=empty)],
        stored_states=[testing.StoredState(name=s["name"], owner_path=s["owner_path"], content=s["content"])
                       for s in saved.get("stored_states", [])],
        # Events the charm deferred: Juju runs them again before the next.
        deferred=[testing.DeferredEvent(**d) for d in saved.get("deferred", [])],
    )
    ctx = context(Charm)
    try:
        out = ctx.run(event_of(ctx, req["event"], req.get("params") or {}), state)
    except testing.ActionFailed as e:
        answer["action_failed"] = e.message
        out = e.state
    except Exception as e:  # the handler raised: Juju would mark the hook failed
        answer["error"] = f"{type(e).__name__}: {e}"
        answer["traceback"] = traceback.format_exc()
        out = None
    if out is not None:
        answer["status"] = {"name": out.unit_status.name, "message": out.unit_status.message}
        answer["workload_version"] = out.workload_version
        STATE.write_text(json.dumps({
            "stored_states": [{"name": s.name, "owner_path": s.owner_path, "content": dict(s.content)}
                              for s in out.stored_states],
            "deferred": [dataclasses.asdict(d) for d in out.deferred],
        }))
        answer["deferred"] = [d.handle_path for d in out.deferred]
    if req["event"].startswith("action:"):
        answer["action_results"] = ctx.action_results
    answer["calls"] = SYSTEM.calls
    answer["log"] = [f"{line.level}: {line.message}" for line in ctx.juju_log]
    print(json.dumps(answer, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
