"""Signals: from a certificate's status change until the relying party's receiver accepted the SET, on loopback.

Setup (not timed): a private redis-server; the revocation service's store and applier in this process; HOLDERS
holders, each with one auth certificate registered by a `certificate_issued` event (serials made up: nothing here
verifies a certificate), an account mapped to it as a first login would, and a consent for each of RPS relying
parties. Each relying party has an SSF push stream to one receiver process (a threaded http.server on loopback that
answers 202 and notes the arrival time, `sub_id` and event of each SET; or 503 while "down").
The signals workers run as their own processes, WORKERS of them (`python -m idp signals run`, one per core: a
worker signs every SET it queues, about 1 ms of CPU each with RS256, so one process is bound by one core), with
their defaults (ES256 SETs, a push backoff from 1 s doubling to 300 s).

1. Latency, once with SETs signed RS256, then ES256 (the default), each with fresh workers: `card_lost` events
   applied at RATE a second for SECONDS (paced against the clock; the time noted just before each apply, which
   writes the status feed entry). Each event makes one CAEP session-revoked SET per
   relying party: RATE × RPS SETs a second. Latency = arrival at the receiver − the event's time; p50/p99.
2. Outage: the receiver answers 503 for OUTAGE_S seconds while OUTAGE_HOLDERS holders get `card_lost` (all of
   them, over a quarter of the outage) then `revocation_requested` (over the next quarter): three SETs each per
   relying party (session-revoked, then session-revoked and credential-change); then it answers 202 again.
   Counted once everything arrived (bounded by DRAIN_S): SETs lost (expected minus distinct jti received), and
   subjects out of order (a subject's first SET not the loss's session-revoked, or its event timestamps going
   backwards).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import requests

from bench.harness import ROOT, RedisServer, Result, free_port, percentiles
from idp.signals.worker import FEED_READERS

RPS = 10
RATE = 100  # events per second
SECONDS = 10
HOLDERS = RATE * SECONDS
OUTAGE_S = 60
OUTAGE_HOLDERS = 200
DRAIN_S = 240  # after the outage: the backoff may be 64 s at the outage's end
GOAL_P99_MS = 1000.0
WORKERS = 2  # signals worker processes, one per core: the consumer group shares the feeds, leases the outboxes
NOT_AFTER = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


def _receiver(port: int, ready) -> None:
    """The receiver process: POST /<rp> takes a SET (202, or 503 while down); GET /dump, /down, /up."""
    arrivals: list = []
    state = {"down": False}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver: the pushes reuse their connection

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state["down"]:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            now = time.time()
            payload = body.split(b".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            [(event_type, event)] = claims["events"].items()
            with lock:
                arrivals.append((now, self.path, claims["sub_id"]["sub"], claims["jti"], event_type,
                                 event["event_timestamp"]))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            if self.path in ("/down", "/up"):
                state["down"] = self.path == "/down"
                body = b"{}"
            else:
                with lock:
                    body = json.dumps(arrivals).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


def run(workdir: Path) -> list[Result]:
    from deploy.composition import idp_services
    from idp.config import IdpConfig
    from idp.signals.service import build_signals
    from jpki.devca import DevCA
    from jpki.profile import CertificateKind
    from revocation.config import RevocationConfig
    from revocation.domain.events import CertificateRef, certificate_issued, parse_event
    from revocation.services import build_services

    var = workdir / "var"
    with RedisServer(workdir / "redis") as server:
        client = redis.Redis.from_url(server.url)
        ca = DevCA.load_or_create(var / "pki", "http://127.0.0.1:9")
        revocation = build_services(RevocationConfig(redis_url=server.url, var_dir=var, base_url=ca.revocation_url,
                                                     status_buckets=1024, holder_buckets=1024), client)
        revocation.claim_layout()
        secret = secrets.token_bytes(32)
        (workdir / "secret").write_text(secret.hex())
        config = IdpConfig(issuer=f"http://127.0.0.1:{free_port()}", redis_url=server.url, var_dir=var,
                           revocation_url=ca.revocation_url, secret=secret)
        services = idp_services(config, client)
        signals = build_signals(services)
        port = free_port()
        ready = multiprocessing.Event()
        receiver = multiprocessing.Process(target=_receiver, args=(port, ready), daemon=True)
        receiver.start()
        ready.wait(10)
        receiver_url = f"http://127.0.0.1:{port}"
        now = dt.datetime.now(dt.UTC)
        clients = []
        for number in range(RPS):
            rp, _ = services.clients.add(f"RP {number}", [f"https://rp{number}.example.jp/cb"])
            signals.streams.create(rp.client_id, {"delivery": {"method": "urn:ietf:rfc:8935",
                                                                "endpoint_url": f"{receiver_url}/rp{number}"}}, now)
            clients.append(rp)
        holders = []
        for number in range(2 * HOLDERS + OUTAGE_HOLDERS):
            serial = 0x5000_0000 + number
            holder, card = f"h{number}x", f"c{number}x"
            revocation.applier.apply(certificate_issued(f"issue-{number}", holder, card,
                                                        [CertificateRef(CertificateKind.AUTH, serial, NOT_AFTER)],
                                                        occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                                                        source="bench"))
            account = services.mykey.resolve("auth", serial, now)
            for rp in clients:
                services.consents.grant(account.account_id, rp.client_id, ["openid"], now)
            holders.append((holder, card, {signals.signals.sub_for(rp, account.account_id): rp for rp in clients}))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MYKEY_DEV": "1", "IDP_ISSUER": config.issuer,
               "REDIS_URL": server.url, "MYKEY_VAR": str(var), "REVOCATION_URL": ca.revocation_url,
               "IDP_SECRET_FILE": str(workdir / "secret"), "MYKEY_JSON_LOGS": "1"}

        def start_workers(alg: str) -> list[subprocess.Popen]:
            workers = [subprocess.Popen([sys.executable, "-m", "idp", "signals", "run"], cwd=ROOT,
                                        env={**env, "SIGNALS_SET_ALG": alg}, stdout=subprocess.DEVNULL,
                                        stderr=open(workdir / f"worker-{alg}-{n}.log", "wb"))
                       for n in range(WORKERS)]
            time.sleep(3)  # the workers' first look at the receivers (every 2 s)
            return workers

        def stop_workers(workers: list[subprocess.Popen]) -> None:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)

        def event(kind: str, holder: tuple, tag: str, at: str):
            return parse_event({"event_id": f"{kind}-{tag}", "type": kind, "holder": holder[0],
                                "card_id": holder[1], "occurred_at": at, "source": "bench"})

        def latency(group: list, already: int) -> dict:
            """`card_lost` for each holder of `group` at RATE a second; the SETs' latencies."""
            sent: dict[str, float] = {}
            start = time.monotonic()
            for index, holder in enumerate(group):
                pause = start + index / RATE - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                for sub in holder[2]:
                    sent[sub] = time.time()
                revocation.applier.apply(event("card_lost", holder, f"{already}-{index}", "2026-02-01T00:00:00Z"))
            offered_s = time.monotonic() - start
            arrivals = _wait_for(receiver_url, already + len(group) * RPS, 120)
            samples = [(at - sent[sub]) * 1000 for at, _, sub, *_ in arrivals if sub in sent]
            return {**percentiles(samples), "sets": len(group) * RPS, "offered_s": round(offered_s, 2)}

        figures = {}
        workers = start_workers("RS256")
        try:
            figures["latency RS256"] = latency(holders[HOLDERS:2 * HOLDERS], 0)
        finally:
            stop_workers(workers)
        workers = start_workers("ES256")  # the default
        try:
            figures["latency ES256 (default)"] = latency(holders[:HOLDERS], HOLDERS * RPS)
            expected = 2 * HOLDERS * RPS

            # 2. the receiver down OUTAGE_S, then back
            requests.get(f"{receiver_url}/down", timeout=5)
            outage_start = time.monotonic()
            group = holders[2 * HOLDERS:]
            # Each holder's loss in the first quarter, its revocation in the second: seconds apart, so the event
            # timestamps tell the order.
            pace = (OUTAGE_S / 4) / len(group)
            for kind, at in (("card_lost", "2026-03-01T00:00:00Z"), ("revocation_requested", "2026-03-02T00:00:00Z")):
                for index, holder in enumerate(group):
                    revocation.applier.apply(event(kind, holder, f"o{index}", at))
                    time.sleep(pace)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_start)))
            requests.get(f"{receiver_url}/up", timeout=5)
            back = time.monotonic()
            outage_expected = expected + len(group) * 3 * RPS
            arrivals = _wait_for(receiver_url, outage_expected, DRAIN_S)
            drained_s = time.monotonic() - back
        finally:
            stop_workers(workers)
            receiver.terminate()
        subs = {sub for holder in group for sub in holder[2]}
        mine = [a for a in arrivals if a[2] in subs]
        jtis = {a[3] for a in mine}
        lost = len(group) * 3 * RPS - len(jtis)
        out_of_order = 0
        seen: dict[str, list] = {}
        for _at, _, sub, jti, event_type, stamp in sorted(mine):
            seen.setdefault(sub, []).append((event_type, stamp, jti))
        for sequence in seen.values():
            firsts = [s for s in sequence if s[0].endswith("session-revoked")]
            stamps = [s[1] for s in sequence]
            if not sequence or sequence[0] != firsts[0] or stamps != sorted(stamps):
                out_of_order += 1
        figures["outage"] = {"sets": len(group) * 3 * RPS, "received_distinct": len(jtis), "lost": lost,
                             "subjects_out_of_order": out_of_order, "duplicates": len(mine) - len(jtis),
                             "drained_after_up_s": round(drained_s, 1)}
        first = figures["latency ES256 (default)"]
    met = first["p99_ms"] < GOAL_P99_MS and lost == 0 and out_of_order == 0
    return [Result(
        id="signals", title=f"Signals: status change → SET accepted ({RPS} RPs, {RATE} events/s; receiver down "
                            f"{OUTAGE_S} s)",
        figures=figures,
        goal=f"p99 < {GOAL_P99_MS:.0f} ms; after the outage 0 lost, 0 out of order per subject", met=met,
        notes=[f"{WORKERS} `python -m idp signals run` processes with their defaults (backoff 1 s doubling to "
               "300 s), SETs signed with RS256, then with ES256 (the default, SIGNALS_SET_ALG); events applied in this "
               "process, the status feed written by the applier. The goal is judged on the default; the outage "
               "runs with it too.",
               "Where the time goes (profiled in process, one event, 10 RPs): each SET's RS256 signature ~0.5 ms "
               "(ES256 ~0.2 ms), and one pipelined round trip for the 10 relying parties' consent lookups.",
               "Latency counts from just before the event is applied to the receiver's arrival time (the "
               "receiver is its own process; both read the same wall clock). An offered_s above "
               f"{SECONDS} s means this process could not apply the events at {RATE}/s (CPU taken elsewhere), "
               "so fewer were offered per second.",
               f"Each worker reads the feeds with {FEED_READERS} threads. With RS256 the 1,000 SETs/s take most of "
               "the CPU this 2-core machine leaves the workers next to the applier and the receiver (p99 0.4-1.5 s "
               "across runs); ES256, the default, keeps a margin.",
               "After the outage the wait is the backoff: the head token's next try comes up to 64 s after the "
               "receiver returns."])]


def _wait_for(url: str, count: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    arrivals = []
    while time.monotonic() < deadline:
        arrivals = requests.get(f"{url}/dump", timeout=30).json()
        if len({a[3] for a in arrivals}) >= count:
            return arrivals
        time.sleep(0.5)
    return arrivals
