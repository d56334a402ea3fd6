"""The bridge API (docs/bridge-api.yaml) as a bridge or a phone app meets it: each answer's status and code match
the document, over real HTTP against the running IdP, revocation service and Redis."""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path

import pytest
import requests
import yaml
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from devstack.processes import free_port
from idp.login.bridge_api import STATUS_OF
from idp.login.messages import MESSAGES
from idp.login.verification import ErrorCode
from jpki.profile import CertificateKind
from jpki.signature import login_message
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports.virtual import VirtualTransport
from tests.idp_flow import Browser, bridge_login, query_of
from tests.record_flow import read_record

REDIRECT = "https://rp.example.jp/callback"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rp(idp_service):
    client, secret = idp_service.services.clients.add("Example Shop", [REDIRECT])
    return client, secret


def start(idp_service, rp) -> tuple[Browser, str, str]:
    """Open the RP's authorization URL in a browser; returns the browser, the handle URL and the PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    params = {"response_type": "code", "client_id": rp[0].client_id, "redirect_uri": REDIRECT, "scope": "openid",
              "state": "s", "nonce": secrets.token_urlsafe(16), "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256"}
    browser = Browser(idp_service.url)
    return browser, browser.start(f"{idp_service.url}/authorize?" + requests.compat.urlencode(params)), verifier


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signed_submission(card_path, fetched: dict, origin: str, token_type: str = "card") -> dict:
    client = JpkiClient.connect(VirtualTransport.open(card_path))
    challenge = base64.urlsafe_b64decode(fetched["challenge"] + "==")
    signature = client.sign(CertificateKind.AUTH, login_message(origin, challenge), "1234")
    return {"submit_token": fetched["submit_token"], "token_type": token_type,
            "certificate": b64(client.read_certificate(CertificateKind.AUTH)), "signature": b64(signature)}


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    return path


# --- submission tokens --------------------------------------------------------------------------------------


def test_an_unknown_submit_token_is_unknown_submission(idp_service):
    response = requests.post(f"{idp_service.url}/api/login/submit", timeout=10,
                             json={"submit_token": secrets.token_urlsafe(32), "token_type": "card"})
    assert response.status_code == 404 and response.json()["error"] == "unknown_submission"


def test_a_spent_submit_token_stays_challenge_used(idp_service, rp, card):
    _, handle, _ = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    body = signed_submission(card, fetched, idp_service.url)
    assert requests.post(fetched["submit_url"], json=body, timeout=30).status_code == 200
    again = requests.post(fetched["submit_url"], json=body, timeout=30)
    assert again.status_code == 409 and again.json()["error"] == "challenge_used"


def test_an_unknown_submit_token_leaves_nothing_behind(idp_service):
    before = set(idp_service.services.redis.scan_iter("idp:login:submit:*"))
    requests.post(f"{idp_service.url}/api/login/submit", timeout=10, json={"submit_token": "x" * 43})
    assert set(idp_service.services.redis.scan_iter("idp:login:submit:*")) == before


# --- statuses -----------------------------------------------------------------------------------------------


def test_every_verification_code_has_a_status_and_both_sentences():
    assert set(STATUS_OF) >= {code.value for code in ErrorCode}
    assert all(code in MESSAGES for code in STATUS_OF)


def test_the_openapi_document_lists_each_code_under_its_status():
    responses = yaml.safe_load((ROOT / "docs" / "bridge-api.yaml").read_text())["paths"]["/api/login/submit"]["post"]
    described = {int(status): answer["description"] for status, answer in responses["responses"].items()}
    for code, status in STATUS_OF.items():
        assert re.search(rf"\b{code}\b", described[status]), f"{code} is not documented under {status}"
    assert "Retry-After" in responses["responses"]["503"]["headers"]


@pytest.mark.parametrize("code", ["certificate_revoked", "certificate_on_hold", "certificate_expired",
                                  "certificate_not_yet_valid"])
def test_certificate_states_are_403(code):
    assert STATUS_OF[code] == 403


@pytest.mark.parametrize("code", ["proof_malformed", "certificate_malformed", "not_jpki_certificate",
                                  "signing_certificate_used_for_login", "auth_certificate_used_for_signing",
                                  "key_usage_invalid", "untrusted_issuer", "signature_invalid",
                                  "certificates_not_linked", "signed_attributes_invalid"])
def test_what_the_client_sent_wrong_is_400(code):
    assert STATUS_OF[code] == 400


def test_a_revocation_outage_is_503_with_retry_after(idp_service, rp, card):
    checker = idp_service.services.verifier.revocation_checker
    saved = checker.ocsp_url, checker.crl_base_url
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: the revocation service is down
    checker.ocsp_url, checker.crl_base_url = dead + "/ocsp", dead
    checker._crl_cache.clear()
    try:
        _, handle, _ = start(idp_service, rp)
        fetched = requests.get(handle, timeout=10).json()
        response = requests.post(fetched["submit_url"], json=signed_submission(card, fetched, idp_service.url),
                                 timeout=30)
    finally:
        checker.ocsp_url, checker.crl_base_url = saved
    assert response.status_code == 503 and response.json()["error"] == "revocation_unknown"
    assert int(response.headers["Retry-After"]) > 0
    assert "try again" in response.json()["message"].lower()


def test_deeply_nested_json_is_proof_malformed(idp_service):
    body = '{"submit_token": ' + "[" * 20_000 + "]" * 20_000 + "}"
    response = requests.post(f"{idp_service.url}/api/login/submit", data=body, timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "proof_malformed"


# --- the token type ------------------------------------------------------------------------------------------


def finish_login(idp_service, rp, browser, verifier) -> dict:
    final = browser.finish()
    code = query_of(final.headers["Location"])["code"]
    tokens = requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, rp[1]), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}).json()
    jwks = KeySet.import_key_set(requests.get(f"{idp_service.url}/jwks", timeout=10).json())
    return jwt.decode(tokens["id_token"], jwks).claims


def test_a_smartphone_login_is_told_apart_from_a_card_login(idp_service, rp, make_card):
    phone = make_card(smartphone=True)
    idp_service.register_card(phone)
    browser, handle, verifier = start(idp_service, rp)
    result = bridge_login(handle, phone)
    assert result.returncode == 0, result.stderr
    claims = finish_login(idp_service, rp, browser, verifier)
    assert claims["amr"] == ["hwk", "mfa"] and claims["acr"] == "aal3"


def test_a_card_login_keeps_its_smart_card_methods(idp_service, rp, card):
    browser, handle, verifier = start(idp_service, rp)
    assert bridge_login(handle, card).returncode == 0
    claims = finish_login(idp_service, rp, browser, verifier)
    assert claims["amr"] == ["hwk", "pin", "sc"] and claims["acr"] == "aal3"


def test_an_unknown_token_type_is_proof_malformed(idp_service, rp, card):
    _, handle, _ = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    body = signed_submission(card, fetched, idp_service.url, token_type="juki")
    response = requests.post(fetched["submit_url"], json=body, timeout=30)
    assert response.status_code == 400 and response.json()["error"] == "proof_malformed"


def test_the_login_metric_counts_by_token_type(idp_service, rp, make_card):
    phone = make_card(smartphone=True)
    idp_service.register_card(phone)
    _, handle, _ = start(idp_service, rp)
    assert bridge_login(handle, phone).returncode == 0
    text = requests.get(f"{idp_service.url}/metrics", timeout=10).text
    assert 'mykey_logins_total{result="ok",token_type="smartphone"} 1.0' in text


def test_the_access_record_says_which_token_was_used(idp_service, rp, make_card):
    phone = make_card(smartphone=True)
    idp_service.register_card(phone)
    browser, handle, verifier = start(idp_service, rp)
    assert bridge_login(handle, phone).returncode == 0
    finish_login(idp_service, rp, browser, verifier)
    (entry,) = read_record(idp_service, phone).releases
    assert entry.client_id == rp[0].client_id and entry.token_type == "smartphone"
