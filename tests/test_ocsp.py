"""The OCSP responder over real HTTP, against real Redis, with certificates from the dev CA — and `openssl ocsp`."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import logging
import os
import re
import secrets
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ReasonFlags, ocsp
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus
from werkzeug.http import http_date

from revocation.domain.events import parse_event
from revocation.ocsp.responder import EXTENDED_REVOKE, UNISSUED_VALIDITY

pytestmark = pytest.mark.timeout(60)

OCSP_REQUEST = "application/ocsp-request"
LOST_AT = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
_event_ids = itertools.count()


# --- helpers ------------------------------------------------------------------------------------------------


def request_der(cert, issuer_cert, algorithm=None, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer_cert, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def by_hash(name_hash: bytes, key_hash: bytes, serial: int) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial, hashes.SHA1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def http(url: str, body: bytes | None = None, content_type: str = OCSP_REQUEST, headers: dict | None = None):
    """(status, headers, body) of one HTTP exchange; POST when there is a body."""
    req = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def ask(service, der: bytes) -> tuple[ocsp.OCSPResponse, object]:
    status, headers, body = http(f"{service.url}/ocsp", der)
    assert status == 200
    assert headers["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(body), headers


def assert_signed_by_responder(response: ocsp.OCSPResponse, issuer) -> None:
    """RFC 6960 §4.2.2.2: signed by the issuer's delegated responder, which is included and named by key hash."""
    responder = issuer.responder_certificate
    assert response.certificates == [responder]
    assert response.responder_name is None
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    responder.public_key().verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


def apply(services, event_type: str, card: dict, at: dt.datetime = LOST_AT) -> None:
    services.applier.apply(parse_event({
        "event_id": f"ocsp-test-{next(_event_ids)}", "type": event_type, "holder": card["holder"],
        "occurred_at": at.isoformat().replace("+00:00", "Z"), "source": "test", "card_id": card["card_id"]}))


def nonce_of(response: ocsp.OCSPResponse) -> bytes:
    return response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce


# --- status ---------------------------------------------------------------------------------------------------


def test_issued_certificate_is_good_and_signed_by_the_delegated_responder(revocation_service, issue_card, dev_ca):
    card = issue_card()
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    assert response.response_status is OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is OCSPCertStatus.GOOD
    assert response.serial_number == card["auth"].serial_number
    assert response.next_update_utc - response.this_update_utc == revocation_service.services.config.ocsp_validity
    assert_signed_by_responder(response, dev_ca.auth)


def test_revoked_certificate_carries_revocation_time_and_reason(revocation_service, issue_card, dev_ca):
    card = issue_card()
    apply(revocation_service.services, "key_compromised", card)
    response, _ = ask(revocation_service, request_der(card["signing"], dev_ca.signing.certificate))
    assert response.certificate_status is OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == LOST_AT
    assert response.revocation_reason is ReasonFlags.key_compromise
    assert_signed_by_responder(response, dev_ca.signing)


def test_lost_card_is_revoked_with_certificate_hold(revocation_service, issue_card, dev_ca):
    card = issue_card()
    apply(revocation_service.services, "card_lost", card)
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    assert response.certificate_status is OCSPCertStatus.REVOKED
    assert response.revocation_reason is ReasonFlags.certificate_hold
    assert response.revocation_time_utc == LOST_AT


def test_found_card_is_good_again(revocation_service, issue_card, dev_ca):
    card = issue_card()
    apply(revocation_service.services, "card_lost", card)
    apply(revocation_service.services, "card_found", card, LOST_AT + dt.timedelta(days=1))
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    assert response.certificate_status is OCSPCertStatus.GOOD


def test_never_issued_serial_is_revoked_with_the_extended_revoke_extension(revocation_service, issue_card, dev_ca):
    card = issue_card()
    known = ocsp.load_der_ocsp_request(request_der(card["auth"], dev_ca.auth.certificate))
    unknown_serial = secrets.randbits(62) | 1
    response, headers = ask(revocation_service, by_hash(known.issuer_name_hash, known.issuer_key_hash,
                                                        unknown_serial))
    # RFC 6960 §2.2: revoked, certificateHold, 1970-01-01, and id-pkix-ocsp-extended-revoke.
    assert response.certificate_status is OCSPCertStatus.REVOKED
    assert response.revocation_reason is ReasonFlags.certificate_hold
    assert response.revocation_time_utc == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    extension = response.extensions.get_extension_for_oid(EXTENDED_REVOKE.oid)
    assert not extension.critical and extension.value.value == b"\x05\x00"
    assert response.next_update_utc - response.this_update_utc <= UNISSUED_VALIDITY
    assert int(headers["Cache-Control"].split(",")[0].removeprefix("max-age=")) <= UNISSUED_VALIDITY.total_seconds()
    assert_signed_by_responder(response, dev_ca.auth)
    services = revocation_service.services
    assert not services.redis.exists(services.store.keys.ocsp_cache("auth", unknown_serial))


def test_issued_certificates_never_carry_the_extended_revoke_extension(revocation_service, issue_card, dev_ca):
    card = issue_card()
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_oid(EXTENDED_REVOKE.oid)


def with_serial_byte(der: bytes, serial: int, byte: int) -> bytes:
    """The request `der` for a one-byte `serial`, that byte swapped for `byte` (lengths unchanged): a serial no
    builder makes and a hostile client sends."""
    old = bytes([0x02, 1, serial])
    assert der.count(old) == 1
    return der.replace(old, bytes([0x02, 1, byte]))


@pytest.mark.parametrize("byte", [0x00, 0xFF, 0x80], ids=["zero", "minus-one", "minus-128"])
def test_a_serial_no_certificate_can_have_is_a_malformed_request(revocation_service, issue_card, dev_ca, byte):
    card = issue_card()
    known = ocsp.load_der_ocsp_request(request_der(card["auth"], dev_ca.auth.certificate))
    der = with_serial_byte(by_hash(known.issuer_name_hash, known.issuer_key_hash, 0x05), 0x05, byte)
    response, _ = ask(revocation_service, der)  # it used to be internalError (an OverflowError storing the serial)
    assert response.response_status is OCSPResponseStatus.MALFORMED_REQUEST


def test_unknown_issuer_is_unauthorized(revocation_service):
    response, _ = ask(revocation_service, by_hash(os.urandom(20), os.urandom(20), 12345))
    assert response.response_status is OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])
def test_sha1_and_sha256_cert_ids_are_answered_in_kind(revocation_service, issue_card, dev_ca, algorithm):
    card = issue_card()
    der = request_der(card["signing"], dev_ca.signing.certificate, algorithm)
    asked = ocsp.load_der_ocsp_request(der)
    for _ in range(2):  # signed on the first, from the cache on the second
        response, _ = ask(revocation_service, der)
        assert response.certificate_status is OCSPCertStatus.GOOD
        assert isinstance(response.hash_algorithm, type(algorithm))
        assert (response.issuer_name_hash, response.issuer_key_hash) == (asked.issuer_name_hash,
                                                                          asked.issuer_key_hash)


# --- malformed and refused requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"\x30\x03\x02\x01\x01", b"not an OCSP request"], ids=["empty", "der", "text"])
def test_malformed_request_is_answered_malformed(revocation_service, body):
    response, headers = ask(revocation_service, body)
    assert response.response_status is OCSPResponseStatus.MALFORMED_REQUEST
    assert headers["Cache-Control"] == "no-store"


def test_request_with_two_cert_ids_is_malformed(revocation_service, dev_ca, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(dev_ca.auth.certificate.public_bytes(serialization.Encoding.PEM))
    out = tmp_path / "two.der"
    subprocess.run(["openssl", "ocsp", "-issuer", str(ca), "-serial", "5", "-serial", "7", "-no_nonce",
                    "-reqout", str(out)], check=True, capture_output=True, timeout=20)
    response, _ = ask(revocation_service, out.read_bytes())
    assert response.response_status is OCSPResponseStatus.MALFORMED_REQUEST


def test_wrong_content_type_is_415_with_an_ocsp_body(revocation_service, issue_card, dev_ca):
    card = issue_card()
    der = request_der(card["auth"], dev_ca.auth.certificate)
    status, headers, body = http(f"{revocation_service.url}/ocsp", der, content_type="application/octet-stream")
    assert status == 415
    assert headers["Content-Type"] == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(body).response_status is OCSPResponseStatus.MALFORMED_REQUEST


def test_oversized_body_is_413(revocation_service):
    status, _, body = http(f"{revocation_service.url}/ocsp", b"\x30" * (10 * 1024 + 1))
    assert status == 413
    assert ocsp.load_der_ocsp_response(body).response_status is OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("path", ["%21%21not-base64%21%21", "TUlJ=x", "AAAA"], ids=["symbols", "bad-pad", "not-der"])
def test_get_with_bad_base64_is_malformed(revocation_service, path):
    status, _, body = http(f"{revocation_service.url}/ocsp/{path}")
    assert status == 200
    assert ocsp.load_der_ocsp_response(body).response_status is OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("form", ["url-encoded", "raw", "unpadded"])
def test_get_decodes_base64_in_every_form_clients_send(revocation_service, issue_card, dev_ca, form):
    card = issue_card()
    # A nonce of 0xFF bytes puts "//" and "+" into the base64: the path must survive both.
    der = request_der(card["auth"], dev_ca.auth.certificate, nonce=b"\xff" * 30 + b"\xfb\xef")
    text = base64.b64encode(der).decode()
    assert "//" in text
    path = {"url-encoded": urllib.parse.quote(text, safe=""), "raw": text,
            "unpadded": urllib.parse.quote(text.rstrip("="), safe="")}[form]
    status, _, body = http(f"{revocation_service.url}/ocsp/{path}")
    assert status == 200
    response = ocsp.load_der_ocsp_response(body)
    assert response.certificate_status is OCSPCertStatus.GOOD
    assert nonce_of(response) == b"\xff" * 30 + b"\xfb\xef"


# --- nonce ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 32, 128])
def test_nonce_is_echoed_in_a_live_response(revocation_service, issue_card, dev_ca, length):
    card = issue_card()
    nonce = os.urandom(length)
    response, headers = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=nonce))
    assert response.certificate_status is OCSPCertStatus.GOOD
    assert nonce_of(response) == nonce
    assert headers["Cache-Control"] == "no-store"
    assert "ETag" not in headers


@pytest.mark.parametrize("length", [0, 129])
def test_nonce_of_the_wrong_length_is_malformed(revocation_service, issue_card, dev_ca, length):
    card = issue_card()
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=b"n" * length))
    assert response.response_status is OCSPResponseStatus.MALFORMED_REQUEST


def test_nonce_requests_past_the_concurrency_cap_are_told_to_try_later(revocation_service, issue_card, dev_ca):
    card = issue_card()
    services = revocation_service.services
    slots = services.config.ocsp_nonce_concurrency
    for _ in range(slots):
        assert services.ocsp.live_signing.acquire(timeout=1)
    try:
        response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=b"n" * 32))
        assert response.response_status is OCSPResponseStatus.TRY_LATER
        cached, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
        assert cached.certificate_status is OCSPCertStatus.GOOD  # nonce-less answers do not need a slot
    finally:
        for _ in range(slots):
            services.ocsp.live_signing.release()
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=b"n" * 32))
    assert response.certificate_status is OCSPCertStatus.GOOD


# --- the pre-signed cache -------------------------------------------------------------------------------------


def test_nonceless_answers_come_from_the_cache_which_follows_every_status_change(revocation_service, issue_card,
                                                                                    dev_ca):
    card = issue_card()
    services = revocation_service.services
    key = services.store.keys.ocsp_cache("auth", card["auth"].serial_number)
    der = request_der(card["auth"], dev_ca.auth.certificate)
    _, _, first = http(f"{revocation_service.url}/ocsp", der)
    _, _, second = http(f"{revocation_service.url}/ocsp", der)
    assert first == second  # ECDSA signatures are randomised: equal bytes were served from the cache
    assert services.redis.hget(key, "sha1") == first
    assert services.redis.pttl(key) > 0

    apply(services, "card_lost", card)
    assert services.redis.hget(key, "sha1") != first  # dropped by the store's compare-and-set (or re-signed)
    _, _, third = http(f"{revocation_service.url}/ocsp", der)
    cached = ocsp.load_der_ocsp_response(third)
    assert cached.certificate_status is OCSPCertStatus.REVOKED
    assert cached.revocation_reason is ReasonFlags.certificate_hold
    assert services.redis.hget(key, "sha1") == third
    _, _, fourth = http(f"{revocation_service.url}/ocsp", der)
    assert fourth == third


def test_a_cache_entry_without_its_description_is_signed_again(revocation_service, issue_card, dev_ca):
    card = issue_card()
    services = revocation_service.services
    key = services.store.keys.ocsp_cache("auth", card["auth"].serial_number)
    der = request_der(card["auth"], dev_ca.auth.certificate)
    _, _, first = http(f"{revocation_service.url}/ocsp", der)
    services.redis.hdel(key, "about:sha1")  # as cached before the description was kept alongside
    _, _, second = http(f"{revocation_service.url}/ocsp", der)
    assert second != first and ocsp.load_der_ocsp_response(second).certificate_status is OCSPCertStatus.GOOD
    assert services.redis.hget(key, "about:sha1") is not None and services.redis.hget(key, "sha1") == second


def test_cache_never_takes_a_response_for_an_older_status(revocation_service, issue_card, dev_ca):
    card = issue_card()
    services = revocation_service.services
    serial = card["auth"].serial_number
    good = services.store.get("auth", serial)
    apply(services, "revocation_requested", card)
    services.ocsp.on_status_change("auth", serial, good)  # a late listener call carrying the older record
    response, _ = ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    assert response.certificate_status is OCSPCertStatus.REVOKED
    assert response.revocation_reason is ReasonFlags.cessation_of_operation


def test_nonceless_response_has_rfc5019_caching_headers(revocation_service, issue_card, dev_ca):
    card = issue_card()
    der = request_der(card["auth"], dev_ca.auth.certificate)
    status, headers, body = http(f"{revocation_service.url}/ocsp/{base64.b64encode(der).decode()}")
    assert status == 200
    response = ocsp.load_der_ocsp_response(body)
    max_age = int(re.fullmatch(r"max-age=(\d+), public, no-transform, must-revalidate",
                               headers["Cache-Control"]).group(1))
    left = (response.next_update_utc - dt.datetime.now(dt.UTC)).total_seconds()
    assert left - 5 <= max_age <= left
    assert headers["Last-Modified"] == http_date(response.this_update_utc)
    assert headers["Expires"] == http_date(response.next_update_utc)
    etag = f'"{hashlib.sha1(body).hexdigest()}"'
    assert headers["ETag"] == etag
    # A cache revalidating with the ETag gets "not modified".
    status, _, body = http(f"{revocation_service.url}/ocsp/{base64.b64encode(der).decode()}",
                           headers={"If-None-Match": etag})
    assert (status, body) == (304, b"")


def test_no_serial_reaches_the_logs(revocation_service, issue_card, dev_ca, caplog):
    caplog.set_level(logging.DEBUG)
    card = issue_card()
    serial = card["auth"].serial_number
    ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate, nonce=b"secret-nonce-value"))
    apply(revocation_service.services, "card_lost", card)
    ask(revocation_service, request_der(card["auth"], dev_ca.auth.certificate))
    assert "/ocsp" in caplog.text, "the access lines were not captured: this check would see nothing"
    for form in (str(serial), f"{serial:X}", f"{serial:x}", "secret-nonce-value"):
        assert form not in caplog.text


# --- an independent client: openssl ocsp ----------------------------------------------------------------------


def openssl_ocsp(service, issuer_cert, cert, tmp_path, nonce: bool) -> tuple[str, str]:
    """(whole output, status block) of `openssl ocsp` asking about `cert`."""
    ca, leaf = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    ca.write_bytes(issuer_cert.public_bytes(serialization.Encoding.PEM))
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    command = ["openssl", "ocsp", "-issuer", str(ca), "-cert", str(leaf), "-url", f"{service.url}/ocsp",
               "-CAfile", str(ca), "-resp_text", *([] if nonce else ["-no_nonce"])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr  # openssl exits 0 for revoked certificates too
    assert "Response verify OK" in done.stdout + done.stderr
    # The status block openssl prints after -resp_text: "<leaf>: revoked", then tab-indented times and reason.
    return done.stdout, done.stdout[done.stdout.index(f"{leaf}: "):]


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
def test_openssl_sees_good_revoked_and_held(revocation_service, issue_card, dev_ca, tmp_path, nonce):
    services = revocation_service.services
    good, revoked, held = issue_card(), issue_card(), issue_card()
    apply(services, "revocation_requested", revoked)
    apply(services, "card_lost", held)

    out, block = openssl_ocsp(revocation_service, dev_ca.auth.certificate, good["auth"], tmp_path, nonce)
    assert block.split("\n")[0].endswith(": good")
    assert ("OCSP Nonce" in out) is nonce

    _, block = openssl_ocsp(revocation_service, dev_ca.signing.certificate, revoked["signing"], tmp_path, nonce)
    assert block.split("\n")[0].endswith(": revoked")
    assert "\tReason: cessationOfOperation\n" in block

    out, block = openssl_ocsp(revocation_service, dev_ca.auth.certificate, held["auth"], tmp_path, nonce)
    assert block.split("\n")[0].endswith(": revoked")
    assert "\tReason: certificateHold\n" in block
    assert ("OCSP Nonce" in out) is nonce
