"""Revocation propagation: from an event appended to the event stream until OCSP over HTTP answers "revoked".

Setup: rate × SECONDS holders, each with one card and its auth certificate, registered by `certificate_issued`
events applied in-process before anything is timed. Then, with the real pieces running — WORKERS event worker
processes (`python -m revocation worker --only events`: consumer group, batched applier; a status change drops
the certificate's pre-signed OCSP response, which the responder signs again at the next request), one CRL
publisher (`--only crl`) and the responder under gunicorn (2 workers) — a separate appender process XADDs one
`revocation_requested` event per holder at the rate (paced against the clock, for SECONDS), and notes the
monotonic time just before each XADD. Two rates: the goal's RATE, and BELOW_CAPACITY_RATE, which the workers
keep up with here, so that the pipeline's own latency shows apart from queueing.

Every n-th event is probed (25 probes a second at either rate): the appender hands (serial, append time) to the
prober in this process, whose threads POST the serial's nonce-less OCSP request every POLL_MS ms until the answer
is "revoked"; the latency is the time that answer arrived minus the append time. So a figure over-states the true
propagation by at most one poll interval plus one HTTP exchange. Probing a subset keeps the prober's own load on
the responder (a few hundred requests/s) small next to the event load; unprobed events still go through the whole
pipeline.

Capacity (`measure_capacity`): CAPACITY_EVENTS revocations appended as fast as one pipelined client can, to the
same WORKERS event workers (plus the CRL publisher, without responder traffic): events applied per second from the
first append until the consumer group has applied them all — the workers' sustained rate, not bounded by an
offered rate.

Every run also reports CPU per event: the event workers' process CPU time (/proc) and redis-server's (INFO cpu,
summed over a cluster's nodes) over the run, divided by the events applied. On 2 shared cores that is the steadier
figure; throughput moves with whatever else runs.

`measure_propagation` runs against any Redis; bench/cluster.py re-uses it on a Redis Cluster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import itertools
import json
import multiprocessing
import os
import queue
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPCertStatus

from bench.harness import (
    Gunicorn,
    RedisServer,
    Result,
    percentiles,
    revocation_worker,
)
from bench.ocsp import cert_id_hashes, connect, ocsp_request, service_env
from jpki.devca import DevCA
from jpki.profile import CertificateKind
from revocation.config import RevocationConfig
from revocation.domain.events import CertificateRef, RevocationEvent, certificate_issued, parse_event
from revocation.services import build_services
from revocation.storage.stream import EventStream

RATE = 1_000  # events per second: the goal's rate
BELOW_CAPACITY_RATE = 150  # events per second the worker keeps up with on 2 shared cores: the pipeline's own latency
SECONDS = 10
SAMPLE_EVERY = 40  # 25 probes/s at RATE: at POLL_MS, at most ~250 OCSP requests/s of probing while young
POLL_MS = 10
RELATIVE_POLL = 0.05
PROBE_TIMEOUT_S = 30.0
PROBE_THREADS = 16
WORKERS = 2  # event workers, one per core (the consumer group shares the stream), plus one CRL publisher
GOAL_P99_MS = 100.0
GOAL_APPLIED_PER_S = 2_000  # sustained, WORKERS event workers
CAPACITY_EVENTS = 20_000
ISSUE_BATCH = 500  # certificate_issued events applied per batch while setting up
_DONE = None  # end-of-run marker on the probe queue
ISSUED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


def issue_holders(services, count: int, seed: int = 7) -> list[tuple[str, str, int]]:
    """(holder, card, auth serial) for `count` holders, each registered through a `certificate_issued` event
    (applied in batches of ISSUE_BATCH, as a worker would)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible serials for a benchmark
    holders, batch = [], []
    for index in range(count):
        holder, card, serial = f"bench-holder-{index}x", f"bench-card-{index}x", rng.randrange(1, 1 << 63)
        batch.append(certificate_issued(
            f"bench-issue-{index}x", holder, card, [CertificateRef(CertificateKind.AUTH, serial, NOT_AFTER)],
            occurred_at=ISSUED_AT, source="bench"))
        holders.append((holder, card, serial))
        if len(batch) == ISSUE_BATCH or index == count - 1:
            failed = [r for r in services.applier.apply_batch(batch) if isinstance(r, Exception)]
            if failed:
                raise failed[0]
            batch = []
    return holders


class CpuMeter:
    """CPU seconds used by some processes (by pid, from /proc) and by redis-server (INFO cpu, every node)."""

    def __init__(self, redis_client, pids: list[int]):
        self.redis, self.pids = redis_client, pids
        self.began = self.now()

    @staticmethod
    def process_s(pid: int) -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def redis_s(self) -> float:
        info = self.redis.info("cpu")
        nodes = info.values() if info and isinstance(next(iter(info.values())), dict) else [info]
        return sum(node["used_cpu_user"] + node["used_cpu_sys"] for node in nodes)

    def now(self) -> tuple[float, float]:
        return sum(self.process_s(pid) for pid in self.pids), self.redis_s()

    def per_event_us(self, events: int) -> dict[str, float]:
        (workers_0, redis_0), (workers_1, redis_1) = self.began, self.now()
        count = max(events, 1)
        return {"worker_cpu_us_per_event": round(1e6 * (workers_1 - workers_0) / count, 1),
                "redis_cpu_us_per_event": round(1e6 * (redis_1 - redis_0) / count, 1)}


def revocation_events(holders: list[tuple[str, str, int]]) -> list[RevocationEvent]:
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).isoformat()
    return [parse_event({"event_id": f"bench-revoke-{index}x", "type": "revocation_requested", "holder": holder,
                         "occurred_at": at, "source": "bench", "card_id": card})
            for index, (holder, card, _) in enumerate(holders)]


def append_paced(redis_url: str, cluster: bool, events: list[RevocationEvent], serials: list[int], rate: int,
                 sample_every: int, probes: multiprocessing.Queue) -> None:
    """The appender (its own process): XADD at `rate`/s against the clock; sampled (serial, time) to `probes`."""
    stream = EventStream(connect(redis_url, cluster))
    start = time.monotonic()
    for index, event in enumerate(events):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        appended_at = time.monotonic()
        stream.submit(event)
        if index % sample_every == 0:
            probes.put((serials[index], appended_at))
    probes.put(_DONE)


class Prober:
    """Polls each sampled serial's OCSP status until it reads "revoked"; keeps the latencies in ms.

    Pending probes wait in one priority queue by when they are next due; PROBE_THREADS threads take the due ones.
    A probe is polled every POLL_MS ms, or every RELATIVE_POLL of its age once that is longer, so a backlog of
    slow probes never floods the responder while the error stays within max(POLL_MS, 5 %) of each figure.
    """

    def __init__(self, base_url: str, issuer_certificate, poll_ms: int = POLL_MS):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.name_hash, self.key_hash = cert_id_hashes(issuer_certificate)
        self.poll_s = poll_ms / 1000
        self.latencies_ms: list[float] = []
        self.missed = 0
        self.lock = threading.Lock()
        self.pending: queue.PriorityQueue = queue.PriorityQueue()
        self.outstanding = 0
        self.sequence = itertools.count()
        self.first_append: float | None = None  # the appender's first XADD (event 0 is always probed)

    def status(self, body: bytes) -> OCSPCertStatus:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request("POST", "/ocsp", body, {"Content-Type": "application/ocsp-request"})
            return ocsp.load_der_ocsp_response(connection.getresponse().read()).certificate_status
        finally:
            connection.close()

    def add(self, serial: int, appended_at: float) -> None:
        body = ocsp_request(self.name_hash, self.key_hash, serial)
        with self.lock:
            self.outstanding += 1
            self.first_append = min(self.first_append or appended_at, appended_at)
        self.pending.put((time.monotonic(), next(self.sequence), appended_at, body))

    def poll_due(self, stop: threading.Event) -> None:
        """One polling thread: take the probe due first, ask once, record it or put it back for later."""
        while not stop.is_set():
            try:
                due, sequence, appended_at, body = self.pending.get(timeout=0.1)
            except queue.Empty:
                continue
            now = time.monotonic()
            if due > now:
                self.pending.put((due, sequence, appended_at, body))
                time.sleep(min(due - now, self.poll_s))
                continue
            revoked = self.status(body) is OCSPCertStatus.REVOKED
            answered = time.monotonic()
            age = answered - appended_at
            if revoked or age > PROBE_TIMEOUT_S:
                with self.lock:
                    self.outstanding -= 1
                    if revoked:
                        self.latencies_ms.append(age * 1000)
                    else:
                        self.missed += 1
                continue
            self.pending.put((answered + max(self.poll_s, RELATIVE_POLL * age), sequence, appended_at, body))

    def follow(self, probes: multiprocessing.Queue, run_timeout_s: float) -> None:
        """Probe every (serial, time) from the appender until its end marker and every probe is done, bounded."""
        deadline = time.monotonic() + run_timeout_s
        stop = threading.Event()
        threads = [threading.Thread(target=self.poll_due, args=(stop,), daemon=True) for _ in range(PROBE_THREADS)]
        for thread in threads:
            thread.start()
        try:
            appending = True
            while appending and time.monotonic() < deadline:
                try:
                    item = probes.get(timeout=1)
                except queue.Empty:
                    continue
                if item is _DONE:
                    appending = False
                else:
                    self.add(*item)
            while self.outstanding and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)


def measure_propagation(workdir: Path, redis_url: str, cluster: bool = False, rate: int = RATE) -> dict:
    """Issue, start worker and responder, append paced revocations, probe; figures in ms plus counts."""
    ca = DevCA.generate()
    var_dir = workdir / "var"
    ca.save(var_dir / "pki")
    env = service_env(var_dir, redis_url, cluster, ca)
    services = build_services(RevocationConfig.from_env(env))
    setup_began = time.monotonic()
    holders = issue_holders(services, rate * SECONDS)
    events = revocation_events(holders)
    setup_s = time.monotonic() - setup_began
    with Gunicorn("deploy.composition:revocation_app()", env) as url, contextlib.ExitStack() as workers:
        appliers = [workers.enter_context(revocation_worker(env, only="events")) for _ in range(WORKERS)]
        workers.enter_context(revocation_worker(env, only="crl"))
        wait_consumers(services.stream, WORKERS)
        meter = CpuMeter(services.redis, [process.pid for process in appliers])
        prober = Prober(url, ca.auth.certificate)
        probes = multiprocessing.get_context("spawn").Queue()
        appender = multiprocessing.get_context("spawn").Process(
            target=append_paced, args=(redis_url, cluster, events, [serial for _, _, serial in holders], rate,
                                       sample_every(rate), probes))
        began = time.monotonic()
        watch = AppliedWatch(services.stream, len(events))
        appender.start()
        try:
            prober.follow(probes, run_timeout_s=SECONDS + PROBE_TIMEOUT_S + 20)
        finally:
            appender.join(timeout=30)
            if appender.is_alive():
                appender.terminate()
        probed_s = time.monotonic() - began
        backlog = wait_applied(services.stream, timeout_s=30)
        watch.stop()
        applied_s = (watch.applied_at or time.monotonic()) - (prober.first_append or began)
        cpu = meter.per_event_us(len(events) - backlog)
    figures = percentiles(prober.latencies_ms)
    return {**figures, "max_ms": round(max(prober.latencies_ms, default=float("nan")), 3),
            "events": len(events), "rate_per_s": rate, "probed": len(events[::sample_every(rate)]),
            "never_revoked": prober.missed, "probed_s": round(probed_s, 2), "setup_s": round(setup_s, 2),
            "applied_per_s": round((len(events) - backlog) / applied_s, 1), "unapplied_after_run": backlog, **cpu}


def measure_capacity(workdir: Path, redis_url: str, cluster: bool = False, count: int = CAPACITY_EVENTS) -> dict:
    """The event workers' sustained rate: `count` revocations appended at once, applied by WORKERS workers."""
    ca = DevCA.generate()
    var_dir = workdir / "var"
    ca.save(var_dir / "pki")
    env = service_env(var_dir, redis_url, cluster, ca)
    services = build_services(RevocationConfig.from_env(env))
    events = revocation_events(issue_holders(services, count))
    entries = [json.dumps(event.to_json(), separators=(",", ":")) for event in events]
    with contextlib.ExitStack() as workers:
        appliers = [workers.enter_context(revocation_worker(env, only="events")) for _ in range(WORKERS)]
        workers.enter_context(revocation_worker(env, only="crl"))
        wait_consumers(services.stream, WORKERS)
        meter = CpuMeter(services.redis, [process.pid for process in appliers])
        began = time.monotonic()
        for start in range(0, len(entries), 1000):
            pipe = services.redis.pipeline(transaction=False)
            for entry in entries[start:start + 1000]:
                pipe.xadd(services.stream.stream, {"event": entry})
            pipe.execute()
        appended_s = time.monotonic() - began
        backlog = wait_applied(services.stream, timeout_s=120, poll_s=0.02)
        applied_s = time.monotonic() - began
        cpu = meter.per_event_us(count - backlog)
    return {"events": count, "applied_per_s": round((count - backlog) / applied_s, 1),
            "applied_s": round(applied_s, 2), "appended_s": round(appended_s, 2), "unapplied_after_run": backlog,
            **cpu}


class AppliedWatch:
    """Notes when the consumer group has applied all `total` entries (polled every 50 ms in a thread), so that the
    applied rate is not stretched by the prober finishing its last probes."""

    def __init__(self, stream: EventStream, total: int):
        self.stream, self.total = stream, total
        self.applied_at: float | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self) -> None:
        while not self.stopping.is_set():
            health = self.stream.health()
            if health["length"] >= self.total and not health["lag"] and not health["pending"]:
                self.applied_at = time.monotonic()
                return
            self.stopping.wait(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def wait_consumers(stream: EventStream, count: int, timeout_s: float = 30) -> None:
    """Until `count` consumers have read from the group (the workers are up), bounded."""
    stream.ensure_group()
    deadline = time.monotonic() + timeout_s
    while len(stream.health()["consumers"]) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def sample_every(rate: int) -> int:
    """Probe every n-th event: the same number of probes per second at any rate."""
    return max(1, SAMPLE_EVERY * rate // RATE)


def wait_applied(stream: EventStream, timeout_s: float, poll_s: float = 0.2) -> int:
    """Wait until the consumer group has applied everything; returns how many entries were still waiting."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = stream.health()
        waiting = (health["lag"] or 0) + health["pending"]
        if waiting == 0 or time.monotonic() > deadline:
            return waiting
        time.sleep(poll_s)


def run(workdir: Path) -> list[Result]:
    outcomes = []
    for result_id, rate in (("propagation", RATE), ("propagation.below_capacity", BELOW_CAPACITY_RATE)):
        with RedisServer(workdir / f"redis-{rate}") as server:
            figures = measure_propagation(workdir / str(rate), server.url, rate=rate)
        outcomes.append(result(result_id, figures, "one redis-server"))
    with RedisServer(workdir / "redis-capacity") as server:
        figures = measure_capacity(workdir / "capacity", server.url)
    outcomes.append(capacity_result("propagation.capacity", figures, "one redis-server"))
    return outcomes


def capacity_result(result_id: str, figures: dict, redis_setup: str) -> Result:
    met = figures["applied_per_s"] >= GOAL_APPLIED_PER_S and figures["unapplied_after_run"] == 0
    return Result(
        id=result_id, title=f"Events applied per second, sustained, {WORKERS} event workers ({redis_setup})",
        figures={"ours": figures}, goal=f"≥ {GOAL_APPLIED_PER_S:,} events/s", met=met,
        notes=[f"{figures['events']:,} revocation_requested events appended at once by one pipelined client (took "
               f"appended_s) while {WORKERS} event workers (python -m revocation worker --only events, EVENT_BATCH "
               "default) and one CRL publisher run on the same 2 cores; applied_per_s counts from the first append "
               "until the consumer group had applied them all.",
               "worker_cpu_us_per_event: the event workers' process CPU time over the run per event applied; "
               "redis_cpu_us_per_event: redis-server's (INFO cpu) per event. Their sum against 2 cores is the "
               "ceiling this machine allows whatever else runs.",
               *([] if met else LIMITS)])


def result(result_id: str, figures: dict, redis_setup: str) -> Result:
    met = figures["p99_ms"] < GOAL_P99_MS and figures["never_revoked"] == 0
    rate = figures["rate_per_s"]
    return Result(
        id=result_id, title=f"Revocation propagation at {rate:,} events/s, event → OCSP revoked ({redis_setup})",
        figures={"ours": figures}, goal=f"p99 < {GOAL_P99_MS:g} ms", met=met,
        notes=[*([] if rate == RATE else [
                   f"A supplement to the goal's {RATE:,}/s: at {rate}/s the workers keep up on these 2 shared cores, "
                   "so this is the pipeline's own latency, without queueing."]),
               f"{rate:,} revocation_requested events/s for {SECONDS} s appended by a separate process; "
               f"{WORKERS} event workers (python -m revocation worker --only events) and one CRL publisher "
               "(--only crl); responder under gunicorn -w 2 (deploy/gunicorn-revocation.conf.py); all on the same "
               "cores.",
               f"Every {sample_every(rate)}th event probed with a nonce-less OCSP POST every {POLL_MS} ms (or every "
               f"{RELATIVE_POLL:.0%} of its age once longer): a latency over-states the true one by at most "
               f"max({POLL_MS} ms, {RELATIVE_POLL:.0%}) plus one HTTP exchange.",
               "applied_per_s: events applied per second from the first append until the consumer group had "
               "applied them all (polled every 50 ms; bounded by the offered rate, propagation.capacity measures "
               "the workers' own).",
               "worker_cpu_us_per_event / redis_cpu_us_per_event: the event workers' process CPU and "
               "redis-server's over the run, per event applied (redis-server's includes the responder's and the "
               "prober's lookups; a caught-up worker applies small batches, so its CPU per event is above the "
               "capacity run's).",
               *([] if met or rate != RATE else LIMITS),
               *([f"{figures['never_revoked']} probes still read good after {PROBE_TIMEOUT_S:.0f} s and were given "
                  "up: the percentiles cover the others only, so they under-state the truth."]
                 if figures["never_revoked"] else [])])


LIMITS = [
    "What limits it: CPU on these 2 shared cores. A worker applying batches of 500 revocations (py-spy, "
    "in-process) spends about 45 % in redis-py packing commands and parsing replies — per event still a holder "
    "HGET, a status HGET and their parts of the packed compare-and-set calls and CRL-index scripts, per batch ~8 "
    "round trips —, ~15 % writing the per-event JSON log line, ~11 % parsing and validating the entry (the compiled "
    "validator is ~3 µs of it), ~12 % planning the holder's state (JSON in and out), the rest folds and outcomes. "
    "Measured in-process, same moment: ~170 µs of worker CPU and ~32 µs of redis-server CPU per event, against "
    "2,012 µs and 402 µs before batching (8 round trips per event, two ECDSA signatures per change, the "
    "interpreted JSON-schema validator). A caught-up worker takes small batches, so at 1,000 events/s its CPU per "
    "event is higher (worker_cpu_us_per_event); the capacity run shows the batched figure.",
    "What would move it: fewer commands per event (the holder's state and event records in one hash, the CRL index "
    "folded into the status compare-and-set where the shard shares the slot), a cheaper holder-state encoding "
    "than JSON, a log line per batch rather than per event, and more cores: the consumer group scales out across "
    "workers, and one holder's events stay ordered by occurred_at whichever worker applies them.",
]
