"""The IdP's verification pipeline with real dev-CA certificates, real card signatures and a live revocation
service; fake HTTP responders only where a test needs an answer the real service would never give."""

from __future__ import annotations

import datetime as dt
import http.server
import secrets
import socket
import string
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.http import LiveServer
from idp.login.revocation_check import RevocationChecker, RevocationStatus, RevocationUnknown, fetcher
from idp.login.trust import PRODUCTION_FINGERPRINTS, TrustStore, TrustStoreError, fingerprint
from idp.login.verification import CertificateVerifier, ErrorCode, VerificationError
from jpki.certificate import FourFacts
from jpki.devca import DevCA, new_rsa_key
from jpki.profile import JLIS_ROOT_FINGERPRINTS, CertificateKind, crl_shard
from jpki.signature import login_message
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports.virtual import VirtualTransport
from nfc_bridge.virtual_card import VirtualCard
from revocation.domain.events import parse_event
from tests.conftest import AUTH_PIN, SIGN_PIN

ORIGIN = "https://login.mykey.example"
BIRTHDATE = dt.date(1990, 1, 2)
FACTS = FourFacts(name="試験 花子", address="東京都千代田区", birthdate=BIRTHDATE, sex="2")
TIMEOUT = 2.0


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sign(key, message: bytes) -> bytes:
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


# --- the revocation service's side: events --------------------------------------------------------------


def opaque_id(prefix: str) -> str:
    # Letters only: random hex can hold twelve digits in a row, which the event schema refuses as a My Number.
    return prefix + "-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


def send_event(services, event_type: str, card_id: str, holder: str, at: dt.datetime | None = None,
               **fields) -> None:
    services.applier.apply(parse_event({
        "event_id": opaque_id(event_type), "type": event_type, "holder": holder,
        "occurred_at": (at or now()).isoformat(), "source": "test", "card_id": card_id, **fields,
    }))


def register(services, *certificates: tuple[str, x509.Certificate]) -> tuple[str, str]:
    """A certificate_issued event for (kind, certificate) pairs on one card; returns (card_id, holder)."""
    card_id, holder = opaque_id("card"), opaque_id("holder")
    send_event(services, "certificate_issued", card_id, holder, certificates=[
        {"serial": f"{c.serial_number:X}", "kind": kind, "not_after": c.not_valid_after_utc.isoformat()}
        for kind, c in certificates
    ])
    return card_id, holder


def publish_crl(services, cert: x509.Certificate) -> None:
    """What the CRL updater does on its schedule: publish the certificate's shard now."""
    services.crl.publish("auth", crl_shard(cert.serial_number))


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def trust(dev_ca) -> TrustStore:
    return TrustStore.development((dev_ca.auth, dev_ca.signing))


@pytest.fixture
def checker(revocation_service, trust) -> RevocationChecker:
    return RevocationChecker(revocation_service.url + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)


@pytest.fixture
def verifier(trust, checker) -> CertificateVerifier:
    return CertificateVerifier(trust, checker)


@pytest.fixture
def offline(trust, closed_port) -> CertificateVerifier:
    """For refusals that must come before revocation: any revocation lookup would fail as revocation_unknown."""
    return CertificateVerifier(trust, RevocationChecker(closed_port + "/ocsp", None, trust, timeout=TIMEOUT))


@pytest.fixture
def unregistered(dev_ca) -> dict:
    key = new_rsa_key()
    return {"key": key, "cert": dev_ca.issue_auth(key.public_key(), BIRTHDATE)}


@pytest.fixture
def auth_user(dev_ca, revocation_services):
    """An auth certificate for a key the test holds, registered with the revocation service."""
    key = new_rsa_key()
    cert = dev_ca.issue_auth(key.public_key(), BIRTHDATE)
    card_id, holder = register(revocation_services, ("auth", cert))
    return {"key": key, "cert": cert, "card_id": card_id, "holder": holder}


def login(verifier: CertificateVerifier, user: dict, origin: str = ORIGIN, challenge: bytes | None = None,
          token_type: str = "card"):
    challenge = challenge or secrets.token_bytes(32)
    return verifier.verify_login(der(user["cert"]), sign(user["key"], login_message(origin, challenge)),
                                 origin, challenge, token_type=token_type)


def refused(code: ErrorCode, call, *args, **kwargs) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


@pytest.fixture
def closed_port() -> str:
    """A loopback URL that refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_server():
    """Accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def serve(answer):
    """A tiny WSGI responder: `answer(method, path, body) -> (status, bytes)`."""
    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, data = answer(environ["REQUEST_METHOD"], environ["PATH_INFO"], body)
        start_response(status, [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
        return [data]

    return LiveServer(app)


def ocsp_answer(request_der: bytes, signer_key, signer_cert: x509.Certificate, *, status=ocsp.OCSPCertStatus.GOOD,
                nonce: bytes | str | None = "echo", this_update: dt.datetime | None = None,
                include_cert: bool = True) -> bytes:
    """A successful OCSP response to `request_der`, signed as the test decides."""
    request = ocsp.load_der_ocsp_request(request_der)
    this_update = this_update or now() - dt.timedelta(minutes=1)
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        request.issuer_name_hash, request.issuer_key_hash, request.serial_number, request.hash_algorithm, status,
        this_update, this_update + dt.timedelta(hours=1),
        this_update if status is ocsp.OCSPCertStatus.REVOKED else None,
        x509.ReasonFlags.key_compromise if status is ocsp.OCSPCertStatus.REVOKED else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    if include_cert:
        builder = builder.certificates([signer_cert])
    if nonce == "echo":  # the request's nonce, when it sent one
        nonce = next((e.value.nonce for e in request.extensions if isinstance(e.value, x509.OCSPNonce)), None)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def fake_ocsp(respond):
    """An OCSP responder that answers every POST with `respond(request_der)`."""
    return serve(lambda method, path, body: ("200 OK", respond(body)))


def signed_by(signer_key, signer_cert, **options):
    """`respond` for fake_ocsp: answer each request with `ocsp_answer(request, signer, **options)`."""
    return lambda request_der: ocsp_answer(request_der, signer_key, signer_cert, **options)


def genuine(dev_ca: DevCA, **options):
    """Signed by the dev CA's real delegated responder for auth certificates."""
    return signed_by(dev_ca.auth.responder_key, dev_ca.auth.responder_certificate, **options)


# --- the good path ----------------------------------------------------------------------------------------


def test_virtual_card_logs_in(verifier, make_card, revocation_services):
    card = VirtualCard.load(make_card())
    client = JpkiClient.connect(VirtualTransport(card))
    certificate = client.read_certificate(CertificateKind.AUTH)
    register(revocation_services, ("auth", x509.load_der_x509_certificate(certificate)))
    challenge = secrets.token_bytes(32)
    signature = client.sign(CertificateKind.AUTH, login_message(ORIGIN, challenge), AUTH_PIN)

    verified = verifier.verify_login(certificate, signature, ORIGIN, challenge, token_type="card")

    assert verified.issuer == "auth"
    assert verified.certificate.kind is CertificateKind.AUTH
    assert verified.revocation.status is RevocationStatus.GOOD
    assert verified.revocation.source == "ocsp"
    assert str(verified.certificate.serial) not in repr(verified)


def test_signing_certificate_releases_the_four_facts(verifier, make_card, revocation_services):
    card = VirtualCard.load(make_card())
    client = JpkiClient.connect(VirtualTransport(card))
    client.verify_pin(CertificateKind.SIGNING, SIGN_PIN)
    certificate = client.read_certificate(CertificateKind.SIGNING)
    register(revocation_services, ("signing", x509.load_der_x509_certificate(certificate)))
    message = login_message(ORIGIN, secrets.token_bytes(32))
    signature = client.sign(CertificateKind.SIGNING, message, SIGN_PIN)

    verified = verifier.verify_signing(certificate, signature, message, token_type="card")

    assert verified.issuer == "signing"
    assert verified.certificate.four_facts.name == "デジタル 太郎"


def test_the_verified_certificate_says_which_token_it_came_from(verifier, auth_user):
    assert login(verifier, auth_user, token_type="smartphone").token_type == "smartphone"
    assert login(verifier, auth_user, token_type="card").token_type == "card"


def test_the_token_type_cannot_be_left_out(verifier, auth_user):
    challenge = secrets.token_bytes(32)
    with pytest.raises(TypeError):  # a default would report every login as a card login
        verifier.verify_login(der(auth_user["cert"]), sign(auth_user["key"], login_message(ORIGIN, challenge)),
                              ORIGIN, challenge)


# --- signature binding ------------------------------------------------------------------------------------


def test_signature_for_another_origin_is_refused(verifier, auth_user):
    challenge = secrets.token_bytes(32)
    signature = sign(auth_user["key"], login_message("https://evil.example", challenge))
    refused(ErrorCode.SIGNATURE_INVALID, verifier.verify_login, der(auth_user["cert"]), signature, ORIGIN, challenge,
            token_type="card")


def test_replayed_signature_with_a_new_challenge_is_refused(verifier, auth_user):
    challenge = secrets.token_bytes(32)
    signature = sign(auth_user["key"], login_message(ORIGIN, challenge))
    verifier.verify_login(der(auth_user["cert"]), signature, ORIGIN, challenge, token_type="card")
    error = refused(ErrorCode.SIGNATURE_INVALID, verifier.verify_login, der(auth_user["cert"]), signature, ORIGIN,
                    secrets.token_bytes(32), token_type="card")
    assert signature.hex() not in error.message and challenge.hex() not in error.message


def test_signature_by_another_key_is_refused(verifier, auth_user):
    impostor = dict(auth_user, key=new_rsa_key())
    refused(ErrorCode.SIGNATURE_INVALID, login, verifier, impostor)


# --- what kind of certificate, from whom ------------------------------------------------------------------


def test_certificate_from_an_untrusted_ca_is_refused(offline):
    stranger = DevCA.generate()  # the same DNs as the dev CA, other keys
    key = new_rsa_key()
    cert = stranger.issue_auth(key.public_key(), BIRTHDATE)
    refused(ErrorCode.UNTRUSTED_ISSUER, login, offline, {"key": key, "cert": cert})


def test_a_root_pinned_for_signing_does_not_vouch_for_auth_certificates(dev_ca, offline, unregistered):
    swapped = TrustStore({CertificateKind.AUTH: (dev_ca.signing.certificate,),
                          CertificateKind.SIGNING: (dev_ca.auth.certificate,)})
    verifier = CertificateVerifier(swapped, offline.revocation_checker)
    refused(ErrorCode.UNTRUSTED_ISSUER, login, verifier, unregistered)


def test_signing_certificate_cannot_log_in(offline, dev_ca):
    key = new_rsa_key()
    cert = dev_ca.issue_signing(key.public_key(), FACTS)
    refused(ErrorCode.SIGNING_CERTIFICATE_USED_FOR_LOGIN, login, offline, {"key": key, "cert": cert})


def test_auth_certificate_cannot_release_facts(offline, unregistered):
    message = login_message(ORIGIN, secrets.token_bytes(32))
    refused(ErrorCode.AUTH_CERTIFICATE_USED_FOR_SIGNING, offline.verify_signing, der(unregistered["cert"]),
            sign(unregistered["key"], message), message, token_type="card")


def test_certificate_without_a_jpki_policy_is_refused(offline, dev_ca):
    refused(ErrorCode.NOT_JPKI_CERTIFICATE, offline.verify_login, der(dev_ca.auth.certificate), bytes(256), ORIGIN,
            b"c" * 32, token_type="card")


def test_certificate_without_digital_signature_is_refused(offline, dev_ca):
    key = new_rsa_key()
    base = dev_ca.issue_auth(key.public_key(), BIRTHDATE)
    builder = (x509.CertificateBuilder().subject_name(base.subject).issuer_name(base.issuer)
               .public_key(key.public_key()).serial_number(base.serial_number)
               .not_valid_before(base.not_valid_before_utc).not_valid_after(base.not_valid_after_utc))
    for extension in base.extensions:
        if not isinstance(extension.value, x509.KeyUsage):
            builder = builder.add_extension(extension.value, extension.critical)
    builder = builder.add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), True)
    cert = builder.sign(dev_ca.auth.key, hashes.SHA256())
    refused(ErrorCode.KEY_USAGE_INVALID, login, offline, {"key": key, "cert": cert})


# --- time -------------------------------------------------------------------------------------------------


def test_expired_certificate_is_refused(offline, dev_ca):
    key = new_rsa_key()
    cert = dev_ca.issue_auth(key.public_key(), BIRTHDATE, issued_at=now() - dt.timedelta(days=400),
                             not_after=now() - dt.timedelta(days=1))
    error = refused(ErrorCode.CERTIFICATE_EXPIRED, login, offline, {"key": key, "cert": cert})
    assert f"{cert.serial_number:X}" not in error.message and str(cert.serial_number) not in error.message


def test_not_yet_valid_certificate_is_refused(offline, dev_ca):
    key = new_rsa_key()
    cert = dev_ca.issue_auth(key.public_key(), BIRTHDATE, issued_at=now() + dt.timedelta(days=1))
    refused(ErrorCode.CERTIFICATE_NOT_YET_VALID, login, offline, {"key": key, "cert": cert})


# --- revocation through the live service ------------------------------------------------------------------


def test_revoked_certificate_is_refused(verifier, auth_user, revocation_services):
    send_event(revocation_services, "revocation_requested", auth_user["card_id"], auth_user["holder"])
    refused(ErrorCode.CERTIFICATE_REVOKED, login, verifier, auth_user)


def test_certificate_of_a_lost_card_is_on_hold_until_found(verifier, auth_user, revocation_services):
    # Events are ordered by occurred_at at one-second resolution: the card is found a minute after it was lost.
    send_event(revocation_services, "card_lost", auth_user["card_id"], auth_user["holder"],
               at=now() - dt.timedelta(minutes=1))
    refused(ErrorCode.CERTIFICATE_ON_HOLD, login, verifier, auth_user)
    send_event(revocation_services, "card_found", auth_user["card_id"], auth_user["holder"])
    assert login(verifier, auth_user).revocation.status is RevocationStatus.GOOD


def test_crl_answers_when_the_ocsp_responder_is_down(trust, closed_port, revocation_service, auth_user, dev_ca):
    checker = RevocationChecker(closed_port + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)
    verifier = CertificateVerifier(trust, checker)
    publish_crl(revocation_service.services, auth_user["cert"])

    verified = login(verifier, auth_user)
    assert (verified.revocation.source, verified.revocation.ocsp_skipped) == ("crl", "unreachable")

    # Another certificate in the same CRL shard, revoked: a fresh checker (no cached CRL) must refuse it.
    key = new_rsa_key()
    serial = (secrets.randbits(59) << 4) | crl_shard(auth_user["cert"].serial_number)
    cert = dev_ca.issue_auth(key.public_key(), BIRTHDATE, serial=serial)
    card_id, holder = register(revocation_service.services, ("auth", cert))
    send_event(revocation_service.services, "key_compromised", card_id, holder)
    publish_crl(revocation_service.services, cert)
    fresh = RevocationChecker(closed_port + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)
    refused(ErrorCode.CERTIFICATE_REVOKED, login, CertificateVerifier(trust, fresh), {"key": key, "cert": cert})


def test_crl_reports_a_hold(trust, closed_port, revocation_service, auth_user):
    send_event(revocation_service.services, "card_lost", auth_user["card_id"], auth_user["holder"])
    publish_crl(revocation_service.services, auth_user["cert"])
    checker = RevocationChecker(closed_port + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)
    refused(ErrorCode.CERTIFICATE_ON_HOLD, login, CertificateVerifier(trust, checker), auth_user)


def test_both_sources_down_is_revocation_unknown(trust, closed_port, unregistered, caplog):
    checker = RevocationChecker(closed_port + "/ocsp", closed_port, trust, timeout=TIMEOUT)
    with caplog.at_level("INFO", logger="idp.login.revocation_check"):
        error = refused(ErrorCode.REVOCATION_UNKNOWN, login, CertificateVerifier(trust, checker), unregistered)
    assert "ocsp unreachable; crl unreachable" in caplog.text
    serial = unregistered["cert"].serial_number
    for text in (caplog.text, error.message):
        assert f"{serial:X}" not in text and str(serial) not in text


def test_a_silent_responder_is_bounded_by_the_timeout(trust, silent_server, unregistered):
    checker = RevocationChecker(silent_server + "/ocsp", silent_server, trust, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RevocationUnknown) as caught:
        checker.check(unregistered["cert"], trust.roots_for(CertificateKind.AUTH)[0])
    assert (caught.value.ocsp_failure, caught.value.crl_failure) == ("timeout", "timeout")
    assert time.monotonic() - started < 3


# --- CRLs the checker must not believe --------------------------------------------------------------------


def crl_for(dev_ca: DevCA, last_update: dt.datetime, next_update: dt.datetime, revoked: tuple[int, ...] = (),
            scope: str | None = None) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(dev_ca.auth.certificate.subject)
               .last_update(last_update).next_update(next_update))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last_update).build())
    if scope:
        builder = builder.add_extension(x509.IssuingDistributionPoint(
            [x509.UniformResourceIdentifier(scope)], None, False, False, None, False, False), critical=True)
    return builder.sign(dev_ca.auth.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_crl_past_its_next_update_is_refused(trust, closed_port, unregistered, dev_ca):
    stale = crl_for(dev_ca, now() - dt.timedelta(days=2), now() - dt.timedelta(minutes=1))
    with serve(lambda method, path, body: ("200 OK", stale)) as crl_server:
        checker = RevocationChecker(closed_port + "/ocsp", crl_server.url, trust, timeout=TIMEOUT)
        with pytest.raises(RevocationUnknown) as caught:
            checker.check(unregistered["cert"], trust.roots_for(CertificateKind.AUTH)[0])
        assert caught.value.crl_failure == "crl_stale"
        refused(ErrorCode.REVOCATION_UNKNOWN, login, CertificateVerifier(trust, checker), unregistered)


def test_crl_of_another_shard_is_refused(trust, closed_port, unregistered, dev_ca):
    other = (crl_shard(unregistered["cert"].serial_number) + 1) % 16
    wrong = crl_for(dev_ca, now() - dt.timedelta(minutes=1), now() + dt.timedelta(hours=1),
                    scope=f"http://127.0.0.1:8081/crl/auth/{other}.crl")
    with serve(lambda method, path, body: ("200 OK", wrong)) as crl_server:
        checker = RevocationChecker(closed_port + "/ocsp", crl_server.url, trust, timeout=TIMEOUT)
        with pytest.raises(RevocationUnknown) as caught:
            checker.check(unregistered["cert"], trust.roots_for(CertificateKind.AUTH)[0])
        assert caught.value.crl_failure == "crl_scope_mismatch"


def test_crl_signed_by_another_ca_is_refused(trust, closed_port, unregistered):
    forged = crl_for(DevCA.generate(), now() - dt.timedelta(minutes=1), now() + dt.timedelta(hours=1))
    with serve(lambda method, path, body: ("200 OK", forged)) as crl_server:
        checker = RevocationChecker(closed_port + "/ocsp", crl_server.url, trust, timeout=TIMEOUT)
        with pytest.raises(RevocationUnknown) as caught:
            checker.check(unregistered["cert"], trust.roots_for(CertificateKind.AUTH)[0])
        assert caught.value.crl_failure == "crl_signature_invalid"


def test_crl_is_fetched_only_under_the_configured_base(trust, dev_ca):
    # The dev CA's certificates point at 127.0.0.1:8081; the checker keeps only the shard path.
    cert = dev_ca.issue_auth(new_rsa_key().public_key(), BIRTHDATE)
    checker = RevocationChecker("http://ocsp.invalid/ocsp", "https://revocation.internal/", trust)
    issuer = trust.roots_for(CertificateKind.AUTH)[0]
    shard = crl_shard(cert.serial_number)
    assert checker.pinned_crl_url(cert, issuer) == f"https://revocation.internal/crl/auth/{shard}.crl"


# --- OCSP responses the checker must not believe ----------------------------------------------------------


def check_via(trust, responder_url: str, cert: x509.Certificate, **options) -> RevocationUnknown | object:
    """Ask only this OCSP responder (no CRL fallback): the result, or the RevocationUnknown raised."""
    checker = RevocationChecker(responder_url + "/ocsp", None, trust, timeout=TIMEOUT, **options)
    try:
        return checker.check(cert, trust.roots_for(CertificateKind.AUTH)[0])
    except RevocationUnknown as unknown:
        return unknown


def test_fake_responder_with_the_real_delegated_key_is_believed(trust, dev_ca, unregistered):
    # Proves the fake responder below is sound, so each refusal is for the one thing the test changes.
    respond = genuine(dev_ca)
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"]).status is RevocationStatus.GOOD


def test_response_signed_by_the_issuer_itself_is_believed(trust, dev_ca, unregistered):
    respond = signed_by(dev_ca.auth.key, dev_ca.auth.certificate, include_cert=False)
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"]).status is RevocationStatus.GOOD


def test_by_default_the_request_carries_no_nonce_and_the_presigned_answer_is_believed(trust, dev_ca, auth_user,
                                                                                     revocation_service):
    # The revocation service answers a nonce-less request from its pre-signed response (RFC 5019).
    seen = []

    def relay(body: bytes) -> bytes:
        seen.append(ocsp.load_der_ocsp_request(body))
        return fetcher(TIMEOUT, 65536).fetch(revocation_service.url + "/ocsp", body, "application/ocsp-request").body

    with fake_ocsp(relay) as server:
        assert check_via(trust, server.url, auth_user["cert"]).status is RevocationStatus.GOOD
    assert [len(request.extensions) for request in seen] == [0]
    assert seen[0].hash_algorithm.name == "sha256" and seen[0].serial_number == auth_user["cert"].serial_number


def test_response_without_our_nonce_is_refused_when_a_nonce_is_asked_for(trust, dev_ca, unregistered):
    respond = genuine(dev_ca, nonce=None)
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"], nonce=True).ocsp_failure == "nonce_missing"
        checker = RevocationChecker(server.url + "/ocsp", None, trust, timeout=TIMEOUT, nonce=True)
        refused(ErrorCode.REVOCATION_UNKNOWN, login, CertificateVerifier(trust, checker), unregistered)


def test_a_response_signed_longer_ago_than_the_max_age_is_refused(trust, dev_ca, unregistered):
    # Without a nonce the signature's age bounds a replay: producedAt is checked like thisUpdate. Two days on, a
    # response signed now is stale even though the thisUpdate/nextUpdate it claims would still be current.
    later = now() + dt.timedelta(days=2)
    respond = genuine(dev_ca, this_update=later - dt.timedelta(minutes=1))
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"], clock=lambda: later).ocsp_failure == "stale"


def test_a_response_signed_in_the_future_is_refused(trust, dev_ca, unregistered):
    earlier = now() - dt.timedelta(minutes=10)  # past the clock skew allowed; signed by the issuer, always valid
    respond = signed_by(dev_ca.auth.key, dev_ca.auth.certificate, include_cert=False,
                        this_update=earlier - dt.timedelta(minutes=1))
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"], clock=lambda: earlier).ocsp_failure == \
            "not_yet_valid"


def test_replayed_response_with_another_nonce_is_refused(trust, revocation_service, dev_ca, auth_user):
    # Record a genuine, signed "good" from the live service, then replay it to a later request.
    request = (ocsp.OCSPRequestBuilder().add_certificate(auth_user["cert"], dev_ca.auth.certificate, hashes.SHA256())
               .add_extension(x509.OCSPNonce(secrets.token_bytes(32)), critical=False).build())
    recorded = fetcher(TIMEOUT, 65536).fetch(revocation_service.url + "/ocsp",
                                             request.public_bytes(serialization.Encoding.DER),
                                             "application/ocsp-request").body
    assert ocsp.load_der_ocsp_response(recorded).certificate_status is ocsp.OCSPCertStatus.GOOD
    with fake_ocsp(lambda body: recorded) as server:
        assert check_via(trust, server.url, auth_user["cert"], nonce=True).ocsp_failure == "nonce_mismatch"


def test_response_from_another_cas_responder_is_refused(trust, unregistered):
    stranger = DevCA.generate()
    respond = signed_by(stranger.auth.responder_key, stranger.auth.responder_certificate)
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"]).ocsp_failure == "responder_unauthorised"


def test_responder_without_the_ocsp_signing_purpose_is_refused(trust, dev_ca, unregistered):
    # Issued by the right CA, but the CA never said it may sign OCSP responses (RFC 6960 §4.2.2.2).
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not a responder")]))
            .issuer_name(dev_ca.auth.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - dt.timedelta(hours=1)).not_valid_after(now() + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(dev_ca.auth.key, hashes.SHA256()))
    with fake_ocsp(signed_by(key, cert)) as server:
        assert check_via(trust, server.url, unregistered["cert"]).ocsp_failure == "responder_unauthorised"


def test_stale_response_is_refused(trust, dev_ca, unregistered):
    respond = genuine(dev_ca, this_update=now() - dt.timedelta(hours=2))
    with fake_ocsp(respond) as server:
        assert check_via(trust, server.url, unregistered["cert"]).ocsp_failure == "stale"


def test_unknown_answer_is_final_and_not_overridden_by_the_crl(trust, dev_ca, auth_user, revocation_service):
    respond = genuine(dev_ca, status=ocsp.OCSPCertStatus.UNKNOWN)
    with fake_ocsp(respond) as server:
        checker = RevocationChecker(server.url + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)
        with pytest.raises(RevocationUnknown) as caught:
            checker.check(auth_user["cert"], trust.roots_for(CertificateKind.AUTH)[0])
    assert (caught.value.ocsp_failure, caught.value.crl_failure) == ("certificate_unknown", None)


def test_certificate_the_service_never_saw_issued_is_not_accepted(trust, revocation_service, unregistered):
    # The responder answers RFC 6960 §2.2's "revoked, certificateHold, 1970" for unknown serials: that is final,
    # and neither "on hold" (the holder did nothing) nor "good" by way of the CRL.
    checker = RevocationChecker(revocation_service.url + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)
    with pytest.raises(RevocationUnknown) as caught:
        checker.check(unregistered["cert"], trust.roots_for(CertificateKind.AUTH)[0])
    assert (caught.value.ocsp_failure, caught.value.crl_failure) == ("certificate_not_issued", None)
    refused(ErrorCode.REVOCATION_UNKNOWN, login, CertificateVerifier(trust, checker), unregistered)


def test_try_later_falls_back_to_the_crl(trust, auth_user, revocation_service):
    try_later = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    publish_crl(revocation_service.services, auth_user["cert"])
    with fake_ocsp(lambda body: try_later.public_bytes(serialization.Encoding.DER)) as server:
        checker = RevocationChecker(server.url + "/ocsp", revocation_service.url, trust, timeout=TIMEOUT)
        result = checker.check(auth_user["cert"], trust.roots_for(CertificateKind.AUTH)[0])
    assert (result.status, result.source, result.ocsp_skipped) == (RevocationStatus.GOOD, "crl", "response_try_later")


# --- malformed proofs -------------------------------------------------------------------------------------


def test_oversized_certificate_is_refused(offline):
    refused(ErrorCode.PROOF_MALFORMED, offline.verify_login, b"\x30" * 8193, bytes(256), ORIGIN, b"c" * 32,
            token_type="card")


def test_short_signature_is_refused(offline, unregistered):
    refused(ErrorCode.PROOF_MALFORMED, offline.verify_login, der(unregistered["cert"]), bytes(255), ORIGIN, b"c" * 32,
            token_type="card")


def test_unknown_token_type_is_refused(offline, unregistered):
    refused(ErrorCode.PROOF_MALFORMED, offline.verify_login, der(unregistered["cert"]), bytes(256), ORIGIN, b"c" * 32,
            token_type="juki")


def test_garbage_certificate_is_refused(offline):
    refused(ErrorCode.CERTIFICATE_MALFORMED, offline.verify_login, b"\x30\x82\x01\x00" + secrets.token_bytes(256),
            bytes(256), ORIGIN, b"c" * 32, token_type="card")


# --- the trust store --------------------------------------------------------------------------------------


def test_trust_store_refuses_a_root_that_is_not_pinned(dev_ca, tmp_path):
    pem = tmp_path / "auth-root.pem"
    pem.write_bytes(dev_ca.auth.certificate.public_bytes(serialization.Encoding.PEM))
    signing_pem = tmp_path / "sign-root.pem"
    signing_pem.write_bytes(dev_ca.signing.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(TrustStoreError, match="not a pinned auth root"):
        TrustStore.from_pem_files(auth=[pem], signing=[signing_pem])


def test_trust_store_accepts_pinned_roots_and_keeps_kinds_apart(dev_ca, tmp_path):
    auth_pem, sign_pem = tmp_path / "auth.pem", tmp_path / "sign.pem"
    auth_pem.write_bytes(dev_ca.auth.certificate.public_bytes(serialization.Encoding.PEM))
    sign_pem.write_bytes(dev_ca.signing.certificate.public_bytes(serialization.Encoding.PEM))
    pins = {CertificateKind.AUTH: {"dev": fingerprint(dev_ca.auth.certificate)},
            CertificateKind.SIGNING: {"dev": fingerprint(dev_ca.signing.certificate)}}
    store = TrustStore.from_pem_files(auth=[auth_pem], signing=[sign_pem], fingerprints=pins)
    assert store.roots_for(CertificateKind.AUTH) == (dev_ca.auth.certificate,)
    with pytest.raises(TrustStoreError):  # the signing root pinned as an auth root is still refused
        TrustStore.from_pem_files(auth=[sign_pem], signing=[sign_pem], fingerprints=pins)


def test_production_profile_pins_the_jlis_roots():
    assert PRODUCTION_FINGERPRINTS is JLIS_ROOT_FINGERPRINTS



def test_successive_checks_are_answered_by_ocsp_over_one_kept_alive_connection(trust, revocation_service, auth_user):
    # The checker keeps its connection to the responder between logins; every answer must still come from OCSP (a
    # connection left unusable would quietly send every later login to the CRL fallback). A keep-alive relay in
    # front of the live service counts the connections it was given.
    upstream, connections = fetcher(TIMEOUT, 65536), []

    class KeepAliveRelay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            connections.append(1)
            super().setup()

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = upstream.fetch(revocation_service.url + "/ocsp", body, "application/ocsp-request").body
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveRelay)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        checker = RevocationChecker(f"http://127.0.0.1:{relay.server_address[1]}/ocsp", None, trust, timeout=TIMEOUT)
        issuer = trust.roots_for(CertificateKind.AUTH)[0]
        results = [checker.check(auth_user["cert"], issuer) for _ in range(3)]
    finally:
        relay.shutdown()
        relay.server_close()
    assert [(r.status, r.source) for r in results] == [(RevocationStatus.GOOD, "ocsp")] * 3
    assert len(connections) == 1
