"""Every refusal of a card login, each with its stable code, against the running IdP and revocation service."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from jpki.devca import DevCA, new_rsa_key
from jpki.profile import CertificateKind
from jpki.signature import login_message
from nfc_bridge.card_file import new_card_state, write_card_file
from nfc_bridge.client import JpkiClient
from nfc_bridge.login import LoginFailed, answer_login, fetch_login
from nfc_bridge.transports.virtual import VirtualTransport
from nfc_bridge.virtual_card import VirtualCard
from revocation.domain.events import parse_event
from tests.idp_flow import Browser, query_of

REDIRECT = "https://rp.example.jp/callback"


@pytest.fixture
def rp(idp_service):
    client, secret = idp_service.services.clients.add("Example Shop", [REDIRECT])
    return client, secret


def authorize_url(idp_service, client_id, **overrides) -> tuple[str, str, str]:
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
              "state": "st-1", "nonce": nonce, "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256", **overrides}
    params = {k: v for k, v in params.items() if v is not None}
    return f"{idp_service.url}/authorize?" + requests.compat.urlencode(params), verifier, nonce


def answer(handle_url: str, card, pin: str = "1234"):
    """The card side in-process (same code as `nfc_bridge login`)."""
    return answer_login(fetch_login(handle_url), lambda: VirtualTransport.open(card),
                        ask_pin=lambda kind, tries: pin, confirm_last_try=lambda: False, say=lambda text: None)


def submit_raw(idp_service, handle_url: str, certificate: bytes, signature: bytes) -> requests.Response:
    fetched = requests.get(handle_url, timeout=10).json()
    body = {"submit_token": fetched["submit_token"], "token_type": "card",
            "certificate": base64.urlsafe_b64encode(certificate).decode().rstrip("="),
            "signature": base64.urlsafe_b64encode(signature).decode().rstrip("=")}
    return requests.post(fetched["submit_url"], json=body, timeout=30)


def card_signature(card_path, message: bytes) -> tuple[bytes, bytes]:
    client = JpkiClient.connect(VirtualTransport.open(card_path))
    return client.read_certificate(CertificateKind.AUTH), client.sign(CertificateKind.AUTH, message, "1234")


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    return path


def start(idp_service, rp) -> tuple[Browser, str]:
    browser = Browser(idp_service.url)
    url, _, _ = authorize_url(idp_service, rp[0].client_id)
    return browser, browser.start(url)


def login_status(browser) -> dict:
    return browser.get("/login/status").json()


# --- the card's proof -----------------------------------------------------------------------------------


def test_a_replayed_signature_is_refused(idp_service, rp, card):
    _, handle = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    challenge = base64.urlsafe_b64decode(fetched["challenge"] + "==")
    certificate, signature = card_signature(card, login_message(idp_service.url, challenge))
    body = {"submit_token": fetched["submit_token"], "token_type": "card",
            "certificate": base64.urlsafe_b64encode(certificate).decode(),
            "signature": base64.urlsafe_b64encode(signature).decode()}
    assert requests.post(fetched["submit_url"], json=body, timeout=30).status_code == 200
    again = requests.post(fetched["submit_url"], json=body, timeout=30)  # the same submission twice
    assert again.status_code == 409 and again.json()["error"] == "challenge_used"
    _, other_handle = start(idp_service, rp)  # the same signature against a new challenge
    replay = submit_raw(idp_service, other_handle, certificate, signature)
    assert replay.json()["error"] == "signature_invalid"


def test_a_signature_bound_to_another_origin_is_refused(idp_service, rp, card):
    browser, handle = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    challenge = base64.urlsafe_b64decode(fetched["challenge"] + "==")
    certificate, signature = card_signature(card, login_message("https://evil.example", challenge))
    body = {"submit_token": fetched["submit_token"], "token_type": "card",
            "certificate": base64.urlsafe_b64encode(certificate).decode(),
            "signature": base64.urlsafe_b64encode(signature).decode()}
    response = requests.post(fetched["submit_url"], json=body, timeout=30)
    assert response.json()["error"] == "signature_invalid"
    assert login_status(browser)["error"] == "signature_invalid"


def test_an_expired_challenge_is_refused(idp_service, rp, card):
    _, handle = start(idp_service, rp)
    logins = idp_service.services.logins
    real_clock = logins.clock
    logins.clock = lambda: real_clock() + dt.timedelta(minutes=5, seconds=1)
    try:
        with pytest.raises(LoginFailed) as info:
            answer(handle, card)
    finally:
        logins.clock = real_clock
    assert info.value.code == "challenge_expired"


def test_a_handle_works_once(idp_service, rp, card):
    _, handle = start(idp_service, rp)
    requests.get(handle, timeout=10)
    second = requests.get(handle, timeout=10)
    assert second.status_code == 404 and second.json()["error"] == "unknown_handle"


def _foreign_card(tmp_path, ca: DevCA):
    path = tmp_path / "foreign.json"
    write_card_file(path, new_card_state(ca, "1234", "ABC123"))
    return path


def test_a_certificate_from_an_untrusted_ca_is_refused(idp_service, rp, tmp_path):
    foreign = _foreign_card(tmp_path, DevCA.generate())
    _, handle = start(idp_service, rp)
    with pytest.raises(LoginFailed) as info:
        answer(handle, foreign)
    assert info.value.code == "untrusted_issuer"


def test_a_signing_certificate_cannot_log_in(idp_service, rp, card):
    _, handle = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    client = JpkiClient.connect(VirtualTransport.open(card))
    client.verify_pin(CertificateKind.SIGNING, "ABC123")
    certificate = client.read_certificate(CertificateKind.SIGNING)
    challenge = base64.urlsafe_b64decode(fetched["challenge"] + "==")
    signature = client.sign(CertificateKind.SIGNING, login_message(idp_service.url, challenge), "ABC123")
    body = {"submit_token": fetched["submit_token"], "token_type": "card",
            "certificate": base64.urlsafe_b64encode(certificate).decode(),
            "signature": base64.urlsafe_b64encode(signature).decode()}
    assert requests.post(fetched["submit_url"], json=body, timeout=30).json()["error"] == \
        "signing_certificate_used_for_login"


def test_an_expired_certificate_is_refused(idp_service, rp, dev_ca, tmp_path):
    key = new_rsa_key()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    certificate = dev_ca.issue_auth(key.public_key(), dt.date(1990, 1, 2), issued_at=past,
                                    not_after=past + dt.timedelta(days=30))
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    _, handle = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    challenge = base64.urlsafe_b64decode(fetched["challenge"] + "==")
    signature = key.sign(login_message(idp_service.url, challenge), padding.PKCS1v15(), hashes.SHA256())
    body = {"submit_token": fetched["submit_token"], "token_type": "card",
            "certificate": base64.urlsafe_b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode(),
            "signature": base64.urlsafe_b64encode(signature).decode()}
    assert requests.post(fetched["submit_url"], json=body, timeout=30).json()["error"] == "certificate_expired"


@pytest.mark.parametrize(("event_type", "code"), [("revocation_requested", "certificate_revoked"),
                                                  ("card_lost", "certificate_on_hold")])
def test_a_revoked_or_held_card_cannot_log_in(idp_service, rp, make_card, event_type, code):
    path = make_card()
    registered = idp_service.register_card(path)
    idp_service.revocation.services.applier.apply(parse_event({
        "event_id": f"ev-{secrets.token_hex(3)}x", "type": event_type, "holder": registered["holder"],
        "occurred_at": "2026-02-01T00:00:00Z", "source": "test", "card_id": registered["card_id"]}))
    browser, handle = start(idp_service, rp)
    with pytest.raises(LoginFailed) as info:
        answer(handle, path)
    assert info.value.code == code
    page = browser.post("/login/continue")
    assert page.status_code == 403 and f'data-code="{code}"' in page.text


def test_the_revocation_service_down_refuses_the_login(idp_service, rp, card):
    checker = idp_service.services.verifier.revocation_checker
    saved = checker.ocsp_url, checker.crl_base_url
    checker.ocsp_url, checker.crl_base_url = "http://127.0.0.1:9/ocsp", "http://127.0.0.1:9"
    checker._crl_cache.clear()
    try:
        _, handle = start(idp_service, rp)
        with pytest.raises(LoginFailed) as info:
            answer(handle, card)
    finally:
        checker.ocsp_url, checker.crl_base_url = saved
    assert info.value.code == "revocation_unknown"


def test_a_wrong_pin_costs_a_try_and_sends_nothing(idp_service, rp, card):
    from nfc_bridge.apdu import WrongPin

    browser, handle = start(idp_service, rp)
    with pytest.raises(WrongPin):
        answer(handle, card, pin="9999")
    assert VirtualCard.load(card).tries_left(CertificateKind.AUTH) == 2
    assert login_status(browser)["state"] == "fetched"  # nothing was submitted


# --- the OAuth parameters -------------------------------------------------------------------------------


def _authorize(idp_service, client_id, **overrides):
    url, _, _ = authorize_url(idp_service, client_id, **overrides)
    return requests.get(url, allow_redirects=False, timeout=10)


@pytest.mark.parametrize("overrides", [
    {"code_challenge": None, "code_challenge_method": None},
    {"code_challenge_method": "plain"},
    {"code_challenge_method": None},
    {"nonce": None},
])
def test_authorization_requests_without_s256_pkce_or_nonce_are_refused(idp_service, rp, overrides):
    response = _authorize(idp_service, rp[0].client_id, **overrides)
    assert response.status_code == 302
    params = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT)
    assert params["error"] == "invalid_request" and params["state"] == "st-1" and params["iss"] == idp_service.url


def test_a_redirect_uri_mismatch_is_not_followed(idp_service, rp):
    response = _authorize(idp_service, rp[0].client_id, redirect_uri="https://rp.example.jp/other")
    assert response.status_code == 400 and "Location" not in response.headers
    assert 'data-code="invalid_request"' in response.text
    missing = _authorize(idp_service, rp[0].client_id, redirect_uri=None)
    assert missing.status_code in (302, 400) and not missing.headers.get("Location", "").startswith("https://")


def test_an_unknown_client_gets_an_error_page(idp_service):
    response = _authorize(idp_service, "rp_nobody")
    assert response.status_code == 400 and 'data-code="invalid_client"' in response.text


def test_prompt_none_without_a_session_says_login_required(idp_service, rp):
    response = _authorize(idp_service, rp[0].client_id, prompt="none")
    assert query_of(response.headers["Location"])["error"] == "login_required"


def _code(idp_service, rp, card, **overrides) -> tuple[str, str]:
    url, verifier, _ = authorize_url(idp_service, rp[0].client_id, **overrides)
    browser = Browser(idp_service.url)
    handle = browser.start(url)
    answer(handle, card)
    final = browser.finish()
    return query_of(final.headers["Location"])["code"], verifier


def _token(idp_service, rp, code: str, verifier: str | None, redirect_uri: str = REDIRECT) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(f"{idp_service.url}/token", data=data, auth=(rp[0].client_id, rp[1]), timeout=10)


def test_pkce_verifier_must_be_present_and_right(idp_service, rp, card):
    code, _ = _code(idp_service, rp, card)
    assert _token(idp_service, rp, code, "x" * 50).json()["error"] == "invalid_grant"
    code, _ = _code(idp_service, rp, card)
    assert _token(idp_service, rp, code, None).json()["error"] in ("invalid_request", "invalid_grant")


def test_a_reused_code_is_refused_and_its_tokens_revoked(idp_service, rp, card):
    code, verifier = _code(idp_service, rp, card)
    first = _token(idp_service, rp, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert requests.get(f"{idp_service.url}/userinfo", headers=bearer, timeout=10).status_code == 200
    second = _token(idp_service, rp, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert requests.get(f"{idp_service.url}/userinfo", headers=bearer, timeout=10).status_code == 401
    refresh = requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, rp[1]), timeout=10,
                            data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def test_the_token_endpoint_needs_the_same_redirect_uri(idp_service, rp, card):
    code, verifier = _code(idp_service, rp, card)
    assert _token(idp_service, rp, code, verifier, "https://rp.example.jp/x").json()["error"] == "invalid_grant"


def test_a_nonce_mismatch_is_caught_by_the_relying_party_library(idp_service, rp, card):
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import InvalidClaimError
    from joserfc.jwk import KeySet

    code, verifier = _code(idp_service, rp, card)
    token = _token(idp_service, rp, code, verifier).json()
    jwks = requests.get(f"{idp_service.url}/jwks", timeout=10).json()
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks))
    claims = CodeIDToken(decoded.claims, decoded.header, options={"nonce": {"essential": True}},
                         params={"nonce": "not-the-one-we-sent", "client_id": rp[0].client_id})
    with pytest.raises(InvalidClaimError):
        claims.validate()


def test_a_revoked_card_ends_its_refresh_tokens_and_sessions(idp_service, rp, make_card):
    path = make_card()
    registered = idp_service.register_card(path)
    code, verifier = _code(idp_service, rp, path)
    tokens = _token(idp_service, rp, code, verifier).json()
    idp_service.revocation.services.applier.apply(parse_event({
        "event_id": "ev-lost-x1", "type": "card_lost", "holder": registered["holder"],
        "occurred_at": "2026-03-01T00:00:00Z", "source": "test", "card_id": registered["card_id"]}))
    refresh = requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, rp[1]), timeout=10,
                            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{idp_service.url}/userinfo", headers=bearer, timeout=10).status_code == 401


def test_refresh_tokens_rotate(idp_service, rp, card):
    code, verifier = _code(idp_service, rp, card)
    first = _token(idp_service, rp, code, verifier).json()
    refreshed = requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, rp[1]), timeout=10,
                              data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}).json()
    assert refreshed["access_token"] != first["access_token"]
    again = requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, rp[1]), timeout=10,
                          data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}).json()
    assert again["error"] == "invalid_grant"


def test_token_revocation_endpoint(idp_service, rp, card):
    code, verifier = _code(idp_service, rp, card)
    tokens = _token(idp_service, rp, code, verifier).json()
    revoked = requests.post(f"{idp_service.url}/revoke", auth=(rp[0].client_id, rp[1]), timeout=10,
                            data={"token": tokens["access_token"]})
    assert revoked.status_code == 200
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{idp_service.url}/userinfo", headers=bearer, timeout=10).status_code == 401


def test_wrong_client_secret_is_invalid_client(idp_service, rp, card):
    code, verifier = _code(idp_service, rp, card)
    response = requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, "wrong"), timeout=10,
                             data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                   "code_verifier": verifier})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("body", [b"", b"{", b'{"submit_token": 5}', b'{"extra": "x"}', b"[]",
                                  b'{"submit_token": "' + b"a" * 20000 + b'"}'])
def test_bad_submissions_get_a_4xx_with_a_code(idp_service, body):
    response = requests.post(f"{idp_service.url}/api/login/submit", data=body, timeout=10,
                             headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and response.json()["error"]


def test_an_unused_session_still_needs_a_fresh_login_for_prompt_login(idp_service, rp, card):
    url, _, _ = authorize_url(idp_service, rp[0].client_id)
    browser = Browser(idp_service.url)
    answer(browser.start(url), card)
    browser.finish()
    again, _, _ = authorize_url(idp_service, rp[0].client_id, prompt="login")
    response = browser.get(again)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    quiet, _, _ = authorize_url(idp_service, rp[0].client_id, prompt="none")
    silent = browser.get(quiet)
    assert "code=" in silent.headers["Location"]  # consent remembered, session alive: no page at all


def test_discovery_and_jwks(idp_service):
    config = requests.get(f"{idp_service.url}/.well-known/openid-configuration", timeout=10).json()
    assert config["issuer"] == idp_service.url
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["subject_types_supported"] == ["pairwise"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert config["authorization_response_iss_parameter_supported"] is True
    keys = requests.get(config["jwks_uri"], timeout=10).json()["keys"]
    assert {k["alg"] for k in keys} == {"RS256", "ES256"} and len({k["kid"] for k in keys}) == len(keys)
    assert all("d" not in k for k in keys)


def test_authlib_session_helper_is_importable():
    assert OAuth2Session  # the RP library the e2e tests use


# --- the authorization request rules (docs/relying-parties.md §3) -------------------------------------


def test_an_authorization_request_without_state_is_refused_with_or_without_a_session(idp_service, rp, card):
    for state in (None, ""):
        response = _authorize(idp_service, rp[0].client_id, state=state)
        assert response.status_code == 302 and response.headers["Location"].startswith(REDIRECT + "?")
        params = query_of(response.headers["Location"])
        assert params["error"] == "invalid_request" and params["iss"] == idp_service.url
        assert "state" not in params and "code" not in params
    browser = Browser(idp_service.url)
    url, _, _ = authorize_url(idp_service, rp[0].client_id)
    answer(browser.start(url), card)
    browser.finish()
    with_session = browser.get(authorize_url(idp_service, rp[0].client_id, state=None)[0])
    params = query_of(with_session.headers["Location"])
    assert params["error"] == "invalid_request" and "code" not in params
    unknown = _authorize(idp_service, "rp_nobody", state=None)
    assert unknown.status_code == 400 and "Location" not in unknown.headers


@pytest.mark.parametrize("scope", ["name", "name address birthdate gender", None])
def test_a_scope_without_openid_is_invalid_scope(idp_service, rp, scope):
    response = _authorize(idp_service, rp[0].client_id, scope=scope)
    assert response.status_code == 302 and response.headers["Location"].startswith(REDIRECT + "?")
    params = query_of(response.headers["Location"])
    assert params["error"] == "invalid_scope" and params["state"] == "st-1" and params["iss"] == idp_service.url


def _deep_jwt(where: str = "payload") -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    deep = b'{"a":' * 2000 + b"1" + b"}" * 2000
    header = deep if where == "header" else b'{"alg":"RS256","typ":"JWT"}'
    payload = deep if where == "payload" else b'{"sub":"x"}'
    return f"{part(header)}.{part(payload)}.{part(b'not a signature')}"


@pytest.mark.parametrize(("parameter", "code"), [("request", "request_not_supported"),
                                                 ("request_uri", "request_uri_not_supported")])
@pytest.mark.parametrize("value", ["deep", "garbage.not.jwt", "https://rp.example.jp/request.jwt"])
def test_request_objects_are_refused_unread(idp_service, rp, parameter, code, value):
    response = _authorize(idp_service, rp[0].client_id, **{parameter: _deep_jwt() if value == "deep" else value})
    assert response.status_code == 302
    params = query_of(response.headers["Location"])
    assert params["error"] == code and params["state"] == "st-1" and params["iss"] == idp_service.url


def test_only_the_query_response_mode_is_served(idp_service, rp):
    for mode in ("fragment", "form_post"):
        params = query_of(_authorize(idp_service, rp[0].client_id, response_mode=mode).headers["Location"])
        assert params["error"] == "invalid_request"


# --- JSON inside JWTs and JWKS from outside: the documented OAuth error, never a 500 ------------------


@pytest.fixture
def jwt_rp(idp_service):
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "rp-1"})
    client, _ = idp_service.services.clients.add("JWT Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    return client, key


def _assertion(idp_service, client_id: str, key, header: dict | None = None) -> str:
    import time

    from joserfc import jwt

    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": f"{idp_service.url}/token", "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(12)}
    return jwt.encode({"alg": "RS256", "kid": "rp-1", **(header or {})}, claims, key)


def _token_with_assertion(idp_service, assertion: str) -> requests.Response:
    return requests.post(f"{idp_service.url}/token", timeout=30, data={
        "grant_type": "authorization_code", "code": "no-such-code", "redirect_uri": REDIRECT,
        "code_verifier": "v" * 50, "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})


@pytest.mark.parametrize("assertion", ["deep-payload", "deep-header", "garbage", "a.b.c", "e30.W10.e30",
                                       "x" * 70_000])
def test_a_malformed_client_assertion_is_invalid_client(idp_service, jwt_rp, assertion):
    value = {"deep-payload": _deep_jwt("payload"), "deep-header": _deep_jwt("header")}.get(assertion, assertion)
    response = _token_with_assertion(idp_service, value)
    assert response.status_code in (400, 401, 413), response.text
    if response.status_code != 413:  # 70 kB is over the IdP's body limit before any decoding
        assert response.json()["error"] == "invalid_client"


def test_a_validly_signed_assertion_with_a_deep_payload_is_invalid_client(idp_service, jwt_rp):
    from joserfc import jws

    client, key = jwt_rp
    deep = b'{"iss":"' + client.client_id.encode() + b'","x":' + b"[" * 1500 + b"]" * 1500 + b"}"
    signed = jws.serialize_compact({"alg": "RS256", "kid": "rp-1"}, deep, key)
    response = _token_with_assertion(idp_service, signed)
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    good = _token_with_assertion(idp_service, _assertion(idp_service, client.client_id, key))
    assert good.json()["error"] == "invalid_grant"  # authenticated; only the code is unknown


@pytest.mark.parametrize(("body", "status"), [("[" * 2000 + "]" * 2000, 200), ("garbage", 200), ("[]", 200),
                                              ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', 200),
                                              ('{"keys": []}', 404), ('{"k": "' + "x" * 70_000 + '"}', 200)])
def test_an_unusable_jwks_uri_is_invalid_client(idp_service, body, status):
    from joserfc.jwk import RSAKey

    from tests.document_server import DocumentServer

    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "rp-1"})
    with DocumentServer() as documents:
        jwks_uri = documents.put("/jwks.json", body, status=status)
        client, _ = idp_service.services.clients.add("JWKS Shop", [REDIRECT], jwks_uri=jwks_uri)
        first = _token_with_assertion(idp_service, _assertion(idp_service, client.client_id, key))
        assert first.status_code in (400, 401) and first.json()["error"] == "invalid_client"
        again = _token_with_assertion(idp_service, _assertion(idp_service, client.client_id, key))
        assert again.json()["error"] == "invalid_client"
        assert documents.requests == ["/jwks.json"]  # a failure is remembered for a while, not fetched again


def test_a_jwks_uri_serves_the_keys_and_is_cached(idp_service):
    import json

    from joserfc.jwk import RSAKey

    from tests.document_server import DocumentServer

    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "rp-1"})
    with DocumentServer() as documents:
        jwks_uri = documents.put("/jwks.json", json.dumps({"keys": [key.as_dict(private=False)]}))
        client, _ = idp_service.services.clients.add("JWKS Shop", [REDIRECT], jwks_uri=jwks_uri)
        for _ in range(2):
            response = _token_with_assertion(idp_service, _assertion(idp_service, client.client_id, key))
            assert response.json()["error"] == "invalid_grant"  # authenticated; the code is unknown
        assert documents.requests == ["/jwks.json"]


@pytest.mark.parametrize("hint", ["deep-payload", "deep-header", "garbage", "a.b.c", "e30.W10.e30"])
def test_a_malformed_id_token_hint_ends_the_session_without_a_redirect(idp_service, hint):
    value = {"deep-payload": _deep_jwt("payload"), "deep-header": _deep_jwt("header")}.get(hint, hint)
    response = requests.get(f"{idp_service.url}/logout", allow_redirects=False, timeout=10, params={
        "id_token_hint": value, "post_logout_redirect_uri": "https://rp.example.jp/bye", "state": "x"})
    assert response.status_code == 200 and "Location" not in response.headers


def test_a_symmetric_key_cannot_stand_for_a_clients_public_keys(idp_service):
    """A JWKS is public: an `oct` key in it would let anyone sign the client's assertions with HS256."""
    import json

    from joserfc import jwt
    from joserfc.jwk import OctKey

    from idp.oidc.clients import ClientRegistrationError
    from tests.document_server import DocumentServer

    secret = OctKey.import_key("published-for-everyone-to-read-0123456789")
    jwks = {"keys": [{**secret.as_dict(), "kid": "rp-1"}]}
    with pytest.raises(ClientRegistrationError):
        idp_service.services.clients.add("Oct Shop", [REDIRECT], jwks=jwks)
    with DocumentServer() as documents:
        client, _ = idp_service.services.clients.add("Oct Shop", [REDIRECT],
                                                     jwks_uri=documents.put("/jwks.json", json.dumps(jwks)))
        now = int(__import__("time").time())
        forged = jwt.encode({"alg": "HS256", "kid": "rp-1"}, {
            "iss": client.client_id, "sub": client.client_id, "aud": f"{idp_service.url}/token", "iat": now,
            "exp": now + 60, "jti": secrets.token_urlsafe(12)}, secret, algorithms=["HS256"])
        response = _token_with_assertion(idp_service, forged)
    assert response.json()["error"] == "invalid_client"


def test_the_jwks_uri_cache_is_bounded_in_entries_and_age():
    import json

    from joserfc.jwk import RSAKey

    from idp.oidc.clients import ClientDocuments, JwksCache
    from tests.document_server import DocumentServer

    now = [0.0]
    cache = JwksCache(ClientDocuments(), entries=2, seconds=300, clock=lambda: now[0])
    jwks = json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=False)]})
    with DocumentServer() as documents:
        uris = [documents.put(f"/{n}.json", jwks) for n in range(3)]
        for uri in uris:
            cache.get(uri)
        assert len(cache) == 2
        cache.get(uris[2])  # still cached
        now[0] = 301.0
        cache.get(uris[2])  # too old: fetched again
    assert documents.requests == ["/0.json", "/1.json", "/2.json", "/2.json"]
