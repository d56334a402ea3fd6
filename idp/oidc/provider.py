"""The OpenID Provider on Authlib: what Authlib leaves to the application, and the gaps it leaves open.

Authlib does the protocol. This module supplies storage (Redis codes and tokens), the user (a card login), the
pairwise `sub`, the ID token's keys and claims, and closes what Authlib allows by default but we must not:
- PKCE is required for every client, and only S256 (RFC 9700 §2.1.1; plain is refused);
- `nonce` is required (OIDC Core §3.1.2.1 makes it optional for the code flow; docs/jpki-profile.md §6 requires it);
- a code is consumed atomically, and a replayed code revokes the tokens issued from it (RFC 9700 §4.5);
- `iss` in every authorization response, errors included (RFC 9207);
- client authentication `private_key_jwt` under its registered name (Authlib calls it "client_assertion_jwt");
- the authorization request rules of docs/relying-parties.md §3 that Authlib leaves optional
  (`AuthorizationRequestRules`, below);
- FAPI 2.0: pushed authorization requests (idp/oidc/par.py, the server class), DPoP-bound tokens (idp/oidc/dpop.py:
  the proof is checked by the endpoint, the binding here — codes bound by `dpop_jkt`, tokens by `jkt`, the
  `DPoP` token scheme at userinfo) and the fapi2 client profile's rules (idp/oidc/fapi.py);
- a JWT from outside (a client assertion, an ID token hint) is read only after `check_compact_jwt` found its
  header and payload to be bounded JSON objects: joserfc and Authlib decode them with Python's json, which a few
  kilobytes of `[[[[` turn into a RecursionError — a 500 instead of the documented OAuth error.

The code exchange is the hot path (bench/token.py), and Authlib asks Redis for something at each of its steps:
the client, the assertion's `jti`, the code, then the tokens. On one Redis server (`TokenStore.one_server`) an
authorization_code request authenticated with private_key_jwt takes a shorter road through the same steps
(`CodeExchange`): the client comes from the registry's last read (its record and its parsed keys, no Redis read),
the assertion is verified with Authlib as always, the `jti` is noted rather than written, and one script
(`TokenStore.exchange_code`) checks the stored client record is still the one verified against, records the
`jti` and consumes the code — or, if the record changed, spends nothing and the endpoint answers the request
again from a fresh read (`ClientChanged`). An assertion refused with the kept client (a key it does not have yet)
is judged again on a fresh read before the refusal stands. Every check and every error is Authlib's or ours as
on the long road; only the round trips are fewer. The tokens issued and the access record are stored in one
transaction (`TokenStore.save_tokens`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9101.errors import RequestNotSupportedError, RequestUriNotSupportedError
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint
from flask import current_app, g
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError

from idp import keys
from idp.login.verification import AUTHENTICATION_METHODS
from idp.oidc import dpop, fapi, par
from idp.oidc.clients import FOUR_FACTS_SCOPES, ClientDocumentError
from idp.oidc.compact import check_compact_jwt
from idp.oidc.tokens import (
    CLIENT_CHANGED,
    DPOP_JTI_USED,
    JTI_USED,
    REPLAYED,
    AuthorizationCode,
    Token,
    new_token_value,
    token_digest,
)
from idp.services import current
from idp.signing import flow as signing_flow
from mykey.pairwise import pairwise_subject

log = logging.getLogger(__name__)

FACTS_CONTEXT = "four-facts"  # associated data of every sealed four-facts value


@dataclass
class CardUser:
    """The holder as a relying party's token sees them: a pairwise `sub`, and facts only when signed for."""

    account_id: str
    sub: str
    auth_time: int
    certificate: str  # sealed reference to the certificate the login used
    facts: str | None = None  # sealed
    sid: str | None = None  # the IdP session as this client sees it (Back-Channel Logout §2.1), set at /authorize
    signing: str | None = None  # reference of document signatures made for this very request (idp/signing)

    def get_user_id(self) -> str:
        return self.sub

    @property
    def token_type(self) -> str:
        """"card" or "smartphone": named by the certificate reference, so every way of making a CardUser knows it."""
        return current().token_type_of(self.certificate)

    def __repr__(self) -> str:
        return "CardUser(<redacted>)"


def user_for(services, client, account_id: str, auth_time: int, certificate: str, facts: str | None) -> CardUser:
    sub = pairwise_subject(services.config.subkey("pairwise-sub"), client.sector, account_id)
    return CardUser(account_id, sub, auth_time, certificate, facts)


def user_claims(services, user: CardUser, scope: str) -> UserInfo:
    """`sub` always; each fact only if its scope was granted and the holder signed for it."""
    info = UserInfo(sub=user.sub)
    granted = set((scope or "").split()) & FOUR_FACTS_SCOPES
    if granted and user.facts:
        facts = services.sealer.open(user.facts, FACTS_CONTEXT)
        for scope_name in granted:
            if scope_name in facts:
                info[scope_name] = facts[scope_name]
    return info


class AuthorizationRequestRules:
    """The authorization request rules Authlib leaves optional, checked before its own (an Authlib grant
    extension): each failure goes back to the redirect URI with `state` and `iss`, because by then the client and
    its redirect URI are known good (RFC 6749 §4.1.2.1).

    1. `check_no_request_object` — request_not_supported / request_uri_not_supported: request objects are not
       supported (OIDC Core §6, §3.1.2.6; discovery says so), and one is refused unread rather than ignored, so
       parameters a client signed are never silently replaced by unsigned ones.
    2. `check_openid_scope` — invalid_scope: this is an OpenID Provider only; `scope` must contain `openid`
       (OIDC Core §3.1.2.1), or there would be tokens with no ID token.
    3. `check_state` — invalid_request: `state` is required (docs/relying-parties.md §3; RFC 6749 §10.12 CSRF).
    4. `check_response_mode` — invalid_request: only `query` (discovery's response_modes_supported).
    5. `check_dpop_jkt` — invalid_request: a `dpop_jkt` (RFC 9449 §10) is a JWK thumbprint.
    """

    def __call__(self, grant) -> None:
        grant.register_hook("before_validate_authorization_request_payload", self.check)

    def check(self, grant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        self.check_no_request_object(data)
        self.check_openid_scope(data)
        self.check_state(data)
        self.check_response_mode(data)
        self.check_dpop_jkt(data)

    @staticmethod
    def check_no_request_object(data) -> None:
        if "request" in data:
            raise RequestNotSupportedError("Request objects are not supported; send the parameters in the query.")
        if "request_uri" in data:
            raise RequestUriNotSupportedError("request_uri is not supported; send the parameters in the query.")

    @staticmethod
    def check_openid_scope(data) -> None:
        if "openid" not in (data.get("scope") or "").split():
            raise InvalidScopeError("The scope must contain openid: this is an OpenID Provider only.")

    @staticmethod
    def check_state(data) -> None:
        if not data.get("state"):
            raise InvalidRequestError("state is required: send an unguessable value and check it on the callback.")

    @staticmethod
    def check_response_mode(data) -> None:
        if data.get("response_mode", "query") != "query":
            raise InvalidRequestError("Only response_mode=query is supported.")

    @staticmethod
    def check_dpop_jkt(data) -> None:
        if data.get("dpop_jkt") is not None and not par.JKT.fullmatch(data["dpop_jkt"]):
            raise InvalidRequestError("dpop_jkt must be a base64url SHA-256 JWK thumbprint.")


class S256CodeChallenge(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is accepted; 'plain' is refused.")
        return super().validate_code_challenge(grant, redirect_uri)


class ClientChanged(Exception):
    """The exchange script found the client's record changed since it was read: nothing was spent, and the
    endpoint answers the request again from a fresh read (module docstring)."""


@dataclass
class CodeExchange:
    """The short road of one code exchange (module docstring), kept in `flask.g` for the request: the client's
    record digest the script compares, and the assertion's jti record once the assertion verified."""

    client_id: str
    client_digest: str
    jti_key: str | None = None
    jti_ttl: int = 0

    KEY = "code_exchange"  # its name in flask.g
    FRESH = "code_exchange_fresh"  # set in flask.g to take the long road (after ClientChanged)

    @classmethod
    def query_client(cls, services, client_id):
        """Authlib's query_client for private_key_jwt: on the short road the registry's last read client and a
        CodeExchange in flask.g, else a read of the client's record."""
        if g.get(cls.FRESH) or not services.tokens.one_server or not cls.applies(flask_request):
            return services.clients.get(client_id)
        kept = services.clients.last_read(client_id)
        if kept is None:
            if services.clients.get(client_id) is None:
                return None
            kept = services.clients.last_read(client_id)
        client = kept.client if kept is not None else None
        if client is None or client.token_endpoint_auth_method != PrivateKeyJWT.CLIENT_AUTH_METHOD \
                or not client.check_grant_type("authorization_code"):
            return services.clients.get(client_id)  # the long road, where Authlib refuses it as it always did
        g.setdefault(cls.KEY, cls(client_id, kept.digest))
        return client

    @staticmethod
    def applies(request) -> bool:
        """An authorization_code request at the token endpoint that names a code: nothing between the client's
        authentication and the code's consumption can then fail, so the jti can wait for the script."""
        form = request.form
        return (request.endpoint == "oidc.token" and form.get("grant_type") == "authorization_code"
                and bool(form.get("code")))

    @classmethod
    def pending(cls, client_id: str):
        exchange = g.get(cls.KEY)
        return exchange if exchange is not None and exchange.client_id == client_id else None

    @classmethod
    def settle(cls, services) -> None:
        """After the response: a jti noted but not yet recorded by the script (a request that failed before it)
        is recorded now, so an authenticated assertion and a DPoP proof are spent on every road."""
        exchange = g.pop(cls.KEY, None)
        if exchange is not None and exchange.jti_key:
            services.redis.set(exchange.jti_key, 1, nx=True, ex=exchange.jti_ttl)
        pending = g.pop(cls.DPOP_JTI, None)
        if pending is not None:
            services.redis.set(pending, 1, nx=True, ex=dpop.Proof.JTI_TTL)

    DPOP_JTI = "code_exchange_dpop_jti"  # in flask.g: a verified proof's jti, not yet written (idp/oidc/dpop.py)

    @classmethod
    def defers_dpop_jti(cls, services, request) -> bool:
        """Whether this token request's DPoP jti can wait for the exchange script (or the long road's own write
        in query_authorization_code, or settle): an authorization_code request on one server."""
        return services.tokens.one_server and cls.applies(request)

    @classmethod
    def dpop_jti_for_script(cls):
        """The pending DPoP jti (key, TTL) for the exchange script, which then owns it."""
        pending = g.pop(cls.DPOP_JTI, None)
        return (pending, dpop.Proof.JTI_TTL) if pending is not None else None

    @classmethod
    def write_dpop_jti(cls, services) -> None:
        """The long road: the pending DPoP jti written on its own, before the code is consumed."""
        pending = g.pop(cls.DPOP_JTI, None)
        if pending is not None and not services.redis.set(pending, 1, nx=True, ex=dpop.Proof.JTI_TTL):
            raise dpop.replayed()


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"
    # Discovery's token_endpoint_auth_signing_alg_values_supported. Named for joserfc, whose default list leaves
    # out PS256 (the FAPI 2.0 algorithm); a FAPI client is held to PS256/ES256 in resolve_client_public_key.
    ALGORITHMS = ["RS256", "ES256", "PS256"]

    def __call__(self, query_client, request):
        services = current()

        def query(client_id):
            return CodeExchange.query_client(services, client_id)
        try:
            return super().__call__(query, request)
        except InvalidClientError:
            exchange = g.pop(CodeExchange.KEY, None)
            if exchange is None:
                raise
            # Refused with the client as last read: its keys may have changed since. Judge again on a fresh read.
            services.clients.forget(exchange.client_id)
            g.setdefault(CodeExchange.FRESH, True)
            return super().__call__(query, request)

    def process_assertion_claims(self, assertion, resolve_key):
        """Authlib's, with the algorithms named (ALGORITHMS)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=self.ALGORITHMS)
        except JoseError as exc:
            raise InvalidClientError(description=exc.description) from exc
        self.verify_claims(token.claims)
        return token.claims

    def get_audiences(self):
        issuer = current().config.issuer
        return [issuer, f"{issuer}/token", f"{issuer}/par"]

    def validate_jti(self, claims, jti):
        seen = hashlib.sha256(f"{claims['sub']}:{jti}".encode()).hexdigest()
        key = keys.client_assertion_jti(seen)
        services = current()
        now = services.clock().timestamp()
        ttl = max(60, int(claims.get("exp", now) - now) + 120)
        exchange = CodeExchange.pending(claims["sub"])
        if exchange is not None:  # the exchange script records it, before it consumes the code
            exchange.jti_key, exchange.jti_ttl = key, ttl
            return True
        return bool(services.redis.set(key, 1, nx=True, ex=ttl))

    def extract_assertion(self, assertion):
        try:
            check_compact_jwt(assertion)
        except ValueError:
            raise InvalidClientError(description="The client_assertion is not a well-formed JWT.") from None
        headers, claims = super().extract_assertion(assertion)
        g.assertion_kid = headers.get("kid")  # a kid a client's jwks_uri document lacks has it fetched again
        g.assertion_alg = headers.get("alg")
        return headers, claims

    def resolve_client_public_key(self, client):
        refused = fapi.check_assertion_alg(client, g.get("assertion_alg"))
        if refused:
            raise InvalidClientError(description=refused)
        try:
            return current().clients.public_keys(client, g.get("assertion_kid"))
        except ClientDocumentError as exc:  # the operator's log says why; the caller learns only that it failed
            log.warning("private_key_jwt: no usable keys for client %s: %s", client.client_id, exc)
            raise InvalidClientError(description="The client's public keys could not be read.") from None


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]

    def save_authorization_code(self, code, request):
        services = current()
        user: CardUser = request.user
        data = request.payload.data
        record = AuthorizationCode(
            code_digest=token_digest(code), client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri, scope=request.scope or "", nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"), code_challenge_method=data.get("code_challenge_method"),
            account_id=user.account_id, auth_time=user.auth_time, certificate=user.certificate,
            facts=user.facts, sid=user.sid, dpop_jkt=data.get("dpop_jkt"), signing=user.signing,
        )
        services.tokens.save_code(record)
        if record.nonce:  # a nonce is spent once a code carries it (OIDC Core §15.5.2)
            nonce_key = hashlib.sha256(f"{record.client_id}:{record.nonce}".encode()).hexdigest()
            services.redis.set(keys.spent_nonce(nonce_key), 1,
                               ex=int(services.config.refresh_token_ttl.total_seconds()))

    def query_authorization_code(self, code, client):
        services = current()
        proof = fapi.check_token_proof(client)  # before the code is spent
        exchange = CodeExchange.pending(client.client_id)
        if exchange is not None and exchange.jti_key:
            dpop_jti = CodeExchange.dpop_jti_for_script()
            found = services.tokens.exchange_code(code, client.client_id, exchange.client_digest, exchange.jti_key,
                                                  exchange.jti_ttl, dpop_jti)
            exchange.jti_key = None  # recorded by the script, or found spent, or (client changed) the retry's
            if found is CLIENT_CHANGED:
                if dpop_jti is not None:  # nothing was spent: the retry owns the proof's jti again
                    g.setdefault(CodeExchange.DPOP_JTI, dpop_jti[0])
                raise ClientChanged
            if found is JTI_USED:  # Authlib's own answer to a replayed jti
                if dpop_jti is not None:  # the script stopped before the proof's jti: written after the response
                    g.setdefault(CodeExchange.DPOP_JTI, dpop_jti[0])
                raise InvalidClientError(description="JWT ID is used before.")
            if found is DPOP_JTI_USED:
                raise dpop.replayed()
        else:
            CodeExchange.write_dpop_jti(services)
            found = services.tokens.consume_code(code)
        if found is REPLAYED:
            raise InvalidGrantError("This code was already used; every token issued from it is now revoked.")
        if found is None or found.client_id != client.client_id:
            return None
        if found.dpop_jkt is not None:  # RFC 9449 §10: the code was bound to a key at the authorization request
            if proof is None:
                raise dpop.invalid_proof("This code is bound to a DPoP key: send a proof signed by that key.")
            dpop.check_bound_key(proof, found.dpop_jkt, "authorization code")
        return found

    def delete_authorization_code(self, authorization_code):
        pass  # consumed atomically in query_authorization_code

    def authenticate_user(self, authorization_code: AuthorizationCode):
        services = current()
        if not services.certificate_good(authorization_code.certificate):
            raise InvalidGrantError("The card's certificate is no longer valid.")
        user = user_for(services, self.request.client, authorization_code.account_id, authorization_code.auth_time,
                        authorization_code.certificate, authorization_code.facts)
        self.request.code_digest = authorization_code.code_digest
        return user


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate: each refresh token is used once

    def authenticate_refresh_token(self, refresh_token):
        token = current().tokens.get(refresh_token)
        if token is None or token.kind != "refresh" or token.is_expired():
            return None
        token.extra["value_digest"] = token_digest(refresh_token)
        return token

    def _validate_request_token(self, client):
        token = super()._validate_request_token(client)
        proof = fapi.check_token_proof(client)
        if token.jkt is not None:  # RFC 9449 §5: a bound refresh token is used only with a proof by its key
            if proof is None:
                raise dpop.invalid_proof("This refresh token is bound to a DPoP key: send a proof signed by it.")
            dpop.check_bound_key(proof, token.jkt, "refresh token")
        return token

    def issue_token(self, user, refresh_token):
        """A new refresh token each time, except for FAPI 2.0 clients (idp/oidc/fapi.py: no rotation)."""
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.generate_token(user=user, scope=scope,
                                   include_refresh_token=fapi.rotates_refresh_token(self.request.client))

    def authenticate_user(self, refresh_token: Token):
        services = current()
        if not services.certificate_good(refresh_token.certificate):
            services.tokens.revoke_digest(refresh_token.extra["value_digest"])
            raise InvalidGrantError("The card's certificate is no longer valid; log in with the card again.")
        return CardUser(refresh_token.account_id, refresh_token.sub, 0, refresh_token.certificate, refresh_token.facts)

    def revoke_old_credential(self, refresh_token: Token):
        if fapi.rotates_refresh_token(self.request.client):
            current().tokens.revoke_digest(refresh_token.extra["value_digest"])


class OpenIDCodeExtension(OpenIDCode):
    def __init__(self):
        super().__init__(require_nonce=True)

    def exists_nonce(self, nonce, request):
        key = hashlib.sha256(f"{request.payload.client_id}:{nonce}".encode()).hexdigest()
        return bool(current().redis.exists(keys.spent_nonce(key)))

    def resolve_client_private_key(self, client):
        return current().signing_keys.key_set(client.id_token_signed_response_alg)

    def get_encode_header(self, client):
        alg = client.id_token_signed_response_alg
        return {"alg": alg, "typ": "JWT", "kid": current().signing_keys.current(alg).kid}

    def get_client_claims(self, client):
        services = current()
        now = int(services.clock().timestamp())
        return {"iss": services.config.issuer, "aud": [client.client_id], "iat": now,
                "exp": now + int(services.config.id_token_ttl.total_seconds())}

    def get_authorization_code_claims(self, authorization_code):
        """Authlib's nonce, auth_time, acr and amr from the code; amr (RFC 8176) for the token the login used."""
        claims = super().get_authorization_code_claims(authorization_code)
        claims["amr"] = list(AUTHENTICATION_METHODS[current().token_type_of(authorization_code.certificate)])
        if authorization_code.sid:
            claims["sid"] = authorization_code.sid
        return claims

    def generate_user_info(self, user: CardUser, scope):
        return user_claims(current(), user, scope)


class Issuer(IssuerParameter):
    def get_issuer(self) -> str:
        return current().config.issuer


class TokenRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]

    def query_token(self, token_string, token_type_hint):
        token = current().tokens.get(token_string)
        if token is not None:
            token.extra["value"] = token_string
        return token

    def revoke_token(self, token, request):
        current().tokens.revoke(token.extra["value"])


class CardTokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string):
        services = current()
        token = services.tokens.get(token_string)
        if token is None or token.kind != "access":
            return None
        if token.jkt is not None:  # RFC 9449 §7.2: a bound token is never accepted as a bearer token
            raise dpop.invalid_token("This access token is DPoP-bound: send it with the DPoP scheme and a proof.")
        return self.usable(services, token, token_string)

    @staticmethod
    def usable(services, token: Token, token_string: str) -> Token | None:
        if not services.certificate_good(token.certificate):
            services.tokens.revoke(token_string)
            return None
        token._client = services.clients.get(token.client_id)
        return token


class DPoPTokenValidator(CardTokenValidator):
    """`Authorization: DPoP <token>` (RFC 9449 §7.1): a bound token, with a proof for this request by its key
    whose `ath` is the token's hash. Refusals are 401 with a `WWW-Authenticate: DPoP` challenge."""

    TOKEN_TYPE = "dpop"  # noqa: S105 - the Authorization scheme, lower case as Authlib looks it up

    def authenticate_token(self, token_string):
        services = current()
        token = services.tokens.get(token_string)
        if token is None or token.kind != "access" or token.is_expired():
            raise dpop.invalid_token("The access token is unknown, expired or revoked.")
        proof = current_checker().check(flask_request.headers.getlist(dpop.HEADER), flask_request.method,
                                        flask_request.path, access_token=token_string, resource=True)
        if token.jkt is None:
            raise dpop.invalid_token("This access token is not DPoP-bound: send it with the Bearer scheme.")
        dpop.check_bound_key(proof, token.jkt, "access token", resource=True)
        usable = self.usable(services, token, token_string)
        if usable is not None and fapi.is_fapi(usable.get_client()) and proof.alg not in dpop.FAPI_SIGNING_ALGS:
            raise dpop.invalid_proof("A FAPI 2.0 client signs its DPoP proofs with ES256, PS256 or Ed25519.",
                                     resource=True)
        return usable


def current_checker() -> dpop.ProofChecker:
    return current_app.extensions[dpop.EXTENSION]


class UserInfoFromCard(UserInfoEndpoint):
    def get_issuer(self):
        return current().config.issuer

    def generate_user_info(self, user: Token, scope):
        services = current()
        card_user = CardUser(user.account_id, user.sub, 0, user.certificate, user.facts)
        return user_claims(services, card_user, scope)

    def resolve_private_key(self):
        return current().signing_keys.key_set("RS256")


def save_token(token: dict, request) -> None:
    """Authlib's save_token hook: one Redis record per access and refresh token, linked to their code, and the
    release in the holder's sealed access record (mykey/record.py, which reads the holder's key first), in one
    round trip (`TokenStore.save_tokens`)."""
    services = current()
    user: CardUser = request.user
    facts = user.facts
    now = services.clock()
    common = dict(client_id=request.client.client_id, scope=token.get("scope", ""), account_id=user.account_id,
                  sub=user.sub, certificate=user.certificate, issued_at=int(now.timestamp()),
                  code_digest=getattr(request, "code_digest", None), facts=facts)
    proof = g.get("dpop")  # verified by the token endpoint (idp/oidc/dpop.py); the tokens are bound to its key
    jkt = proof.jkt if proof is not None else None
    if jkt is not None:
        token["token_type"] = dpop.TOKEN_TYPE  # RFC 9449 §5: the response names the binding
    issued = [(token["access_token"], Token(expires_in=token["expires_in"], kind="access", jkt=jkt, **common))]
    if token.get("refresh_token"):
        ttl = int(services.config.refresh_token_ttl.total_seconds())
        refresh_jkt = jkt if fapi.binds_refresh_token(request.client) else None
        issued.append((token["refresh_token"], Token(expires_in=ttl, kind="refresh", jkt=refresh_jkt, **common)))
    claims, token_type = sorted(set(common["scope"].split())), user.token_type
    # Document signatures made for this code go in the token response, once (idp/signing/package.py); the holder's
    # sealed access record keeps, in this release's entry, what was signed (labels and fingerprints).
    signed = signing_flow.release(services, getattr(getattr(request, "authorization_code", None), "signing", None),
                                  request.client.client_id)
    if signed is not None:
        token["authorization_details"] = [signed]
    certificate, documents = services.certificate_digest(user.certificate), signing_flow.documents(signed)
    services.tokens.save_tokens(issued, also=lambda pipe: services.access_record.record(
        user.account_id, certificate, request.client.client_id, claims, now, token_type=token_type,
        documents=documents, pipe=pipe))


def build_authorization_server(app, services) -> tuple[par.AuthorizationServerWithPAR, ResourceProtector]:
    app.config.update(
        OAUTH2_ACCESS_TOKEN_GENERATOR=new_token_value,
        OAUTH2_REFRESH_TOKEN_GENERATOR=new_token_value,
        OAUTH2_TOKEN_EXPIRES_IN={
            "authorization_code": int(services.config.access_token_ttl.total_seconds()),
            "refresh_token": int(services.config.access_token_ttl.total_seconds()),
        },
        OAUTH2_SCOPES_SUPPORTED=["openid", *sorted(FOUR_FACTS_SCOPES)],
    )
    server = par.AuthorizationServerWithPAR(app, query_client=services.clients.get, save_token=save_token)
    config = services.config
    app.extensions[par.EXTENSION] = par.PushedRequests(services.redis, config.par_ttl,
                                                       int(config.login_ttl.total_seconds()) + 60)
    def clock():  # services.clock, looked up on each call
        return services.clock()
    app.extensions[dpop.EXTENSION] = dpop.ProofChecker(config.issuer, services.redis, clock,
                                                       dpop.Nonces(config.subkey("dpop-nonce"), clock))
    server.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT())
    server.register_grant(CodeGrant, [AuthorizationRequestRules(), S256CodeChallenge(required=True),
                                      OpenIDCodeExtension()])
    server.register_grant(RefreshGrant)
    server.register_extension(Issuer())
    server.register_endpoint(TokenRevocation)
    protector = ResourceProtector()
    protector.register_token_validator(CardTokenValidator())
    protector.register_token_validator(DPoPTokenValidator())
    server.register_endpoint(UserInfoFromCard(resource_protector=protector))
    return server, protector
