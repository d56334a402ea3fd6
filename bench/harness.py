"""What every benchmark shares: the machine's facts, servers on loopback, wrk as the load generator, results.

A benchmark module (bench/<name>.py) exposes `run(workdir: Path) -> list[Result]`; bench/__main__.py runs them,
writes bench/results.json and bench/report.md. Every server binds 127.0.0.1 on a free port, every load loop is
bounded in time, and every process started here is stopped when its `with` block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from devstack.processes import ROOT, Gunicorn, free_port, stop
from devstack.redis_server import RedisServer

__all__ = ["ROOT", "WRK_DONE_LUA", "Gunicorn", "RedisServer", "Result", "free_port", "machine", "percentiles",
           "wrk"]


@dataclass
class Result:
    """One benchmark's outcome. `figures` maps a side ("ours", "peer", "floor", …) to its measured numbers."""

    id: str
    title: str
    figures: dict[str, dict[str, float | int | str]]
    ratio: float | None = None
    ratio_meaning: str = ""
    goal: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def machine() -> dict:
    def version(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "missing"

    memory_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    packages = {name: metadata.version(name) for name in
                ("cryptography", "flask", "authlib", "redis", "gunicorn")}
    return {
        "cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "os": platform.platform(), "python": sys.version.split()[0], "packages": packages,
        "openssl": version(["openssl", "version"]), "redis_server": version(["redis-server", "--version"]),
        "wrk": version(["wrk", "--version"]),
    }


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50 and p99 (nearest rank) of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "samples": 0}

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]
    return {"p50_ms": round(rank(50), 3), "p99_ms": round(rank(99), 3), "samples": len(ordered)}


# wrk's `done` hook for every script here: one WRK_JSON line with the counts and latencies `wrk` parses (wrk
# reports latency in microseconds).
WRK_DONE_LUA = r"""
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
"""

# wrk's Lua: cycle through pre-built request bodies (hex lines in a file) or paths, then print the latency
# distribution as one JSON line.
_WRK_SCRIPT = r"""
local bodies, paths, i = {}, {}, 0
local method = os.getenv("WRK_METHOD") or "GET"
local ctype = os.getenv("WRK_CONTENT_TYPE")
local function unhex(s) return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end)) end
local f = io.open(os.getenv("WRK_REQUESTS"), "r")
for line in f:lines() do
  if method == "POST" then bodies[#bodies + 1] = unhex(line) else paths[#paths + 1] = line end
end
f:close()
local headers = {}
if ctype then headers["Content-Type"] = ctype end
for k, v in string.gmatch(os.getenv("WRK_HEADERS") or "", "([^:;]+):([^;]*)") do headers[k] = v end
-- One header whose value changes with each request (a DPoP proof), the n-th value going with the n-th request.
local each_name, each = os.getenv("WRK_EACH_HEADER"), {}
if each_name then
  local g = io.open(os.getenv("WRK_EACH_VALUES"), "r")
  for line in g:lines() do each[#each + 1] = line end
  g:close()
end
request = function()
  i = i + 1
  if each_name then headers[each_name] = each[(i % #each) + 1] end
  if method == "POST" then
    return wrk.format("POST", nil, headers, bodies[(i % #bodies) + 1])
  end
  return wrk.format("GET", paths[(i % #paths) + 1], headers, nil)
end
""" + WRK_DONE_LUA


def wrk(base_url: str, requests_: list[bytes] | list[str], *, method: str = "POST",
        content_type: str | None = None, headers: dict[str, str] | None = None, path: str = "/",
        seconds: int = 10, connections: int = 16, threads: int = 2, timeout_s: int = 5,
        each_header: tuple[str, list[str]] | None = None) -> dict:
    """Load `base_url` from a separate wrk process for `seconds`; bodies (POST) or paths (GET) are cycled.
    `each_header` (name, values): a header whose n-th value goes with the n-th body or path (one value per request,
    as long as the list of requests; a DPoP proof is single use).

    Returns requests/s, p50/p99/max latency in ms and error counts (non-2xx/3xx responses count as status errors).
    """
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is missing: `make bench` installs it (Debian package wrk)")
    with tempfile.TemporaryDirectory() as scratch:
        script, listing = Path(scratch) / "load.lua", Path(scratch) / "requests.txt"
        script.write_text(_WRK_SCRIPT)
        lines = [item.hex() if isinstance(item, bytes) else item for item in requests_]
        listing.write_text("\n".join(lines) + "\n")
        env = {**os.environ, "WRK_REQUESTS": str(listing), "WRK_METHOD": method}
        if content_type:
            env["WRK_CONTENT_TYPE"] = content_type
        if headers:
            env["WRK_HEADERS"] = ";".join(f"{k}:{v}" for k, v in headers.items())
        if each_header:
            name, values = each_header
            if len(values) != len(requests_):
                raise ValueError("each_header needs one value per request")
            (Path(scratch) / "each.txt").write_text("\n".join(values) + "\n")
            env["WRK_EACH_HEADER"], env["WRK_EACH_VALUES"] = name, str(Path(scratch) / "each.txt")
        completed = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", f"{timeout_s}s",
             "-s", str(script), base_url.rstrip("/") + path],
            env=env, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^WRK_JSON (\{.*\})$", completed.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk gave no summary: {completed.stdout[-500:]} {completed.stderr[-500:]}")
    raw = json.loads(match.group(1))
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "rps": round(raw["requests"] / seconds_run, 1), "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000, "requests": raw["requests"],
        "errors": errors, "seconds": round(seconds_run, 2), "connections": connections,
    }


# --- CPU used by others ------------------------------------------------------------------------------------


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_tree_seconds(root: int) -> float:
    """CPU seconds of a process and every descendant, including the reaped ones (their parents' cutime)."""
    parents, seconds = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        seconds[pid] = sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(seconds.get(pid, 0.0) for pid in tree)


def _own_tree_seconds() -> float:
    return process_tree_seconds(os.getpid())


CONTENDED_CORES = 0.1  # CPU used elsewhere, in cores, above which a measurement says it was not alone


class CpuElsewhere:
    """`with CpuElsewhere() as other: …; other.cores` — the cores' worth of CPU that processes outside this
    benchmark's process tree used during the block: the share of the machine a measurement did not have."""

    def __enter__(self) -> CpuElsewhere:
        self.began = time.monotonic()
        self.machine, self.own = _machine_busy_seconds(), _own_tree_seconds()
        self.cores = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        elapsed = time.monotonic() - self.began
        used = (_machine_busy_seconds() - self.machine) - (_own_tree_seconds() - self.own)
        self.cores = round(max(0.0, used) / elapsed, 2) if elapsed > 0 else float("nan")


class CpuByProcess:
    """`with CpuByProcess({"idp": pid, …}) as cpu: …; cpu.seconds["idp"]` — CPU seconds each process tree used."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> CpuByProcess:
        self.before = {name: process_tree_seconds(pid) for name, pid in self.roots.items()}
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = {name: process_tree_seconds(pid) - self.before[name] for name, pid in self.roots.items()}


def contention_note(cores: float) -> list[str]:
    """A note for the Results of a run during which other processes used CPU (see CpuElsewhere)."""
    if not cores > CONTENDED_CORES:
        return []
    return [f"Other processes used {cores:.2f} cores on average while this ran: figures are lower than on an idle "
            "machine."]


def wait_for_quiet(max_wait_s: float = 30, below_cores: float = 0.2, probe_s: float = 1.0) -> float:
    """Wait (at most `max_wait_s`) until processes outside this benchmark use less than `below_cores` of CPU over
    `probe_s`; returns the last reading. A benchmark run on a shared machine says what it could not avoid."""
    deadline = time.monotonic() + max_wait_s
    while True:
        with CpuElsewhere() as elsewhere:
            time.sleep(probe_s)
        if elsewhere.cores < below_cores or time.monotonic() >= deadline:
            return elsewhere.cores


@contextlib.contextmanager
def revocation_worker(env: dict[str, str], only: str | None = None, log_path: Path | None = None):
    """`python -m revocation worker [--only events|crl]` as its own process, as in production; SIGTERM at the end."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "revocation", "worker", *(["--only", only] if only else [])],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    try:
        yield process
    finally:
        stop(process)
        if log_path:
            log.close()
