"""A login sees a status change at once: no stale "good" after a revocation, whatever OCSP answer comes back.

The IdP asks OCSP without a nonce, so the revocation service answers from its pre-signed response (re-signed on
every status change, held in its processes); and the login reads the certificate's record from the status store in
the same request (idp/login/verification.py `check_record`). These tests drive real logins over the bridge API
against the live IdP, revocation service and Redis; the only fake is an OCSP server replaying a recorded answer.
"""

from __future__ import annotations

import datetime as dt

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from idp.login.revocation_check import fetcher
from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.test_login_api import rp, signed_submission, start  # noqa: F401 - rp is a fixture
from tests.test_verification import fake_ocsp, send_event


def submit(idp_service, rp, card) -> requests.Response:  # noqa: F811 - the fixture's value
    """One whole login's card side: the browser starts it, the bridge fetches and submits."""
    _, handle, _ = start(idp_service, rp)
    fetched = requests.get(handle, timeout=10).json()
    return requests.post(fetched["submit_url"], json=signed_submission(card, fetched, idp_service.url), timeout=30)


def refused_with(response: requests.Response) -> str | None:
    return None if response.status_code == 200 else response.json()["error"]


def registered(make_card, idp_service) -> tuple:
    path = make_card()
    return path, idp_service.register_card(path)


def test_a_revoked_card_is_refused_on_the_very_next_login(idp_service, rp, make_card):  # noqa: F811
    card, ids = registered(make_card, idp_service)
    services = idp_service.revocation.services
    for _ in range(2):  # the pre-signed "good" is now cached in Redis and held by the responder
        assert refused_with(submit(idp_service, rp, card)) is None
    send_event(services, "revocation_requested", ids["card_id"], ids["holder"])
    assert refused_with(submit(idp_service, rp, card)) == "certificate_revoked"


def test_a_hold_and_its_release_are_each_seen_by_the_next_login(idp_service, rp, make_card):  # noqa: F811
    card, ids = registered(make_card, idp_service)
    services = idp_service.revocation.services
    assert refused_with(submit(idp_service, rp, card)) is None
    # Events are ordered by occurred_at at one-second resolution: the card is found a minute after it was lost.
    lost_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    send_event(services, "card_lost", ids["card_id"], ids["holder"], at=lost_at)
    assert refused_with(submit(idp_service, rp, card)) == "certificate_on_hold"
    send_event(services, "card_found", ids["card_id"], ids["holder"])
    assert refused_with(submit(idp_service, rp, card)) is None


def test_a_recorded_good_replayed_after_the_revocation_does_not_pass_a_login(idp_service, rp, make_card,  # noqa: F811
                                                                            dev_ca, monkeypatch):
    # What a nonce used to guard against: someone on the IdP→revocation channel records a genuine signed "good"
    # and replays it after the card is revoked. The answer is still inside its validity, so the revocation check
    # believes it; the status store's record, read in the same login, refuses it.
    card, ids = registered(make_card, idp_service)
    certificate = parse_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH)).certificate
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, dev_ca.auth.certificate, hashes.SHA256()).build()
    recorded = fetcher(5, 65536).fetch(idp_service.revocation.url + "/ocsp",
                                       request.public_bytes(serialization.Encoding.DER),
                                       "application/ocsp-request").body
    assert ocsp.load_der_ocsp_response(recorded).certificate_status is ocsp.OCSPCertStatus.GOOD
    send_event(idp_service.revocation.services, "revocation_requested", ids["card_id"], ids["holder"])
    checker = idp_service.services.verifier.revocation_checker
    with fake_ocsp(lambda body: recorded) as replay:
        monkeypatch.setattr(checker, "ocsp_url", replay.url + "/ocsp")
        assert checker.check(certificate, dev_ca.auth.certificate).status.value == "good"  # the replay is believed
        assert refused_with(submit(idp_service, rp, card)) == "certificate_revoked"  # the login is not fooled


def test_a_certificate_the_store_never_recorded_is_refused_even_with_a_good_answer(idp_service, rp, make_card,  # noqa: F811
                                                                                   dev_ca, monkeypatch):
    # A "good" for a certificate the status store does not know (no issuance event was ever sent) fails closed.
    card = make_card()

    def good(body: bytes) -> bytes:
        asked = ocsp.load_der_ocsp_request(body)
        now = dt.datetime.now(dt.UTC)
        return (ocsp.OCSPResponseBuilder()
                .add_response_by_hash(asked.issuer_name_hash, asked.issuer_key_hash, asked.serial_number,
                                      asked.hash_algorithm, ocsp.OCSPCertStatus.GOOD, now, now + dt.timedelta(hours=1),
                                      None, None)
                .responder_id(ocsp.OCSPResponderEncoding.HASH, dev_ca.auth.responder_certificate)
                .certificates([dev_ca.auth.responder_certificate])
                .sign(dev_ca.auth.responder_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))

    with fake_ocsp(good) as responder:
        monkeypatch.setattr(idp_service.services.verifier.revocation_checker, "ocsp_url", responder.url + "/ocsp")
        response = submit(idp_service, rp, card)
    assert response.status_code == 503 and refused_with(response) == "revocation_unknown"
