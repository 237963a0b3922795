#!/usr/bin/env python3
"""Run a first-generation collector under ubuntu-metrics, unchanged.

The first generation's collectors are packages ``metrics.collectors.NAME``
of the old repository: ``NAME/__init__.py`` imports the collector class
from a submodule (``from metrics.collectors.NAME.NAME_collector import
NameMetrics``; the submodule is not always so named, e.g.
``cnf/command_not_found.py``) and defines ``run_metric()``;
``NAME/__main__.py`` calls ``run_metric_main("metrics.collectors.NAME",
"NameMetrics")`` from ``metrics/lib/basemetric.py``. The class derives from
``metrics.lib.basemetric.Metric``, is built with ``(dry_run=False,
verbose=False)``, and its ``collect()`` returns the list of dictionaries
that influxdb-python's ``write_points`` takes::

    {"measurement": "...", "tags": {...}, "fields": {...}, "time": datetime}

This adapter imports one such collector from a checkout of the old
repository, builds it with ``dry_run=True`` (so it reads no
``INFLUXDB_*``), calls ``collect()`` and prints the points as one JSON
array on standard output, which is what an ``exec`` collector of
ubuntu-metrics reads. Writing, retries, the spool, scheduling and
self-metrics are then ubuntu-metrics' business: the old ``run()`` (which
wrote to InfluxDB itself) is never called.

The collector class is, in this order: the class its ``__main__`` names in
``run_metric_main(...)``; the subclass of ``Metric`` its ``__init__``
imports; the one subclass of ``Metric`` its submodules define. (A module
``metrics/collectors/NAME.py``, with the class in it, works too.)

While the collector is imported and runs, its standard output (``print()``,
and anything written to file descriptor 1) goes to standard error, hence
to the log: standard output carries only the points. A ``CollectorError``
(``metrics.lib.errors.CollectorError``, or any exception class of that
name) fails the run: its message is the last line of standard error and
the exit status is 1. Times: a ``datetime`` with a time zone is printed in
RFC 3339; a naive one is UTC (what influxdb-python made of it), printed
with ``+00:00``.

Usage (the ``command`` of an exec collector)::

    python3 run-collector.py --checkout /srv/ubuntu-metrics-old NAME

Only the standard library is used. When the checkout's ``basemetric``
imports influxdb-python (``from influxdb import InfluxDBClient``) and that
package is not installed, a stand-in module is provided whose client
refuses to be used: a collector's ``collect()`` does not write.
"""

import argparse
import ast
import datetime
import decimal
import importlib
import inspect
import json
import os
import pkgutil
import sys
import types

PROG = "run-collector"


class AdapterError(Exception):
    """What the adapter could not do, said once on standard error."""


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
    """JSON for what json cannot print: datetimes in RFC 3339 (a naive one
    is UTC), dates ISO, decimals as floats."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError("cannot print %r (%s) as JSON" % (value, type(value).__name__))


def _named_by_main(package):
    """(module, class) that the package's ``__main__.py`` passes to
    ``run_metric_main``, read without running it; None without one."""
    for folder in getattr(package, "__path__", None) or []:
        path = os.path.join(folder, "__main__.py")
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
        except FileNotFoundError:
            continue
        except (OSError, SyntaxError, ValueError) as e:
            raise AdapterError("%s: cannot read it: %s" % (path, e))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            args = node.args[:2]
            if (
                name == "run_metric_main"
                and len(args) == 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args)
            ):
                return args[0].value, args[1].value, path
    return None


def _leaves(classes):
    """The classes none of the others derives from (a collector's own
    intermediate base classes are not collectors), without duplicates."""
    unique = list(dict.fromkeys(classes))
    return [c for c in unique if not any(o is not c and issubclass(o, c) for o in unique)]


def _subclasses(module, base, owner):
    """The subclasses of ``base`` in ``module`` that belong to ``owner``
    (a module name: defined in it or in one of its submodules)."""
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, base)
        and cls is not base
        and (cls.__module__ == owner or cls.__module__.startswith(owner + "."))
    ]


def _one(found, where):
    if len(found) > 1:
        names = ", ".join(sorted("%s.%s" % (c.__module__, c.__name__) for c in found))
        raise AdapterError("%s: several collector classes: %s" % (where, names))
    return found[0] if found else None


def find_collector_class(module_name, base):
    """The collector class of ``metrics.collectors.NAME`` (see the module's
    documentation for the order)."""
    module = importlib.import_module(module_name)
    named = _named_by_main(module)
    if named:
        mod_name, cls_name, path = named
        cls = getattr(importlib.import_module(mod_name), cls_name, None)
        if not isinstance(cls, type):
            raise AdapterError(
                "%s names %s.%s in run_metric_main(), which %s does not define"
                % (path, mod_name, cls_name, mod_name)
            )
        return cls
    if not hasattr(module, "__path__"):
        # A plain module: the class defined in it.
        found = _one(_leaves(_subclasses(module, base, module_name)), module_name)
    else:
        found = _one(_leaves(_subclasses(module, base, module_name)), module_name)
        if found is None:
            classes = []
            for info in pkgutil.iter_modules(module.__path__):
                if info.name == "__main__":
                    continue
                sub = importlib.import_module(module_name + "." + info.name)
                classes += _subclasses(sub, base, sub.__name__)
            found = _one(_leaves(classes), module_name)
    if found is None:
        raise AdapterError(
            "%s: no collector class: its __main__ names none in run_metric_main(), and "
            "neither it nor its submodules define a class derived from "
            "metrics.lib.basemetric.Metric" % module_name
        )
    return found


def instantiate(cls):
    """The first generation's constructor takes (dry_run, verbose): built as a
    dry run, so that it reads no INFLUXDB_* and opens no client."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    any_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {}
    if "dry_run" in params or any_keyword:
        kwargs["dry_run"] = True
    if "verbose" in params:
        kwargs["verbose"] = False
    return cls(**kwargs)


def _is_collector_error(exc, declared):
    if declared is not None and isinstance(exc, declared):
        return True
    return any(c.__name__ == "CollectorError" for c in type(exc).__mro__)


def _collect(checkout, name):
    """The points of collector ``name`` of ``checkout``, as JSON text."""
    if not os.path.isdir(os.path.join(checkout, "metrics")):
        raise AdapterError(
            "%s: no metrics/ folder: not a checkout of the first generation's repository"
            % checkout
        )
    sys.path.insert(0, checkout)
    try:
        importlib.import_module("influxdb")
    except ImportError:
        sys.modules["influxdb"] = _influxdb_stand_in()
    try:
        base = importlib.import_module("metrics.lib.basemetric").Metric
    except (ImportError, AttributeError) as e:
        raise AdapterError("%s: cannot import metrics.lib.basemetric.Metric: %s" % (checkout, e))
    try:
        declared = importlib.import_module("metrics.lib.errors").CollectorError
    except (ImportError, AttributeError):
        declared = None
    module_name = "metrics.collectors." + name
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            folder = os.path.join(checkout, "metrics", "collectors")
            try:
                there = sorted(
                    n[:-3] if n.endswith(".py") else n
                    for n in os.listdir(folder)
                    if not n.startswith(("_", "."))
                )
            except OSError:
                there = []
            raise AdapterError(
                "%s: no collector %s in %s (it holds: %s)"
                % (module_name, name, folder, ", ".join(there) or "nothing")
            )
        raise
    try:
        collector = instantiate(find_collector_class(module_name, base))
        points = collector.collect()
    except AdapterError:
        raise
    except Exception as e:  # noqa: BLE001 - a CollectorError is the run's failure
        if _is_collector_error(e, declared):
            raise AdapterError("%s: %s: %s" % (name, type(e).__name__, e))
        raise
    return json.dumps(list(points or []), default=_default)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout",
        required=True,
        help="the checkout of the first generation's repository (holds metrics/)",
    )
    parser.add_argument("name", help="the collector: metrics.collectors.NAME (- or _)")
    args = parser.parse_args(argv)
    # Nothing is written into the checkout (no __pycache__).
    sys.dont_write_bytecode = True

    # Standard output is the points: while the collector is imported and
    # runs, what it prints (print(), a handler on sys.stdout, a child
    # process writing to fd 1) goes to standard error (the log).
    sys.stdout.flush()
    points_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        text = _collect(os.path.abspath(args.checkout), args.name.replace("-", "_"))
    except AdapterError as e:
        sys.stderr.flush()
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 1
    sys.stderr.flush()
    with os.fdopen(points_fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
