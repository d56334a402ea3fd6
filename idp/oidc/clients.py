"""Relying-party clients, registered by the operator and stored in Redis (Authlib's ClientMixin on top).

Client authentication: `private_key_jwt` (what the Digital Agency's app requires; keys given inline as a JWKS
or by `jwks_uri`) or `client_secret_basic` (the secret is shown once at registration and stored hashed). A
client's keys are public asymmetric keys only: a symmetric (`oct`) key in a JWKS anyone can read would let anyone
sign its assertions (RFC 7523 §3, RFC 7517 §4.1).

The pairwise sector (OIDC Core §8.1) is the one host all redirect URIs share or, when the client registers a
`sector_identifier_uri`, that URI's host — but only after the document there, fetched at registration, is a JSON
array listing every redirect URI of the client. Without that check any client could name another's sector and
receive the same `sub` values for the same people.

Documents a client publishes (its sector identifier, its `jwks_uri`) are fetched by `ClientDocuments`: https
(plain http only on the loopback address, and only for a development `jwks_uri`), at most 64 KiB and 5 seconds,
no redirects (a redirect could lead the fetch to a host the client does not control), no proxy, and decoded with
`wire.json_input`. The CAs that https trusts are the system's, or the PEM bundle named by `fetch_ca_file`
(`python -m idp clients add --fetch-ca-file`, or the environment variable IDP_FETCH_CA_FILE); certificate
verification is never turned off. `jwks_uri` documents are cached per registry, bounded in entries and age.

Parsed records: the token endpoint reads a client on every exchange, and parsing its JSON record and importing
its inline JWKS cost more than the read itself. So the registry keeps, per client id, the last record it read as
bytes, the `Client` parsed from it and, once asked, the key set imported from it. A read whose bytes differ from
the kept ones is parsed afresh (a re-registered or re-keyed client is never answered from an old parse), and
`last_read` hands the token endpoint the kept client together with its record's digest, which the exchange
script compares with the stored record before it spends anything (idp/oidc/tokens.py): a client changed or
removed by any process is noticed on its next exchange, not after a timeout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

import redis
from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp.keys import CLIENTS
from idp.oidc import fapi
from mykey.pairwise import sector_of
from wire.errors import CodedError
from wire.fetch import LOOPBACK_HOSTS, Fetcher, FetchFailed, FetchPolicy
from wire.json_input import JSONInputError
from wire.json_input import loads as json_loads

CLIENTS_HASH = CLIENTS
SCOPES = ("openid", "name", "address", "birthdate", "gender")
FOUR_FACTS_SCOPES = frozenset({"name", "address", "birthdate", "gender"})
AUTH_METHODS = ("private_key_jwt", "client_secret_basic")
JWKS_URI_CACHE_SECONDS = 300
JWKS_URI_CACHE_ENTRIES = 256
JWKS_URI_RETRY_SECONDS = 30  # a failed jwks_uri fetch is not retried sooner, however many assertions arrive
JWKS_URI_NEW_KID_SECONDS = 1  # an assertion naming a kid the cached document lacks refetches it, this rarely at most
PARSED_CLIENT_ENTRIES = 1024  # clients whose last read record is kept parsed (module docstring)
FETCH_TIMEOUT_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 64 * 1024
PUBLIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
PRIVATE_KEY_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class ClientRegistrationError(CodedError, ValueError):
    """Client metadata refused; `code` is an OAuth dynamic registration error (RFC 7591 §3.2.2) or ours."""


class ClientDocumentError(ValueError):
    """A document a client publishes could not be fetched or used; the message is a sentence for the operator
    (it names the URL's role, never a key or a token)."""


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
    backchannel_logout_uri: str | None = None  # Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed
    # FAPI 2.0 (idp/oidc/fapi.py, par.py, dpop.py); records written before these fields read as the defaults.
    profile: str = ""
    require_pushed_authorization_requests: bool = False
    dpop_bound_access_tokens: bool = False

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

    @property
    def client_metadata(self) -> dict:
        return {}  # no signed or encrypted userinfo responses

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def __repr__(self) -> str:
        return f"Client({self.client_id}, {self.name!r})"


class ClientDocuments:
    """Fetch a small JSON document a client publishes: bounded, verified, never redirected (module docstring)."""

    def __init__(self, ca_file: str | None = None, timeout: float = FETCH_TIMEOUT_SECONDS,
                 limit: int = MAX_DOCUMENT_BYTES):
        self.ca_file = ca_file
        self.timeout = timeout
        self.limit = limit
        # A missing or unreadable CA bundle fails here, early.
        policy = FetchPolicy(timeout=timeout, max_bytes=limit, schemes=frozenset({"https"}), ca_file=ca_file)
        self._https = Fetcher(policy)
        self._https_or_loopback = Fetcher(replace(policy, loopback_http=True))

    def fetch(self, uri: str, what: str, allow_loopback_http: bool = False):
        """The decoded JSON at `uri`; ClientDocumentError saying why not. `what` names the URL in messages."""
        fetcher = self._https_or_loopback if allow_loopback_http else self._https
        try:
            body = fetcher.fetch(uri, accept="application/json").body
        except FetchFailed as failed:
            raise ClientDocumentError(self._failure(failed, what)) from None
        try:
            return json_loads(body, max_bytes=self.limit)
        except JSONInputError as exc:
            raise ClientDocumentError(f"The {what} returned a document that is not valid JSON ({exc.reason}).") \
                from None

    def _failure(self, failed: FetchFailed, what: str) -> str:
        status = failed.answer.status if failed.answer else None
        return {
            "url_not_allowed": f"The {what} must be an https URL.",
            "too_large": f"The {what} returned a document larger than {self.limit} bytes.",
            "tls_untrusted": f"The {what} has a TLS certificate this IdP does not trust (set IDP_FETCH_CA_FILE for a "
                             "private CA).",
            "timeout": f"The {what} did not answer within {self.timeout:g} seconds.",
            "http_status": f"The {what} answered with a redirect (HTTP {status}); redirects are not followed, so "
                           "register the final URL." if status and 300 <= status < 400
                           else f"The {what} answered HTTP {status}.",
        }.get(failed.reason, f"The {what} could not be reached.")


class JwksCache:
    """Clients' `jwks_uri` documents as key sets, at most `entries` of them, each for at most `seconds`; a failed
    fetch is remembered for `retry_seconds` so that a flood of assertions naming one client is not a flood of
    fetches (or of 5-second waits). An assertion whose `kid` the cached document lacks — the client has rotated
    its key — has the document fetched again at once, if the last fetch is `new_kid_seconds` old: the new key
    works on its first use, and assertions naming made-up kids cost at most one fetch per client that often."""

    def __init__(self, documents: ClientDocuments, entries: int = JWKS_URI_CACHE_ENTRIES,
                 seconds: float = JWKS_URI_CACHE_SECONDS, retry_seconds: float = JWKS_URI_RETRY_SECONDS,
                 new_kid_seconds: float = JWKS_URI_NEW_KID_SECONDS, clock=time.monotonic):
        self.documents = documents
        self.entries = entries
        self.seconds = seconds
        self.retry_seconds = retry_seconds
        self.new_kid_seconds = new_kid_seconds
        self.clock = clock
        # uri → (expires, key set or the failure, fetched at)
        self._cached: OrderedDict[str, tuple[float, KeySet | ClientDocumentError, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uri: str, kid: str | None = None) -> KeySet:
        now = self.clock()
        with self._lock:
            cached = self._cached.get(uri)
            if cached is not None and cached[0] > now and not self._lacks(cached, kid, now):
                self._cached.move_to_end(uri)
                if isinstance(cached[1], ClientDocumentError):
                    raise cached[1]
                return cached[1]
        try:
            value: KeySet | ClientDocumentError = public_key_set(
                self.documents.fetch(uri, "jwks_uri", allow_loopback_http=True))
            expires = now + self.seconds
        except ClientDocumentError as exc:
            value, expires = exc, now + self.retry_seconds
        with self._lock:
            self._cached[uri] = (expires, value, now)
            self._cached.move_to_end(uri)
            while len(self._cached) > self.entries:
                self._cached.popitem(last=False)
        if isinstance(value, ClientDocumentError):
            raise value
        return value

    def _lacks(self, cached, kid: str | None, now: float) -> bool:
        """Is this a key set without `kid`, fetched long enough ago to fetch again for it?"""
        keys = cached[1]
        if kid is None or isinstance(keys, ClientDocumentError) or now - cached[2] < self.new_kid_seconds:
            return False
        return all(key.kid != kid for key in keys)

    def __len__(self) -> int:
        return len(self._cached)


def public_key_set(jwks) -> KeySet:
    """A client's JWKS as a joserfc KeySet of public asymmetric keys, or ClientDocumentError."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ClientDocumentError("The JWKS must be a JSON object whose \"keys\" is a non-empty array of keys.")
    if any(k.get("kty") not in PUBLIC_KEY_TYPES or PRIVATE_KEY_MEMBERS & k.keys() for k in keys):
        raise ClientDocumentError("The JWKS may hold only public RSA, EC or OKP keys (no symmetric or private keys).")
    try:
        return KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientDocumentError(f"The JWKS holds a key that cannot be used ({exc.__class__.__name__}).") from None


def _hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random strings, so a plain SHA-256 is enough; no password stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class ParsedRecord:
    """A client record as last read: its bytes, their digest (what the exchange script compares), the client, and
    its inline JWKS imported once asked for (None until then)."""

    raw: bytes
    digest: str
    client: Client
    keys: KeySet | None = None


def record_digest(raw: bytes) -> str:
    """The digest the exchange script compares with Redis's own `redis.sha1hex` of the stored record: an equality
    check of bytes this process read, not a security boundary (only the operator writes client records)."""
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


class ClientRegistry:
    """The registered clients, and the documents they publish (fetched with `fetch_ca_file`'s CAs, if given)."""

    def __init__(self, client: redis.Redis, fetch_ca_file: str | None = None,
                 parsed_entries: int = PARSED_CLIENT_ENTRIES):
        self.redis = client
        self.documents = ClientDocuments(fetch_ca_file)
        self.jwks_cache = JwksCache(self.documents)
        self.parsed_entries = parsed_entries
        self._parsed: OrderedDict[str, ParsedRecord] = OrderedDict()  # client_id → its last read record
        self._lock = threading.Lock()

    def public_keys(self, client: Client, kid: str | None = None) -> KeySet:
        """The keys that verify the client's private_key_jwt assertions; ClientDocumentError if none can be had.
        `kid`, the assertion's, lets a `jwks_uri` document that lacks it be fetched again (JwksCache)."""
        if client.jwks is not None:
            parsed = self._parsed.get(client.client_id)
            if parsed is None or parsed.client is not client:  # a Client not parsed here: import its keys now
                return public_key_set(client.jwks)
            if parsed.keys is None:
                parsed.keys = public_key_set(client.jwks)  # a racing thread imports the same keys: harmless
            return parsed.keys
        if not client.jwks_uri:
            raise ClientDocumentError("The client has no keys registered.")
        return self.jwks_cache.get(client.jwks_uri, kid if isinstance(kid, str) else None)

    def get(self, client_id: str) -> Client | None:
        """The client as registered now (one read of its record)."""
        if not isinstance(client_id, str) or len(client_id) > 128:
            return None
        raw = self.redis.hget(CLIENTS_HASH, client_id)
        if not raw:
            self.forget(client_id)
            return None
        return self._parse(client_id, raw).client

    def last_read(self, client_id: str) -> ParsedRecord | None:
        """The record this registry last read for `client_id`, without reading Redis: only for a caller that has
        Redis compare `digest` with the stored record before it relies on the answer (module docstring)."""
        if not isinstance(client_id, str):
            return None
        return self._parsed.get(client_id)

    def forget(self, client_id: str) -> None:
        with self._lock:
            self._parsed.pop(client_id, None)

    def _parse(self, client_id: str, raw: bytes) -> ParsedRecord:
        kept = self._parsed.get(client_id)
        if kept is not None and kept.raw == raw:
            return kept
        parsed = ParsedRecord(raw, record_digest(raw), Client(**json.loads(raw)))
        with self._lock:
            self._parsed[client_id] = parsed
            self._parsed.move_to_end(client_id)
            while len(self._parsed) > self.parsed_entries:
                self._parsed.popitem(last=False)
        return parsed

    def list(self) -> list[Client]:
        return sorted((Client(**json.loads(raw)) for raw in self.redis.hvals(CLIENTS_HASH)),
                      key=lambda c: c.created_at)

    def remove(self, client_id: str) -> bool:
        self.forget(client_id)
        return bool(self.redis.hdel(CLIENTS_HASH, client_id))

    def add(self, name: str, redirect_uris: list[str], jwks: dict | None = None, jwks_uri: str | None = None,
            sector_identifier_uri: str | None = None, id_token_alg: str = "RS256",  # noqa: S107
            post_logout_redirect_uris: list[str] | None = None, backchannel_logout_uri: str | None = None,
            profile: str | None = None, require_par: bool = False,
            dpop_bound: bool = False) -> tuple[Client, str | None]:
        """Register a client; returns it and, for client_secret_basic, the secret (shown once, stored hashed).
        `profile="fapi2"` holds it to the FAPI 2.0 Security Profile (idp/oidc/fapi.py), which implies
        `require_par` (RFC 9126 §6) and `dpop_bound` (RFC 9449 §5.2's dpop_bound_access_tokens)."""
        if not name or len(name) > 100:
            raise ClientRegistrationError("invalid_client_metadata", "A client needs a name of at most 100 characters.")
        if not redirect_uris:
            raise ClientRegistrationError("invalid_redirect_uri", "A client needs at least one redirect URI.")
        for uri in [*redirect_uris, *(post_logout_redirect_uris or [])]:
            _check_uri(uri)
        if jwks is not None and jwks_uri is not None:
            raise ClientRegistrationError("invalid_client_metadata", "Give either --jwks or --jwks-uri, not both.")
        if jwks is not None:
            try:
                public_key_set(jwks)
            except ClientDocumentError as exc:
                raise ClientRegistrationError("invalid_client_metadata", str(exc)) from None
        if jwks_uri is not None:
            _check_uri(jwks_uri)
        if backchannel_logout_uri is not None:
            _check_uri(backchannel_logout_uri)  # Back-Channel Logout §2.2: absolute, no fragment
        if id_token_alg not in ("RS256", "ES256"):
            raise ClientRegistrationError("invalid_client_metadata", "ID tokens are signed with RS256 or ES256.")
        if profile is not None and profile not in fapi.PROFILES:
            raise ClientRegistrationError("invalid_client_metadata", f"Unknown profile {profile!r}; known profiles: "
                                          f"{', '.join(fapi.PROFILES)}.")
        if profile == fapi.FAPI2:
            why = fapi.check_registration("private_key_jwt" if (jwks or jwks_uri) else "client_secret_basic", jwks)
            if why:
                raise ClientRegistrationError("invalid_client_metadata", why)
            require_par = dpop_bound = True
        sector = self._sector(redirect_uris, sector_identifier_uri)
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
            backchannel_logout_uri=backchannel_logout_uri,
            profile=profile or "",
            require_pushed_authorization_requests=require_par,
            dpop_bound_access_tokens=dpop_bound,
        )
        self.redis.hset(CLIENTS_HASH, client.client_id, client.to_json())
        return client, secret


    def _sector(self, redirect_uris: list[str], sector_identifier_uri: str | None) -> str:
        """OIDC Core §8.1: the sector identifier document must list every redirect URI of the client."""
        if sector_identifier_uri is not None:
            try:
                listed = self.documents.fetch(sector_identifier_uri, "sector_identifier_uri")
            except ClientDocumentError as exc:
                raise ClientRegistrationError("invalid_client_metadata", str(exc)) from None
            if not isinstance(listed, list) or not all(isinstance(uri, str) for uri in listed):
                raise ClientRegistrationError("invalid_client_metadata", "The sector_identifier_uri must return a "
                                              "JSON array of redirect URIs (OIDC Core §8.1).")
            missing = [uri for uri in redirect_uris if uri not in listed]
            if missing:
                raise ClientRegistrationError(
                    "invalid_client_metadata", f"The sector_identifier_uri does not list {', '.join(missing)}; it "
                    "must list every redirect URI of the client (OIDC Core §8.1).")
        try:
            return sector_of(redirect_uris, sector_identifier_uri)
        except ValueError as exc:
            raise ClientRegistrationError("invalid_client_metadata", str(exc)) from None


def _check_uri(uri: str) -> None:
    try:
        parts = urlsplit(uri)
        local = parts.hostname in LOOPBACK_HOSTS
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:  # e.g. "https://[": an unclosed IPv6 literal
        raise ClientRegistrationError("invalid_redirect_uri", "A URI cannot be read as a URL.") from None
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not local) or not parts.hostname:
        raise ClientRegistrationError("invalid_redirect_uri",
                                      "URIs must be https (plain http only on the loopback address).")
    if parts.fragment:
        raise ClientRegistrationError("invalid_redirect_uri", "URIs must not carry a fragment.")
