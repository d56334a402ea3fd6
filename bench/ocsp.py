"""OCSP throughput, latency and CPU per request: our responder against `openssl ocsp`, over the same certificates.

Both sides answer for the same population of the dev CA's auth issuer (POPULATION issued serials, REVOKED of
them revoked): ours from its Redis status store, loaded through `StatusStore.register_many` and revoked through
`StatusStore.transition`; `openssl ocsp -index` from an equivalent index.txt. Certificates need not exist as X.509
files: an OCSP request carries only a CertID (issuer name and key hashes, serial), built here with
`OCSPRequestBuilder.add_certificate_by_hash`. Both sign with the issuer's delegated responder, an ECDSA P-256 key,
with SHA-256, and name it by key hash.

A fixed set of REQUESTS distinct requests (about 10 % for revoked serials, like the population) is built once
in two forms: nonce-less and with a 32-byte nonce (RFC 9654), each sent as a POST and as a GET (base64 in the
path, percent-encoded). A sample of each side's answers is checked (good / revoked as expected, signature by the
responder, nonce echoed) before anything is timed. Then wrk, a separate process with the same connections and
threads for every side, sends the requests in a cycle: warm-up rounds until the rate is steady (they also fill our
response cache), then the timed run. wrk cycles the fixed set, so a nonce repeats every REQUESTS requests;
neither responder remembers nonces, so that changes nothing.

Sides, in one run, so that ratios compare figures taken minutes apart on the same machine:
- ours: the production data plane, deploy/granian-ocsp.sh (deploy.composition:ocsp_app under granian, 2 workers);
- ours under gunicorn: the revocation app under gunicorn with deploy/gunicorn-revocation.conf.py (comparison);
- peer: `openssl ocsp -multi 2`;
- and, for nonce-less GETs, ours behind nginx with docs/operators.md's cache block (devstack OcspCacheNginx).
CPU per request is each side's process-tree CPU seconds over the timed run divided by the requests it answered
(Redis's own CPU apart), next to the signature each answer needs (SIGN_US: one ECDSA P-256 signature, measured
here with the same library).

`measure_ours` runs our side alone against any Redis; bench/cluster.py re-uses it on a Redis Cluster.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import random
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import redis
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ReasonFlags, ocsp
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus
from redis.cluster import RedisCluster

from bench.harness import CpuByProcess, Gunicorn, RedisServer, Result, free_port, wrk
from devstack.processes import Granian, OcspCacheNginx
from jpki.devca import DevCA
from jpki.issuer import Issuer
from jpki.profile import crl_shard
from revocation.storage.keys import KeySpace
from revocation.storage.store import StatusRecord, StatusStore, revoke

POPULATION = 100_000
REVOKED = 10_000
REQUESTS = 4_000
ISSUER = "auth"  # the issuer slug in our store; the dev CA's user-authentication root
NOT_AFTER = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
REVOKED_AT = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
OCSP_REQUEST = "application/ocsp-request"
WARMUP_SECONDS = 4
MAX_WARMUPS = 4  # warm-up rounds at most, until one is no more than 10 % faster than the one before
TIMED_SECONDS = 12
CONNECTIONS, THREADS = 16, 2  # the same for both sides
VERIFY_SAMPLE = 150


@dataclass(frozen=True)
class Population:
    """The certificates both responders answer for, and the requests that ask about them."""

    ca: DevCA
    serials: list[int]
    revoked: frozenset[int]
    nonce_less: list[bytes]
    with_nonce: list[bytes]
    asked: list[int]  # the serial of each request, in order

    @property
    def issuer(self) -> Issuer:
        return self.ca.auth


def make_population(ca: DevCA, count: int = POPULATION, revoked: int = REVOKED, requests_: int = REQUESTS,
                    seed: int = 6960) -> Population:
    rng = random.Random(seed)  # noqa: S311 - reproducible serials and nonces for a benchmark
    serials = rng.sample(range(1, 1 << 63), count)  # uniform and distinct (the dev CA's are always odd)
    revoked_set = frozenset(serials[:revoked])
    asked = rng.sample(serials, requests_)
    name_hash, key_hash = cert_id_hashes(ca.auth.certificate)
    nonce_less = [ocsp_request(name_hash, key_hash, serial) for serial in asked]
    with_nonce = [ocsp_request(name_hash, key_hash, serial, rng.randbytes(32)) for serial in asked]
    return Population(ca, serials, revoked_set, nonce_less, with_nonce, asked)


def cert_id_hashes(issuer: x509.Certificate) -> tuple[bytes, bytes]:
    """SHA-1 issuerNameHash and issuerKeyHash of a CertID (RFC 6960 §4.1.1)."""
    def sha1(data: bytes) -> bytes:
        digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - the CertID hash every OCSP client sends
        digest.update(data)
        return digest.finalize()
    key_bits = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return sha1(issuer.subject.public_bytes()), sha1(key_bits)


def ocsp_request(name_hash: bytes, key_hash: bytes, serial: int, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial,
                                                                hashes.SHA1())  # noqa: S303
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


# --- our side -----------------------------------------------------------------------------------------------


def connect(url: str, cluster: bool) -> redis.Redis:
    return RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)


def service_env(var_dir: Path, redis_url: str, cluster: bool, ca: DevCA) -> dict[str, str]:
    """The revocation service's environment, production bucket settings (STATUS_BUCKETS left at its default)."""
    return {"REDIS_URL": redis_url, "REDIS_CLUSTER": "1" if cluster else "0", "MYKEY_VAR": str(var_dir),
            "REVOCATION_URL": ca.revocation_url, "MYKEY_JSON_LOGS": "1", "MYKEY_DEV": "1"}


def load_store(client: redis.Redis, population: Population) -> dict[str, float]:
    """Register every serial in bulk, then revoke the revoked ones through the store's compare-and-set."""
    store = StatusStore(client, KeySpace())
    began = time.monotonic()
    added = store.register_many(ISSUER, ((serial, StatusRecord.issued(crl_shard(serial), NOT_AFTER))
                                         for serial in population.serials))
    registered = time.monotonic()
    for serial in population.revoked:
        store.transition(ISSUER, serial, revoke(ReasonFlags.key_compromise, REVOKED_AT))
    if added != len(population.serials):
        raise RuntimeError(f"bulk registration added {added} of {len(population.serials)} certificates")
    return {"register_s": round(registered - began, 2), "revoke_s": round(time.monotonic() - registered, 2)}


# The cases: (HTTP method, which requests). POST ids keep their names from earlier reports.
CASES = {"nonce_less": ("POST", "nonce_less"), "nonce": ("POST", "with_nonce"),
         "get_nonce_less": ("GET", "nonce_less"), "get_nonce": ("GET", "with_nonce")}
WORKERS = 2  # processes per side: ours (granian or gunicorn) and openssl's -multi


@contextlib.contextmanager
def started(server) -> Iterator[tuple[str, dict[str, int]]]:
    """A devstack server (Gunicorn, Granian) or OpensslOcsp: its URL and the process whose tree's CPU is its own."""
    with server as url:
        yield url, {"server": server.process.pid}


@contextlib.contextmanager
def behind_nginx_cache(workdir: Path, env: dict[str, str]) -> Iterator[tuple[str, dict[str, int]]]:
    """The data plane with nginx in front, running docs/operators.md's cache block (as many nginx workers as
    cores); the CPU of both counts."""
    upstream = Granian(env, workers=WORKERS)
    with upstream as upstream_url:
        nginx = OcspCacheNginx(workdir / "nginx", upstream_url, worker_processes="auto")
        with nginx as url:
            yield url, {"server": nginx.process.pid, "upstream": upstream.process.pid}


def measure_ours(workdir: Path, redis_url: str, population: Population, cluster: bool = False,
                 cases: tuple[str, ...] = ("nonce_less", "nonce"), redis_pid: int | None = None,
                 under: str = "granian") -> dict[str, dict]:
    """Our responder over `redis_url`, already loaded: the production data plane (deploy/granian-ocsp.sh), or
    with under="gunicorn" the revocation app under gunicorn (deploy/gunicorn-revocation.conf.py)."""
    var_dir = workdir / "var"
    population.ca.save(var_dir / "pki")
    env = service_env(var_dir, redis_url, cluster, population.ca)
    if under == "gunicorn":
        def serve():
            return started(Gunicorn("deploy.composition:revocation_app()", env, workers=WORKERS))
    else:
        def serve():
            return started(Granian(env, workers=WORKERS))
    return measure_responder(serve, "/ocsp", population, cases, redis_pid=redis_pid)


def measure_responder(serve: Callable[[], AbstractContextManager[tuple[str, dict[str, int]]]], path: str,
                      population: Population, cases: tuple[str, ...], restart_after_load: bool = False,
                      redis_pid: int | None = None) -> dict[str, dict]:
    """Per case: check a sample, warm up, time. `serve()` gives a base URL and the processes whose CPU to count;
    POSTs go to `path`, GETs to `path`/<request>."""
    figures = {}
    with contextlib.ExitStack() as stack:
        url, roots = stack.enter_context(serve())
        for name in cases:
            method, which = CASES[name]
            bodies = getattr(population, which)
            verify_sample(url, path, method, population, bodies, population.issuer.responder_certificate)
            # Warm up until steady: a cold cache fills at the pace of Redis round trips, which is not what is timed.
            previous = 0.0
            for _ in range(MAX_WARMUPS):
                warm = load(url, path, method, bodies, WARMUP_SECONDS)["rps"]
                if restart_after_load:
                    stack.close()
                    url, roots = stack.enter_context(serve())
                if warm <= previous * 1.1:
                    break
                previous = warm
            watched = {**roots, **({"redis": redis_pid} if redis_pid else {})}
            with CpuByProcess(watched) as cpu:
                measured = load(url, path, method, bodies, TIMED_SECONDS)
            figures[name] = {**measured, **cpu_per_request(cpu.seconds, measured["requests"])}
            if restart_after_load:
                stack.close()
                url, roots = stack.enter_context(serve())
    return figures


def cpu_per_request(seconds: dict[str, float], requests_: int) -> dict[str, float]:
    """Microseconds of CPU per answered request: the server's processes together, and Redis apart."""
    count = max(1, requests_)
    own = sum(value for name, value in seconds.items() if name != "redis")
    per = {"cpu_us_per_req": round(own / count * 1e6, 1)}
    if "redis" in seconds:
        per["redis_cpu_us_per_req"] = round(seconds["redis"] / count * 1e6, 1)
    return per


def get_path(path: str, body: bytes) -> str:
    """GET /<path>/<base64 of the request>, percent-encoded (RFC 6960 Appendix A.1)."""
    return f"{path.rstrip('/')}/{urllib.parse.quote(base64.b64encode(body).decode(), safe='')}"


def load(base_url: str, path: str, method: str, bodies: list[bytes], seconds: int) -> dict:
    if method == "GET":
        return wrk(base_url, [get_path(path, body) for body in bodies], method="GET", seconds=seconds,
                   connections=CONNECTIONS, threads=THREADS)
    return wrk(base_url, bodies, method="POST", content_type=OCSP_REQUEST, path=path, seconds=seconds,
               connections=CONNECTIONS, threads=THREADS)


def verify_sample(base_url: str, path: str, method: str, population: Population, bodies: list[bytes],
                  responder: x509.Certificate) -> None:
    """Before timing: a sample of answers says good or revoked as the population does, signed, nonce echoed."""
    for index in range(0, len(bodies), max(1, len(bodies) // VERIFY_SAMPLE)):
        if method == "GET":
            reply = requests.get(base_url + get_path(path, bodies[index]), timeout=10)
        else:
            reply = requests.post(base_url + path, data=bodies[index], headers={"Content-Type": OCSP_REQUEST},
                                  timeout=10)
        response = ocsp.load_der_ocsp_response(reply.content)
        serial = population.asked[index]
        expected = OCSPCertStatus.REVOKED if serial in population.revoked else OCSPCertStatus.GOOD
        if response.response_status is not OCSPResponseStatus.SUCCESSFUL or response.serial_number != serial:
            raise RuntimeError(f"{base_url} {method}: unexpected answer ({response.response_status.name})")
        if response.certificate_status is not expected:
            raise RuntimeError(f"{base_url} {method}: said {response.certificate_status.name}, expected "
                               f"{expected.name}")
        responder.public_key().verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
        nonce = ocsp.load_der_ocsp_request(bodies[index]).extensions
        if nonce:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            if echoed != nonce.get_extension_for_class(x509.OCSPNonce).value.nonce:
                raise RuntimeError(f"{base_url} {method}: nonce not echoed")


def signature_microseconds(population: Population, seconds: float = 1.0) -> float:
    """One ECDSA P-256 / SHA-256 signature with the responder's key, as both sides make it, in microseconds."""
    key, data, count = population.issuer.responder_key, b"\x00" * 300, 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        key.sign(data, ec.ECDSA(hashes.SHA256()))
        count += 1
    return round((time.perf_counter() - began) / count * 1e6, 1)


# --- openssl's side -----------------------------------------------------------------------------------------


def write_index(path: Path, population: Population) -> None:
    """openssl ca's index.txt: status, expiry, revocation time[,reason], serial (hex, whole bytes), file, DN."""
    expiry = NOT_AFTER.strftime("%y%m%d%H%M%SZ")
    revoked_at = REVOKED_AT.strftime("%y%m%d%H%M%SZ")
    lines = []
    for serial in population.serials:
        hex_serial = f"{serial:X}".rjust(((serial.bit_length() + 7) // 8) * 2, "0")
        if serial in population.revoked:
            lines.append(f"R\t{expiry}\t{revoked_at},keyCompromise\t{hex_serial}\tunknown\t/CN=c{hex_serial}")
        else:
            lines.append(f"V\t{expiry}\t\t{hex_serial}\tunknown\t/CN=c{hex_serial}")
    path.write_text("\n".join(lines) + "\n")
    path.with_name(path.name + ".attr").write_text("unique_subject = no\n")


class OpensslOcsp:
    """`with OpensslOcsp(workdir, population) as url:` — `openssl ocsp` as a responder with 2 processes."""

    def __init__(self, workdir: Path, population: Population, processes: int = 2):
        self.workdir, self.population, self.processes = workdir, population, processes
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> str:
        issuer, files = self.population.issuer, self.workdir / "openssl"
        files.mkdir(parents=True, exist_ok=True)
        write_index(files / "index.txt", self.population)
        self.population.ca.save(files)
        slug = issuer.kind.value
        log = (files / "ocsp.log").open("wb")
        self.process = subprocess.Popen(
            ["openssl", "ocsp", "-index", str(files / "index.txt"), "-port", str(self.port),
             "-rsigner", str(files / f"{slug}-ocsp.pem"), "-rkey", str(files / f"{slug}-ocsp.key.pem"),
             "-CA", str(files / f"{slug}-ca.pem"), "-multi", str(self.processes), "-nmin", "240",
             "-rmd", "sha256", "-resp_key_id", "-ignore_err"],
            stdout=log, stderr=subprocess.STDOUT, process_group=0)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.post(url + "/", data=self.population.nonce_less[0], timeout=2,
                              headers={"Content-Type": OCSP_REQUEST})
                return url
            except requests.ConnectionError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("openssl ocsp did not come up")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # its own process group: the parent and its -multi children
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None


def measure_openssl(workdir: Path, population: Population, cases: tuple[str, ...]) -> dict[str, dict]:
    # openssl 3.0's responder children spin on connections a client dropped mid-exchange, as wrk does when it
    # stops: a fresh responder for every load run keeps that out of the next run's figures.
    return measure_responder(lambda: started(OpensslOcsp(workdir, population, WORKERS)), "/", population, cases,
                             restart_after_load=True)


# --- the benchmark ------------------------------------------------------------------------------------------


def run(workdir: Path) -> list[Result]:
    population = make_population(DevCA.generate())
    sign_us = signature_microseconds(population)
    with RedisServer(workdir / "redis") as server:
        loading = load_store(redis.Redis.from_url(server.url), population)
        pid = server.process.pid
        ours = measure_ours(workdir, server.url, population, cases=tuple(CASES), redis_pid=pid)
        gunicorn = measure_ours(workdir, server.url, population, cases=tuple(CASES), redis_pid=pid, under="gunicorn")
        env = service_env(workdir / "var", server.url, False, population.ca)
        cached = measure_responder(lambda: behind_nginx_cache(workdir, env), "/ocsp", population,
                                   ("get_nonce_less",), redis_pid=pid)
    peer = measure_openssl(workdir, population, tuple(CASES))
    results = [result("ocsp", case, ours[case], peer[case], loading, {"ours under gunicorn": gunicorn[case]},
                      sign_us) for case in CASES]
    results.append(result("ocsp", "get_nginx_cache", cached["get_nonce_less"], peer["get_nonce_less"],
                          sign_us=sign_us))
    return results


GOALS = {"nonce_less": 3.0, "nonce": 1.0, "get_nonce_less": 3.0, "get_nonce": 1.0}
P99_GOAL = ("nonce_less", "get_nonce_less")  # there the goal also asks for a p99 no worse than openssl's
LABELS = {"nonce_less": "nonce-less", "nonce": "with a nonce", "get_nonce_less": "GET nonce-less",
          "get_nonce": "GET with a nonce", "get_nginx_cache": "GET nonce-less through nginx's cache"}
OURS_SIGNS = {"nonce_less": 0, "nonce": 1, "get_nonce_less": 0, "get_nonce": 1, "get_nginx_cache": 0}
_PATH = ("Ours: the data plane answers in a bare WSGI callable (no Flask) from the worker's own copy of the "
         "pre-signed response (kept coherent by Redis's invalidation messages): no Redis round trip, no signature "
         "for a nonce-less request; a nonce request re-signs that copy (one ECDSA signature, revocation/ocsp/der.py).")
LIMITS = {
    "nonce_less": "What is left per request is the HTTP server and decoding the request with cryptography; compare "
                  "cpu_us_per_req with bench/limits.py's trivial response under the same server.",
    "nonce": "Both sides sign every nonce answer; ours pays the HTTP server and the request parsing on top of the "
             "signature (signing_us_per_req), openssl does it all in C.",
}


def result(prefix: str, case: str, ours: dict, peer: dict | None, loading: dict | None = None,
           others: dict[str, dict] | None = None, sign_us: float | None = None) -> Result:
    notes = [
        f"{POPULATION:,} issued, {REVOKED:,} revoked; {REQUESTS:,} distinct requests cycled by wrk "
        f"({CONNECTIONS} connections, {THREADS} threads, {TIMED_SECONDS} s after {WARMUP_SECONDS} s warm-up rounds "
        f"until steady, at most {MAX_WARMUPS}).",
        "Ours: deploy/granian-ocsp.sh (deploy.composition:ocsp_app under granian, 2 workers, 1 blocking thread), "
        "Redis with hiredis. Ours under gunicorn: the revocation app, gunicorn -w 2 -c "
        "deploy/gunicorn-revocation.conf.py (gthread, 4 threads), the same responder in front of Flask. "
        "Both sides sign with ECDSA P-256 / SHA-256.",
        _PATH,
        "cpu_us_per_req: CPU of the side's process tree during the timed run / requests answered (Redis apart: "
        "redis_cpu_us_per_req); signing_us_per_req: the signatures each answer needs × one ECDSA P-256 signature "
        f"measured here ({sign_us} µs)." if sign_us else "",
    ]
    if case == "get_nginx_cache":
        notes.append("Ours: nginx (Debian's, 2 workers) with docs/operators.md's cache block in front of the data "
                     "plane; after the warm-up every request is a cache hit, so this is nginx answering from its "
                     "cache. CPU counts nginx and the data plane. Peer: openssl answering the same GETs.")
    figures = {"ours": {**ours, **_signing(OURS_SIGNS[case], sign_us)}}
    for side, measured in (others or {}).items():
        figures[side] = {**measured, **_signing(OURS_SIGNS[case], sign_us)}
    ratio, met, goal = None, None, ""
    if peer is not None:
        figures["peer"] = {**peer, **_signing(1, sign_us)}
        ratio = round(ours["rps"] / peer["rps"], 2)
        if case in GOALS:
            met = ratio >= GOALS[case] and (case not in P99_GOAL or ours["p99_ms"] <= peer["p99_ms"])
            goal = f"ours ≥ {GOALS[case]:g}× openssl rps" + (", p99 ≤ openssl's" if case in P99_GOAL else "")
        notes.append("Peer: openssl ocsp -index -multi 2 -resp_key_id (OpenSSL 3.0); it signs every response "
                     "live, nonce or not. Its -port takes only a number, so it listens on all interfaces.")
    if met is False:
        notes.append(LIMITS["nonce" if OURS_SIGNS[case] else "nonce_less"])
    if loading:
        notes.append(f"Bulk load of our store: register_many {loading['register_s']} s, "
                     f"{REVOKED:,} revocations through the store's compare-and-set {loading['revoke_s']} s.")
    return Result(id=f"{prefix}.{case}", title=f"OCSP {LABELS[case]} ({prefix.replace('.', ' ')})", figures=figures,
                  ratio=ratio, ratio_meaning="ours rps / openssl rps" if ratio is not None else "",
                  goal=goal, met=met, notes=[note for note in notes if note])


def _signing(signatures: int, sign_us: float | None) -> dict[str, float]:
    return {} if sign_us is None else {"signing_us_per_req": round(signatures * sign_us, 1)}
