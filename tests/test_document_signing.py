"""Signing documents with the card's signing key at a relying party's request (idp/signing), end to end: the real
IdP and revocation service over HTTP, the virtual card through the real bridge, and every refusal by its code."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from asn1crypto import cms
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.x509 import ocsp

from jpki.cades import signed_attributes, to_be_signed
from jpki.profile import CertificateKind
from jpki.signature import digest_fingerprint, history_message
from nfc_bridge.login import LoginFailed, answer_login, fetch_login
from nfc_bridge.transports.virtual import VirtualTransport
from nfc_bridge.virtual_card import VirtualCard
from revocation.domain.events import parse_event
from tests.conftest import SIGN_PIN
from tests.idp_flow import Browser, bridge_login, query_of
from tests.log_registry import register_sensitive
from tests.record_flow import account_browser, open_record
from tests.test_idp_privacy import stored_values

REDIRECT = "https://rp.example.jp/callback"
SHA256 = "2.16.840.1.101.3.4.2.1"


@pytest.fixture
def rp(idp_service):
    return idp_service.services.clients.add("Example Shop", [REDIRECT])


def details(*documents: tuple[str, bytes], **extra) -> str:
    """The parameter; each label and digest is registered as never to appear in a log (tests/test_zz_log_privacy)."""
    for label, digest in documents:
        register_sensitive(label, base64.b64encode(digest).decode(), digest.hex())
    return json.dumps([{"type": "credential", "hashAlgorithmOID": SHA256,
                        "documentDigests": [{"hash": base64.b64encode(d).decode(), "label": label}
                                            for label, d in documents], **extra}])


def authorize_url(idp_service, client_id, authorization_details: str | None) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
              "state": "st-1", "nonce": secrets.token_urlsafe(16),
              "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
    if authorization_details is not None:
        params["authorization_details"] = authorization_details
    return f"{idp_service.url}/authorize?" + requests.compat.urlencode(params), verifier


def token(idp_service, rp, code: str, verifier: str) -> requests.Response:
    return requests.post(f"{idp_service.url}/token", auth=(rp[0].client_id, rp[1]), timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier})


def answer(handle_url: str, card, approve: bool = True, sign_pin: str = SIGN_PIN):
    pins = {CertificateKind.AUTH: "1234", CertificateKind.SIGNING: sign_pin}
    return answer_login(fetch_login(handle_url), lambda: VirtualTransport.open(card),
                        ask_pin=lambda kind, tries: pins[kind], confirm_last_try=lambda: False,
                        say=lambda text: None, approve_signing=lambda: approve)


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    return path


DOCUMENTS = (("Sales contract", hashlib.sha256(b"contract").digest()),
             ("Privacy notice", hashlib.sha256(b"notice").digest()))


def test_discovery_advertises_the_credential_type(idp_service):
    found = requests.get(f"{idp_service.url}/.well-known/openid-configuration", timeout=10).json()
    assert found["authorization_details_types_supported"] == ["credential"]


def test_documents_are_signed_through_the_bridge_and_returned_with_their_evidence(idp_service, rp, card):
    url, verifier = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    browser = Browser(idp_service.url)
    handle = browser.start(url)
    page = browser.get("/login").text
    assert "Sales contract" in page and "Privacy notice" in page
    assert "date of birth" in page or "生年月日" in page
    fetched = fetch_login(handle)  # the bridge's view (spends the handle)
    assert [d.label for d in fetched.documents] == ["Sales contract", "Privacy notice"]
    # A fresh login for the real run: the handle above is spent.
    handle = browser.start(url)
    run = bridge_login(handle, card, pins=f"1234\n{SIGN_PIN}\n", extra=["--approve-signing"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Sales contract" in run.stdout and "date of birth" in run.stdout
    final = browser.finish()
    code = query_of(final.headers["Location"])["code"]
    answer_ = token(idp_service, rp, code, verifier)
    assert answer_.status_code == 200, answer_.text
    (element,) = answer_.json()["authorization_details"]
    assert element["type"] == "credential" and element["hashAlgorithmOID"] == SHA256
    certificate = x509.load_der_x509_certificate(base64.b64decode(element["certificates"][0]))
    root = x509.load_der_x509_certificate(base64.b64decode(element["certificates"][1]))
    certificate.verify_directly_issued_by(root)
    certificate_der = base64.b64decode(element["certificates"][0])
    for (label, digest), entry in zip(DOCUMENTS, element["documentDigests"], strict=True):
        assert entry["label"] == label and base64.b64decode(entry["hash"]) == digest
        # The signature is over the CMS signed attributes the bridge built around the digest (jpki/cades.py),
        # read here with asn1crypto: content-type id-data, the digest, and the ESSCertIDv2 of this certificate.
        attributes_der = base64.b64decode(entry["signedAttributes"])
        attributes = {a["type"].native: a["values"][0] for a in cms.CMSAttributes.load(attributes_der)}
        assert set(attributes) == {"content_type", "message_digest", "signing_certificate_v2"}
        assert attributes["content_type"].native == "data" and attributes["message_digest"].native == digest
        (cert_id,) = attributes["signing_certificate_v2"]["certs"]
        assert cert_id["cert_hash"].native == hashlib.sha256(certificate_der).digest()
        assert cert_id["issuer_serial"]["serial_number"].native == certificate.serial_number
        certificate.public_key().verify(base64.b64decode(entry["signature"]), hashlib.sha256(attributes_der).digest(),
                                        padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    auth = x509.load_der_x509_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH))
    assert auth.public_key().public_numbers() != certificate.public_key().public_numbers()  # the signing key signed
    response = ocsp.load_der_ocsp_response(base64.b64decode(element["ocspResponse"]))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == certificate.serial_number
    # Once: the code is spent and the signatures are no longer kept.
    assert not list(idp_service.services.redis.scan_iter("idp:signing:package:*"))
    # The holder's record of it lives in the sealed access record (mykey/record.py): no label or fingerprint is
    # readable in any lasting key (the login transaction holds the request for its few minutes), and the account
    # page shows them only in the view the card opened, in Japanese and English.
    redis = idp_service.services.redis
    fingerprints = [digest_fingerprint(digest) for _, digest in DOCUMENTS]
    readable = [key for key, blobs in stored_values(redis).items() for blob in [key, *blobs]
                if any(text.encode() in blob for text in [*fingerprints, *(label for label, _ in DOCUMENTS)])]
    assert all(0 < redis.ttl(key) <= idp_service.services.config.login_ttl.total_seconds() + 30 for key in readable)
    holder = account_browser(idp_service, card)
    closed = holder.get("/account?lang=en").text
    assert 'id="signed-documents"' not in closed and "Sales contract" not in closed
    for lang, heading in (("en", "Documents you signed"), ("ja", "署名した文書")):
        opened, _ = open_record(holder, card, lang=lang)
        record = opened[opened.index('id="signed-heading"'):]
        assert heading in record and "Example Shop" in record
        assert "Sales contract" in record and "Privacy notice" in record
        assert all(fp in record for fp in fingerprints)
        assert 'id="signed-documents"' not in holder.get(f"/account?lang={lang}").text  # one view: closed again


def test_a_pushed_authorization_request_can_ask_for_signatures(idp_service, rp, card):
    # PAR (idp/oidc/par.py): authorization_details is read from the pushed parameters like the rest.
    url, verifier = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    pushed = requests.post(f"{idp_service.url}/par", data=dict(parse_qsl(urlsplit(url).query)),
                           auth=(rp[0].client_id, rp[1]), timeout=30)
    assert pushed.status_code == 201, pushed.text
    browser = Browser(idp_service.url)
    handle = browser.start(f"{idp_service.url}/authorize?" + urlencode(
        {"client_id": rp[0].client_id, "request_uri": pushed.json()["request_uri"]}))
    assert "Sales contract" in browser.get("/login").text
    run = bridge_login(handle, card, pins=f"1234\n{SIGN_PIN}\n", extra=["--approve-signing"])
    assert run.returncode == 0, run.stdout + run.stderr
    code = query_of(browser.finish().headers["Location"])["code"]
    answer_ = token(idp_service, rp, code, verifier)
    assert answer_.status_code == 200, answer_.text
    (element,) = answer_.json()["authorization_details"]
    assert [entry["label"] for entry in element["documentDigests"]] == [label for label, _ in DOCUMENTS]


def test_the_bridge_refuses_a_document_whose_digest_is_the_history_message(idp_service, rp, card):
    # Signed with the signing key it would open nothing (the record's key comes from the auth key's signature,
    # jpki/signature.py); the bridge refuses it anyway, before the card is asked anything.
    bait = hashlib.sha256(history_message(idp_service.services.config.origin)).digest()
    url, _ = authorize_url(idp_service, rp[0].client_id, details(("Contract", bait)))
    browser = Browser(idp_service.url)
    run = bridge_login(browser.start(url), card, pins=f"1234\n{SIGN_PIN}\n", extra=["--approve-signing"])
    assert run.returncode == 1 and "history_signature_refused" in run.stderr
    assert "Signing" not in run.stdout and "Waiting for the card" not in run.stdout


@pytest.mark.parametrize(("value", "why"), [
    ("not json", "not valid JSON"),
    (json.dumps([{"type": "payment_initiation"}]), "credential"),
    (details(("A", b"short")), "32 bytes"),
    (details(*[(f"D{i}", hashlib.sha256(bytes([i])).digest()) for i in range(11)]), "1 to 10"),
    (json.dumps([{"type": "credential", "hashAlgorithmOID": "1.3.14.3.2.26",
                  "documentDigests": [{"hash": base64.b64encode(b"x" * 20).decode(), "label": "A"}]}]), "SHA-256"),
    (details(("<script>", hashlib.sha256(b"a").digest())), "angle brackets"),
    (details(("A", hashlib.sha256(b"a").digest()), ("B", hashlib.sha256(b"a").digest())), "only once"),
    (details(("A", hashlib.sha256(b"a").digest()), extra_field=1), "does not support"),
])
def test_bad_authorization_details_are_refused_to_the_redirect_uri(idp_service, rp, value, why):
    url, _ = authorize_url(idp_service, rp[0].client_id, value)
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_authorization_details" and query["state"] == "st-1"
    assert why in query["error_description"]


def test_the_auth_certificate_cannot_sign_documents(idp_service, rp, card):
    browser = Browser(idp_service.url)
    url, _ = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    fetched = requests.get(browser.start(url), timeout=10).json()
    from nfc_bridge.client import JpkiClient

    client = JpkiClient.connect(VirtualTransport.open(card))
    auth_cert = client.read_certificate(CertificateKind.AUTH)
    login = client.sign(CertificateKind.AUTH, _login_message(idp_service, fetched), "1234")
    attributes = [signed_attributes(d, auth_cert) for _, d in DOCUMENTS]
    signatures = [client.sign_digest(CertificateKind.AUTH, to_be_signed(a), "1234") for a in attributes]
    b64 = lambda data: base64.urlsafe_b64encode(data).decode().rstrip("=")  # noqa: E731
    body = {"submit_token": fetched["submit_token"], "token_type": "card", "certificate": b64(auth_cert),
            "signature": b64(login), "signing_certificate": b64(auth_cert),
            "document_signatures": [b64(s) for s in signatures],
            "document_signed_attributes": [b64(a) for a in attributes]}
    refused = requests.post(fetched["submit_url"], json=body, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"] == "auth_certificate_used_for_signing"


def _submit(idp_service, rp, card, tamper, swap_signatures: bool = False) -> requests.Response:
    """A submission made by hand with the card's signing key: `tamper(signing_certificate, attributes)` returns the
    signed attributes to sign and send, one per document (the bridge would build them with jpki/cades.py)."""
    browser = Browser(idp_service.url)
    url, _ = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    fetched = requests.get(browser.start(url), timeout=10).json()
    from nfc_bridge.client import JpkiClient

    client = JpkiClient.connect(VirtualTransport.open(card))
    login = client.sign(CertificateKind.AUTH, _login_message(idp_service, fetched), "1234")
    client.verify_pin(CertificateKind.SIGNING, SIGN_PIN)
    signing_cert = client.read_certificate(CertificateKind.SIGNING)
    attributes, signatures = tamper(signing_cert, [signed_attributes(d, signing_cert) for _, d in DOCUMENTS]), []
    for attributes_der in attributes:
        signatures.append(client.sign_digest(CertificateKind.SIGNING, to_be_signed(attributes_der), ""))
    signatures = signatures[::-1] if swap_signatures else signatures
    b64 = lambda data: base64.urlsafe_b64encode(data).decode().rstrip("=")  # noqa: E731
    body = {"submit_token": fetched["submit_token"], "token_type": "card",
            "certificate": b64(client.read_certificate(CertificateKind.AUTH)), "signature": b64(login),
            "signing_certificate": b64(signing_cert), "document_signatures": [b64(s) for s in signatures],
            "document_signed_attributes": [b64(a) for a in attributes]}
    return requests.post(fetched["submit_url"], json=body, timeout=30)


def _with(attributes_der: bytes, **changes) -> bytes:
    """The set with attributes replaced (name → value) or added (name → value, or an OID → raw value)."""
    found = [a for a in cms.CMSAttributes.load(attributes_der) if a["type"].native not in changes]
    for name, value in changes.items():
        if value is not None:
            found.append(cms.CMSAttribute({"type": name, "values": [value]}))
    return cms.CMSAttributes(found).dump(force=True)


@pytest.mark.parametrize(("fault", "code"), [
    ("swapped", "signature_invalid"),  # each signature is over the other document's attributes
    ("attributes_swapped", "signed_attributes_invalid"),  # each set names the other document's digest
    ("missing_one", "proof_malformed"),
    ("not_der", "proof_malformed"),
    ("other_digest", "signed_attributes_invalid"),
    ("no_certificate_id", "signed_attributes_invalid"),
    ("signing_time_added", "signed_attributes_invalid"),
    ("content_type_not_data", "signed_attributes_invalid"),
    ("another_certificate", "signed_attributes_invalid"),
])
def test_signed_attributes_that_are_not_the_agreed_set_are_refused(idp_service, rp, card, make_card, fault, code):
    import datetime as dt

    other = VirtualCard.load(make_card()).certificate(CertificateKind.SIGNING)
    signing_time = cms.Time(name="utc_time", value=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    def tamper(signing_cert: bytes, attributes: list[bytes]) -> list[bytes]:
        first = attributes[0]
        return {
            "swapped": attributes,
            "attributes_swapped": attributes[::-1],
            "missing_one": attributes[:1],
            "not_der": [first + b"\x00", attributes[1]],
            "other_digest": [_with(first, message_digest=hashlib.sha256(b"other").digest()), attributes[1]],
            "no_certificate_id": [_with(first, signing_certificate_v2=None), attributes[1]],
            "signing_time_added": [_with(first, signing_time=signing_time), attributes[1]],
            "content_type_not_data": [_with(first, content_type="signed_data"), attributes[1]],
            "another_certificate": [signed_attributes(DOCUMENTS[0][1], other), attributes[1]],
        }[fault]
    refused = _submit(idp_service, rp, card, tamper, swap_signatures=fault == "swapped")
    assert refused.status_code == 400 and refused.json()["error"] == code, refused.text
    assert not list(idp_service.services.redis.scan_iter("idp:signing:package:*"))


def test_the_bridge_checks_the_digest_the_card_signs_against_the_history_message(idp_service, rp, card,
                                                                                monkeypatch):
    # The digest that reaches the card is the attributes' (jpki/cades.py), not the website's: the history check
    # must look at it. No real SHA-256 preimage is at hand, so the check is told that this one digest is the bait.
    import nfc_bridge.login as bridge

    asked, seen = {d for _, d in DOCUMENTS}, []

    def is_history_digest(origin, digest):
        seen.append(digest)
        return digest not in asked  # the website's digests pass; the attributes' digest is "the bait"

    monkeypatch.setattr(bridge, "is_history_digest", is_history_digest)
    url, _ = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    browser = Browser(idp_service.url)
    with pytest.raises(LoginFailed) as info:
        answer(browser.start(url), card)
    assert info.value.code == "history_signature_refused"
    assert any(d not in asked for d in seen)  # an attributes' digest was checked, and refused
    assert browser.get("/login/status").json()["state"] != "verified"  # nothing was submitted


def _login_message(idp_service, fetched) -> bytes:
    from jpki.signature import login_message

    return login_message(fetched["origin"], base64.urlsafe_b64decode(fetched["challenge"] + "=="))


def test_the_holder_declining_signs_nothing(idp_service, rp, card):
    browser = Browser(idp_service.url)
    url, _ = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    with pytest.raises(LoginFailed) as info:
        answer(browser.start(url), card, approve=False)
    assert info.value.code == "signing_declined"
    assert browser.get("/login/status").json()["error"] == "signing_declined"
    back = browser.post("/login/continue")  # the login page continues by itself on a decline
    assert back.status_code == 302 and back.headers["Location"].startswith(REDIRECT + "?")
    answer_ = query_of(back.headers["Location"])
    assert answer_["error"] == "access_denied" and answer_["state"] == "st-1" and answer_["iss"] == idp_service.url


def test_a_locked_signing_pin_is_said_and_nothing_signed(idp_service, rp, card):
    from nfc_bridge.virtual_card import VirtualCard

    virtual = VirtualCard.load(card)
    virtual._pins[CertificateKind.SIGNING].tries_left = 0
    virtual._save()
    browser = Browser(idp_service.url)
    url, _ = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    with pytest.raises(LoginFailed) as info:
        answer(browser.start(url), card)
    assert info.value.code == "signing_pin_locked"
    assert browser.get("/login/status").json()["error"] == "signing_pin_locked"


@pytest.mark.parametrize(("event_type", "code"), [("revocation_requested", "certificate_revoked"),
                                                  ("card_lost", "certificate_on_hold")])
def test_a_revoked_or_held_certificate_signs_nothing(idp_service, rp, make_card, event_type, code):
    path = make_card()
    registered = idp_service.register_card(path)
    idp_service.revocation.services.applier.apply(parse_event({
        "event_id": f"ev-{secrets.token_hex(3)}x", "type": event_type, "holder": registered["holder"],
        "occurred_at": "2026-02-01T00:00:00Z", "source": "test", "card_id": registered["card_id"]}))
    browser = Browser(idp_service.url)
    url, _ = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    with pytest.raises(LoginFailed) as info:
        answer(browser.start(url), path)
    assert info.value.code == code


def test_an_access_log_line_keeps_no_label_or_digest():
    import logging

    from observability.logs import RedactRequestLines

    query = 'authorization_details=[{"type": "credential", "documentDigests": [{"hash": "q83v", "label": "My loan"}]}]'
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '"%s" %s %s',
                               (f"GET /authorize?client_id=x&{query} HTTP/1.1", "302", "-"), None)
    RedactRequestLines().filter(record)
    line = record.getMessage()
    assert "My loan" not in line and "q83v" not in line and "credential" not in line
    assert line.startswith('"GET /authorize?… HTTP/1.1" 302')


def test_facts_and_documents_together_take_one_signing_pin(idp_service, rp, card):
    url, verifier = authorize_url(idp_service, rp[0].client_id, details(*DOCUMENTS))
    url = url.replace("scope=openid", "scope=openid+name")
    browser = Browser(idp_service.url)
    asked = []

    def ask_pin(kind, tries):
        asked.append(kind)
        return "1234" if kind is CertificateKind.AUTH else SIGN_PIN
    answer_login(fetch_login(browser.start(url)), lambda: VirtualTransport.open(card), ask_pin=ask_pin,
                 confirm_last_try=lambda: False, say=lambda text: None, approve_signing=lambda: True)
    assert asked.count(CertificateKind.SIGNING) == 1
    final = browser.finish()
    answer_ = token(idp_service, rp, query_of(final.headers["Location"])["code"], verifier).json()
    assert len(answer_["authorization_details"][0]["documentDigests"]) == 2
    info = requests.get(f"{idp_service.url}/userinfo", timeout=10,
                        headers={"Authorization": f"Bearer {answer_['access_token']}"}).json()
    assert "name" in info
