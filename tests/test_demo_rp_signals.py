"""Example Shop's receiver (demo_rp/receiver.py) believes only the IdP's tokens for it, once each: what a relying
party's receiver must check, exercised against the real IdP's keys and a forger's."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from demo_rp.app import create_app
from idp.signals import tokens
from idp.signals.service import EXTENSION

SESSION_REVOKED = tokens.SESSION_REVOKED


@pytest.fixture
def shop(idp_service):
    client, secret = idp_service.services.clients.add("Example Shop", ["http://127.0.0.1:9/callback"])
    app = create_app(idp_service.url, client.client_id, secret, "http://127.0.0.1:9", subscribe=False)
    return app, client


def signed_set(idp_service, audience: str, jti: str, sub: str = "someone", key=None, kid=None) -> str:
    signals = idp_service.server.app.extensions[EXTENSION].signals
    own_key, own_kid, alg = signals._signer()
    if key is not None:  # a forger's RSA key signs as RS256, whatever the IdP's own SETs use
        alg = "RS256"
    return tokens.security_event_token(key or own_key, kid or own_kid, alg, idp_service.url, audience, jti,
                                       int(time.time()), tokens.iss_sub(idp_service.url, sub), SESSION_REVOKED,
                                       tokens.session_revoked(int(time.time()), tokens.INITIATED_BY_POLICY))


def push(app, body: str, authorization: str | None = None, content_type: str = "application/secevent+jwt"):
    receiver = app.extensions["signals_receiver"]
    headers = {"Authorization": authorization or f"Bearer {receiver.push_secret}", "Content-Type": content_type}
    return app.test_client().post("/ssf/events", data=body, headers=headers)


def test_the_shop_takes_a_set_of_the_idp_for_it_once(idp_service, shop):
    app, client = shop
    receiver = app.extensions["signals_receiver"]
    began = time.time() - 1
    assert push(app, signed_set(idp_service, client.client_id, "jti-1", "sub-a")).status_code == 202
    assert receiver.session_over("sub-a", None, began)
    assert not receiver.session_over("sub-b", None, began)
    assert not receiver.session_over("sub-a", None, time.time() + 1)  # a session begun after it stays
    assert push(app, signed_set(idp_service, client.client_id, "jti-1", "sub-a")).status_code == 202  # replay


def test_the_shop_refuses_what_it_must_not_believe(idp_service, shop):
    app, client = shop
    forger = RSAKey.generate_key(2048, private=True, parameters={"kid": "forged"})
    cases = {
        "invalid_key": signed_set(idp_service, client.client_id, "jti-2", key=forger, kid="forged"),
        "invalid_audience": signed_set(idp_service, "rp_someone_else", "jti-3"),
    }
    for err, token in cases.items():
        answer = push(app, token)
        assert answer.status_code == 400 and answer.get_json()["err"] == err, answer.get_json()
    as_logout = jwt.encode({"alg": "RS256", "kid": "forged", "typ": "logout+jwt"}, {"iss": idp_service.url}, forger)
    assert push(app, as_logout).get_json()["err"] == "invalid_key"
    assert push(app, signed_set(idp_service, client.client_id, "j4"), authorization="Bearer wrong").status_code == 401
    assert push(app, signed_set(idp_service, client.client_id, "j5"), content_type="text/plain").status_code == 400
    # A SET is not a logout token, whatever its signature.
    answer = app.test_client().post("/backchannel-logout",
                                    data={"logout_token": signed_set(idp_service, client.client_id, "j6")})
    assert answer.status_code == 400
