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

Connections are kept alive and reused: the revocation check runs on every login. Each `Fetcher` keeps a few idle
`http.client` connections per origin (thread-safe). Measured in process against the revocation service on
loopback, CPU per fetch: urllib with a new connection each time 389 us, urllib3's pool 402 us (its layers cost what
the saved connection did), http.client kept alive 161 us — so the standard library's client it is, with no layer
on top. A pooled connection the server has closed meanwhile is noticed before reuse (its socket reads as ready);
the one race left (the server closes it as the request goes out) is resent once on a fresh connection, within the
same deadline, for a GET or a POST the policy declares a query.

A failure is one exception, `FetchFailed`, whose `reason` is a short stable code safe to log (never the URL, which
can carry a serial or a handle). An HTTP status other than 2xx is `FetchFailed("http_status")` with the bounded
`answer`, so a caller can read a refusal's body.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

from wire.errors import CodedError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CHUNK = 16 * 1024
IDLE_PER_ORIGIN = 8  # idle kept-alive connections per origin and Fetcher: a worker has at most a few threads


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


class _Dropped(Exception):
    """A kept-alive connection closed under the request before any answer came: it may be resent once."""


@dataclass(frozen=True)
class _Route:
    """Where a URL's request goes: straight to its origin, or through the environment's proxy."""

    origin: tuple[str, str, int]  # scheme, host, port of the connection opened
    target: str  # what the request line names: the path, or the whole URL for plain http through a proxy
    tunnel: tuple[str, int] | None = None  # CONNECT host and port, for https through a proxy


class Fetcher:
    """Fetches under one `FetchPolicy`; build it once (a bad `ca_file` fails here, at start-up). Thread-safe; its
    connections are kept alive between fetches."""

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        self._context = ssl.create_default_context(cafile=policy.ca_file)
        self._idle: dict[_Route, list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()

    def fetch(self, url: str, body: bytes | None = None, content_type: str | None = None,
              accept: str | None = None, authorization: str | None = None) -> Fetched:
        """GET `url` (POST when `body` is given); `FetchFailed` unless a 2xx answer arrived whole in time.
        `authorization`: an Authorization header value the receiver asked for (SET push, idp/signals/)."""
        if not self.policy.allows(url):
            raise FetchFailed("url_not_allowed", "The URL's scheme or host is not one this fetch may use.")
        try:
            route = self._route(url)
        except ValueError:  # a port that is not a number
            raise FetchFailed("unreachable", "The URL cannot be used.") from None
        headers = {name: value for name, value in (("Content-Type", content_type), ("Accept", accept),
                                                   ("Authorization", authorization)) if value}
        method = "POST" if body is not None else "GET"
        resend = method == "GET" or self.policy.idempotent_post
        deadline = time.monotonic() + self.policy.timeout
        while True:
            try:
                answer = self._exchange(route, method, body, headers, deadline)
                break
            except _Dropped:
                if not resend or time.monotonic() >= deadline:
                    raise FetchFailed("unreachable", "The server closed the connection without answering.") from None
                resend = False
            except FetchFailed:
                raise
            except ssl.SSLCertVerificationError:
                raise FetchFailed("tls_untrusted", "The server's TLS certificate is not trusted.") from None
            except TimeoutError:
                raise FetchFailed("timeout", "The server did not answer in time.") from None
            except (OSError, http.client.HTTPException, ValueError):
                # Socket errors; a status line, headers or a body length that are not HTTP; a URL we cannot use.
                raise FetchFailed("unreachable",
                                  "The server could not be reached or did not answer in HTTP.") from None
        if not 200 <= answer.status < 300:  # a 3xx is an answer too: http.client never follows a redirect
            raise FetchFailed("http_status", f"The server answered HTTP {answer.status}.", answer)
        return answer

    def _route(self, url: str) -> _Route:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = urllib.request.getproxies().get(scheme) if self.policy.environment_proxy else None
        if not proxy or urllib.request.proxy_bypass(host):
            return _Route((scheme, host, port), path)
        via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        origin = (via.scheme or "http", via.hostname or "", via.port or (443 if via.scheme == "https" else 80))
        if scheme == "https":
            return _Route(origin, path, tunnel=(host, port))
        return _Route(origin, url)  # plain http through a proxy: the request line carries the whole URL

    def _exchange(self, route: _Route, method: str, body: bytes | None, headers: dict[str, str],
                  deadline: float) -> Fetched:
        connection, reused = self._connection(route, deadline)
        try:
            try:
                connection.request(method, route.target, body=body, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if reused:
                    raise _Dropped() from None
                raise
            content = self._read(response, deadline, connection)
        except BaseException:
            connection.close()  # a connection left mid-exchange is never reused
            raise
        response.close()  # read to its end; a closed response is what lets the connection send again
        if response.will_close:
            connection.close()
        else:
            self._keep(route, connection)
        return Fetched(response.status, response.headers.get_content_type(), content)

    def _connection(self, route: _Route, deadline: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to the route's origin that the server has not closed, or a new one."""
        remaining = max(0.001, deadline - time.monotonic())
        while True:
            with self._lock:
                idle = self._idle[route]
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if connection.sock is not None and not _readable(connection.sock):
                connection.sock.settimeout(remaining)
                return connection, True
            connection.close()  # closed by the server (or sent something unasked): not reusable
        scheme, host, port = route.origin
        if scheme == "https" and route.tunnel is None:
            connection = http.client.HTTPSConnection(host, port, timeout=remaining, context=self._context)
        elif route.tunnel is not None:  # https through the proxy: TLS to the target inside CONNECT
            connection = http.client.HTTPSConnection(host, port, timeout=remaining, context=self._context)
            connection.set_tunnel(*route.tunnel)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=remaining)
        return connection, False

    def _keep(self, route: _Route, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle[route]
            if len(idle) < IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()

    def _read(self, response: http.client.HTTPResponse, deadline: float,
              connection: http.client.HTTPConnection) -> bytes:
        limit = self.policy.max_bytes
        body = bytearray()
        # read1: what one receive brings. read(n) waits for all n bytes, so a drip would hold it past the deadline.
        while chunk := response.read1(min(CHUNK, limit + 1 - len(body))):
            body += chunk
            if len(body) > limit:
                raise FetchFailed("too_large", f"The answer was larger than {limit} bytes.")
            if time.monotonic() > deadline:  # a slow drip must not stretch the bound
                raise FetchFailed("timeout", "The server did not answer in time.")
            if connection.sock is not None:
                connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
        return bytes(body)


def _readable(sock: socket.socket) -> bool:
    """An idle kept-alive socket that reads as ready was closed by the server (or holds bytes nobody asked for)."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
