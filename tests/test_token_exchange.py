"""The token endpoint's code exchange on its short road (idp/oidc/provider.py, `CodeExchange`): the client as this
process last read it, the assertion's jti and the code spent by one script that first checks the client's stored
record is still that one. These tests hold the road to the guarantees of the long one, over real HTTP and Redis:
a client changed or removed by another process is seen on the very next exchange, a replayed assertion spends
nothing, an authenticated assertion is spent even when the request fails, a client's rotated `jwks_uri` key works
on first use, and the tokens and the access record of an exchange are stored together."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.keys import CLIENTS
from idp.oidc.clients import ClientRegistry
from idp.oidc.tokens import AuthorizationCode, token_digest
from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.document_server import DocumentServer
from tests.record_flow import read_record

REDIRECT = "https://rp.example.jp/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Exchanges:
    """Codes for one registered card's account, issued through the IdP's own code store (what the authorization
    endpoint does at the end of a login), and token requests for them."""

    def __init__(self, idp_service, card_path):
        idp_service.register_card(card_path)
        self.idp = idp_service
        self.card = card_path
        services = idp_service.services
        serial = parse_certificate(VirtualCard.load(card_path).certificate(CertificateKind.AUTH)).serial
        self.account_id = services.mykey.resolve("auth", serial, services.clock()).account_id
        self.certificate = services.seal_certificate("auth", serial, "card")

    def code(self, client_id: str) -> tuple[str, str]:
        code, verifier = secrets.token_urlsafe(36), secrets.token_urlsafe(48)
        self.idp.services.tokens.save_code(AuthorizationCode(
            code_digest=token_digest(code), client_id=client_id, redirect_uri=REDIRECT, scope="openid",
            nonce=secrets.token_urlsafe(16), code_challenge=_s256(verifier), code_challenge_method="S256",
            account_id=self.account_id, auth_time=int(time.time()), certificate=self.certificate))
        return code, verifier

    def assertion(self, client_id: str, key: RSAKey, jti: str | None = None) -> str:
        now = int(time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": f"{self.idp.url}/token", "iat": now, "exp": now + 60,
                  "jti": jti or secrets.token_urlsafe(16)}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    def post(self, code: str, verifier: str, assertion: str) -> requests.Response:
        return requests.post(f"{self.idp.url}/token", timeout=30, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})

    def exchange(self, client_id: str, key: RSAKey) -> requests.Response:
        code, verifier = self.code(client_id)
        return self.post(code, verifier, self.assertion(client_id, key))


def _key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, private=True, parameters={"kid": kid})


@pytest.fixture
def exchanges(idp_service, make_card):
    return Exchanges(idp_service, make_card())


@pytest.fixture
def elsewhere(redis_client):
    """The client registry as another process (the operator's CLI, another IdP worker) has it: same Redis."""
    return ClientRegistry(redis_client)


def test_an_exchange_issues_tokens_and_records_the_access_with_them(idp_service, exchanges):
    key = _key("rp-1")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    for _ in range(2):  # the second is answered from the client this process keeps
        answer = exchanges.exchange(client.client_id, key)
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        assert {"access_token", "refresh_token", "id_token"} <= tokens.keys()
        userinfo = requests.get(f"{idp_service.url}/userinfo", timeout=10,
                                headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert userinfo.status_code == 200 and userinfo.json()["sub"]
    record = read_record(idp_service, exchanges.card).releases
    assert [entry.client_id for entry in record] == [client.client_id] * 2


def test_a_key_changed_in_the_stored_record_is_used_at_once_and_the_old_one_refused(idp_service, exchanges,
                                                                                 elsewhere, redis_client):
    old, new = _key("rp-old"), _key("rp-new")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [old.as_dict(private=False)]})
    assert exchanges.exchange(client.client_id, old).status_code == 200  # this process now keeps the client
    record = json.loads(redis_client.hget(CLIENTS, client.client_id))
    record["jwks"] = {"keys": [new.as_dict(private=False)]}
    redis_client.hset(CLIENTS, client.client_id, json.dumps(record))  # as any other writer of the record would
    answer = exchanges.exchange(client.client_id, new)
    assert answer.status_code == 200, answer.text
    refused = exchanges.exchange(client.client_id, old)
    assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"


def test_a_client_removed_elsewhere_is_refused_at_once_and_its_code_kept(idp_service, exchanges, elsewhere):
    key = _key("rp-1")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    assert exchanges.exchange(client.client_id, key).status_code == 200
    code, verifier = exchanges.code(client.client_id)
    assert elsewhere.remove(client.client_id)
    refused = exchanges.post(code, verifier, exchanges.assertion(client.client_id, key))
    assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"
    # Nothing was spent: registered again under the same id, the same code still exchanges once.
    idp_service.services.redis.hset(CLIENTS, client.client_id, client.to_json())
    assert exchanges.post(code, verifier, exchanges.assertion(client.client_id, key)).status_code == 200


def test_a_replayed_assertion_is_invalid_client_and_spends_no_code(idp_service, exchanges):
    key = _key("rp-1")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    assertion = exchanges.assertion(client.client_id, key)
    code, verifier = exchanges.code(client.client_id)
    assert exchanges.post(code, verifier, assertion).status_code == 200
    second, second_verifier = exchanges.code(client.client_id)
    replayed = exchanges.post(second, second_verifier, assertion)
    assert replayed.status_code in (400, 401) and replayed.json()["error"] == "invalid_client"
    fresh = exchanges.post(second, second_verifier, exchanges.assertion(client.client_id, key))
    assert fresh.status_code == 200, fresh.text  # the replay left the code unspent


def test_an_authenticated_assertion_is_spent_even_when_the_exchange_fails(idp_service, exchanges):
    key = _key("rp-1")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    assertion = exchanges.assertion(client.client_id, key)
    unknown = exchanges.post("no-such-code", "v" * 50, assertion)
    assert unknown.json()["error"] == "invalid_grant"
    code, verifier = exchanges.code(client.client_id)
    again = exchanges.post(code, verifier, assertion)
    assert again.status_code in (400, 401) and again.json()["error"] == "invalid_client"
    missing = requests.post(f"{idp_service.url}/token", timeout=30, data={  # no code: refused before the script
        "grant_type": "authorization_code", "redirect_uri": REDIRECT, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": (spent := exchanges.assertion(client.client_id, key))})
    assert missing.json()["error"] == "invalid_request"
    assert exchanges.post(code, verifier, spent).json()["error"] == "invalid_client"


def test_a_replayed_code_revokes_the_tokens_issued_from_it(idp_service, exchanges):
    key = _key("rp-1")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    code, verifier = exchanges.code(client.client_id)
    tokens = exchanges.post(code, verifier, exchanges.assertion(client.client_id, key)).json()
    replay = exchanges.post(code, verifier, exchanges.assertion(client.client_id, key))
    assert replay.json()["error"] == "invalid_grant"
    userinfo = requests.get(f"{idp_service.url}/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401


def test_pkce_and_redirect_uri_are_still_checked_on_the_short_road(idp_service, exchanges):
    key = _key("rp-1")
    client, _ = idp_service.services.clients.add("Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    code, _ = exchanges.code(client.client_id)
    wrong = exchanges.post(code, "w" * 50, exchanges.assertion(client.client_id, key))
    assert wrong.json()["error"] == "invalid_grant"
    code, verifier = exchanges.code(client.client_id)
    moved = requests.post(f"{idp_service.url}/token", timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT + "/elsewhere",
        "code_verifier": verifier, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": exchanges.assertion(client.client_id, key)})
    assert moved.json()["error"] == "invalid_grant"


def test_a_key_rotated_in_a_jwks_uri_document_works_on_first_use(idp_service, exchanges):
    old, new = _key("rp-old"), _key("rp-new")
    with DocumentServer() as documents:
        jwks_uri = documents.put("/jwks.json", json.dumps({"keys": [old.as_dict(private=False)]}))
        client, _ = idp_service.services.clients.add("JWKS Shop", [REDIRECT], jwks_uri=jwks_uri)
        assert exchanges.exchange(client.client_id, old).status_code == 200
        assert exchanges.exchange(client.client_id, old).status_code == 200
        assert documents.requests == ["/jwks.json"]  # cached
        documents.put("/jwks.json", json.dumps({"keys": [old.as_dict(private=False), new.as_dict(private=False)]}))
        time.sleep(idp_service.services.clients.jwks_cache.new_kid_seconds)
        answer = exchanges.exchange(client.client_id, new)
        assert answer.status_code == 200, answer.text
        assert documents.requests == ["/jwks.json"] * 2  # fetched again for the kid it lacked
        assert exchanges.exchange(client.client_id, new).status_code == 200
        assert documents.requests == ["/jwks.json"] * 2


def test_made_up_kids_do_not_turn_into_a_flood_of_jwks_uri_fetches(idp_service, exchanges):
    key = _key("rp-1")
    with DocumentServer() as documents:
        jwks_uri = documents.put("/jwks.json", json.dumps({"keys": [key.as_dict(private=False)]}))
        client, _ = idp_service.services.clients.add("JWKS Shop", [REDIRECT], jwks_uri=jwks_uri)
        assert exchanges.exchange(client.client_id, key).status_code == 200
        for stranger in [_key(f"made-up-{n}") for n in range(5)]:
            refused = exchanges.exchange(client.client_id, stranger)
            assert refused.json()["error"] == "invalid_client"
        assert len(documents.requests) <= 2  # at most one more fetch within new_kid_seconds
