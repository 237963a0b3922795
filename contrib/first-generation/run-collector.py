#!/usr/bin/env python3
"""Run a first-generation collector under ubuntu-metrics, unchanged.

The first generation's collectors are Python modules
``metrics.collectors.<name>``, each with a class derived from
``metrics.lib.basemetric.Metric`` whose ``collect()`` returns the list of
dictionaries that influxdb-python's ``write_points`` takes::

    {"measurement": "...", "tags": {...}, "fields": {...}, "time": datetime}

This adapter imports one such collector from a checkout of the old
repository, calls ``collect()`` and prints the points as one JSON array on
standard output (``datetime`` values with ``str()``), which is what an
``exec`` collector of ubuntu-metrics reads. Writing, retries, the spool,
scheduling and self-metrics are then ubuntu-metrics' business: the old
``run()`` (which wrote to InfluxDB itself) is never called.

Usage (the ``command`` of an exec collector)::

    python3 run-collector.py --checkout /srv/ubuntu-metrics-old NAME

Only the standard library is used. When the checkout's ``basemetric``
imports influxdb-python (``from influxdb import InfluxDBClient``) and that
package is not installed, a stand-in module is provided whose client
refuses to be used: a collector's ``collect()`` does not write.
"""

import argparse
import contextlib
import datetime
import decimal
import importlib
import inspect
import json
import sys
import types


def _influxdb_stand_in():
    """A module ``influxdb`` whose client cannot write (collect() never does)."""
    module = types.ModuleType("influxdb")

    class InfluxDBClient:  # noqa: D401 - a stand-in
        def __init__(self, *args, **kwargs):
            pass

        def __getattr__(self, name):
            raise RuntimeError(
                "ubuntu-metrics writes the points: the first-generation "
                "collector must not use the InfluxDB client (%s)" % name
            )

    module.InfluxDBClient = InfluxDBClient
    return module


def _default(value):
    """JSON for what json cannot print: datetimes as str() (read back by
    ubuntu-metrics), dates ISO, decimals as floats."""
    if isinstance(value, datetime.datetime):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError("cannot print %r (%s) as JSON" % (value, type(value).__name__))


def find_collector_class(module, base):
    """The class of ``module`` derived from ``base`` (defined there)."""
    found = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, base) and cls is not base and cls.__module__ == module.__name__
    ]
    if not found:
        raise SystemExit(
            "%s defines no class derived from metrics.lib.basemetric.Metric" % module.__name__
        )
    if len(found) > 1:
        names = ", ".join(sorted(c.__name__ for c in found))
        raise SystemExit("%s defines several collector classes: %s" % (module.__name__, names))
    return found[0]


def instantiate(cls):
    """The first generation's constructor took (dry_run, verbose) or nothing."""
    for kwargs in ({"dry_run": True, "verbose": False}, {"dry_run": True}, {}):
        try:
            return cls(**kwargs)
        except TypeError:
            continue
    return cls(True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout",
        required=True,
        help="the checkout of the first generation's repository (holds metrics/)",
    )
    parser.add_argument("name", help="the collector: metrics.collectors.NAME (- or _)")
    args = parser.parse_args(argv)

    sys.path.insert(0, args.checkout)
    try:
        importlib.import_module("influxdb")
    except ImportError:
        sys.modules["influxdb"] = _influxdb_stand_in()

    base = importlib.import_module("metrics.lib.basemetric").Metric
    module = importlib.import_module("metrics.collectors." + args.name.replace("-", "_"))
    # Its own prints (progress, debugging) went to stdout in the first
    # generation; here stdout is the points: they go to stderr (the log).
    with contextlib.redirect_stdout(sys.stderr):
        collector = instantiate(find_collector_class(module, base))
        points = collector.collect()
    if points is None:
        points = []
    json.dump(list(points), sys.stdout, default=_default)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
