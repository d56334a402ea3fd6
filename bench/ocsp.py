"""OCSP throughput and latency: our responder under gunicorn against `openssl ocsp`, over the same certificates.

Both sides answer for the same population of the dev CA's auth issuer (POPULATION issued serials, REVOKED of
them revoked): ours from its Redis status store, loaded through `StatusStore.register_many` and revoked through
`StatusStore.transition`; `openssl ocsp -index` from an equivalent index.txt. Certificates need not exist as X.509
files: an OCSP request carries only a CertID (issuer name and key hashes, serial), built here with
`OCSPRequestBuilder.add_certificate_by_hash`. Both sign with the issuer's delegated responder, an ECDSA P-256 key,
with SHA-256, and name it by key hash.

A fixed set of REQUESTS distinct requests (about 10 % for revoked serials, like the population) is built once
in two forms: nonce-less and with a 32-byte nonce (RFC 9654). A sample of each side's answers is checked
(good / revoked as expected, signature by the responder, nonce echoed) before anything is timed. Then wrk, a
separate process with the same connections and threads for both sides, POSTs the requests in a cycle: a warm-up
(which also fills our response cache), then the timed run. wrk cycles the fixed set, so a nonce repeats every
REQUESTS requests; neither responder remembers nonces, so that changes nothing.

`measure_ours` runs our side alone against any Redis; bench/cluster.py re-uses it on a Redis Cluster. When granian
is installed, the same app is also measured under granian (2 workers, WSGI, 1 blocking thread) — a figure for
comparison, not the production server; the ratio and the goal stay with gunicorn.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
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

from bench.harness import Gunicorn, RedisServer, Result, free_port, wrk
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


def measure_ours(workdir: Path, redis_url: str, population: Population, cluster: bool = False) -> dict[str, dict]:
    """Our responder (gunicorn, 2 workers, deploy/gunicorn-revocation.conf.py) over `redis_url`, already loaded:
    nonce-less and nonce figures."""
    var_dir = workdir / "var"
    population.ca.save(var_dir / "pki")
    env = service_env(var_dir, redis_url, cluster, population.ca)
    return measure_responder(lambda: Gunicorn("deploy.composition:revocation_app()", env), "/ocsp", population)


@contextlib.contextmanager
def granian(env: dict[str, str]):
    """Our app under granian, 2 workers, one blocking thread each (measured best of 1 and 4 here)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", "--workers", "2", "--blocking-threads",
         "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "deploy.composition:revocation_app"], env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # at most ~30 s to start
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("granian did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure_ours_under_granian(workdir: Path, redis_url: str, population: Population) -> dict[str, dict] | None:
    if importlib.util.find_spec("granian") is None:
        return None
    env = service_env(workdir / "var", redis_url, False, population.ca)
    return measure_responder(lambda: granian(env), "/ocsp", population)


def measure_responder(serve: Callable[[], AbstractContextManager[str]], path: str, population: Population,
                      restart_after_load: bool = False) -> dict[str, dict]:
    """Per case (nonce-less, then with a nonce): check a sample, warm up, time. `serve()` gives a base URL."""
    figures = {}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve())
        for name, bodies in (("nonce_less", population.nonce_less), ("nonce", population.with_nonce)):
            verify_sample(url + path, population, bodies, population.issuer.responder_certificate)
            for seconds in (WARMUP_SECONDS, TIMED_SECONDS):
                figures[name] = load(url, path, bodies, seconds)
                if restart_after_load:
                    stack.close()
                    url = stack.enter_context(serve())
    return figures


def load(base_url: str, path: str, bodies: list[bytes], seconds: int) -> dict:
    return wrk(base_url, bodies, method="POST", content_type=OCSP_REQUEST, path=path, seconds=seconds,
               connections=CONNECTIONS, threads=THREADS)


def verify_sample(url: str, population: Population, bodies: list[bytes], responder: x509.Certificate) -> None:
    """Before timing: a sample of answers says good or revoked as the population does, signed, nonce echoed."""
    for index in range(0, len(bodies), max(1, len(bodies) // VERIFY_SAMPLE)):
        reply = requests.post(url, data=bodies[index], headers={"Content-Type": OCSP_REQUEST}, timeout=10)
        response = ocsp.load_der_ocsp_response(reply.content)
        serial = population.asked[index]
        expected = OCSPCertStatus.REVOKED if serial in population.revoked else OCSPCertStatus.GOOD
        if response.response_status is not OCSPResponseStatus.SUCCESSFUL or response.serial_number != serial:
            raise RuntimeError(f"{url}: unexpected answer ({response.response_status.name})")
        if response.certificate_status is not expected:
            raise RuntimeError(f"{url}: said {response.certificate_status.name}, expected {expected.name}")
        responder.public_key().verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
        nonce = ocsp.load_der_ocsp_request(bodies[index]).extensions
        if nonce:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            if echoed != nonce.get_extension_for_class(x509.OCSPNonce).value.nonce:
                raise RuntimeError(f"{url}: nonce not echoed")


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


def measure_openssl(workdir: Path, population: Population) -> dict[str, dict]:
    # openssl 3.0's responder children spin on connections a client dropped mid-exchange, as wrk does when it
    # stops: a fresh responder for every load run keeps that out of the next run's figures.
    return measure_responder(lambda: OpensslOcsp(workdir, population), "/", population, restart_after_load=True)


# --- the benchmark ------------------------------------------------------------------------------------------


def run(workdir: Path) -> list[Result]:
    population = make_population(DevCA.generate())
    with RedisServer(workdir / "redis") as server:
        loading = load_store(redis.Redis.from_url(server.url), population)
        ours = measure_ours(workdir, server.url, population)
        under_granian = measure_ours_under_granian(workdir, server.url, population)
    peer = measure_openssl(workdir, population)
    results = [result("ocsp", case, ours[case], peer[case], loading,
                      under_granian[case] if under_granian else None) for case in ("nonce_less", "nonce")]
    return results


GOALS = {"nonce_less": 3.0, "nonce": 1.0}
_PROFILE = ("What limits ours: OCSP is answered by a bare WSGI callable in front of Flask (no Flask dispatch), "
            "metrics are counted in process, and a repeated nonce-less request is answered from the worker's own "
            "copy of the pre-signed response (kept coherent by Redis's invalidation messages), so no Redis round "
            "trip; what is left is gunicorn's gthread worker — its HTTP parsing and thread hand-off — and decoding "
            "the request with cryptography (run-to-run noise here is ±25 %).")
LIMITS = {
    "nonce_less": [_PROFILE, "What would move it: a faster HTTP server than gunicorn gthread for the same app (the "
                   "granian row), or an HTTP cache in front for nonce-less GETs (RFC 5019 §6.2's headers are set, "
                   "so nginx or a CDN can answer from memory), and more cores."],
    "nonce": [_PROFILE, "With a nonce both sides sign every response; openssl does it in C in one process, ours "
              "pays the same per-request HTTP costs as nonce-less, a status read from Redis, plus the signature."],
}


def result(prefix: str, case: str, ours: dict, peer: dict | None, loading: dict | None = None,
           under_granian: dict | None = None) -> Result:
    label = "nonce-less" if case == "nonce_less" else "with a nonce"
    notes = [
        f"{POPULATION:,} issued, {REVOKED:,} revoked; {REQUESTS:,} distinct requests cycled by wrk "
        f"({CONNECTIONS} connections, {THREADS} threads, {TIMED_SECONDS} s after a {WARMUP_SECONDS} s warm-up).",
        "Ours: gunicorn -w 2 -c deploy/gunicorn-revocation.conf.py (gthread, 4 threads, keep-alive), OCSP by "
        "the bare WSGI callable in front of Flask, Redis with hiredis; "
        "nonce-less answers come from pre-signed responses cached in Redis and held in each worker, nonce "
        "answers are signed live. "
        "Both sides sign with ECDSA P-256 / SHA-256.",
    ]
    figures = {"ours": ours}
    if under_granian is not None:
        figures["ours under granian"] = under_granian
    ratio, met = None, None
    if peer is not None:
        figures["peer"] = peer
        ratio = round(ours["rps"] / peer["rps"], 2)
        met = ratio >= GOALS[case]
        notes.append("Peer: openssl ocsp -index -multi 2 -resp_key_id (OpenSSL 3.0); it signs every response "
                     "live, nonce or not. Its -port takes only a number, so it listens on all interfaces.")
    if met is False:
        notes += LIMITS[case]
    if loading:
        notes.append(f"Bulk load of our store: register_many {loading['register_s']} s, "
                     f"{REVOKED:,} revocations through the store's compare-and-set {loading['revoke_s']} s.")
    return Result(id=f"{prefix}.{case}", title=f"OCSP {label} ({prefix.replace('.', ' ')})", figures=figures,
                  ratio=ratio, ratio_meaning="ours rps / openssl rps" if ratio is not None else "",
                  goal=f"ours ≥ {GOALS[case]:g}× openssl rps" if peer is not None else "", met=met, notes=notes)
