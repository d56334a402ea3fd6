"""The OpenID Provider's endpoints: discovery, JWKS, authorize, pushed requests, token, userinfo, revocation,
end-session."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, current_app, g, jsonify, make_response, redirect, render_template, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp.holder.cookies import SESSION_COOKIE, clear_cookie, read_cookie
from idp.holder.pages import start_login
from idp.login.messages import explain, language
from idp.oidc import dpop, par
from idp.oidc.clients import FOUR_FACTS_SCOPES
from idp.oidc.compact import check_compact_jwt
from idp.oidc.provider import (
    ClientChanged,
    CodeExchange,
    PrivateKeyJWT,
    current_checker,
    user_for,
)
from idp.services import current
from idp.signals import sessions as signal_sessions
from idp.signals.service import current_signals
from idp.signing import details as signing_details
from idp.signing import flow as signing_flow

blueprint = Blueprint("oidc", __name__)


def _server():
    return current_app.extensions["idp_server"]


def request_digest(return_to: str) -> str:
    return hashlib.sha256(return_to.encode()).hexdigest()


@blueprint.get("/.well-known/openid-configuration")
def discovery():
    config = current().config
    issuer = config.issuer
    return jsonify(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        userinfo_endpoint=f"{issuer}/userinfo",
        jwks_uri=f"{issuer}/jwks",
        revocation_endpoint=f"{issuer}/revoke",
        end_session_endpoint=f"{issuer}/logout",
        response_types_supported=["code"],
        response_modes_supported=["query"],
        grant_types_supported=["authorization_code", "refresh_token", "client_credentials"],
        subject_types_supported=["pairwise"],
        id_token_signing_alg_values_supported=["RS256", "ES256"],
        token_endpoint_auth_methods_supported=["private_key_jwt", "client_secret_basic"],
        token_endpoint_auth_signing_alg_values_supported=PrivateKeyJWT.ALGORITHMS,
        revocation_endpoint_auth_methods_supported=["private_key_jwt", "client_secret_basic"],
        scopes_supported=["openid", *sorted(FOUR_FACTS_SCOPES), "ssf"],
        claims_supported=["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash",
                          "name", "address", "birthdate", "gender"],
        code_challenge_methods_supported=["S256"],
        acr_values_supported=["aal3"],
        prompt_values_supported=["none", "login", "consent"],
        authorization_response_iss_parameter_supported=True,
        request_parameter_supported=False,
        request_uri_parameter_supported=False,
        claims_parameter_supported=False,
        ui_locales_supported=["ja", "en"],
        backchannel_logout_supported=True,  # Back-Channel Logout 1.0 §2.1 (idp/signals/)
        backchannel_logout_session_supported=True,
        # FAPI 2.0: RFC 9126 §5, RFC 9449 §5.1
        pushed_authorization_request_endpoint=f"{issuer}/par",
        require_pushed_authorization_requests=config.require_par,
        dpop_signing_alg_values_supported=list(dpop.SIGNING_ALGS),
        authorization_details_types_supported=[signing_details.TYPE],  # RFC 9396 §10: documents to sign (idp/signing)
    )


@blueprint.get("/jwks")
def jwks():
    response = jsonify(current().signing_keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.get("/authorize")
def authorize():
    services, server = current(), _server()
    return_to = request.full_path if request.query_string else request.path
    digest = request_digest(return_to)
    session_id = read_cookie(SESSION_COOKIE)
    session = services.sessions.get(session_id)
    client = services.clients.get(request.args.get("client_id", ""))
    user = None
    if session is not None and client is not None:
        user = user_for(services, client, session.account_id, session.auth_time, session.certificate,
                        session.flags.get("facts"))
    try:
        grant = server.get_consent_grant(end_user=user)
        params = grant.request.payload.data  # the query's, or the pushed request's (idp/oidc/par.py)
        prompts = set(params.get("prompt", "").split())
        max_age = _max_age(params.get("max_age"), grant.redirect_uri, params.get("state"))
        scopes = set((grant.request.scope or "").split())
        wants_facts = bool(scopes & FOUR_FACTS_SCOPES)
        if user is not None and not wants_facts:
            user.facts = None
        # Documents to sign (RFC 9396, idp/signing/details.py): always a fresh card interaction for this request.
        signing = signing_details.parse(params.get("authorization_details"), issuer=services.config.issuer,
                                        redirect_uri=grant.redirect_uri, state=params.get("state"))
        # A login made for exactly this request stays "fresh" through the consent page, until a response is issued.
        fresh = session is not None and session.flags.get("login_for") == digest
        too_old = (session is not None and max_age is not None
                   and int(services.clock().timestamp()) - session.auth_time > max_age)
        if user is not None:  # signatures only from the login made for exactly this request
            user.signing = session.flags.get("signing") if fresh and signing is not None else None
        if session is None or (not fresh and ("login" in prompts or too_old or wants_facts or signing is not None)):
            if "none" in prompts:
                raise LoginRequiredError(redirect_uri=grant.redirect_uri)
            return _start_login(grant.client, return_to, sorted(scopes), wants_facts, signing)
        if services.sessions.take_flag(session_id, "deny_for", digest):
            _spend_login(session_id)
            return server.create_authorization_response(grant_user=None, grant=grant)
        consented = services.sessions.take_flag(session_id, "consent_for", digest) is not None
        covered = services.consents.covers(session.account_id, grant.client.client_id, sorted(scopes))
        if not consented and ("consent" in prompts or wants_facts or not covered):
            if "none" in prompts:
                raise ConsentRequiredError(redirect_uri=grant.redirect_uri)
            return _consent_page(grant.client, sorted(scopes), return_to, session_id)
        _spend_login(session_id)  # facts travel on with this one code only
        user.sid = signal_sessions.sid_for(services, session_id, grant.client.client_id)
        response = server.create_authorization_response(grant_user=user, grant=grant)
        signal_sessions.remember_login(services, session_id, grant.client.client_id)
        return response
    except OAuth2Error as error:
        if error.redirect_uri:
            return _with_issuer(server.handle_error_response(request, error))
        return _error_page(error.error, error.description, 400)


def _with_issuer(response):
    """RFC 9207 §2: `iss` in every authorization response, errors included (Authlib adds it to successes)."""
    location = response.headers.get("Location")
    if location and "iss=" not in location.split("?", 1)[-1]:
        separator = "&" if "?" in location else "?"
        response.headers["Location"] = f"{location}{separator}{urlencode({'iss': current().config.issuer})}"
    return response


def _spend_login(session_id: str) -> None:
    for flag in ("login_for", "facts", "signing"):
        current().sessions.take_flag(session_id, flag)


def _max_age(value: str | None, redirect_uri: str, state: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 9:
        raise InvalidRequestError("max_age must be a whole number of seconds.", redirect_uri=redirect_uri,
                                  state=state)
    return int(value)


def _start_login(client, return_to: str, scopes: list[str], wants_facts: bool, signing=None):
    share = [s for s in scopes if s in FOUR_FACTS_SCOPES]
    return start_login(client.client_id, client.name, return_to, share, wants_facts,
                       signing_flow.start_fields(signing))


def _consent_page(client, scopes: list[str], return_to: str, session_id: str):
    token = secrets.token_urlsafe(24)
    current().sessions.set_flags(session_id, consent_token=token, consent_return_to=return_to)
    lang = language()
    return render_template("consent.html", lang=lang, rp_name=client.name, token=token,
                           share=[s for s in scopes if s in FOUR_FACTS_SCOPES])


def _error_page(code: str, description: str | None, status: int):
    lang = language()
    return make_response(render_template("error.html", lang=lang, code=code, message=explain(code, lang)), status)


@blueprint.post("/par")
def pushed_authorization_request():
    """RFC 9126 (idp/oidc/par.py)."""
    return par.push(_server(), current_checker())


@blueprint.post("/token")
def token():
    services = current()
    want_nonce = services.config.dpop_nonce
    defer = CodeExchange.defers_dpop_jti(services, request)
    try:
        g.dpop = dpop.token_request_proof(current_checker(), want_nonce, defer)
    except dpop.DPoPError as error:
        return _server().handle_error_response(None, error)
    if g.dpop is not None and g.dpop.jti_key is not None:
        g.setdefault(CodeExchange.DPOP_JTI, g.dpop.jti_key)
    response = _exchange(services)
    if want_nonce and g.dpop is not None:  # RFC 9449 §8.2: the nonce for the client's next proof
        response.headers[dpop.NONCE_HEADER] = current_checker().nonces.current()
    return response


def _exchange(services):
    try:
        try:
            return _server().create_token_response()
        except ClientChanged:  # the client was changed or removed since this process read it: nothing was spent
            g.pop(CodeExchange.KEY, None)
            g.setdefault(CodeExchange.FRESH, True)
            return _server().create_token_response()
    finally:
        CodeExchange.settle(services)


@blueprint.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    return _server().create_endpoint_response("userinfo")


@blueprint.post("/revoke")
def revoke():
    return _server().create_endpoint_response("revocation")


@blueprint.route("/logout", methods=["GET", "POST"])
def logout():
    """RP-Initiated Logout 1.0: end the IdP session; return to the RP only to a URI it registered."""
    services = current()
    values = request.values
    target = None
    hint, post_logout = values.get("id_token_hint"), values.get("post_logout_redirect_uri")
    if hint and post_logout:
        client_id = _client_of_id_token(hint)
        client = services.clients.get(client_id) if client_id else None
        if client is not None and post_logout in client.post_logout_redirect_uris:
            target = post_logout + ("?" + urlencode({"state": values["state"]}) if values.get("state") else "")
    signal_sessions.session_ended(services, current_signals().signals, read_cookie(SESSION_COOKIE))
    services.sessions.end(read_cookie(SESSION_COOKIE))
    response = redirect(target) if target else make_response(render_template("logged_out.html", lang=language()))
    clear_cookie(response, SESSION_COOKIE)
    return response


def _client_of_id_token(id_token: str) -> str | None:
    """The audience of an ID token we signed (expired ones are fine for a logout hint); None for anything else."""
    try:
        check_compact_jwt(id_token)  # bounded JSON before joserfc reads it (idp/oidc/compact.py)
        keys = KeySet.import_key_set(current().signing_keys.jwks())
        claims = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"]).claims
    except (JoseError, ValueError):
        return None
    if claims.get("iss") != current().config.issuer:
        return None
    audience = claims.get("aud")
    return audience[0] if isinstance(audience, list) and audience else audience
