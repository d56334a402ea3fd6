"""The machine's own limits, measured in the same `make bench` run as everything else: how fast this machine signs
and verifies, and how many trivial requests the server stacks we use can answer at all.

- Cryptography: `openssl speed -seconds 3 rsa2048 ecdsap256` (one process: RSA-2048 and ECDSA P-256 signatures
  and verifications per second), and the same four operations through pyca/cryptography, the library our
  services sign with (SECONDS_PER_OPERATION each), so a path's CPU per request can be read next to the
  cryptography it must do (bench/ocsp.py puts it in its rows).
- A trivial fixed response: `trivial_app`, a bare WSGI callable that reads a POST of BODY_BYTES and answers
  RESPONSE_BYTES of fixed bytes — no parsing, no Redis, no signature — under the same server stacks and settings
  as the OCSP paths (gunicorn with deploy/gunicorn-revocation.conf.py; granian through deploy/granian-ocsp.sh),
  loaded by wrk with bench/ocsp.py's connections and threads. That is the ceiling of requests/s and the floor of
  CPU per request for anything served there.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from bench.harness import CpuByProcess, Gunicorn, Result, wrk
from bench.ocsp import CONNECTIONS, THREADS, WORKERS, cpu_per_request
from devstack.processes import Granian

SPEED_SECONDS = 3
SECONDS_PER_OPERATION = 1.0
BODY_BYTES, RESPONSE_BYTES = 100, 1_500
WARMUP_SECONDS, TIMED_SECONDS = 3, 10
_RESPONSE = bytes(range(256)) * (RESPONSE_BYTES // 256) + bytes(RESPONSE_BYTES % 256)


def trivial_app() -> Callable[[dict, Callable], Iterable[bytes]]:
    """A WSGI factory (granian --factory; gunicorn 'bench.limits:trivial_app()'): read the body, answer fixed bytes."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(_RESPONSE)))])
        return [_RESPONSE]

    return app


def openssl_speed(seconds: int = SPEED_SECONDS) -> dict[str, float]:
    """Operations per second from `openssl speed -seconds N rsa2048 ecdsap256` (one process)."""
    output = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "rsa2048", "ecdsap256"],
                            capture_output=True, text=True, timeout=seconds * 8 + 60).stdout
    rsa_line = re.search(r"^rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", output, re.MULTILINE)
    ec_line = re.search(r"^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", output, re.MULTILINE)
    if not rsa_line or not ec_line:
        raise RuntimeError(f"openssl speed printed no figures: {output[-500:]}")
    return {"rsa2048_sign_per_s": float(rsa_line[1]), "rsa2048_verify_per_s": float(rsa_line[2]),
            "ecdsa_p256_sign_per_s": float(ec_line[1]), "ecdsa_p256_verify_per_s": float(ec_line[2])}


def library_speed(seconds: float = SECONDS_PER_OPERATION) -> dict[str, float]:
    """The same operations through pyca/cryptography, one thread, per second."""
    data = b"\x00" * 300
    rsa_key, ec_key = rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1())
    rsa_signature = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    ec_signature = ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
    operations = {
        "rsa2048_sign_per_s": lambda: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
        "rsa2048_verify_per_s": lambda: rsa_key.public_key().verify(rsa_signature, data, padding.PKCS1v15(),
                                                                    hashes.SHA256()),
        "ecdsa_p256_sign_per_s": lambda: ec_key.sign(data, ec.ECDSA(hashes.SHA256())),
        "ecdsa_p256_verify_per_s": lambda: ec_key.public_key().verify(ec_signature, data, ec.ECDSA(hashes.SHA256())),
    }
    figures = {}
    for name, operation in operations.items():
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            operation()
            count += 1
        figures[name] = round(count / (time.perf_counter() - began), 1)
    return figures


def with_microseconds(per_second: dict[str, float]) -> dict[str, float]:
    return {**per_second, **{name.replace("_per_s", "_us"): round(1e6 / value, 1)
                             for name, value in per_second.items() if value}}


@contextlib.contextmanager
def _serving(server):
    with server as url:
        yield url, server.process.pid


def measure_trivial(serve: Callable[[], contextlib.AbstractContextManager[tuple[str, int]]]) -> dict:
    body = b"q" * BODY_BYTES
    with serve() as (url, pid):
        wrk(url, [body], method="POST", content_type="application/octet-stream", seconds=WARMUP_SECONDS,
            connections=CONNECTIONS, threads=THREADS)
        with CpuByProcess({"server": pid}) as cpu:
            figures = wrk(url, [body], method="POST", content_type="application/octet-stream", seconds=TIMED_SECONDS,
                          connections=CONNECTIONS, threads=THREADS)
    return {**figures, **cpu_per_request(cpu.seconds, figures["requests"])}


def run(workdir: Path) -> list[Result]:
    crypto = Result(
        id="limits.crypto", title="Machine limits: signatures and verifications per second",
        figures={"openssl speed": with_microseconds(openssl_speed()),
                 "pyca/cryptography": with_microseconds(library_speed())},
        notes=[f"`openssl speed -seconds {SPEED_SECONDS} rsa2048 ecdsap256`, one process; pyca/cryptography (what "
               f"the services sign with) {SECONDS_PER_OPERATION:g} s per operation in one thread, SHA-256, "
               "PKCS#1 v1.5 for RSA. *_us: microseconds of one core per operation."])
    stacks = {
        "gunicorn gthread": lambda: _serving(Gunicorn("bench.limits:trivial_app()", {}, workers=WORKERS,
                                                      extra_args=["-c", "deploy/gunicorn-revocation.conf.py"])),
        "granian": lambda: _serving(Granian({"GRANIAN_APP": "bench.limits:trivial_app"}, workers=WORKERS)),
    }
    trivial = Result(
        id="limits.trivial", title="Machine limits: a trivial fixed response under our server stacks",
        figures={name: measure_trivial(serve) for name, serve in stacks.items()},
        notes=[f"A bare WSGI callable reading a {BODY_BYTES}-byte POST and answering {RESPONSE_BYTES:,} fixed bytes; "
               f"{WORKERS} workers with the production settings (deploy/gunicorn-revocation.conf.py: gthread, 4 "
               "threads, keep-alive; deploy/granian-ocsp.sh: WSGI, 1 blocking thread, HTTP/1); wrk with "
               f"{CONNECTIONS} connections and {THREADS} threads, {TIMED_SECONDS} s after {WARMUP_SECONDS} s. "
               "cpu_us_per_req: the server's process-tree CPU / requests — the floor under every path served there."])
    return [crypto, trivial]
