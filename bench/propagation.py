"""Revocation propagation: from an event appended to the event stream until OCSP over HTTP answers "revoked".

Setup: rate × SECONDS holders, each with one card and its auth certificate, registered by `certificate_issued`
events applied in-process before anything is timed. Then, with the real pieces running — WORKERS worker processes
(`python -m revocation worker`: consumer group, applier, OCSP re-signing listener, CRL publication in the same
loop) and the responder under gunicorn (2 workers) — a separate appender process XADDs one
`revocation_requested` event per holder at the rate (paced against the clock, for SECONDS), and notes the
monotonic time just before each XADD. Two rates: the goal's RATE, and BELOW_CAPACITY_RATE, which the workers
keep up with here, so that the pipeline's own latency shows apart from queueing.

Every n-th event is probed (25 probes a second at either rate): the appender hands (serial, append time) to the
prober in this process, whose threads POST the serial's nonce-less OCSP request every POLL_MS ms until the answer
is "revoked"; the latency is the time that answer arrived minus the append time. So a figure over-states the true
propagation by at most one poll interval plus one HTTP exchange. Probing a subset keeps the prober's own load on
the responder (a few hundred requests/s) small next to the event load; unprobed events still go through the whole
pipeline.

`measure_propagation` runs against any Redis; bench/cluster.py re-uses it on a Redis Cluster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import itertools
import multiprocessing
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
_DONE = None  # end-of-run marker on the probe queue
ISSUED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


def issue_holders(services, count: int, seed: int = 7) -> list[tuple[str, str, int]]:
    """(holder, card, auth serial) for `count` holders, each registered through a `certificate_issued` event."""
    rng = random.Random(seed)  # noqa: S311 - reproducible serials for a benchmark
    holders = []
    for index in range(count):
        holder, card, serial = f"bench-holder-{index}x", f"bench-card-{index}x", rng.randrange(1, 1 << 63)
        services.applier.apply(certificate_issued(
            f"bench-issue-{index}x", holder, card, [CertificateRef(CertificateKind.AUTH, serial, NOT_AFTER)],
            occurred_at=ISSUED_AT, source="bench"))
        holders.append((holder, card, serial))
    return holders


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
        for _ in range(WORKERS):
            workers.enter_context(revocation_worker(env, only="events"))
        workers.enter_context(revocation_worker(env, only="crl"))
        prober = Prober(url, ca.auth.certificate)
        probes = multiprocessing.get_context("spawn").Queue()
        appender = multiprocessing.get_context("spawn").Process(
            target=append_paced, args=(redis_url, cluster, events, [serial for _, _, serial in holders], rate,
                                       sample_every(rate), probes))
        began = time.monotonic()
        appender.start()
        try:
            prober.follow(probes, run_timeout_s=SECONDS + PROBE_TIMEOUT_S + 20)
        finally:
            appender.join(timeout=30)
            if appender.is_alive():
                appender.terminate()
        probed_s = time.monotonic() - began
        backlog = wait_applied(services.stream, timeout_s=30)
        applied_s = time.monotonic() - began
    figures = percentiles(prober.latencies_ms)
    return {**figures, "max_ms": round(max(prober.latencies_ms, default=float("nan")), 3),
            "events": len(events), "rate_per_s": rate, "probed": len(events[::sample_every(rate)]),
            "never_revoked": prober.missed, "probed_s": round(probed_s, 2), "setup_s": round(setup_s, 2),
            "applied_per_s": round((len(events) - backlog) / applied_s, 1), "unapplied_after_run": backlog}


def sample_every(rate: int) -> int:
    """Probe every n-th event: the same number of probes per second at any rate."""
    return max(1, SAMPLE_EVERY * rate // RATE)


def wait_applied(stream: EventStream, timeout_s: float) -> int:
    """Wait until the consumer group has applied everything; returns how many entries were still waiting."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = stream.health()
        waiting = (health["lag"] or 0) + health["pending"]
        if waiting == 0 or time.monotonic() > deadline:
            return waiting
        time.sleep(0.2)


def run(workdir: Path) -> list[Result]:
    outcomes = []
    for result_id, rate in (("propagation", RATE), ("propagation.below_capacity", BELOW_CAPACITY_RATE)):
        with RedisServer(workdir / f"redis-{rate}") as server:
            figures = measure_propagation(workdir / str(rate), server.url, rate=rate)
        outcomes.append(result(result_id, figures, "one redis-server"))
    return outcomes


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
               "applied them all (the worker's sustained rate when it falls behind).",
               *([] if met or rate != RATE else LIMITS),
               *([f"{figures['never_revoked']} probes still read good after {PROBE_TIMEOUT_S:.0f} s and were given "
                  "up: the percentiles cover the others only, so they under-state the truth."]
                 if figures["never_revoked"] else [])])


LIMITS = [
    "What limits it: the workers cannot sustain 1,000 events/s on these 2 cores, so a backlog builds and the latency "
    "is queueing time (applied_per_s is their sustained rate; the below-capacity run shows the pipeline itself "
    "takes milliseconds). One worker alone in-process applied ~575 revocations/s; here two event workers share the "
    "cores with a CRL publisher, the responder, the appender and the prober. py-spy of a worker: ~58 % Redis round "
    "trips (about 8 per revocation: holder HGET + CAS script, status HGET + CAS script + CRL-index MULTI + "
    "dirty-set SADD, OCSP-cache script), ~28 % re-signing the cached OCSP responses (2 ECDSA signatures + "
    "script), ~12 % re-validating each entry against the JSON schema.",
    "What would move it: more cores and event workers (the consumer group scales out; one holder's events stay "
    "ordered by occurred_at whichever worker applies them), folding a certificate's round trips into one script "
    "per slot, and signing the SHA-1 and SHA-256 forms of a response once lazily rather than both at every change.",
]
