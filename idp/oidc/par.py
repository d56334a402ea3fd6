"""Pushed Authorization Requests (RFC 9126): the authorization request goes to the IdP over the back channel first.

A client POSTs the parameters it would have put in the authorization URL to `/par`, authenticated exactly as at
the token endpoint (its own method: `private_key_jwt` or `client_secret_basic`). The IdP checks them as the
authorization endpoint would — the same Authlib grant with the same rules (PKCE S256, nonce, state, scope,
registered redirect URI) — and answers with a `request_uri` (`urn:ietf:params:oauth:request_uri:` and 256 random
bits) and its lifetime. The browser is then sent to `/authorize?client_id=…&request_uri=…`, which carries nothing
else: no parameter the user or a script in the page could read or change, and nothing a client did not
authenticate.

The `request_uri`:
- is bound to the client that pushed it (another client_id with it is refused as `invalid_request_uri`);
- must be used within `par_ttl` (IDP_PAR_TTL, at most 60 seconds, FAPI 2.0 Security Profile §5.3.2.2);
- is opened, not spent, by the first visit to /authorize: a card login takes minutes (PIN, NFC), and the login
  returns the browser to the same authorization URL, so the opened request lives on for the login's lifetime
  (`login_ttl`) — RFC 9126 §4 allows the reuse a reload needs;
- is spent when the authorization response is sent (a code, or an error back to the redirect URI): after that it
  is unknown, like an expired or made-up one, and refused with `invalid_request_uri` without a redirect.
Only the pushed parameters count; anything else in the authorization URL but `client_id` is ignored (§4).

A client registered with `require_pushed_authorization_requests` (every FAPI 2.0 client), or every client when
IDP_REQUIRE_PAR=1, has an authorization request without `request_uri` refused with `invalid_request` on the IdP's
error page — not at its redirect URI, since no part of such a request was authenticated (§5).

DPoP at the PAR endpoint (RFC 9449 §10.1): a `DPoP` proof sent with the push, or a `dpop_jkt` parameter, binds the
authorization code to that key; both at once must name the same key. The binding is checked at the token endpoint.

Refusals at `/par` are OAuth JSON errors (RFC 9126 §2.3): 400 with `invalid_request` (and the authorization
endpoint's own codes: `invalid_scope`, `invalid_request_uri`…), 401 with `invalid_client`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9101.errors import InvalidRequestUriError
from flask import current_app, g, jsonify
from flask import request as flask_request

from idp import keys
from idp.oidc import dpop
from idp.services import current

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
MAX_PAR_TTL = 60
CLIENT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]
AUTHENTICATION_PARAMETERS = frozenset({"client_assertion", "client_assertion_type", "client_secret"})
MAX_PARAMETERS = 32
MAX_PARAMETER = 2048
EXTENSION = "idp_pushed_requests"  # the app's PushedRequests
JKT = re.compile(r"[A-Za-z0-9_-]{43}")  # a base64url SHA-256 JWK thumbprint (RFC 7638)


class PushedRequests:
    """Pushed requests in Redis, by the digest of their request_uri: {client_id, params, opened}."""

    def __init__(self, redis_client, ttl: int, opened_ttl: int):
        self.redis = redis_client
        self.ttl = ttl
        self.opened_ttl = opened_ttl

    @staticmethod
    def _key(request_uri: str) -> str:
        return keys.pushed_request(hashlib.sha256(request_uri.encode()).hexdigest())

    def push(self, client_id: str, params: dict) -> str:
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        record = {"client_id": client_id, "params": params, "opened": False}
        self.redis.set(self._key(request_uri), json.dumps(record, separators=(",", ":")), ex=self.ttl)
        return request_uri

    def open(self, request_uri) -> dict | None:
        """The record, opened (its life extended to the login's) on first use; None if unknown, spent or expired."""
        if not isinstance(request_uri, str) or not request_uri.startswith(REQUEST_URI_PREFIX) \
                or len(request_uri) > 128:
            return None
        key = self._key(request_uri)
        raw = self.redis.get(key)
        if raw is None:
            return None
        record = json.loads(raw)
        if not record["opened"]:
            record["opened"] = True
            # XX: a request spent between the GET and here stays spent.
            self.redis.set(key, json.dumps(record, separators=(",", ":")), ex=self.opened_ttl, xx=True)
        return record

    def spend(self, request_uri: str) -> None:
        self.redis.delete(self._key(request_uri))


def store() -> PushedRequests:
    return current_app.extensions[EXTENSION]


def requires_par(services, client) -> bool:
    return bool(services.config.require_par or getattr(client, "require_pushed_authorization_requests", False))


class AuthorizationServerWithPAR(AuthorizationServer):
    """Authlib's Flask authorization server, where an authorization request naming a `request_uri` is the pushed
    request's parameters (module docstring), and one that names none is refused for a client that must push."""

    def create_oauth2_request(self, request):
        oauth_request = super().create_oauth2_request(request)
        if flask_request.endpoint == "oidc.authorize":
            params = pushed_parameters()
            if params is not None:
                oauth_request.payload = BasicOAuth2Payload(params)
        return oauth_request

    def create_authorization_response(self, request=None, grant_user=None, grant=None):
        response = super().create_authorization_response(request, grant_user, grant)
        spend_pushed_request()
        return response

    def handle_error_response(self, request, error):
        response = super().handle_error_response(request, error)
        if flask_request.endpoint == "oidc.authorize" and error.redirect_uri:
            spend_pushed_request()
        return response


def pushed_parameters() -> dict | None:
    """At /authorize: the pushed parameters its `request_uri` names (kept in flask.g for the request), None for a
    request without one; OAuth2Error without a redirect URI for a refusal (module docstring)."""
    if "pushed_request" in g:
        return g.pushed_request["params"]
    services, args = current(), flask_request.args
    request_uri, client_id = args.get("request_uri"), args.get("client_id")
    if request_uri is None or not request_uri.startswith(REQUEST_URI_PREFIX):
        # No pushed request named: a request_uri of another kind (a request object by reference, OIDC Core §6.2)
        # is left to AuthorizationRequestRules, which refuses it as request_uri_not_supported.
        client = services.clients.get(client_id or "")
        if client is not None and requires_par(services, client):
            raise InvalidRequestError("This client must push its authorization request to the pushed authorization "
                                      "request endpoint first and send only client_id and request_uri here.")
        return None
    if not client_id:
        raise InvalidRequestError("client_id is required with request_uri.")
    record = store().open(request_uri)
    if record is None or record["client_id"] != client_id:
        raise InvalidRequestUriError(description="The request_uri is unknown, expired or already used: push the "
                                     "authorization request again.")
    g.pushed_request = {"uri": request_uri, "params": record["params"]}
    return record["params"]


def spend_pushed_request() -> None:
    pushed = g.pop("pushed_request", None)
    if pushed is not None:
        store().spend(pushed["uri"])


def push(server: AuthorizationServerWithPAR, checker: dpop.ProofChecker):
    """POST /par: the checks in order, then 201 with the request_uri."""
    oauth_request = server.create_oauth2_request(flask_request)
    try:
        client = server.authenticate_client(oauth_request, CLIENT_AUTH_METHODS, endpoint="par")
        params = check_parameters(flask_request.form, client.client_id)
        proof = None
        if flask_request.headers.getlist(dpop.HEADER):
            proof = checker.check(flask_request.headers.getlist(dpop.HEADER), "POST", "/par")
        check_dpop_jkt(params, proof)
        check_as_authorization_request(server, params)
    except OAuth2Error as error:
        error.redirect_uri = None  # always the JSON answer here, never a redirect
        return server.handle_error_response(oauth_request, error)
    request_uri = store().push(client.client_id, params)
    response = jsonify(request_uri=request_uri, expires_in=store().ttl)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


def check_parameters(form, client_id: str) -> dict:
    """The pushed parameters as a dict: each once, bounded, without the client's credentials, with no
    `request_uri` (§2.1) or request object, and a client_id (if sent) that is the authenticated client's."""
    params = {}
    if len(form) > MAX_PARAMETERS:
        raise InvalidRequestError("Too many parameters.")
    for name in form:
        values = form.getlist(name)
        if len(values) != 1:
            raise InvalidRequestError("Each parameter may appear only once.")
        if len(name) > MAX_PARAMETER or len(values[0]) > MAX_PARAMETER:
            raise InvalidRequestError(f"A parameter is longer than {MAX_PARAMETER} characters.")
        if name not in AUTHENTICATION_PARAMETERS:
            params[name] = values[0]
    if "request_uri" in params:
        raise InvalidRequestError("request_uri must not be pushed: push the authorization parameters themselves.")
    if "request" in params:
        raise InvalidRequestError("Request objects are not supported; push the parameters themselves.")
    if params.setdefault("client_id", client_id) != client_id:
        raise InvalidRequestError("client_id is not the client that authenticated.")
    return params


def check_dpop_jkt(params: dict, proof: dpop.Proof | None) -> None:
    """RFC 9449 §10: the code is bound to the proof's key, or to `dpop_jkt`; both must agree."""
    jkt = params.get("dpop_jkt")
    if jkt is not None and not JKT.fullmatch(jkt):
        raise InvalidRequestError("dpop_jkt must be a base64url SHA-256 JWK thumbprint.")
    if proof is not None:
        if jkt is not None and jkt != proof.jkt:
            raise dpop.invalid_proof("dpop_jkt is not the thumbprint of the DPoP proof's key.")
        params["dpop_jkt"] = proof.jkt


def check_as_authorization_request(server, params: dict) -> None:
    """The authorization endpoint's own validation (Authlib's grant and our rules) on the pushed parameters."""
    oauth_request = OAuth2Request("POST", flask_request.url, headers=flask_request.headers)
    oauth_request.payload = BasicOAuth2Payload(params)
    grant = server.get_authorization_grant(oauth_request)
    grant.validate_authorization_request()
