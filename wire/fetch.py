"""The one way the platform fetches over HTTP(S): bounded in size and in total time, never redirected.

Three callers, each with its own documented policy passed in as a `FetchPolicy`, not copied:

- the IdP's revocation check (idp/login/revocation_check.py): OCSP and CRLs from the configured revocation
  service over http or https (RFC 6960 Appendix A.1 and RFC 5280 §4.2.1.13 name http; the responses are signed);
- the IdP's client documents (idp/oidc/clients.py): `jwks_uri` and `sector_identifier_uri` over https only, with
  an optional CA file (docs/configuration.md, IDP_FETCH_CA_FILE), plain http on loopback only for development;
- the card bridge's calls to the IdP (nfc_bridge/login.py, docs/bridge-api.yaml).

What every fetch promises:

- only the schemes the policy allows; anything else is refused before a socket is opened;
- no redirect is followed (a 3xx is an answer, like a 4xx), so a fetch never leaves the URL it was given;
- no proxy from the environment unless the policy says so (platform-internal traffic never goes through one);
- the body is refused past `max_bytes`, and the whole exchange past `timeout` seconds (give or take one socket
  read, itself bounded by `timeout`): a slow drip of bytes does not restart the clock as a per-read socket timeout
  would;
- TLS is verified against the system's CAs, or `ca_file` when given.

Connections are kept alive and reused (urllib3's pool, one pool per host, thread-safe): the revocation check runs
on every login, and a TCP connection set up per OCSP request cost the IdP more CPU than the request itself
(bench/login.py). A pooled connection the server has closed meanwhile is detected before reuse; the one race left
(the server closes it as the request goes out) is retried once on a fresh connection, within the same deadline.

A failure is one exception, `FetchFailed`, whose `reason` is a short stable code safe to log (never the URL, which
can carry a serial or a handle). An HTTP status other than 2xx is `FetchFailed("http_status")` with the bounded
`answer`, so a caller can read a refusal's body.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from wire.errors import CodedError

# urllib3 logs every request line, path included, at DEBUG; a path can carry a serial, a CRL shard or a login handle.
logging.getLogger("urllib3").setLevel(logging.INFO)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CHUNK = 16 * 1024
POOL_SIZE = 8  # kept-alive connections per host and per Fetcher: a gunicorn worker has at most a few threads


@dataclass(frozen=True)
class FetchPolicy:
    """What one caller may fetch: schemes, bounds, CAs."""

    timeout: float  # seconds for the whole exchange: connect, headers and body
    max_bytes: int
    schemes: frozenset[str] = frozenset({"https"})
    loopback_http: bool = False  # plain http also allowed to a loopback host (development)
    ca_file: str | None = None  # CAs to verify https with instead of the system's
    environment_proxy: bool = False  # honour HTTP(S)_PROXY: only for a client on someone's own computer
    idempotent_post: bool = False  # a POST is a query (OCSP): safe to resend once on a dropped kept-alive connection

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return False
        if not host:
            return False
        return parts.scheme in self.schemes or (
            self.loopback_http and parts.scheme == "http" and host in LOOPBACK_HOSTS)


@dataclass(frozen=True)
class Fetched:
    status: int
    content_type: str | None
    body: bytes


class FetchFailed(CodedError):
    """No usable answer. `reason`: url_not_allowed, unreachable, timeout, tls_untrusted, too_large, http_status
    (then `status` and `answer` hold the HTTP status and the bounded answer)."""

    def __init__(self, reason: str, message: str, answer: Fetched | None = None):
        super().__init__(reason, message, status=answer.status if answer else None)
        self.reason = reason
        self.answer = answer


def _content_type(value: str | None) -> str:
    """The media type without parameters, lower-cased; text/plain when absent or unreadable (RFC 9110 §8.3 leaves
    a missing type to the recipient; email.message's get_content_type, used before, said text/plain)."""
    if not value:
        return "text/plain"
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type if media_type.count("/") == 1 else "text/plain"


class Fetcher:
    """Fetches under one `FetchPolicy`; build it once (a bad `ca_file` fails here, at start-up). Thread-safe; its
    connections are kept alive between fetches."""

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        self._context = ssl.create_default_context(cafile=policy.ca_file)
        self._direct = self._pool_manager()
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def _pool_manager(self, proxy: str | None = None) -> urllib3.PoolManager:
        common = {"num_pools": 16, "maxsize": POOL_SIZE, "block": False, "retries": False,
                  "ssl_context": self._context}
        return urllib3.ProxyManager(proxy, **common) if proxy else urllib3.PoolManager(**common)

    def _manager_for(self, url: str) -> urllib3.PoolManager:
        """The direct pool, or the environment's proxy for this URL when the policy allows one (and no_proxy does
        not exempt the host)."""
        if not self.policy.environment_proxy:
            return self._direct
        parts = urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
            return self._direct
        with self._lock:
            if proxy not in self._proxied:
                self._proxied[proxy] = self._pool_manager(proxy)
            return self._proxied[proxy]

    def fetch(self, url: str, body: bytes | None = None, content_type: str | None = None,
              accept: str | None = None) -> Fetched:
        """GET `url` (POST when `body` is given); `FetchFailed` unless a 2xx answer arrived whole in time."""
        if not self.policy.allows(url):
            raise FetchFailed("url_not_allowed", "The URL's scheme or host is not one this fetch may use.")
        headers = {name: value for name, value in (("Content-Type", content_type), ("Accept", accept)) if value}
        method = "POST" if body is not None else "GET"
        resend = method == "GET" or self.policy.idempotent_post
        deadline = time.monotonic() + self.policy.timeout
        while True:
            try:
                answer = self._exchange(url, method, body, headers, deadline)
                break
            except ProtocolError:
                # A kept-alive connection the server closed as this request went out: once more, on a new one.
                if not resend or time.monotonic() >= deadline:
                    raise FetchFailed("unreachable", "The server closed the connection without answering.") from None
                resend = False
            except FetchFailed:
                raise
            except NewConnectionError:  # (a ConnectTimeoutError subclass in urllib3: test it first)
                raise FetchFailed("unreachable", "The server could not be reached.") from None
            except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
                raise FetchFailed("timeout", "The server did not answer in time.") from None
            except SSLError as error:
                if _certificate_untrusted(error):
                    raise FetchFailed("tls_untrusted", "The server's TLS certificate is not trusted.") from None
                raise FetchFailed("unreachable", "The server could not be reached over TLS.") from None
            except (HTTPError, OSError, ValueError):
                # Socket errors; a status line, headers or a body length that are not HTTP; a URL urllib3 cannot use.
                raise FetchFailed("unreachable",
                                  "The server could not be reached or did not answer in HTTP.") from None
        if not 200 <= answer.status < 300:  # a 3xx is an answer too: no redirect is ever followed
            raise FetchFailed("http_status", f"The server answered HTTP {answer.status}.", answer)
        return answer

    def _exchange(self, url: str, method: str, body: bytes | None, headers: dict[str, str],
                  deadline: float) -> Fetched:
        remaining = max(0.001, deadline - time.monotonic())
        response = self._manager_for(url).urlopen(
            method, url, body=body, headers=headers, redirect=False, retries=False, preload_content=False,
            decode_content=False, timeout=urllib3.Timeout(connect=remaining, read=remaining))
        try:
            content = self._read(response, deadline)
        except BaseException:
            response.close()  # a connection left mid-answer is never reused
            response.release_conn()
            raise
        response.release_conn()  # read to the end: the connection goes back to the pool, kept alive
        return Fetched(response.status, _content_type(response.headers.get("Content-Type")), content)

    def _read(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        limit = self.policy.max_bytes
        body = bytearray()
        # read1: what one receive brings. read(n) waits for all n bytes, so a drip would hold it past the deadline.
        while chunk := response.read1(min(CHUNK, limit + 1 - len(body))):
            body += chunk
            if len(body) > limit:
                raise FetchFailed("too_large", f"The answer was larger than {limit} bytes.")
            if time.monotonic() > deadline:  # a slow drip must not stretch the bound
                raise FetchFailed("timeout", "The server did not answer in time.")
        return bytes(body)


def _certificate_untrusted(error: SSLError) -> bool:
    """urllib3 wraps ssl's verification error (in args, or as the cause); look a few links down the chain."""
    cause: BaseException | None = error
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        wrapped = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        cause = cause.__cause__ or wrapped or cause.__context__
    return False
