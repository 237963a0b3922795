#!/usr/bin/env python3
# scripts/mutants' table. `merge OUT EQUIVALENT`: merges the outcomes of the
# cargo-mutants run in OUT/mutants.out into the entry's results (a run with
# --again tests only what was not caught before), then prints them;
# `show OUT EQUIVALENT` prints them. One table row per file on stdout; the
# missed mutants on stderr, the equivalent ones marked.
import json, re, sys
from pathlib import Path

mode, out, equivalent = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
results_path = out / "results.json"
results = json.loads(results_path.read_text()) if results_path.exists() else {}
if mode == "merge":
    # This run's mutants, plus (with --again, cargo-mutants --iterate) the
    # ones it skipped as caught by an earlier run: together, every mutant of
    # the files as they are now (a mutant whose line moved is tested again).
    # (cargo-mutants skips the unviable ones too: they keep their outcome.)
    run = out / "mutants.out"
    earlier, results = results, {}
    skipped = run / "previously_caught.txt"
    if skipped.exists():
        for name in skipped.read_text().splitlines():
            if name.strip():
                summary = earlier.get(name, {}).get("summary", "CaughtMutant")
                results[name] = {"file": name.split(":", 1)[0], "summary": summary}
    for o in json.loads((run / "outcomes.json").read_text())["outcomes"]:
        m = o["scenario"].get("Mutant") if isinstance(o["scenario"], dict) else None
        if m:
            results[m["name"]] = {"file": m["file"], "summary": o["summary"]}
    # Only the mutants the files have now: one whose line moved was tested
    # again under its new name, its old name is gone.
    current = out / "current.txt"
    if current.exists():
        now = {line.strip() for line in current.read_text().splitlines() if line.strip()}
        results = {k: v for k, v in results.items() if k in now}
    results_path.write_text(json.dumps(results, indent=1))
took = (out / "time").read_text().strip() if (out / "time").exists() else "?"

def strip(name):  # lines move as a file is edited: compare without line:column
    return re.sub(r"^([^:]+):\d+:\d+: ", r"\1: ", name)

listed = set()
if equivalent.exists():
    for line in equivalent.read_text().splitlines():
        m = re.match(r"- `([^`]+)`", line)
        if m:
            listed.add(strip(m.group(1)))

files = {}
for name, r in sorted(results.items()):
    f = files.setdefault(r["file"], {"CaughtMutant": 0, "MissedMutant": 0, "Timeout": 0, "Unviable": 0, "equiv": 0})
    f[r["summary"]] = f.get(r["summary"], 0) + 1
    if r["summary"] == "MissedMutant":
        shown = name
        if strip(name) in listed:
            f["equiv"] += 1
            print(f"  (equivalent) {shown}", file=sys.stderr)
        else:
            print(f"  MISSED       {shown}", file=sys.stderr)
for i, (file, f) in enumerate(sorted(files.items())):
    caught, missed, timeouts, unviable, equiv = (f["CaughtMutant"], f["MissedMutant"], f["Timeout"], f["Unviable"], f["equiv"])
    counted = caught + timeouts + missed - equiv
    score = f"{100 * (caught + timeouts) / counted:.1f}%" if counted else "-"
    shown = file
    print(f"{shown:<34} {caught + missed + timeouts + unviable:>7} {caught:>6} {missed:>6} {equiv:>6} {timeouts:>8} {unviable:>8} {score:>6} {(took if i == 0 else ''):>6}")
