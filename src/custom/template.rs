//! What `ubuntu-metrics new NAME --exec|--http` prints: a configuration
//! block ready to paste, and for a script a commented Python skeleton.

/// The `[collectors.NAME]` block of a script collector running `script`.
pub fn exec_block(name: &str, script: &str) -> String {
    format!(
        r#"# A script collector: ubuntu-metrics runs the command (no shell) on the
# interval and reads the points from its standard output. Paste this into
# the configuration (/etc/ubuntu-metrics/config.toml), then try it with
#   ubuntu-metrics run {name} --dry-run
[collectors.{name}]
type = "exec"
description = "what {name} measures"
command = ["python3", "{script}"]
interval = "5m"
# timeout = "1m"          # then the script and every process it started are killed
# dir = "/var/lib/..."    # its working directory
# env = {{ REPORT_URL = "https://example.com/report.json" }}
# pass_env = ["HTTPS_PROXY"]

# What it writes: every point is checked against this (InfluxDB fixes a
# field's type for good). Field types: int, float, bool, string.
[collectors.{name}.measurements.{name}]
tags = ["series"]
fields = {{ count = "int", ratio = "float" }}
"#
    )
}

/// The Python skeleton of a script collector.
pub fn python_skeleton(name: &str) -> String {
    format!(
        r#"#!/usr/bin/env python3
"""{name}: a script collector of ubuntu-metrics.

ubuntu-metrics runs this script on the collector's interval, with a minimal
environment (PATH, LANG, TZ=UTC, UBUNTU_METRICS_COLLECTOR,
UBUNTU_METRICS_NOW and what `env`/`pass_env` list), as the daemon's user
and in its sandbox. What it needs to know:

- Standard output is the points: one JSON object per line (as below), or
  one JSON array, or InfluxDB line protocol. 5 is an integer, 5.0 a float.
- A point without "time" gets the collection time. A "time" is RFC 3339,
  str() of a datetime (a naive one is UTC), or epoch nanoseconds.
- Every point must fit the measurements declared in the configuration.
- Standard error goes to the log, line by line.
- Exit non-zero to fail the run: nothing is written then, and the last
  lines of standard error are the run's error.

Try it: ubuntu-metrics run {name} --dry-run
"""

import json
import os
import sys
import urllib.request  # noqa: F401 - for reading a report, see collect()

# The collection time (RFC 3339; `run --now` replays set it).
NOW = os.environ.get("UBUNTU_METRICS_NOW")


def collect():
    """Read the source and return the points (dictionaries)."""
    # with urllib.request.urlopen("https://example.com/report.json", timeout=30) as r:
    #     report = json.load(r)
    print("collecting {name}", file=sys.stderr)
    return [
        {{
            "measurement": "{name}",
            "tags": {{"series": "noble"}},
            "fields": {{"count": 1, "ratio": 0.5}},
        }},
    ]


def main():
    for point in collect():
        print(json.dumps(point))
    return 0


if __name__ == "__main__":
    sys.exit(main())
"#
    )
}

/// The `[collectors.NAME]` block of a declarative HTTP collector.
pub fn http_block(name: &str) -> String {
    format!(
        r#"# A declarative collector: ubuntu-metrics reads the URL on the interval
# (through its HTTP client: timeouts, size limit, politeness per host) and
# turns the document into points with the jq filter. Paste this into the
# configuration (/etc/ubuntu-metrics/config.toml), then try it with
#   ubuntu-metrics run {name} --dry-run
[collectors.{name}]
type = "http"
description = "what {name} measures"
interval = "5m"
# Or several: urls = {{ production = "https://...", staging = "https://..." }}
# ($source is then the key). [sources] {name} = "..." overrides url.
url = "https://example.com/{name}.json"
format = "json"           # json, yaml, csv (rows of strings) or text
# The filter's outputs are points: {{measurement, tags, fields, time?}}.
# $source, $url and $now are set. This one reads {{"noble": 3, ...}}.
filter = '''
to_entries[]
| {{measurement: "{name}", tags: {{series: .key}}, fields: {{count: .value}}}}
'''

# What it writes: every point is checked against this. Field types: int,
# float, bool, string.
[collectors.{name}.measurements.{name}]
tags = ["series"]
fields = {{ count = "int" }}
"#
    )
}
