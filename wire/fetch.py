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

A failure is one exception, `FetchFailed`, whose `reason` is a short stable code safe to log (never the URL, which
can carry a serial or a handle). An HTTP status other than 2xx is `FetchFailed("http_status")` with the bounded
`answer`, so a caller can read a refusal's body.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from wire.errors import CodedError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CHUNK = 16 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """What one caller may fetch: schemes, bounds, CAs."""

    timeout: float  # seconds for the whole exchange: connect, headers and body
    max_bytes: int
    schemes: frozenset[str] = frozenset({"https"})
    loopback_http: bool = False  # plain http also allowed to a loopback host (development)
    ca_file: str | None = None  # CAs to verify https with instead of the system's
    environment_proxy: bool = False  # honour HTTP(S)_PROXY: only for a client on someone's own computer

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx status: an answer, not a hop


class Fetcher:
    """Fetches under one `FetchPolicy`; build it once (a bad `ca_file` fails here, at start-up)."""

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        context = ssl.create_default_context(cafile=policy.ca_file)
        handlers = [_NoRedirect(), urllib.request.HTTPSHandler(context=context)]
        if not policy.environment_proxy:
            handlers.insert(0, urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def fetch(self, url: str, body: bytes | None = None, content_type: str | None = None,
              accept: str | None = None) -> Fetched:
        """GET `url` (POST when `body` is given); `FetchFailed` unless a 2xx answer arrived whole in time."""
        if not self.policy.allows(url):
            raise FetchFailed("url_not_allowed", "The URL's scheme or host is not one this fetch may use.")
        headers = {name: value for name, value in (("Content-Type", content_type), ("Accept", accept)) if value}
        request = urllib.request.Request(url, data=body, headers=headers,  # noqa: S310 - scheme checked above
                                         method="POST" if body is not None else "GET")
        deadline = time.monotonic() + self.policy.timeout
        try:
            with self._opener.open(request, timeout=self.policy.timeout) as response:
                return Fetched(response.status, response.headers.get_content_type(), self._read(response, deadline))
        except urllib.error.HTTPError as answer:
            try:
                refused = Fetched(answer.code, answer.headers.get_content_type() if answer.headers else None,
                                  self._read(answer, deadline))
            except (FetchFailed, OSError, http.client.HTTPException):
                refused = Fetched(answer.code, None, b"")
            raise FetchFailed("http_status", f"The server answered HTTP {answer.code}.", refused) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLCertVerificationError):
                raise FetchFailed("tls_untrusted", "The server's TLS certificate is not trusted.") from None
            if isinstance(error.reason, TimeoutError):
                raise FetchFailed("timeout", "The server did not answer in time.") from None
            raise FetchFailed("unreachable", "The server could not be reached.") from None
        except TimeoutError:
            raise FetchFailed("timeout", "The server did not answer in time.") from None
        except (OSError, http.client.HTTPException, ValueError):
            # Socket errors; a status line, headers or a body length that are not HTTP; a URL urllib cannot use.
            raise FetchFailed("unreachable", "The server could not be reached or did not answer in HTTP.") from None

    def _read(self, response, deadline: float) -> bytes:
        limit = self.policy.max_bytes
        body = bytearray()
        # read1: what one receive brings. read(n) waits for all n bytes, so a drip would hold it past the deadline.
        read = getattr(response, "read1", response.read)
        while chunk := read(min(CHUNK, limit + 1 - len(body))):
            body += chunk
            if len(body) > limit:
                raise FetchFailed("too_large", f"The answer was larger than {limit} bytes.")
            if time.monotonic() > deadline:  # a slow drip must not stretch the bound
                raise FetchFailed("timeout", "The server did not answer in time.")
        return bytes(body)
