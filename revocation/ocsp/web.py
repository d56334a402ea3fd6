"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5–6): `POST /ocsp` and `GET /ocsp/<base64 request>`.

Whatever is wrong inside an OCSP request is answered the OCSP way: HTTP 200 with an OCSP error status
(`malformedRequest` for bytes that do not parse, including bad base64 in a GET). Only what is wrong at the HTTP
level gets an HTTP error — a Content-Type other than `application/ocsp-request` (415) and a body over
MAX_REQUEST_BYTES (413) — and even then the body is an OCSP `malformedRequest`, so an OCSP client that reads the
body still understands it. Nothing from the request is ever echoed or logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib

from flask import Blueprint, Response, request
from werkzeug.http import http_date
from werkzeug.routing import PathConverter

from revocation import services
from revocation.ocsp.responder import OcspAnswer
from revocation.ocsp.responder import OCSPResponseStatus as Status

_STATUS_NAMES = {Status.MALFORMED_REQUEST: "malformed_request", Status.UNAUTHORIZED: "unauthorized",
                 Status.TRY_LATER: "try_later", Status.INTERNAL_ERROR: "internal_error"}

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
MAX_REQUEST_BYTES = 10 * 1024  # a one-CertID request with a nonce is ~100 bytes; RFC 5019 §5 expects < 255 in GETs

blueprint = Blueprint("ocsp", __name__)


def _responder():
    return services.current().ocsp


@blueprint.post("/ocsp")
def ocsp_post() -> Response:
    if request.mimetype != OCSP_REQUEST:
        return _http(OcspAnswer.refusal(Status.MALFORMED_REQUEST), 415)
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return _http(OcspAnswer.refusal(Status.MALFORMED_REQUEST), 413)
    body = request.stream.read(MAX_REQUEST_BYTES + 1)  # also bounds a chunked body that gave no length
    if len(body) > MAX_REQUEST_BYTES:
        return _http(OcspAnswer.refusal(Status.MALFORMED_REQUEST), 413)
    return _http(_responder().respond(body))


class Base64Path(PathConverter):
    """The rest of the path, whatever it holds: base64 has "/", often not percent-encoded by clients, and may
    begin with "/" or hold "//" — data, not a path to tidy up (werkzeug's `path` refuses a leading "/")."""

    regex = ".+"
    part_isolating = False  # spans "/" (werkzeug would infer True from a regex without a "/" in it)


blueprint.record_once(lambda state: state.app.url_map.converters.setdefault("base64path", Base64Path))


@blueprint.get("/ocsp/<base64path:encoded>", merge_slashes=False)  # no redirect that would merge "//"
def ocsp_get(encoded: str) -> Response:
    der = _decode(encoded)
    if der is None:
        return _http(OcspAnswer.refusal(Status.MALFORMED_REQUEST))
    return _http(_responder().respond(der))


def _decode(encoded: str) -> bytes | None:
    """Base64 of the DER request, already URL-decoded by the router (RFC 6960 A.1). Padding may be missing."""
    if len(encoded) > MAX_REQUEST_BYTES * 4 // 3 + 4:
        return None
    text = encoded.strip()
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _http(answer: OcspAnswer, status: int = 200) -> Response:
    services.current().ocsp_responses.inc(
        status=answer.certificate_status or _STATUS_NAMES.get(answer.status, "error"))
    response = Response(answer.der, status=status, content_type=OCSP_RESPONSE)
    if not answer.cacheable:
        # A nonce response answers one request; an error may be transient. Neither may be reused.
        response.headers["Cache-Control"] = "no-store"
        return response
    # RFC 5019 §6.2: let HTTP caches keep the same response until its nextUpdate, and no longer.
    now = dt.datetime.now(dt.UTC)
    max_age = max(0, int((answer.next_update - now).total_seconds()))
    response.headers["Cache-Control"] = f"max-age={max_age}, public, no-transform, must-revalidate"
    response.headers["Last-Modified"] = http_date(answer.this_update)
    response.headers["Expires"] = http_date(answer.next_update)
    response.set_etag(hashlib.sha1(answer.der, usedforsecurity=False).hexdigest())  # RFC 5019 §6.2
    return response.make_conditional(request)
