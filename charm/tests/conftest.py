"""Shared by the unit and integration tests: the charm's source on the
path, and an ops.testing Context built from charmcraft.yaml."""

import sys
from pathlib import Path

import yaml

CHARM_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHARM_DIR / "src"))


def charmcraft() -> dict:
    return yaml.safe_load((CHARM_DIR / "charmcraft.yaml").read_text())


def context(charm_type):
    """A Context with the metadata, actions and options of charmcraft.yaml."""
    from ops import testing

    cc = charmcraft()
    meta = {k: v for k, v in cc.items() if k not in ("config", "actions", "parts", "platforms", "base", "type")}
    return testing.Context(
        charm_type,
        meta=meta,
        actions=cc["actions"],
        config=cc["config"],
        charm_root=CHARM_DIR,
    )
