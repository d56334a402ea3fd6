"""Relying-party clients, registered by the operator and stored in Redis (Authlib's ClientMixin on top).

Client authentication: `private_key_jwt` (what the Digital Agency's app requires; keys given inline as a JWKS
or by `jwks_uri`) or `client_secret_basic` (the secret is shown once at registration and stored hashed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import redis
from authlib.oauth2.rfc6749 import ClientMixin

from mykey.pairwise import sector_of

CLIENTS_HASH = "idp:clients"
SCOPES = ("openid", "name", "address", "birthdate", "gender")
FOUR_FACTS_SCOPES = frozenset({"name", "address", "birthdate", "gender"})
AUTH_METHODS = ("private_key_jwt", "client_secret_basic")
JWKS_URI_CACHE_SECONDS = 300
MAX_JWKS_BYTES = 64 * 1024


class ClientRegistrationError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Client(ClientMixin):
    client_id: str
    name: str
    redirect_uris: list[str]
    token_endpoint_auth_method: str
    sector: str
    client_secret_hash: str | None = None
    jwks: dict | None = None
    jwks_uri: str | None = None
    sector_identifier_uri: str | None = None
    id_token_signed_response_alg: str = "RS256"  # noqa: S105 - an algorithm name
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    created_at: str = ""

    # --- Authlib's ClientMixin ---------------------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # redirect_uri is required on every request (exact match, no default)

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match (OAuth 2.0 Security BCP §4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.client_secret_hash or not client_secret:
            return False
        return hmac.compare_digest(_hash_secret(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        return method in AUTH_METHODS and method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    # --- keys for private_key_jwt -------------------------------------------------------------------------

    def public_jwks(self) -> dict:
        if self.jwks is not None:
            return self.jwks
        return _fetch_jwks(self.jwks_uri)

    @property
    def client_metadata(self) -> dict:
        return {}  # no signed or encrypted userinfo responses

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def __repr__(self) -> str:
        return f"Client({self.client_id}, {self.name!r})"


_jwks_cache: dict[str, tuple[float, dict]] = {}


def _fetch_jwks(uri: str | None) -> dict:
    if not uri:
        return {"keys": []}
    cached = _jwks_cache.get(uri)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    with urllib.request.urlopen(uri, timeout=5) as response:  # noqa: S310 - https/http only, checked at registration
        jwks = json.loads(response.read(MAX_JWKS_BYTES))
    _jwks_cache[uri] = (time.monotonic() + JWKS_URI_CACHE_SECONDS, jwks)
    return jwks


def _hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random strings, so a plain SHA-256 is enough; no password stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


class ClientRegistry:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def get(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or len(client_id) > 128:
            return None
        raw = self.redis.hget(CLIENTS_HASH, client_id)
        return Client(**json.loads(raw)) if raw else None

    def list(self) -> list[Client]:
        return sorted((Client(**json.loads(raw)) for raw in self.redis.hvals(CLIENTS_HASH)),
                      key=lambda c: c.created_at)

    def remove(self, client_id: str) -> bool:
        return bool(self.redis.hdel(CLIENTS_HASH, client_id))

    def add(self, name: str, redirect_uris: list[str], jwks: dict | None = None, jwks_uri: str | None = None,
            sector_identifier_uri: str | None = None, id_token_alg: str = "RS256",  # noqa: S107
            post_logout_redirect_uris: list[str] | None = None) -> tuple[Client, str | None]:
        """Register a client; returns it and, for client_secret_basic, the secret (shown once, stored hashed)."""
        if not name or len(name) > 100:
            raise ClientRegistrationError("invalid_client_metadata", "A client needs a name of at most 100 characters.")
        if not redirect_uris:
            raise ClientRegistrationError("invalid_redirect_uri", "A client needs at least one redirect URI.")
        for uri in [*redirect_uris, *(post_logout_redirect_uris or [])]:
            _check_uri(uri)
        if jwks is not None and jwks_uri is not None:
            raise ClientRegistrationError("invalid_client_metadata", "Give either --jwks or --jwks-uri, not both.")
        if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) and jwks["keys"]):
            raise ClientRegistrationError("invalid_client_metadata", "The JWKS must hold at least one key.")
        if jwks_uri is not None:
            _check_uri(jwks_uri)
        if id_token_alg not in ("RS256", "ES256"):
            raise ClientRegistrationError("invalid_client_metadata", "ID tokens are signed with RS256 or ES256.")
        try:
            sector = sector_of(redirect_uris, sector_identifier_uri)
        except ValueError as exc:
            raise ClientRegistrationError("invalid_client_metadata", str(exc)) from exc
        secret = None if (jwks or jwks_uri) else secrets.token_urlsafe(32)
        client = Client(
            client_id=f"rp_{secrets.token_urlsafe(12)}",
            name=name,
            redirect_uris=list(redirect_uris),
            token_endpoint_auth_method="private_key_jwt" if secret is None else "client_secret_basic",
            sector=sector,
            client_secret_hash=_hash_secret(secret) if secret else None,
            jwks=jwks,
            jwks_uri=jwks_uri,
            sector_identifier_uri=sector_identifier_uri,
            id_token_signed_response_alg=id_token_alg,
            post_logout_redirect_uris=list(post_logout_redirect_uris or []),
            created_at=dt.datetime.now(dt.UTC).isoformat(),
        )
        self.redis.hset(CLIENTS_HASH, client.client_id, client.to_json())
        return client, secret


def _check_uri(uri: str) -> None:
    parts = urlsplit(uri)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not local) or not parts.hostname:
        raise ClientRegistrationError("invalid_redirect_uri",
                                      "URIs must be https (plain http only on the loopback address).")
    if parts.fragment:
        raise ClientRegistrationError("invalid_redirect_uri", "URIs must not carry a fragment.")
