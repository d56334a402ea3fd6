"""A nonce answer is the pre-signed answer re-signed for the request (revocation/ocsp/der.py): the same statement,
dated now, the nonce echoed, one signature — and as coherent with Redis as the nonce-less answer. A miss signs only
the CertID form asked for. Real Redis, real HTTP, real openssl."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ReasonFlags, ocsp
from cryptography.x509.ocsp import OCSPCertStatus
from cryptography.x509.oid import NameOID

from revocation.ocsp.der import with_nonce
from revocation.ocsp.responder import EXTENDED_REVOKE
from tests.test_ocsp import apply, ask, assert_signed_by_responder, nonce_of, request_der

pytestmark = pytest.mark.timeout(60)


def single_response(response: ocsp.OCSPResponse) -> tuple:
    return (response.serial_number, response.certificate_status, response.this_update_utc,
            response.next_update_utc, response.revocation_time_utc, response.revocation_reason,
            response.issuer_key_hash, response.hash_algorithm.name)


def test_a_nonce_answer_states_what_the_presigned_answer_states_signed_now(revocation_service, issue_card, dev_ca):
    card = issue_card()
    presigned, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    nonce = os.urandom(32)
    answered, headers = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=nonce))
    assert nonce_of(answered) == nonce and headers["Cache-Control"] == "no-store"
    assert single_response(answered) == single_response(presigned)
    assert answered.produced_at_utc >= presigned.produced_at_utc
    assert answered.signature != presigned.signature
    assert_signed_by_responder(answered, dev_ca.auth)
    with pytest.raises(x509.ExtensionNotFound):
        answered.extensions.get_extension_for_oid(EXTENDED_REVOKE.oid)


def test_a_nonce_answer_follows_a_revocation_at_once(revocation_service, issue_card, dev_ca):
    card = issue_card()
    with_a_nonce = request_der(card["auth"], dev_ca.auth.certificate, nonce=b"n" * 16)
    assert ask(revocation_service, with_a_nonce)[0].certificate_status is OCSPCertStatus.GOOD  # now held in process
    apply(revocation_service.services, "card_lost", card)
    answered, _ = ask(revocation_service, with_a_nonce)
    assert answered.certificate_status is OCSPCertStatus.REVOKED
    assert answered.revocation_reason is ReasonFlags.certificate_hold


def test_a_nonce_for_a_never_issued_serial_keeps_the_extended_revoke_extension(revocation_service, issue_card,
                                                                               dev_ca):
    known = ocsp.load_der_ocsp_request(request_der(issue_card()["auth"], dev_ca.auth.certificate))
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        known.issuer_name_hash, known.issuer_key_hash, secrets.randbits(62) | 1, hashes.SHA1())
    der = builder.add_extension(x509.OCSPNonce(b"q" * 20), critical=False).build().public_bytes(
        serialization.Encoding.DER)
    answered, _ = ask(revocation_service, der)
    assert answered.certificate_status is OCSPCertStatus.REVOKED and nonce_of(answered) == b"q" * 20
    assert answered.extensions.get_extension_for_oid(EXTENDED_REVOKE.oid).value.value == b"\x05\x00"


def test_a_miss_signs_only_the_form_asked_for_and_never_lengthens_the_entry(revocation_service, issue_card, dev_ca):
    card = issue_card()
    services = revocation_service.services
    key = services.store.keys.ocsp_cache("auth", card["auth"].serial_number)
    ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, hashes.SHA256()))
    assert sorted(services.redis.hkeys(key)) == [b"about:sha256", b"sha256"]
    services.redis.pexpire(key, 30_000)  # as if the first form had been signed long ago
    sha1, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, hashes.SHA1()))
    assert sha1.hash_algorithm.name == "sha1"
    assert sorted(services.redis.hkeys(key)) == [b"about:sha1", b"about:sha256", b"sha1", b"sha256"]
    assert 0 < services.redis.pttl(key) <= 30_000


def test_a_miss_racing_a_revocation_never_caches_the_older_status(revocation_service, issue_card, dev_ca):
    card = issue_card()
    services = revocation_service.services
    serial = card["auth"].serial_number
    good = services.store.get("auth", serial)
    apply(services, "revocation_requested", card)
    # A request that read the record before the revocation and signs after it: its write is refused.
    services.ocsp._fill_cache("auth", serial, good, services.ocsp._now(), ("sha1",))
    assert services.redis.hget(services.store.keys.ocsp_cache("auth", serial), "sha1") is None
    for nonce in (None, b"r" * 8):
        answered, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=nonce))
        assert answered.certificate_status is OCSPCertStatus.REVOKED


def test_openssl_verifies_a_nonce_answer_for_a_revoked_certificate(revocation_service, issue_card, dev_ca, tmp_path):
    card = issue_card()
    apply(revocation_service.services, "revocation_requested", card)
    (tmp_path / "ca.pem").write_bytes(dev_ca.signing.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(card["signing"].public_bytes(serialization.Encoding.PEM))
    for _ in range(2):  # a miss, then the held response
        done = subprocess.run(["openssl", "ocsp", "-issuer", tmp_path / "ca.pem", "-cert", tmp_path / "leaf.pem",
                               "-url", f"{revocation_service.url}/ocsp", "-CAfile", tmp_path / "ca.pem"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "Response verify OK" in done.stderr, done.stderr
        assert ": revoked" in done.stdout, done.stdout


# --- der.with_nonce on its own, with an RSA responder ------------------------------------------------------------


def test_with_nonce_re_signs_an_rsa_response_as_cryptography_reads_it():
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test responder")])
    responder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                 .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                 .sign(key, hashes.SHA256()))
    presigned = (ocsp.OCSPResponseBuilder()
                 .add_response_by_hash(b"\x01" * 20, b"\x02" * 20, 77, hashes.SHA1(), OCSPCertStatus.REVOKED,
                                       now, now + dt.timedelta(hours=4), now, ReasonFlags.key_compromise)
                 .responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])
                 .add_extension(EXTENDED_REVOKE, critical=False)
                 .sign(key, hashes.SHA256()))
    later = now + dt.timedelta(seconds=5)
    der = with_nonce(presigned.public_bytes(serialization.Encoding.DER), b"\x00\xff" * 40, later,
                     lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    answered = ocsp.load_der_ocsp_response(der)
    key.public_key().verify(answered.signature, answered.tbs_response_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert single_response(answered) == single_response(presigned)
    assert answered.produced_at_utc == later and nonce_of(answered) == b"\x00\xff" * 40
    assert answered.extensions.get_extension_for_oid(EXTENDED_REVOKE.oid).value.value == b"\x05\x00"
    assert answered.certificates == [responder] and answered.responder_key_hash == presigned.responder_key_hash
    assert answered.signature_algorithm_oid == presigned.signature_algorithm_oid
    with pytest.raises(ValueError):
        with_nonce(ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(
            serialization.Encoding.DER), b"n", later, lambda data: b"")


def test_under_concurrent_requests_every_answer_asked_after_a_revocation_says_revoked(revocation_service,
                                                                                       issue_card, dev_ca):
    import threading
    import time

    card = issue_card()
    requests_ = [request_der(card["auth"], dev_ca.auth.certificate, algorithm, nonce)
                 for algorithm in (hashes.SHA1(), hashes.SHA256()) for nonce in (None, b"c" * 16)]
    answers: list[tuple[float, OCSPCertStatus]] = []
    stop = threading.Event()

    def ask_again_and_again(der: bytes) -> None:
        while not stop.is_set():
            asked_at = time.monotonic()
            answers.append((asked_at, ask(revocation_service, der)[0].certificate_status))

    threads = [threading.Thread(target=ask_again_and_again, args=(der,)) for der in requests_]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)  # every form answered, cached and held while good
        apply(revocation_service.services, "revocation_requested", card)
        revoked_at = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    before = [status for asked_at, status in answers if asked_at < revoked_at]
    after = [status for asked_at, status in answers if asked_at > revoked_at]
    assert OCSPCertStatus.GOOD in before and after
    assert set(after) == {OCSPCertStatus.REVOKED}
