"""Token endpoint: authorization-code-for-token exchanges per second, against the framework floor.

    .venv/bin/python -m bench token

The same stack as bench/login.py: redis-server, the revocation service and the IdP, each under `gunicorn -w 2`.
One relying party is registered with a public RSA key and authenticates with `private_key_jwt` (RS256 client
assertions, each with its own `jti`, as the Digital Agency's profile requires); its ID tokens are RS256.

Codes: a full browser + card login per code would take longer to prepare than the one-minute code lifetime
allows for thousands of codes, so codes are issued through the IdP's own code store (`TokenStore.save_code`,
what `CodeGrant.save_authorization_code` calls at the end of a real login), for accounts of 32 virtual cards
that logged in for real through `MyKeyDirectory.resolve` and are recorded as issued in the status store. Each
code carries a PKCE S256 challenge and a nonce, as the authorize endpoint requires. Client assertions are
signed before the codes are stored, and the codes are stored just before the window, so none expires in it.

Every exchange does what a real one does: client authentication (JWT signature, audience, expiry, single-use jti
in Redis), the atomic code consumption (Lua), PKCE, the certificate-still-good check against the status store,
the pairwise `sub`, an access token, a refresh token and an RS256-signed ID token, the tokens stored, and the
access recorded. Load: wrk, one thread, 16 connections, each prepared body sent once (codes and jti are single
use); the window is sized from a warm-up run as in bench/login.py. The floor: `GET /healthz` on the same server.

The cryptography each exchange cannot avoid, measured in the same run: one RSA-2048 signature (the ID token) and
one RSA-2048 verification (the client assertion), from `openssl speed rsa2048` — set next to the IdP's CPU per
exchange, they say how much of it is the signature and how much is everything else.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey

from bench.harness import Result
from bench.login import (
    CONNECTIONS,
    CPU_ELSEWHERE_NOTE,
    THREADS,
    WARMUP_S,
    WINDOW_S,
    Stack,
    card_login_stack,
    floor_load,
    issue_cards,
    measured_load,
    sized_window,
)
from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard

REDIRECT = "https://rp.example.jp/callback"
WARMUP_CODES = 5_000
MAX_CODES = 20_000
CARDS = 32
FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GOAL_RATIO = 0.3  # as for logins: no peer is named, so the floor is the comparison


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class RelyingParty:
    """A private_key_jwt client: its registration and its RS256 key."""

    def __init__(self, stack: Stack):
        self.key = RSAKey.generate_key(2048, private=True, parameters={"kid": "bench-rp-1"})
        self.client, _ = stack.idp.clients.add("Bench RP", [REDIRECT], jwks={"keys": [self.key.as_dict(private=False)]})
        self.token_endpoint = f"{stack.idp_url}/token"

    def assertion(self) -> str:
        now = int(time.time())
        claims = {"iss": self.client.client_id, "sub": self.client.client_id, "aud": self.token_endpoint,
                  "jti": secrets.token_urlsafe(16), "iat": now, "exp": now + 600}
        return jwt.encode({"alg": "RS256", "kid": "bench-rp-1"}, claims, self.key)


def card_accounts(stack: Stack) -> list[tuple[str, str]]:
    """(account id, sealed certificate reference) of each card's first login."""
    accounts = []
    for path in issue_cards(stack, CARDS):
        serial = parse_certificate(VirtualCard.load(path).certificate(CertificateKind.AUTH)).serial
        account = stack.idp.mykey.resolve("auth", serial, stack.idp.clock())
        accounts.append((account.account_id, stack.idp.seal_certificate("auth", serial, "card")))
    return accounts


def prepare_exchanges(stack: Stack, rp: RelyingParty, accounts: list[tuple[str, str]], count: int) -> list[bytes]:
    """`count` token requests: assertions signed first, then the codes stored (their lifetime is one minute)."""
    from idp.oidc.tokens import AuthorizationCode, token_digest

    assertions = [rp.assertion() for _ in range(count)]
    bodies, auth_time = [], int(time.time())
    for index, assertion in enumerate(assertions):
        code, verifier = secrets.token_urlsafe(36), secrets.token_urlsafe(48)
        account_id, certificate = accounts[index % len(accounts)]
        stack.idp.tokens.save_code(AuthorizationCode(
            code_digest=token_digest(code), client_id=rp.client.client_id, redirect_uri=REDIRECT, scope="openid",
            nonce=secrets.token_urlsafe(16), code_challenge=_s256(verifier), code_challenge_method="S256",
            account_id=account_id, auth_time=auth_time, certificate=certificate))
        bodies.append(urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": verifier, "client_assertion_type": ASSERTION_TYPE,
                                 "client_assertion": assertion}).encode())
    return bodies


def check_one_exchange(stack: Stack, rp: RelyingParty, accounts: list[tuple[str, str]]) -> None:
    """One exchange by hand before the load: it must answer with tokens, or the benchmark measures refusals."""
    import requests

    [body] = prepare_exchanges(stack, rp, accounts, 1)
    answer = requests.post(rp.token_endpoint, data=body, headers={"Content-Type": FORM}, timeout=10)
    if answer.status_code != 200 or "id_token" not in answer.json():
        raise RuntimeError(f"the token endpoint refused a prepared exchange: {answer.status_code} {answer.text[:200]}")


def rsa2048_costs() -> dict[str, float]:
    """Milliseconds per RSA-2048 sign and verify on this machine, by `openssl speed` (2 seconds each, one core)."""
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "rsa2048"], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    match = re.search(r"^rsa\s+2048 bits\s+([\d.]+)s\s+([\d.]+)s", out, re.MULTILINE)
    if not match:
        return {}
    return {"rsa2048_sign_ms": round(float(match.group(1)) * 1000, 3),
            "rsa2048_verify_ms": round(float(match.group(2)) * 1000, 3)}


def run(workdir: Path) -> list[Result]:
    with card_login_stack(workdir) as stack:
        rp = RelyingParty(stack)
        accounts = card_accounts(stack)
        check_one_exchange(stack, rp, accounts)
        ours = sized_window(lambda count: prepare_exchanges(stack, rp, accounts, count),
                            lambda bodies, seconds: measured_load(stack, bodies, seconds, method="POST",
                                                                  content_type=FORM, path="/token"),
                            WARMUP_CODES, MAX_CODES)
        floor = floor_load(stack)
    crypto = rsa2048_costs()
    ours.update(crypto)
    ratio = ours["rps"] / floor["rps"]
    crypto_note = (f"CPU per exchange next to its cryptography (openssl speed, same run): the IdP spent "
                   f"{ours['idp_cpu_ms']:.2f} ms per exchange, of which one RSA-2048 signature is "
                   f"{crypto['rsa2048_sign_ms']:.3f} ms and one RSA-2048 verification "
                   f"{crypto['rsa2048_verify_ms']:.3f} ms; everything else (HTTP, Flask, Authlib's grant, JSON, "
                   f"joserfc, redis-py) is "
                   f"{ours['idp_cpu_ms'] - crypto['rsa2048_sign_ms'] - crypto['rsa2048_verify_ms']:.2f} ms. The "
                   f"floor request costs the IdP {floor['idp_cpu_ms']:.2f} ms."
                   if crypto else "openssl speed did not run: no cryptography figure.")
    services_ms = ours["idp_cpu_ms"] + ours["redis_cpu_ms"] + ours["revocation_cpu_ms"]
    limit_note = (
        f"What limits ours: the CPU of an exchange, {services_ms:.2f} ms across the IdP, Redis and the revocation "
        f"service (wrk's own share not counted), caps the 2 cores at about {2000 / services_ms:,.0f} exchanges/s "
        "however the load is spread; the RSA-2048 signature is a fixed part of it and the rest is Python: the "
        "HTTP server and Flask (the floor), Authlib's grant and hooks, joserfc, JSON and redis-py for the four "
        "Redis round trips (exchange script, certificate status, one transaction for the tokens and the access "
        "record).")
    move_note = (
        "What would move it: a token endpoint outside Flask and Authlib's grant classes (a bare WSGI callable with "
        "the same checks, as OCSP has), a faster HTTP server than gunicorn's sync workers, Redis over a Unix "
        "socket, ES256 ID tokens for clients that accept them (a P-256 signature costs a tenth of RSA-2048's), "
        "and more cores: the work is per request and shares nothing but Redis.")
    return [Result(
        id="token", title="Token endpoint (code exchange, private_key_jwt) under gunicorn -w 2",
        figures={"ours": ours, "floor (GET /healthz)": floor},
        ratio=round(ratio, 3), ratio_meaning="successful exchanges/s ÷ floor requests/s; higher is better",
        goal=f"no peer named: absolute figures, and ≥ {GOAL_RATIO} × floor as for logins", met=ratio >= GOAL_RATIO,
        notes=[
            f"wrk {THREADS} thread, {CONNECTIONS} connections, {WINDOW_S} s, each prepared exchange sent once; "
            f"{ours['prepared']:,} prepared from a {WARMUP_S} s warm-up at {ours['warmup_rps']:,.0f}/s. Only 200 "
            "answers count.",
            "Client authentication: private_key_jwt, RS256 assertions with a fresh jti each. Codes issued through "
            "the IdP's code store (TokenStore.save_code, what the authorization code grant calls after a real "
            "login), not through a full login per code: the one-minute code lifetime does not allow preparing "
            "thousands of codes through browser + card logins.",
            "Each exchange signs an RS256 ID token (RSA-2048) and stores an access and a refresh token. Its Redis "
            "work on one server: one script (client record unchanged, jti recorded once, code consumed), the "
            "certificate's status read, one transaction for both tokens and the access record.",
            crypto_note,
            limit_note,
            move_note,
            "Everything shares the 2 cores: wrk, 2 IdP workers, 2 revocation workers (idle here), Redis.",
            CPU_ELSEWHERE_NOTE,
        ])]
