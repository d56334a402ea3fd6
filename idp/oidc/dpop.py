"""DPoP (RFC 9449): proofs that the caller holds the private key a token is bound to.

A client sends, with each request to the token endpoint or to a protected resource (userinfo), a `DPoP` header:
a JWT it signed with a key of its own whose public half is in the JWT's header. The token endpoint binds the
tokens it issues to that key's JWK thumbprint (RFC 7638) — what RFC 9449 §6 calls the token's `cnf.jkt`; MyKey's
access tokens are opaque, so it is kept in each token's record (`Token.jkt`), and there is no introspection
endpoint to show it. A bound access token is `token_type: DPoP`, and every later use of it must come with a fresh
proof by the same key. A stolen token without the key is worth nothing.

No maintained Python library checks RFC 9449 proofs on the server side (Authlib 1.9 has no DPoP; the few small
PyPI packages that claim it are young single-author projects), so the checks are here, each named, in the order
RFC 9449 §4.3 lists them, and the JWS and JWK work is joserfc's (the JOSE library Authlib itself uses):

1. `check_one_header` — exactly one `DPoP` header (§4.3 items 1–2);
2. `check_well_formed` — a compact JWS whose header and payload are bounded JSON objects
   (`compact.check_compact_jwt`, so `[[[[` is a 400 and not a RecursionError);
3. `check_header` — `typ` is `dpop+jwt`, `alg` is one of `SIGNING_ALGS` (asymmetric only: `none` and HMAC are
   refused), `jwk` is a public key of a type that fits `alg` with no private members (§4.3 items 4–6);
4. `check_signature` — the JWS verifies with that very `jwk` (§4.3 item 7);
5. `check_claims` — `jti`, `htm`, `htu` are bounded strings and `iat` an integer (§4.2);
6. `check_htm` — `htm` is the request's method (§4.3 item 8);
7. `check_htu` — `htu`, without query and fragment and with scheme and host in lower case and no default port,
   is this endpoint's URL under the issuer (§4.3 item 9; the issuer, not the Host header, because a proxy in
   front sees another host);
8. `check_iat` — `iat` within `IAT_WINDOW` seconds in the past and `IAT_SKEW` in the future (§4.3 item 11,
   §11.1);
9. `check_nonce` — where the server asks for nonces (the token endpoint, unless IDP_DPOP_NONCE=0), `nonce` is
   one the server gave out recently; otherwise `use_dpop_nonce` with a fresh one in `DPoP-Nonce` (§8);
10. `check_ath` — at a protected resource, `ath` is the base64url SHA-256 of the access token presented (§4.3
    item 10, §7);
11. `check_jti_unused` — the `jti` was not seen before for this key: one Redis `SET NX` whose TTL is the time
    the proof could still pass `check_iat` (§11.1). Last, so a proof refused for another reason spends nothing.
    On the token endpoint's short road (idp/oidc/provider.py, `CodeExchange`) this write waits for the exchange
    script, which makes it with the assertion's jti and the code in the same round trip (`Proof.jti_key`); a
    request that fails before the script has it written after the response, so a proof is spent on every road.

Checking that the proof's key is the one a token is bound to (`check_bound_key`) belongs to the caller, which
knows the token.

Nonces are stateless: an HMAC, under a key derived from the platform secret, of the current `NONCE_STEP`-second
interval's number. One is good in its own interval and the next, so a client's nonce lives 60–120 seconds; every
IdP process makes and checks the same nonces without a round trip to Redis, and a nonce says nothing about who
asked for it.

Refusals: at the token endpoint a 400 with `invalid_dpop_proof` or `use_dpop_nonce` as the OAuth error; at a
protected resource a 401 whose `WWW-Authenticate: DPoP` challenge carries the error (`invalid_dpop_proof` for the
proof, `invalid_token` for the token) and `algs` (§7.1). Neither the proof, the token nor the key is logged or
echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from authlib.oauth2 import OAuth2Error
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from idp import keys
from idp.oidc.compact import check_compact_jwt

EXTENSION = "idp_dpop"  # the app's ProofChecker
HEADER = "DPoP"
NONCE_HEADER = "DPoP-Nonce"
TOKEN_TYPE = "DPoP"  # noqa: S105 - the token_type and Authorization scheme (RFC 9449 §5, §7.1)
SIGNING_ALGS = ("ES256", "PS256", "RS256", "Ed25519", "EdDSA")  # discovery's dpop_signing_alg_values_supported
FAPI_SIGNING_ALGS = ("ES256", "PS256", "Ed25519", "EdDSA")  # FAPI 2.0 Security Profile §5.4.1: no RS256
IAT_WINDOW = 60  # seconds a proof may be old
IAT_SKEW = 5  # seconds a proof's iat may be ahead of our clock
NONCE_STEP = 60
MAX_CLAIM = 512  # bound for jti, htm, htu, nonce, ath
# alg → the key type and curve it needs ("Ed25519" is RFC 9864's fully specified name for EdDSA on Ed25519)
_KEY_TYPES = {"ES256": (ECKey, "P-256"), "PS256": (RSAKey, None), "RS256": (RSAKey, None),
              "Ed25519": (OKPKey, "Ed25519"), "EdDSA": (OKPKey, None)}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# joserfc's default registry allows a 512-byte header, less than a proof's header with an RSA-2048 jwk; the whole
# proof is bounded by check_compact_jwt already.
_REGISTRY = JWSRegistry(algorithms=list(SIGNING_ALGS))
_REGISTRY.max_header_length = 4096


class DPoPError(OAuth2Error):
    """A refusal about DPoP. At the token endpoint the OAuth error body (RFC 6749 §5.2, status 400); at a protected
    resource (`resource=True`) a 401 with a `WWW-Authenticate: DPoP` challenge carrying the same error (§7.1)."""

    status_code = 400

    def __init__(self, error: str, description: str, resource: bool = False, nonce: str | None = None):
        super().__init__(description=description)
        self.error = error
        self.resource = resource
        self.nonce = nonce
        if resource:
            self.status_code = 401

    def get_headers(self):
        headers = super().get_headers()
        if self.resource:
            challenge = f'{TOKEN_TYPE} error="{self.error}", error_description="{self.description}", ' \
                        f'algs="{" ".join(SIGNING_ALGS)}"'
            headers.append(("WWW-Authenticate", challenge))
        if self.nonce:
            headers.append((NONCE_HEADER, self.nonce))
        return headers


def invalid_proof(description: str, resource: bool = False) -> DPoPError:
    return DPoPError("invalid_dpop_proof", description, resource)


def invalid_token(description: str) -> DPoPError:
    return DPoPError("invalid_token", description, resource=True)


@dataclass(frozen=True)
class Proof:
    """A proof that passed every check: its key's thumbprint (what tokens are bound to) and its alg; `jti_key`
    the Redis key of its jti when the caller asked to write it itself (`check(..., defer_jti=True)`)."""

    jkt: str
    alg: str
    jti_key: str | None = None

    JTI_TTL = IAT_WINDOW + IAT_SKEW  # the time a proof could still pass check_iat


def b64url_sha256(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()).rstrip(b"=").decode()


def normalise_url(url: str) -> str | None:
    """`url` as compared for `htu`: no query, fragment or user info, scheme and host in lower case, no default
    port, an empty path as `/`; None for something that is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


class Nonces:
    """The server's DPoP nonces (module docstring): HMAC of the interval number, good for two intervals."""

    def __init__(self, key: bytes, clock):
        self.key = key
        self.clock = clock

    def _for(self, step: int) -> str:
        mac = hmac.new(self.key, struct.pack(">Q", step), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(mac).decode()

    def _step(self) -> int:
        return int(self.clock().timestamp()) // NONCE_STEP

    def current(self) -> str:
        return self._for(self._step())

    def good(self, nonce) -> bool:
        if not isinstance(nonce, str):
            return False
        step = self._step()
        return any(hmac.compare_digest(nonce, self._for(s)) for s in (step, step - 1))


class ProofChecker:
    """The ordered checks of the module docstring, for one IdP: its issuer, Redis, clock and nonces."""

    def __init__(self, issuer: str, redis_client, clock, nonces: Nonces):
        self.issuer = issuer
        self.redis = redis_client
        self.clock = clock
        self.nonces = nonces

    def check(self, headers: list[str], method: str, path: str, *, access_token: str | None = None,
              want_nonce: bool = False, resource: bool = False, defer_jti: bool = False) -> Proof:
        """The proof in `headers` (every `DPoP` header value of the request) for `method` on `path` under the
        issuer; DPoPError saying why not. `access_token` makes it a resource request (ath is then required)."""
        try:
            proof = self.check_one_header(headers)
            self.check_well_formed(proof)
            header, payload = self.check_header(proof)
            key = self.check_signature(proof, header)
            claims = self.check_claims(payload)
            self.check_htm(claims, method)
            self.check_htu(claims, path)
            now = int(self.clock().timestamp())
            self.check_iat(claims, now)
            if want_nonce:
                self.check_nonce(claims)
            if access_token is not None:
                self.check_ath(claims, access_token)
            jkt = key.thumbprint()
            if defer_jti:
                return Proof(jkt, header["alg"], jti_key(jkt, claims["jti"]))
            self.check_jti_unused(jkt, claims["jti"])
        except DPoPError as error:
            if resource and not error.resource:
                error.resource, error.status_code = True, 401
            raise
        return Proof(jkt, header["alg"])

    @staticmethod
    def check_one_header(headers: list[str]) -> str:
        if not headers:
            raise invalid_proof("A DPoP proof is required: send one DPoP header.")
        if len(headers) != 1:
            raise invalid_proof("Send exactly one DPoP header.")
        return headers[0]

    @staticmethod
    def check_well_formed(proof: str) -> None:
        try:
            check_compact_jwt(proof)
        except ValueError:
            raise invalid_proof("The DPoP proof is not a well-formed JWT.") from None

    @staticmethod
    def check_header(proof: str) -> tuple[dict, dict]:
        head, body, _ = proof.split(".")
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if header.get("typ") != "dpop+jwt":
            raise invalid_proof("The DPoP proof's typ must be dpop+jwt.")
        alg = header.get("alg")
        if alg not in SIGNING_ALGS:
            raise invalid_proof(f"The DPoP proof must be signed with one of {', '.join(SIGNING_ALGS)}.")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise invalid_proof("The DPoP proof's header must carry the public key as jwk.")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise invalid_proof("The DPoP proof's jwk must be a public key only.")
        return header, payload

    @staticmethod
    def check_signature(proof: str, header: dict):
        key_type, curve = _KEY_TYPES[header["alg"]]
        try:
            key = key_type.import_key(header["jwk"])
            if curve is not None and key.curve_name != curve:
                raise invalid_proof(f"An {header['alg']} DPoP key must be on {curve}.")
            if isinstance(key, RSAKey) and key.raw_value.key_size < 2048:
                raise invalid_proof("An RSA DPoP key must be at least 2048 bits.")
            jws.deserialize_compact(proof, key, algorithms=[header["alg"]], registry=_REGISTRY)
        except (JoseError, ValueError, TypeError, KeyError):
            raise invalid_proof("The DPoP proof's signature does not verify with its jwk.") from None
        return key

    @staticmethod
    def check_claims(payload: dict) -> dict:
        for name in ("jti", "htm", "htu"):
            value = payload.get(name)
            if not isinstance(value, str) or not value or len(value) > MAX_CLAIM:
                raise invalid_proof(f"The DPoP proof needs a {name} claim (a string).")
        if not isinstance(payload.get("iat"), int) or isinstance(payload.get("iat"), bool):
            raise invalid_proof("The DPoP proof needs an iat claim (seconds since the epoch).")
        return payload

    @staticmethod
    def check_htm(claims: dict, method: str) -> None:
        if claims["htm"] != method:
            raise invalid_proof(f"The DPoP proof's htm must be this request's method, {method}.")

    def check_htu(self, claims: dict, path: str) -> None:
        expected = normalise_url(f"{self.issuer}{path}")
        if normalise_url(claims["htu"]) != expected:
            raise invalid_proof(f"The DPoP proof's htu must be this endpoint's URL, {expected}.")

    @staticmethod
    def check_iat(claims: dict, now: int) -> None:
        if not now - IAT_WINDOW <= claims["iat"] <= now + IAT_SKEW:
            raise invalid_proof(f"The DPoP proof's iat is not within {IAT_WINDOW} seconds of the server's time; "
                                "make a fresh proof for each request.")

    def check_nonce(self, claims: dict) -> None:
        if not self.nonces.good(claims.get("nonce")):
            raise DPoPError("use_dpop_nonce", "Make the DPoP proof again with the nonce in the DPoP-Nonce header.",
                            nonce=self.nonces.current())

    @staticmethod
    def check_ath(claims: dict, access_token: str) -> None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, b64url_sha256(access_token)):
            raise invalid_proof("The DPoP proof's ath must be the SHA-256 hash of the access token presented.")

    def check_jti_unused(self, jkt: str, jti: str) -> None:
        if not self.redis.set(jti_key(jkt, jti), 1, nx=True, ex=Proof.JTI_TTL):
            raise replayed()


def jti_key(jkt: str, jti: str) -> str:
    return keys.dpop_jti(hashlib.sha256(f"{jkt}:{jti}".encode()).hexdigest())


def replayed() -> DPoPError:
    return invalid_proof("This DPoP proof was used before; make a fresh proof (a new jti) for each request.")


def token_request_proof(checker: ProofChecker, want_nonce: bool, defer_jti: bool) -> Proof | None:
    """At the token endpoint, before anything else: the request's proof, None if it sent none (whether it had to
    is known only once the client is: idp/oidc/fapi.py); DPoPError for a proof that fails a check. `defer_jti`:
    the caller writes the jti (`Proof.jti_key`, check_jti_unused in the module docstring)."""
    from flask import request

    headers = request.headers.getlist(HEADER)
    if not headers:
        return None
    return checker.check(headers, "POST", request.path, want_nonce=want_nonce, defer_jti=defer_jti)


def check_bound_key(proof: Proof, jkt: str | None, what: str, resource: bool = False) -> None:
    """The proof's key is the one `what` (a token, a code) is bound to."""
    if jkt is not None and not hmac.compare_digest(proof.jkt, jkt):
        if resource:
            raise invalid_token(f"The {what} is bound to another DPoP key than the proof's.")
        raise invalid_proof(f"The {what} is bound to another DPoP key than the proof's.")
