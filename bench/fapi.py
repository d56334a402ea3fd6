"""DPoP's price: token exchanges/s and userinfo calls/s with DPoP proofs, next to the same without.

    .venv/bin/python -m bench fapi

The stack and the relying party of bench/token.py (redis-server, the revocation service and the IdP under
`gunicorn -w 2`; a private_key_jwt client with RS256 assertions; codes issued through the IdP's code store for 32
virtual cards' accounts). Four windows, each measured as bench/login.py measures:

- token exchanges without DPoP: bench/token.py's bodies, Bearer tokens;
- token exchanges with DPoP: the same bodies, each with its own ES256 proof (a fresh `jti`, the server's nonce
  fetched first as a client does on `use_dpop_nonce`): the IdP verifies the proof (P-256 signature), records its
  `jti` in the same exchange script that consumes the code, and binds both tokens' records to the key;
- userinfo with a Bearer token: one token, `GET /userinfo` over and over;
- userinfo with a DPoP-bound token: one token, each call with its own proof carrying the token's hash (`ath`).

Proofs are single use, so each request gets one, signed before the window (their `iat` must be under a minute old
when they arrive, which the window sizes here respect: preparing and sending take well under that). wrk sends
the n-th proof with the n-th request (bench/harness.py's `each_header`). The ratio is DPoP's rate ÷ the plain
rate for each endpoint; 1 would mean DPoP is free.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from pathlib import Path

import requests
from joserfc import jws
from joserfc.jwk import ECKey

from bench.harness import Result
from bench.login import (
    CONNECTIONS,
    CPU_ELSEWHERE_NOTE,
    THREADS,
    WINDOW_S,
    card_login_stack,
    measured_load,
    sized_window,
)
from bench.token import FORM, MAX_CODES, WARMUP_CODES, RelyingParty, card_accounts, prepare_exchanges

MAX_USERINFO = 120_000
WARMUP_USERINFO = 5_000


class DPoPKey:
    """The relying party's DPoP key and the proofs it signs."""

    def __init__(self, idp_url: str):
        self.idp_url = idp_url
        self.key = ECKey.generate_key("P-256", private=True)
        self.header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        self.nonce: str | None = None

    def proof(self, method: str, path: str, access_token: str | None = None) -> str:
        claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": f"{self.idp_url}{path}",
                  "iat": int(time.time())}
        if self.nonce:
            claims["nonce"] = self.nonce
        if access_token is not None:
            claims["ath"] = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()) \
                .rstrip(b"=").decode()
        return jws.serialize_compact(self.header, json.dumps(claims).encode(), self.key, algorithms=["ES256"])

    def fetch_nonce(self) -> None:
        """As a client learns it: a token request whose proof has none is answered use_dpop_nonce."""
        self.nonce = None
        answer = requests.post(f"{self.idp_url}/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                               headers={"DPoP": self.proof("POST", "/token")}, timeout=10)
        if answer.status_code != 400 or answer.json().get("error") != "use_dpop_nonce":
            raise RuntimeError(f"the token endpoint did not ask for a DPoP nonce: {answer.status_code}")
        self.nonce = answer.headers["DPoP-Nonce"]


def one_token(stack, rp, accounts, dpop: DPoPKey | None) -> str:
    [body] = prepare_exchanges(stack, rp, accounts, 1)
    headers = {"Content-Type": FORM}
    if dpop is not None:
        dpop.fetch_nonce()
        headers["DPoP"] = dpop.proof("POST", "/token")
    answer = requests.post(f"{stack.idp_url}/token", data=body, headers=headers, timeout=10)
    expected = "DPoP" if dpop is not None else "Bearer"
    if answer.status_code != 200 or answer.json().get("token_type") != expected:
        raise RuntimeError(f"the token endpoint refused a prepared exchange: {answer.status_code} {answer.text[:200]}")
    return answer.json()["access_token"]


def run(workdir: Path) -> list[Result]:
    with card_login_stack(workdir) as stack:
        rp = RelyingParty(stack)
        accounts = card_accounts(stack)
        dpop = DPoPKey(stack.idp_url)
        one_token(stack, rp, accounts, None)
        one_token(stack, rp, accounts, dpop)

        def token_load(prepared, seconds, proofs=False):
            bodies, values = prepared
            extra = {"each_header": ("DPoP", values)} if proofs else {}
            return measured_load(stack, bodies, seconds, method="POST", content_type=FORM, path="/token", **extra)

        def with_proofs(count):
            bodies = prepare_exchanges(stack, rp, accounts, count)
            dpop.fetch_nonce()
            return bodies, [dpop.proof("POST", "/token") for _ in bodies]

        plain_token = sized_window(lambda count: (prepare_exchanges(stack, rp, accounts, count), None),
                                   token_load, WARMUP_CODES, MAX_CODES)
        dpop_token = sized_window(with_proofs, lambda prepared, seconds: token_load(prepared, seconds, True),
                                  WARMUP_CODES, MAX_CODES)

        bearer = one_token(stack, rp, accounts, None)
        plain_userinfo = measured_load(stack, ["/userinfo"], WINDOW_S, single_use=False, method="GET",
                                       headers={"Authorization": f"Bearer {bearer}"})
        bound = one_token(stack, rp, accounts, dpop)

        def userinfo_proofs(count):
            return ["/userinfo"] * count, [dpop.proof("GET", "/userinfo", bound) for _ in range(count)]

        dpop_userinfo = sized_window(
            userinfo_proofs,
            lambda prepared, seconds: measured_load(stack, prepared[0], seconds, method="GET",
                                                    headers={"Authorization": f"DPoP {bound}"},
                                                    each_header=("DPoP", prepared[1])),
            WARMUP_USERINFO, MAX_USERINFO)
    token_ratio = dpop_token["rps"] / plain_token["rps"]
    userinfo_ratio = dpop_userinfo["rps"] / plain_userinfo["rps"]
    common = [
        f"wrk {THREADS} thread, {CONNECTIONS} connections, {WINDOW_S} s windows; only 2xx answers count. Single-use "
        "requests (codes, proofs) are each sent once, sized from a warm-up window as in bench/login.py.",
        "Client: private_key_jwt with RS256 assertions, as in bench/token.py; DPoP proofs in ES256 with a P-256 "
        "key, the nonce the token endpoint asks for (IDP_DPOP_NONCE=1, the default).",
        "What DPoP adds per request: parsing the proof, one P-256 signature verification and the JWK thumbprint; "
        "its jti is written by the exchange script with the code (no extra round trip) at the token endpoint, by "
        "a SET NX of its own (one more round trip) at userinfo, where the token's hash is also compared with ath.",
        "Everything shares the 2 cores: wrk, 2 IdP workers, 2 revocation workers, Redis.",
        CPU_ELSEWHERE_NOTE,
    ]
    return [
        Result(id="fapi-token", title="Token endpoint with DPoP proofs vs without (gunicorn -w 2)",
               figures={"with DPoP": dpop_token, "without DPoP": plain_token}, ratio=round(token_ratio, 3),
               ratio_meaning="exchanges/s with DPoP ÷ exchanges/s without; 1 = DPoP costs nothing",
               goal="measured, no target: the price of sender-constrained tokens", met=None, notes=common),
        Result(id="fapi-userinfo", title="userinfo with a DPoP-bound token vs a Bearer token (gunicorn -w 2)",
               figures={"with DPoP": dpop_userinfo, "Bearer": plain_userinfo}, ratio=round(userinfo_ratio, 3),
               ratio_meaning="calls/s with DPoP ÷ calls/s with Bearer; 1 = DPoP costs nothing",
               goal="measured, no target: the price of sender-constrained tokens", met=None, notes=common),
    ]

