"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5–6) as a bare WSGI callable: `POST /ocsp` and
`GET /ocsp/<base64 request>`, served in front of the service's Flask app without a Flask dispatch.

Why bare: an OCSP answer is a cache read, so the cost per request is the request machinery. Flask's routing,
request context and response object cost more than the rest of the answer put together (bench/report.md).
`with_ocsp` puts this callable in front of the app's own `wsgi_app`; every other path goes to Flask.

One responder, two hosts: the revocation service's app answers OCSP this way (development, small deployments),
and `responder_app` serves the same callable alone with only `/healthz` beside it — the production data plane,
`deploy.composition:ocsp_app` under granian (deploy/granian-ocsp.sh).

What it promises, unchanged from the Flask endpoint it replaces:

- Whatever is wrong inside an OCSP request is answered the OCSP way: HTTP 200 with an OCSP error status
  (`malformedRequest` for bytes that do not parse, including bad base64 in a GET). Only what is wrong at the HTTP
  level gets an HTTP error — a Content-Type other than `application/ocsp-request` (415) and a body over
  MAX_REQUEST_BYTES (413) — and even then the body is an OCSP `malformedRequest`, so an OCSP client that reads the
  body still understands it. A wrong method is 405 with `Allow` (RFC 9110 §15.5.6) and the service's JSON error.
- A GET's base64 is the rest of the path, taken as it is: it may begin with "/" or hold "//" (RFC 6960 A.1;
  clients rarely percent-encode "/"). Padding may be missing.
- A response without a nonce may be kept by HTTP caches until its nextUpdate and no longer (RFC 5019 §6.2:
  Cache-Control max-age, Last-Modified, Expires, ETag), or for OCSP_HTTP_MAX_AGE_SECONDS if that is shorter — what
  bounds how long a shared cache in front (docs/operators.md) may go on serving an answer after a revocation.
  GET and HEAD honour If-None-Match / If-Modified-Since with 304 (RFC 9110 §13). A nonce response or an error is
  `no-store`.
- Nothing from the request is ever echoed or logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable

import redis
from werkzeug.exceptions import BadRequest, MethodNotAllowed, NotFound
from werkzeug.http import http_date, is_resource_modified, remove_entity_headers

from observability.metrics import Counter
from revocation.ocsp.responder import OcspAnswer, OcspResponder
from revocation.ocsp.responder import OCSPResponseStatus as Status
from revocation.storage.store import StorageLayoutError
from wire.service_app import RETRY_AFTER_SECONDS

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
MAX_REQUEST_BYTES = 10 * 1024  # a one-CertID request with a nonce is ~100 bytes; RFC 5019 §5 expects < 255 in GETs
PATH = "/ocsp"
_GET_PREFIX = PATH + "/"
_CONDITIONAL = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH")
_STATUS_NAMES = {Status.MALFORMED_REQUEST: "malformed_request", Status.UNAUTHORIZED: "unauthorized",
                 Status.TRY_LATER: "try_later", Status.INTERNAL_ERROR: "internal_error"}
_REASONS = {200: "200 OK", 304: "304 Not Modified", 400: "400 Bad Request", 404: "404 Not Found",
            405: "405 Method Not Allowed",
            412: "412 Precondition Failed", 413: "413 Request Entity Too Large",
            415: "415 Unsupported Media Type", 503: "503 Service Unavailable"}

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def with_ocsp(app: WsgiApp, ocsp: WsgiApp) -> WsgiApp:
    """A path dispatcher: `/ocsp` and `/ocsp/<something>` to `ocsp`, every other path to `app`."""

    def dispatch(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PATH or (len(path) > len(_GET_PREFIX) and path.startswith(_GET_PREFIX)):
            return ocsp(environ, start_response)
        return app(environ, start_response)

    return dispatch


def responder_app(ocsp: WsgiApp, ping: Callable[[], object]) -> WsgiApp:
    """The OCSP data plane on its own (deploy.composition:ocsp_app): `ocsp`'s two paths and `/healthz` (`ping`
    raises a Redis error when the store is away: 503); every other path is 404. No Flask at all."""

    def healthz(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, 405, "method_not_allowed", MethodNotAllowed.description,
                         [("Allow", "GET, HEAD")])
        try:
            ping()
        except (redis.ConnectionError, redis.TimeoutError):
            return _unavailable(start_response)
        body = b'{"status": "ok"}\n'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [body]

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            return healthz(environ, start_response)
        return _json(start_response, 404, "not_found", NotFound.description)

    return with_ocsp(app, ocsp)


class OcspEndpoint:
    """The WSGI callable for both OCSP paths. `ready` runs before each request and may raise StorageLayoutError
    or a Redis connection error, which are answered as the rest of the service answers them."""

    def __init__(self, responder: OcspResponder, responses: Counter, ready: Callable[[], None] = lambda: None,
                 max_age: int | None = None):
        self.responder = responder
        self.responses = responses
        self.ready = ready
        self.max_age = max_age  # OCSP_HTTP_MAX_AGE_SECONDS: how long a shared cache may keep an answer, at most

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        allowed = ("OPTIONS", "POST") if path == PATH else ("GET", "HEAD", "OPTIONS")
        if method not in allowed:
            return _json(start_response, 405, "method_not_allowed", MethodNotAllowed.description,
                         [("Allow", ", ".join(allowed))])
        if method == "OPTIONS":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0"),
                                      ("Allow", ", ".join(allowed))])
            return [b""]
        try:
            self.ready()
        except StorageLayoutError as error:
            return _json(start_response, error.status, error.code, error.message)
        except (redis.ConnectionError, redis.TimeoutError):
            return _unavailable(start_response)
        if method == "POST":
            return self._post(environ, start_response)
        der = _decode(path[len(_GET_PREFIX):])
        answer = OcspAnswer.refusal(Status.MALFORMED_REQUEST) if der is None else self.responder.respond(der)
        return self._answer(environ, start_response, answer)

    def _post(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if mimetype != OCSP_REQUEST:
            return self._answer(environ, start_response, OcspAnswer.refusal(Status.MALFORMED_REQUEST), 415)
        length = _content_length(environ)
        if (length or 0) > MAX_REQUEST_BYTES:
            return self._answer(environ, start_response, OcspAnswer.refusal(Status.MALFORMED_REQUEST), 413)
        stream = environ["wsgi.input"]
        if length is None:
            # No length: a chunked body the server has de-chunked and ends (PEP 3333 wsgi.input_terminated),
            # read at most one byte past the cap; otherwise there is no body to read.
            body = stream.read(MAX_REQUEST_BYTES + 1) if environ.get("wsgi.input_terminated") else b""
            if len(body) > MAX_REQUEST_BYTES:
                return self._answer(environ, start_response, OcspAnswer.refusal(Status.MALFORMED_REQUEST), 413)
        else:
            body = _read_exactly(stream, length)
            if body is None:  # the client went away before sending what it announced
                return _json(start_response, 400, "bad_request", BadRequest.description)
        return self._answer(environ, start_response, self.responder.respond(body))

    def _answer(self, environ: dict, start_response: Callable, answer: OcspAnswer,
                status: int = 200) -> Iterable[bytes]:
        self.responses.inc(status=answer.certificate_status or _STATUS_NAMES.get(answer.status, "error"))
        body = answer.der
        headers = [("Content-Type", OCSP_RESPONSE)]
        if not answer.cacheable:
            # A nonce response answers one request; an error may be transient. Neither may be reused.
            headers.append(("Cache-Control", "no-store"))
        else:
            # RFC 5019 §6.2: let HTTP caches keep the same response until its nextUpdate, and no longer.
            now = time.time()
            max_age = max(0, int(answer.next_update.timestamp() - now))
            if self.max_age is not None:
                max_age = min(max_age, self.max_age)
            last_modified, expires, etag = answer.http_validators
            headers += [("Cache-Control", f"max-age={max_age}, public, no-transform, must-revalidate"),
                        ("Last-Modified", last_modified), ("Expires", expires), ("ETag", etag)]
            if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
                headers.append(("Date", _date(int(now))))
                if any(name in environ for name in _CONDITIONAL) and not is_resource_modified(
                        environ, etag, last_modified=last_modified):
                    status = 412 if environ.get("HTTP_IF_MATCH") else 304
        if status == 304:
            remove_entity_headers(headers)
            start_response(_REASONS[304], headers)
            return [b""]
        headers.append(("Content-Length", str(len(body))))
        start_response(_REASONS[status], headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _date(second: int) -> str:
    """The Date header for this second, formatted once per second."""
    global _DATE
    if _DATE[0] != second:
        _DATE = (second, http_date(second))
    return _DATE[1]


_DATE: tuple[int, str] = (0, "")


def _content_length(environ: dict) -> int | None:
    """CONTENT_LENGTH as werkzeug reads it: missing or not a number is no length; never below 0."""
    try:
        return max(0, int(environ["CONTENT_LENGTH"]))
    except (KeyError, ValueError):
        return None


def _read_exactly(stream, length: int) -> bytes | None:
    parts, remaining = [], length
    while remaining > 0:  # bounded: each read returns at least one byte or ends the loop
        part = stream.read(remaining)
        if not part:
            return None
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _decode(encoded: str) -> bytes | None:
    """Base64 of the DER request, already URL-decoded by the server (RFC 6960 A.1). Padding may be missing."""
    if len(encoded) > MAX_REQUEST_BYTES * 4 // 3 + 4:
        return None
    text = encoded.strip()
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _unavailable(start_response: Callable) -> Iterable[bytes]:
    """Redis cannot be reached: 503 with Retry-After, as wire/service_app.py answers it."""
    return _json(start_response, 503, "temporarily_unavailable",
                 "The service cannot reach its data store right now. Try again in a few seconds.",
                 [("Retry-After", str(RETRY_AFTER_SECONDS)), ("Cache-Control", "no-store")],
                 message_ja="ただいまデータを読み書きできません。数秒後にもう一度お試しください。")


def _json(start_response: Callable, status: int, code: str, message: str,
          headers: list[tuple[str, str]] = (), **more: str) -> Iterable[bytes]:
    """The service's JSON error shape (`error`, `message`), as its Flask error handlers write it."""
    body = json.dumps({"error": code, "message": message, **more}, ensure_ascii=False).encode() + b"\n"
    start_response(_REASONS.get(status, f"{status} Error"),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]
