"""`make bench`: every benchmark side by side with its peer, on loopback, bounded in time.

    .venv/bin/python -m bench                 # all, in order
    .venv/bin/python -m bench ocsp crl        # some (names below)

Writes bench/results.json (machine + every Result) and bench/report.md. Never part of `make test`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import ROOT, CpuElsewhere, Result, contention_note, machine

# Run order: the machine's own limits, then the cheap, independent ones; the cluster run re-uses the OCSP and
# propagation benchmarks.
BENCHMARKS = [
    "limits", "ocsp", "crl", "login", "signing", "propagation", "token", "history", "signals", "fapi", "scale",
    "cluster",
]
OUT = ROOT / "bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run ({', '.join(BENCHMARKS)}); all when omitted")
    names = parser.parse_args(argv).names or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    previous = _previous()
    report = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
              "results": {}, "failures": {}}
    for name in names:
        print(f"bench: {name} …", flush=True)
        began = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as workdir, CpuElsewhere() as elsewhere:
                results = importlib.import_module(f"bench.{name}").run(Path(workdir))
            for result in results:
                result.notes = [*result.notes, *contention_note(elsewhere.cores)]  # results may share a list
            report["results"][name] = [result.to_json() for result in results]
            for result in results:
                print(f"  {_line(result)}", flush=True)
        except Exception as error:  # one benchmark failing must not lose the others' figures
            traceback.print_exc()
            report["failures"][name] = f"{type(error).__name__}: {error}"
        print(f"  ({time.monotonic() - began:.0f} s)", flush=True)

    # A partial run keeps the other benchmarks' last figures, marked with when they were measured.
    if previous and set(names) != set(BENCHMARKS):
        for name, results in previous.get("results", {}).items():
            if name not in report["results"]:
                report["results"][name] = [{**r, "measured": r.get("measured", previous["started"])}
                                           for r in results]
    (OUT / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (OUT / "report.md").write_text(render(report))
    print(f"bench: wrote {OUT / 'report.md'} and {OUT / 'results.json'}")
    return 1 if report["failures"] else 0


def _previous() -> dict | None:
    try:
        return json.loads((OUT / "results.json").read_text())
    except (OSError, ValueError):
        return None


def _number(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _verdict(result: Result | dict) -> str:
    met = result["met"] if isinstance(result, dict) else result.met
    return {True: "goal met", False: "goal MISSED", None: "no goal"}[met]


def _line(result: Result) -> str:
    ratio = f" ratio {result.ratio:.2f} ({result.ratio_meaning})" if result.ratio is not None else ""
    return f"{result.id}: {_verdict(result)}{ratio}"


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Benchmarks", "",
        f"Run {report['started']} by `make bench` on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, "
        f"{m['os']}; Python {m['python']}, {m['openssl']}, {m['redis_server']}, {m['wrk']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".",
        "", "Everything runs on loopback on this one machine: load generator, servers and Redis share the cores.",
        "Ratios compare figures measured in the same run. bench/results.json holds every number.", "",
        "| benchmark | goal | ratio | verdict |", "|---|---|---|---|",
    ]
    for results in report["results"].values():
        for r in results:
            ratio = f"{r['ratio']:.2f} ({r['ratio_meaning']})" if r["ratio"] is not None else "—"
            lines.append(f"| {r['title']} | {r['goal'] or '—'} | {ratio} | {_verdict(r)} |")
    for name, failure in report["failures"].items():
        lines.append(f"| {name} | — | — | FAILED: {failure} |")
    for results in report["results"].values():
        for r in results:
            lines += ["", f"## {r['title']}", ""]
            if "measured" in r:
                lines += [f"(from an earlier run, {r['measured']})", ""]
            keys = list(dict.fromkeys(k for side in r["figures"].values() for k in side))
            lines += ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            for side, figures in r["figures"].items():
                lines.append(f"| {side} | " + " | ".join(_number(figures.get(k, "")) for k in keys) + " |")
            if r["ratio"] is not None:
                lines += ["", f"Ratio: **{r['ratio']:.2f}** ({r['ratio_meaning']}). Goal: {r['goal'] or '—'}: "
                              f"{_verdict(r)}."]
            lines += [""] + [f"- {note}" for note in r["notes"]] if r["notes"] else []
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
