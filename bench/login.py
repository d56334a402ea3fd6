"""Card logins: verified submissions per second at the IdP's bridge API, against the framework floor.

    .venv/bin/python -m bench login

The stack as in production, on loopback: redis-server, the revocation service under `gunicorn -w 2` (OCSP), and
the IdP under `gunicorn -w 2`. Before the clock starts, 32 virtual My Number Cards are issued by a dev CA and
recorded as issued (a `certificate_issued` event through the revocation applier), and login transactions are
created and fetched with the IdP's own `LoginStore` (as `GET /api/login/<handle>` does), each then signed by a
card through its APDUs (`nfc_bridge.client.JpkiClient` over the virtual-card transport: one PIN verification per
card, one SIGN per challenge). A plain login: no four-facts signing challenge.

Load: wrk, one thread, 16 connections, POSTing each prepared `POST /api/login/submit` body once. A submission is
single use, so the timed window is sized from a short warm-up run (which also uses its own transactions), with
2.5 times as many transactions prepared as the warm-up rate predicts; the run fails if wrk reached the end of
the list. Every submit runs the full verification pipeline, including an OCSP request (no nonce: the responder's
pre-signed answer; idp/login/revocation_check.py says why) to the revocation service over HTTP, and the IdP's
verified-login counter must agree with the successes wrk saw. The floor: `GET
/healthz` (one Redis PING) on the same IdP server, same wrk settings. Each window first waits (at most 30 s) for
the machine to be quiet, and reports the CPU each service used per request and what other processes used.

Latency at a fixed rate (FIXED_RATE logins/s, the goal's p99 ≤ 50 ms): wrk 4.1 has no rate option, so its Lua
script paces itself. One schedule for all connections, a slot every 1/rate seconds on the monotonic clock (LuaJIT's
FFI to clock_gettime); before each request wrk asks `delay()` for the wait until the next free slot. Slots are never
skipped, so a server that falls behind gets the missed requests at once (open loop), and the achieved rate is
reported next to the target: below it, there were not enough free connections and the p99 understates the wait.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.harness import WRK_DONE_LUA, CpuByProcess, CpuElsewhere, Gunicorn, RedisServer, Result, wait_for_quiet, wrk
from deploy.composition import StatusStoreRecords
from idp.config import IdpConfig, load_or_create_secret
from idp.services import IdpServices
from idp.services import build_services as build_idp_services
from jpki import parse_certificate
from jpki.devca import DevCA
from jpki.profile import CertificateKind
from jpki.signature import login_message
from nfc_bridge.card_file import new_card_state, write_card_file
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports.virtual import VirtualTransport
from revocation.config import RevocationConfig
from revocation.domain.events import CertificateRef, certificate_issued
from revocation.services import Services as RevocationServices
from revocation.services import build_services as build_revocation_services

CARDS = 32
ISSUED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # the bench cards' certificate_issued time
AUTH_PIN, SIGN_PIN = "1234", "ABC123"
WARMUP_S, WINDOW_S = 3, 10
WARMUP_TRANSACTIONS = 6_000
HEADROOM = 2.5  # prepared transactions = predicted rate × window × this (the warm-up runs cold)
MAX_TRANSACTIONS = 40_000
CONNECTIONS, THREADS = 16, 1  # one wrk thread: each Lua state cycles the whole list, so two would reuse bodies
GOAL_RPS, GOAL_RATIO = 1_000, 0.3
FIXED_RATE, GOAL_P99_MS = 500, 50.0  # logins/s offered at a fixed rate, and the p99 the goal allows there
PACED_CONNECTIONS = 64  # enough that rate × latency never uses them all unless the server is far behind
JSON = "application/json"
CPU_ELSEWHERE_NOTE = ("<service>_cpu_ms: CPU each service's processes spent per counted request. cpu_elsewhere_cores: "
                      "CPU used during the window by processes outside this benchmark (other work on the machine), "
                      "in cores of the 2; anything above ~0.1 means the figures are low. Each window first waits "
                      "(≤ 30 s) for the machine to be quiet.")


@dataclass
class Stack:
    """The running services, and in-process handles on the same Redis for preparing work."""

    idp_url: str
    revocation_url: str
    redis: redis.Redis
    ca: DevCA
    idp: IdpServices
    revocation: RevocationServices
    workdir: Path
    processes: dict[str, int]  # "idp", "revocation", "redis" → the pid at the root of its process tree


@contextmanager
def card_login_stack(workdir: Path) -> Iterator[Stack]:
    """redis-server, revocation (gunicorn -w 2) and IdP (gunicorn -w 2), all on loopback; stopped on exit."""
    var = workdir / "var"
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer(workdir / "redis"))
        revocation_server = Gunicorn("deploy.composition:revocation_app()", {})
        idp_server = Gunicorn("deploy.composition:idp_app()", {})
        ca = DevCA.generate(revocation_server.url)
        ca.save(var / "pki")
        secret_file = var / "idp" / "secret"
        secret = load_or_create_secret(secret_file)  # before the workers start: they would race to create it
        env = {"REDIS_URL": server.url, "MYKEY_VAR": str(var), "REVOCATION_URL": revocation_server.url,
               "IDP_ISSUER": idp_server.url, "IDP_SECRET_FILE": str(secret_file)}
        revocation_server.env = idp_server.env = env
        client = redis.Redis.from_url(server.url)
        stack.callback(client.close)
        revocation = build_revocation_services(
            RevocationConfig(redis_url=server.url, var_dir=var, base_url=revocation_server.url), client)
        stack.enter_context(revocation_server)
        idp_config = IdpConfig(issuer=idp_server.url, redis_url=server.url, var_dir=var,
                               revocation_url=revocation_server.url, secret=secret)
        idp = build_idp_services(idp_config, client, certificates=StatusStoreRecords(revocation.store))
        stack.enter_context(idp_server)
        processes = {"idp": idp_server.process.pid, "revocation": revocation_server.process.pid,
                     "redis": server.process.pid}
        yield Stack(idp_server.url, revocation_server.url, client, ca, idp, revocation, workdir, processes)


def issue_cards(stack: Stack, count: int = CARDS) -> list[Path]:
    """Virtual cards from the stack's dev CA, recorded as issued through the revocation applier."""
    directory = stack.workdir / "cards"
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"card-{index}.json"
        state = new_card_state(stack.ca, AUTH_PIN, SIGN_PIN)
        write_card_file(path, state)
        certificates = []
        for kind, fid in ((CertificateKind.AUTH, "000A"), (CertificateKind.SIGNING, "0001")):
            cert = parse_certificate(bytes.fromhex(state["files"][fid]))
            certificates.append(CertificateRef(kind, cert.serial, cert.not_after))
        stack.revocation.applier.apply(certificate_issued(
            f"issue-{secrets.token_hex(3)}x{secrets.token_hex(3)}", f"bench-{secrets.token_hex(4)}x",
            f"card-{secrets.token_hex(4)}x", certificates, occurred_at=ISSUED_AT, source="bench"))
        paths.append(path)
    return paths


class CardSigner:
    """One card in the reader for the whole preparation: its certificate read once, its PIN verified once."""

    def __init__(self, card_file: Path):
        self.client = JpkiClient.connect(VirtualTransport.open(card_file))
        self.certificate = self.client.read_certificate(CertificateKind.AUTH)

    def sign(self, message: bytes) -> bytes:
        return self.client.sign(CertificateKind.AUTH, message, AUTH_PIN)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def prepare_submissions(stack: Stack, signers: list[CardSigner], count: int) -> list[bytes]:
    """`count` login transactions, each fetched (for its one-use submit token) and signed by a card."""
    logins, origin = stack.idp.logins, stack.idp.config.origin
    bodies = []
    for index in range(count):
        txn = logins.create(origin, "bench-rp", "Bench RP", "/authorize", [], wants_facts=False)
        txn, submit_token = logins.fetch(txn.handle)
        signer = signers[index % len(signers)]
        signature = signer.sign(login_message(origin, _unb64(txn.challenge)))
        bodies.append(json.dumps({"submit_token": submit_token, "token_type": "card",
                                  "certificate": _b64(signer.certificate), "signature": _b64(signature)}).encode())
    return bodies


def verified_logins(stack: Stack) -> int:
    """The IdP's own count of verified card logins (observability Counter in Redis)."""
    counter = stack.idp.logins_total
    return sum(int(counter.redis.hget(counter.key, json.dumps(["ok", token_type])) or 0)
               for token_type in ("card", "smartphone"))


def measured_load(stack: Stack, requests: list[bytes] | list[str], seconds: int, single_use: bool = True,
                  **wrk_args) -> dict:
    """One wrk window at the IdP after the machine is quiet, with the CPU each service spent per successful
    request. Single-use bodies (submissions, codes) must outlast the window, or the run says so."""
    wait_for_quiet()
    with CpuElsewhere() as elsewhere, CpuByProcess(stack.processes) as cpu:
        figures = wrk(stack.idp_url, requests, seconds=seconds, connections=CONNECTIONS, threads=THREADS,
                      **wrk_args)
    if single_use and figures["requests"] >= len(requests):
        raise RuntimeError("wrk reached the end of the prepared requests: the window was not bounded by them")
    successes = figures["requests"] - figures["errors"]
    return {**figures, "rps": round(successes / figures["seconds"], 1),
            **({"prepared": len(requests)} if single_use else {}), **cpu_per_request(cpu, successes),
            "cpu_elsewhere_cores": elsewhere.cores}


def sized_window(prepare: Callable[[int], list[bytes]], load: Callable[[list[bytes], int], dict],
                 warmup_count: int, max_count: int) -> dict:
    """Measure single-use requests: a warm-up window predicts the rate, then HEADROOM times the requests the
    timed window needs are prepared (at most `max_count`) and the window runs over them."""
    warmup = load(prepare(warmup_count), WARMUP_S)
    count = min(max_count, math.ceil(max(warmup["rps"], 100) * WINDOW_S * HEADROOM))
    return {**load(prepare(count), WINDOW_S), "warmup_rps": warmup["rps"]}


def submit_load(stack: Stack, bodies: list[bytes], seconds: int) -> dict:
    """The submissions' window; successes are checked against the IdP's own verified-login counter."""
    before = verified_logins(stack)
    figures = measured_load(stack, bodies, seconds, method="POST", content_type=JSON, path="/api/login/submit")
    successes = figures["requests"] - figures["errors"]
    verified = verified_logins_at_least(stack, before, successes)
    if verified < successes:
        raise RuntimeError(f"wrk saw {successes} successes but the IdP counted {verified} verified logins")
    return {**figures, "verified": verified}


def verified_logins_at_least(stack: Stack, before: int, expected: int, wait_s: float = 3.0) -> int:
    """The verified-login count since `before`, waiting (≤ `wait_s`) for the workers' in-process tallies, which
    reach Redis at most once a second (observability/metrics.py), to cover `expected`."""
    deadline = time.monotonic() + wait_s
    while (verified := verified_logins(stack) - before) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return verified


_PACED_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000 / tonumber(os.getenv("WRK_RATE"))
local bodies, i, next_slot = {}, 0, nil
local function unhex(s) return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end)) end
local f = io.open(os.getenv("WRK_REQUESTS"), "r")
for line in f:lines() do bodies[#bodies + 1] = unhex(line) end
f:close()
local headers = {["Content-Type"] = "application/json"}
delay = function()
  local now = now_ms()
  next_slot = next_slot or now
  local wait = next_slot - now
  next_slot = next_slot + interval
  if wait < 0 then return 0 end
  return math.floor(wait + 0.5)  -- wrk waits whole milliseconds
end
request = function()
  i = i + 1
  return wrk.format("POST", nil, headers, bodies[((i - 1) % #bodies) + 1])
end
""" + WRK_DONE_LUA


def paced_wrk(url: str, bodies: list[bytes], rate: int, seconds: int, connections: int = PACED_CONNECTIONS) -> dict:
    """POST each body once at `rate` per second for `seconds` (wrk, one thread, the pacing script above)."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is missing: `make bench` installs it (Debian package wrk)")
    with tempfile.TemporaryDirectory() as scratch:
        script, listing = Path(scratch) / "paced.lua", Path(scratch) / "bodies.txt"
        script.write_text(_PACED_SCRIPT)
        listing.write_text("\n".join(body.hex() for body in bodies) + "\n")
        env = {**os.environ, "WRK_REQUESTS": str(listing), "WRK_RATE": str(rate)}
        completed = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
                                    "-s", str(script), url], env=env, capture_output=True, text=True,
                                   timeout=seconds + 60)
    match = re.search(r"^WRK_JSON (\{.*\})$", completed.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk gave no summary: {completed.stdout[-500:]} {completed.stderr[-500:]}")
    raw = json.loads(match.group(1))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    seconds_run = raw["duration_us"] / 1e6
    return {"offered_rps": rate, "rps": round((raw["requests"] - errors) / seconds_run, 1),
            "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000,
            "requests": raw["requests"], "errors": errors, "seconds": round(seconds_run, 2),
            "connections": connections}


def fixed_rate_load(stack: Stack, signers: list[CardSigner], rate: int = FIXED_RATE) -> dict:
    """Logins offered at `rate`/s for WINDOW_S seconds after the machine is quiet: latency at a load below the
    maximum, with the CPU each service spent per verified login."""
    bodies = prepare_submissions(stack, signers, math.ceil(rate * WINDOW_S * 1.1) + PACED_CONNECTIONS)
    wait_for_quiet()
    before = verified_logins(stack)
    with CpuElsewhere() as elsewhere, CpuByProcess(stack.processes) as cpu:
        figures = paced_wrk(stack.idp_url + "/api/login/submit", bodies, rate, WINDOW_S)
    if figures["requests"] >= len(bodies):
        raise RuntimeError("the paced run reached the end of the prepared submissions")
    successes = figures["requests"] - figures["errors"]
    verified = verified_logins_at_least(stack, before, successes)
    if verified < successes:
        raise RuntimeError(f"wrk saw {successes} successes but the IdP counted {verified} verified logins")
    return {**figures, "prepared": len(bodies), **cpu_per_request(cpu, successes),
            "cpu_elsewhere_cores": elsewhere.cores, "verified": verified}


def _cpu_total(figures: dict) -> float:
    """CPU milliseconds per login across the services (IdP, revocation, Redis)."""
    return sum(figures.get(f"{name}_cpu_ms", 0.0) for name in ("idp", "revocation", "redis"))


def cpu_per_request(cpu: CpuByProcess, count: int) -> dict[str, float]:
    """Milliseconds of CPU each service spent per counted request, e.g. {"idp_cpu_ms": 2.8, …}."""
    return {f"{name}_cpu_ms": round(seconds * 1000 / max(1, count), 3) for name, seconds in cpu.seconds.items()}


def floor_load(stack: Stack) -> dict:
    """The framework floor: GET /healthz (Flask + one Redis PING) on the same server, same wrk settings."""
    return measured_load(stack, ["/healthz"], WINDOW_S, single_use=False, method="GET")


def run(workdir: Path) -> list[Result]:
    with card_login_stack(workdir) as stack:
        signers = [CardSigner(path) for path in issue_cards(stack)]
        ours = sized_window(lambda count: prepare_submissions(stack, signers, count),
                            lambda bodies, seconds: submit_load(stack, bodies, seconds),
                            WARMUP_TRANSACTIONS, MAX_TRANSACTIONS)
        paced = fixed_rate_load(stack, signers)
        floor = floor_load(stack)
    ratio = ours["rps"] / floor["rps"]
    return [Result(
        id="login", title="Card login (bridge API submit) under gunicorn -w 2",
        figures={"ours": ours, f"ours at a fixed {FIXED_RATE}/s": paced, "floor (GET /healthz)": floor},
        ratio=round(ratio, 3), ratio_meaning="verified logins/s ÷ floor requests/s; higher is better",
        goal=(f"≥ {GOAL_RPS:,} logins/s on 2 cores and ≥ {GOAL_RATIO} × floor; p99 ≤ {GOAL_P99_MS:.0f} ms at "
              f"{FIXED_RATE}/s offered"),
        met=(ours["rps"] >= GOAL_RPS and ratio >= GOAL_RATIO and paced["p99_ms"] <= GOAL_P99_MS
             and paced["rps"] >= 0.97 * FIXED_RATE),
        notes=[
            f"wrk {THREADS} thread, {CONNECTIONS} connections, {WINDOW_S} s, each prepared submission sent once "
            f"(one thread so no body is sent twice); {ours['prepared']:,} prepared for the window from a "
            f"{WARMUP_S} s warm-up at {ours['warmup_rps']:,.0f}/s. Only successful verifications count "
            f"(wrk's non-error responses, checked against the IdP's verified-login counter: {ours['verified']:,}).",
            f"Fixed rate: {FIXED_RATE} logins/s offered for {WINDOW_S} s by wrk's Lua script pacing itself (one "
            f"schedule, a slot every {1000 / FIXED_RATE:g} ms, never skipped; {PACED_CONNECTIONS} connections); "
            f"achieved {paced['rps']:,.0f}/s. Below the offered rate the server fell behind, and the p99 (measured "
            "from each send) understates the wait.",
            "Each login: bounded JSON parse, submit-token claim (one Redis SET … XX GET that returns the "
            "transaction), certificate parse, policy, key usage, chain (RSA-2048 verify), validity, signature "
            "(RSA-2048 verify), OCSP without a nonce over a kept-alive HTTP connection to the revocation service "
            "(its pre-signed response, held in the responder's process; the IdP verifies its ECDSA P-256 signature "
            "and freshness), the status store's record and the MyKey mapping in one pipeline, the account, two "
            "sealed values, the transaction saved: 4 Redis round trips.",
            "Timed: the submit only. Transactions were created and fetched beforehand with the IdP's LoginStore "
            "(what the login page and GET /api/login/<handle> do), 32 cards in turn; a plain login, no four-facts "
            "signing challenge.",
            "Everything shares the 2 cores: wrk, 2 IdP workers, 2 revocation workers, Redis.",
            "The floor is GET /healthz (Flask + one Redis PING) on the same IdP server and wrk settings.",
            f"What limits it: CPU. A login costs {_cpu_total(ours):.2f} ms of CPU across the IdP, the revocation "
            f"service and Redis, so 2 cores do at most {2000 / _cpu_total(ours):,.0f}/s before wrk and anything "
            f"else; the IdP's share ({ours['idp_cpu_ms']:.2f} ms) is mostly Python around the work — gunicorn and "
            f"Flask ({floor['idp_cpu_ms']:.2f} ms for the floor), redis-py for 4 round trips, http.client for the "
            "OCSP exchange, cryptography objects — next to ~0.25 ms of cryptography (two RSA-2048 verifies, one "
            "ECDSA P-256 verify). What would move it: the pre-signed OCSP response read from Redis in the login's "
            "pipeline instead of over HTTP (no revocation-service CPU, no HTTP client), the submit served by a bare "
            "WSGI callable like OCSP's, and more cores; the ≥ 1,000/s goal needs ≤ 2 ms of CPU per login in all.",
            CPU_ELSEWHERE_NOTE,
        ])]
