"""The transmitter's HTTP surface (SSF 1.0 §7, §8; RFC 8936): metadata, stream management, status, verification,
poll; and the client_credentials grant that gives a receiver its `ssf` access token (streams.py says why).

Every refusal is JSON `{"error": <stable code>, "message": <a sentence>}` with a 4xx status, and echoes nothing
of the request. Codes: `invalid_token` (401: no, unknown or expired Bearer token), `invalid_request` (400),
`stream_not_found` (404: none of this client's, whatever exists for others), `stream_exists` (409).
"""

from __future__ import annotations

import time

from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from flask import Blueprint, jsonify, request

from idp.services import current
from idp.signals.service import current_signals
from idp.signals.streams import POLL, PUSH, SSF_SCOPE, StreamError
from wire.json_input import JSONInputError
from wire.json_input import loads as json_loads

blueprint = Blueprint("signals", __name__)
MAX_EVENTS = 100  # per poll answer


class SsfClientCredentials(ClientCredentialsGrant):
    """client_credentials for the `ssf` scope only, with the token endpoint's own client authentication; every
    registered client may use it (it reaches nothing but the client's own stream)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]

    def validate_token_request(self):
        client = self.authenticate_token_endpoint_client()
        if (self.request.payload.scope or "").split() != [SSF_SCOPE]:
            raise InvalidScopeError("client_credentials gives only the 'ssf' scope: send scope=ssf.")
        self.request.client = client

    def create_token_response(self):
        services = current()
        ttl = int(services.config.access_token_ttl.total_seconds())
        token = self.generate_token(scope=SSF_SCOPE, include_refresh_token=False, expires_in=ttl)
        token["scope"] = SSF_SCOPE  # the registry's allowed scopes are the login's; this token is for `ssf` only
        current_signals().streams.issue_token(self.client.client_id, token["access_token"], ttl)
        return 200, token, self.TOKEN_RESPONSE_HEADER


def _refuse(code: str, message: str, status: int):
    response = jsonify(error=code, message=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _client_id() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return current_signals().streams.client_of_token(value.strip())


def _body() -> dict:
    try:
        body = json_loads(request.get_data(), max_bytes=16 * 1024) if request.get_data() else {}
    except JSONInputError:
        raise StreamError("invalid_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise StreamError("invalid_request", "The body is a JSON object.")
    return body


def _authenticated(view):
    def wrapper(*args, **kwargs):
        client_id = _client_id()
        if client_id is None:
            return _refuse("invalid_token", "Send an access token with the 'ssf' scope (client_credentials grant "
                           "at the token endpoint) as a Bearer token.", 401)
        try:
            return view(client_id, *args, **kwargs)
        except StreamError as error:
            return _refuse(error.code, error.message, error.status)
    wrapper.__name__ = view.__name__
    return wrapper


@blueprint.get("/.well-known/ssf-configuration")
def configuration():
    issuer = current().config.issuer
    return jsonify(spec_version="1_0", issuer=issuer, jwks_uri=f"{issuer}/jwks",
                   delivery_methods_supported=[PUSH, POLL], configuration_endpoint=f"{issuer}/ssf/streams",
                   status_endpoint=f"{issuer}/ssf/status", verification_endpoint=f"{issuer}/ssf/verify",
                   authorization_schemes=[{"spec_urn": "urn:ietf:rfc:6749"}], default_subjects="ALL")


@blueprint.route("/ssf/streams", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
@_authenticated
def streams(client_id: str):
    signals, issuer = current_signals(), current().config.issuer
    store = signals.streams
    if request.method == "GET":
        stream = store.get(client_id)
        wanted = request.args.get("stream_id")
        if wanted is not None:
            return jsonify(store.require(client_id, wanted).as_config(issuer))
        return jsonify([stream.as_config(issuer)] if stream else [])
    if request.method == "DELETE":
        stream = store.delete(client_id, request.args.get("stream_id"))
        signals.outboxes.drop(f"ssf:{stream.client_id}")
        signals.signals.forget_receivers()
        return "", 204
    body = _body()
    if request.method == "POST":
        stream = store.create(client_id, body, current().clock())
        signals.signals.forget_receivers()
        return jsonify(stream.as_config(issuer)), 201
    stream = store.update(client_id, body.get("stream_id"), body, replace=request.method == "PUT")
    signals.signals.forget_receivers()
    return jsonify(stream.as_config(issuer))


@blueprint.route("/ssf/status", methods=["GET", "POST"])
@_authenticated
def status(client_id: str):
    store = current_signals().streams
    if request.method == "GET":
        stream = store.require(client_id, request.args.get("stream_id"))
    else:
        body = _body()
        stream = store.set_status(client_id, body.get("stream_id"), body.get("status"), body.get("reason"))
        current_signals().signals.forget_receivers()
    answer = {"stream_id": stream.stream_id, "status": stream.status}
    if stream.reason:
        answer["reason"] = stream.reason
    return jsonify(answer)


@blueprint.post("/ssf/verify")
@_authenticated
def verify(client_id: str):
    body = _body()
    stream = current_signals().streams.require(client_id, body.get("stream_id"))
    state = body.get("state")
    if state is not None and (not isinstance(state, str) or len(state) > 256):
        raise StreamError("invalid_request", "state is a string of at most 256 characters.")
    current_signals().signals.verification(stream, state)
    return "", 204


@blueprint.post("/ssf/poll/<stream_id>")
@_authenticated
def poll(client_id: str, stream_id: str):
    """RFC 8936 §2.4: acknowledge (`ack`), report errors (`setErrs`), then receive up to `maxEvents` SETs; without
    `returnImmediately`, wait up to SIGNALS_POLL_WAIT_MAX_SECONDS for one."""
    signals = current_signals()
    stream = signals.streams.require(client_id, stream_id)
    if stream.method != POLL:
        raise StreamError("invalid_request", "This stream is delivered by push, not poll.")
    body = _body()
    ack = body.get("ack", [])
    errors = body.get("setErrs", {})
    max_events = body.get("maxEvents", MAX_EVENTS)
    immediately = body.get("returnImmediately", False)
    if not isinstance(ack, list) or not all(isinstance(j, str) for j in ack) or not isinstance(errors, dict) \
            or not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0 \
            or not isinstance(immediately, bool):
        raise StreamError("invalid_request", "ack is a list of jti, setErrs an object by jti, maxEvents a whole "
                          "number, returnImmediately a boolean (RFC 8936 §2.4).")
    codes = {jti: _error_code(error) for jti, error in errors.items()}
    name = f"ssf:{client_id}"
    signals.outboxes.acknowledge(name, set(ack), codes)
    count = min(max_events, MAX_EVENTS)
    entries = signals.outboxes.head(name, count) if count else []
    deadline = time.monotonic() + signals.config.poll_wait_max
    while count and not entries and not immediately and time.monotonic() < deadline:
        signals.outboxes.wait(name, "0-0", int(max(1, min(1000, (deadline - time.monotonic()) * 1000))))
        entries = signals.outboxes.head(name, count)
    more = count > 0 and signals.outboxes.length(name) > len(entries)
    return jsonify(sets={fields["j"]: fields["t"] for _, fields in entries}, moreAvailable=more)


def _error_code(error) -> str:
    err = error.get("err") if isinstance(error, dict) else None
    if not isinstance(err, str) or not err:
        return "rejected"
    return "".join(c for c in err[:64] if c.isalnum() or c in "_-") or "rejected"
