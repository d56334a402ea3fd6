"""The operator JSON API under /ops, authenticated by operator tokens (`Authorization: Bearer rvop_…`).

    POST /ops/events                                   one event or {"events": [...]}: all or nothing (a result says
                                                       `refused` if its event was dead-lettered when applied)
    GET  /ops/certificates/<issuer>/<serial>           status, renewal links, auth↔signing link, history, audit
    POST /ops/certificates/<issuer>/<serial>/<action>  hold | release | revoke, with {"comment", "reason"}
    GET  /ops/stream                                   stream length, lag, pending entries, consumers
    GET  /ops/crl                                      CRL shards: number, this/next update, entries, age
    GET  /ops/audit?count=N[&before=ID]                newest audit entries, or the page older than ID
"""

from __future__ import annotations

import logging
import re
from functools import wraps

from flask import Blueprint, g, jsonify, request

from revocation import services
from revocation.operations.actions import OperationError, lookup, manual_action, submit_events
from wire.json_input import MAX_DEPTH

blueprint = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # fullmatch: "$" would let a final newline through
COUNT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses


def _error(code: str, message: str, status: int, detail=None):
    body = {"error": code, "message": message}
    if detail is not None:
        body["refused"] = detail
    return jsonify(body), status


@blueprint.errorhandler(OperationError)
def _operation_error(error: OperationError):
    log.info("operator request refused", extra={"code": error.code})
    return _error(error.code, error.message, error.status, error.detail)


def operator_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        name = services.current().operators.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            log.warning("operator request without a valid token", extra={"code": "unauthorized"})
            response, status = _error("unauthorized", "An operator token is required (Authorization: Bearer "
                                                      "rvop_…); this one is missing, unknown or disabled.", 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="ops"'  # RFC 6750 §3
            return response, status
        g.actor = f"operator:{name}"
        return view(*args, **kwargs)
    return wrapper


def _json_body() -> object:
    if not request.is_json:
        raise OperationError("unsupported_media_type", "Send JSON (Content-Type: application/json).", 415)
    body = request.get_json(silent=True)  # the app's bounded decoder (wire/json_input.py): never a crash
    if body is None:
        raise OperationError("malformed_json", "The body is not JSON this service accepts: it is invalid, not UTF-8, "
                                               f"holds NaN or Infinity, or nests deeper than {MAX_DEPTH} levels.")
    return body


@blueprint.post("/events")
@operator_required
def post_events():
    body = _json_body()
    documents = body["events"] if isinstance(body, dict) and set(body) == {"events"} else [body]
    results = submit_events(services.current(), documents, g.actor)
    return jsonify(results=results)


@blueprint.get("/certificates/<issuer>/<serial>")
@operator_required
def get_certificate(issuer: str, serial: str):
    return jsonify(lookup(services.current(), issuer, serial))


@blueprint.post("/certificates/<issuer>/<serial>/<action>")
@operator_required
def change_certificate(issuer: str, serial: str, action: str):
    body = _json_body()
    if not isinstance(body, dict) or set(body) - {"comment", "reason"}:
        raise OperationError("invalid_request", "The body takes only 'comment' and 'reason'.")
    return jsonify(manual_action(services.current(), g.actor, issuer, serial, action, body.get("comment"),
                                 body.get("reason")))


@blueprint.get("/stream")
@operator_required
def stream_health():
    return jsonify(services.current().stream.health())


@blueprint.get("/crl")
@operator_required
def crl_status():
    return jsonify(shards=[shard.as_dict() for shard in services.current().crl.status()])


@blueprint.get("/audit")
@operator_required
def audit():
    count = request.args.get("count", "50")
    before = request.args.get("before")
    if not COUNT.fullmatch(count) or not 1 <= int(count) <= 1000:
        raise OperationError("invalid_count", "count is a whole number from 1 to 1000.")
    if before is not None and not _stream_id(before):
        raise OperationError("invalid_before", "before is an audit entry id, as in the 'id' of an entry.")
    return jsonify(entries=services.current().audit.read(int(count), before))


def _stream_id(text: str) -> bool:
    """A Redis stream entry id: two 64-bit unsigned numbers joined by '-'."""
    match = STREAM_ID.fullmatch(text)
    return match is not None and all(int(part) < 1 << 64 for part in match.groups())
