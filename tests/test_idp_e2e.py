"""End to end: real RP client libraries complete the code flow against the running IdP, revocation service and
Redis, with the virtual card answering through `python -m nfc_bridge login`."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.idp_flow import Browser, bridge_login, query_of

REDIRECT = "https://rp.example.jp/callback"


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    return path


@pytest.fixture
def jwt_client(idp_service):
    """A relying party authenticating with private_key_jwt, as the Digital Agency's app requires."""
    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "rp-key-1"})
    client, secret = idp_service.services.clients.add("Example Shop", [REDIRECT],
                                                      jwks={"keys": [key.as_dict(private=False)]})
    assert secret is None
    return client, key


def authlib_session(idp_service, client, key) -> OAuth2Session:
    token_endpoint = f"{idp_service.url}/token"
    session = OAuth2Session(client.client_id, key.as_dict(private=True), scope="openid",
                            redirect_uri=REDIRECT, token_endpoint_auth_method="private_key_jwt",
                            code_challenge_method="S256")
    session.register_client_auth_method(PrivateKeyJWT(token_endpoint, alg="RS256"))
    return session


def validate_id_token(idp_service, id_token: str, client_id: str, nonce: str, access_token: str) -> dict:
    jwks = requests.get(f"{idp_service.url}/jwks", timeout=10).json()
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
    claims = CodeIDToken(decoded.claims, decoded.header,
                         options={"iss": {"essential": True, "value": idp_service.url},
                                  "aud": {"essential": True, "value": client_id},
                                  "nonce": {"essential": True}, "at_hash": {"essential": True},
                                  "auth_time": {"essential": True}},
                         params={"nonce": nonce, "client_id": client_id, "access_token": access_token})
    claims.validate()
    return dict(claims)


def login_with_authlib(idp_service, client, key, card, pins="1234\n"):
    session = authlib_session(idp_service, client, key)
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(f"{idp_service.url}/authorize", code_verifier=verifier,
                                                  nonce=nonce)
    browser = Browser(idp_service.url)
    handle_url = browser.start(url)
    result = bridge_login(handle_url, card, pins)
    assert result.returncode == 0, result.stderr
    final = browser.finish()
    assert final.status_code == 302 and final.headers["Location"].startswith(REDIRECT)
    callback = final.headers["Location"]
    params = query_of(callback)
    assert params["state"] == state and params["iss"] == idp_service.url  # RFC 9207
    token = session.fetch_token(f"{idp_service.url}/token", authorization_response=callback, code_verifier=verifier)
    claims = validate_id_token(idp_service, token["id_token"], client.client_id, nonce, token["access_token"])
    return token, claims, result


def test_authlib_client_completes_the_code_flow_with_the_virtual_card(idp_service, jwt_client, card):
    client, key = jwt_client
    token, claims, bridge = login_with_authlib(idp_service, client, key, card)
    assert claims["acr"] == "aal3" and claims["amr"] == ["hwk", "pin", "sc"]
    assert len(claims["sub"]) == 43
    assert "Logging in to: Example Shop" in bridge.stdout and "Check code:" in bridge.stdout
    info = requests.get(f"{idp_service.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"},
                        timeout=10).json()
    assert info == {"sub": claims["sub"]}


def test_oic_client_completes_the_code_flow(idp_service, card):
    from oic import rndstr
    from oic.oic import Client as OicClient
    from oic.oic.message import AuthorizationResponse, RegistrationResponse
    from oic.utils.authn.client import CLIENT_AUTHN_METHOD

    registered, secret = idp_service.services.clients.add("Second RP", ["https://second.example.org/cb"])
    rp = OicClient(client_authn_method=CLIENT_AUTHN_METHOD)
    rp.provider_config(idp_service.url)
    rp.store_registration_info(RegistrationResponse(client_id=registered.client_id, client_secret=secret,
                                                    redirect_uris=["https://second.example.org/cb"]))
    state, nonce = rndstr(), rndstr()
    pkce_args, verifier = rp.add_code_challenge()
    request = rp.construct_AuthorizationRequest(request_args={
        "client_id": registered.client_id, "response_type": "code", "scope": ["openid"], "state": state,
        "nonce": nonce, "redirect_uri": "https://second.example.org/cb", **pkce_args})
    browser = Browser(idp_service.url)
    handle_url = browser.start(request.request(rp.authorization_endpoint))
    assert bridge_login(handle_url, card).returncode == 0
    final = browser.finish()
    response = rp.parse_response(AuthorizationResponse, info=final.headers["Location"].split("?", 1)[1],
                                 sformat="urlencoded")
    tokens = rp.do_access_token_request(state=response["state"], authn_method="client_secret_basic",
                                        request_args={"code": response["code"], "code_verifier": verifier})
    id_token = tokens["id_token"]  # oic verified its signature against the JWKS, and iss, aud, exp
    assert id_token["nonce"] == nonce and id_token["iss"] == idp_service.url
    assert id_token["aud"] == [registered.client_id]


def test_id_token_times_come_from_the_services_clock(idp_service, jwt_client, card):
    """iat and exp follow the IdP's one clock (`IdpServices.clock`), as its sessions and codes do."""
    client, key = jwt_client
    behind = dt.timedelta(minutes=5)  # a clock five minutes slow: the ID token is still valid, and tells
    idp_service.services.clock = lambda: dt.datetime.now(dt.UTC) - behind
    before = (dt.datetime.now(dt.UTC) - behind).timestamp()

    _, claims, _ = login_with_authlib(idp_service, client, key, card)

    after = (dt.datetime.now(dt.UTC) - behind).timestamp()
    assert before - 1 <= claims["iat"] <= after + 1
    assert claims["exp"] - claims["iat"] == int(idp_service.services.config.id_token_ttl.total_seconds())
