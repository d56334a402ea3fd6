"""CRL publishing over real HTTP, against real Redis, with certificates from the dev CA — checked by cryptography
and by `openssl crl` / `openssl verify -crl_check`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import secrets
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ReasonFlags

from jpki.devca import DevCA, new_serial
from jpki.profile import CRL_SHARD_COUNT, crl_shard
from revocation.crl.der import build_crl, encode_entries, entry_serial, revoked_entries
from revocation.crl.publisher import CrlPublisher, delta_url
from revocation.domain.events import parse_event
from revocation.storage.keys import CRL_DIRTY
from revocation.storage.store import StatusStore

pytestmark = pytest.mark.timeout(120)

_event_ids = itertools.count()


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture
def new_card(issue_card):
    """`issue_card` with ids that can never look like a 12-digit My Number (random hex digits sometimes do)."""
    counter = itertools.count()

    def new():
        n, tag = next(counter), secrets.token_hex(4)
        return issue_card(holder=f"crl-holder-{n}-{tag}", card_id=f"crl-card-{n}-{tag}")

    return new


def apply(services, card: dict, event_type: str, at: str) -> None:
    services.applier.apply(parse_event({
        "event_id": f"crl-test-{next(_event_ids)}-{secrets.token_hex(4)}", "type": event_type,
        "holder": card["holder"], "occurred_at": at, "source": "test", "card_id": card["card_id"],
    }))


def http_get(url: str, headers: dict | None = None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def distribution_point(cert: x509.Certificate) -> str:
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return points[0].full_name[0].value


def fetch_crl(service, cert_or_url, delta: bool = False) -> x509.CertificateRevocationList:
    """The CRL that a certificate's distribution point names, fetched from the live service."""
    url = cert_or_url if isinstance(cert_or_url, str) else distribution_point(cert_or_url)
    url = delta_url(url) if delta else url
    status, headers, body = http_get(service.url + urllib.parse.urlsplit(url).path)
    assert status == 200 and headers["Content-Type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(body)


def reason_of(entry: x509.RevokedCertificate) -> ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


def extension(crl: x509.CertificateRevocationList, kind):
    return crl.extensions.get_extension_for_class(kind)


def pem(tmp_path, name: str, thing) -> str:
    path = tmp_path / name
    path.write_bytes(thing.public_bytes(serialization.Encoding.PEM))
    return str(path)


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def openssl_verify(tmp_path, ca: x509.Certificate, crl, leaf: x509.Certificate,
                   delta=None) -> subprocess.CompletedProcess:
    """`openssl verify -crl_check`; with a delta CRL, OpenSSL combines it with the complete one (-use_deltas)."""
    deltas = ["-use_deltas", "-CRLfile", pem(tmp_path, "delta.pem", delta)] if delta is not None else []
    return openssl("verify", "-crl_check", "-CAfile", pem(tmp_path, "ca.pem", ca),
                   "-CRLfile", pem(tmp_path, "crl.pem", crl), *deltas, pem(tmp_path, "leaf.pem", leaf))


# --- serving ------------------------------------------------------------------------------------------------


def test_the_certificates_crl_url_is_served_and_names_itself(revocation_service, new_card, dev_ca):
    card = new_card()
    for cert, issuer in ((card["auth"], dev_ca.auth), (card["signing"], dev_ca.signing)):
        url = distribution_point(cert)
        crl = fetch_crl(revocation_service, cert)
        assert crl.is_signature_valid(issuer.certificate.public_key())
        assert crl.issuer == issuer.certificate.subject
        scope = extension(crl, x509.IssuingDistributionPoint)
        assert scope.critical and [name.value for name in scope.value.full_name] == [url]
        assert extension(crl, x509.FreshestCRL).value[0].full_name[0].value == delta_url(url)
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert extension(crl, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
        assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None


def test_caching_headers_follow_this_and_next_update(revocation_service, new_card):
    card = new_card()
    path = urllib.parse.urlsplit(distribution_point(card["auth"])).path
    status, headers, body = http_get(revocation_service.url + path)
    crl = x509.load_der_x509_crl(body)
    assert status == 200
    assert "public" in headers["Cache-Control"]
    max_age = int(headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= (crl.next_update_utc - crl.last_update_utc).total_seconds()
    assert headers["Last-Modified"] == crl.last_update_utc.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert headers["Expires"] == crl.next_update_utc.strftime("%a, %d %b %Y %H:%M:%S GMT")
    again, _, empty = http_get(revocation_service.url + path, {"If-None-Match": headers["ETag"]})
    assert (again, empty) == (304, b"")


@pytest.mark.parametrize("path", ["/crl/nobody/0.crl", f"/crl/auth/{CRL_SHARD_COUNT}.crl",
                                  f"/crl/signing/{CRL_SHARD_COUNT + 3}-delta.crl", "/crl/sign/1.crl"])
def test_unknown_issuer_or_shard_is_a_json_404(revocation_service, path):
    status, headers, body = http_get(revocation_service.url + path)
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "unknown_crl"


def test_openssl_verifies_every_shard_and_its_delta(revocation_service, dev_ca, tmp_path):
    services = revocation_service.services
    services.crl.rebuild_all()
    services.crl.rebuild_all()  # a second round, so that every shard has a delta against a base
    for slug, issuer in services.issuers.items():
        ca_pem = pem(tmp_path, f"{slug}-ca.pem", issuer.certificate)
        for shard in range(services.config.crl_shards):
            for suffix in (".crl", "-delta.crl"):
                status, _, body = http_get(f"{revocation_service.url}/crl/{slug}/{shard}{suffix}")
                assert status == 200
                (tmp_path / "shard.crl").write_bytes(body)
                result = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "shard.crl"), "-CAfile", ca_pem,
                                 "-noout")
                assert result.returncode == 0 and "verify OK" in result.stdout + result.stderr, (slug, shard)


# --- what the CRLs say --------------------------------------------------------------------------------------


def test_openssl_refuses_a_revoked_certificate_and_accepts_a_good_one(revocation_service, new_card, dev_ca,
                                                                      tmp_path):
    services = revocation_service.services
    compromised, good = new_card(), new_card()
    apply(services, compromised, "key_compromised", "2026-02-01T00:00:00Z")
    services.crl.publish_due()

    refused = openssl_verify(tmp_path, dev_ca.auth.certificate, fetch_crl(revocation_service, compromised["auth"]),
                             compromised["auth"])
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr

    accepted = openssl_verify(tmp_path, dev_ca.auth.certificate, fetch_crl(revocation_service, good["auth"]),
                              good["auth"])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


@pytest.mark.parametrize(("event_type", "reason"), [
    ("key_compromised", ReasonFlags.key_compromise),
    ("revocation_requested", ReasonFlags.cessation_of_operation),
    ("card_lost", ReasonFlags.certificate_hold),
    ("record_error", None),  # unspecified: RFC 5280 §5.3.1 leaves the reasonCode out
])
def test_entries_carry_the_reason_code(revocation_service, new_card, event_type, reason):
    services = revocation_service.services
    card = new_card()
    apply(services, card, event_type, "2026-02-01T00:00:00Z")
    services.crl.publish_due()
    for cert in (card["auth"], card["signing"]):
        entry = fetch_crl(revocation_service, cert).get_revoked_certificate_by_serial_number(cert.serial_number)
        assert entry is not None and reason_of(entry) == reason
        assert entry.revocation_date_utc == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def test_crl_numbers_increase_and_a_delta_shares_its_complete_crls_number(revocation_service, new_card):
    services = revocation_service.services
    card = new_card()
    slug, shard = "auth", crl_shard(card["auth"].serial_number)
    numbers = [services.crl.publish(slug, shard)]  # the first publication has no base yet, so no delta
    for _ in range(4):
        services.crl.publish(slug, shard)
        full = fetch_crl(revocation_service, card["auth"])
        delta = fetch_crl(revocation_service, card["auth"], delta=True)
        number = extension(full, x509.CRLNumber).value.crl_number
        # RFC 5280 §5.2.3: issued together, a complete and a delta CRL of one scope share their number.
        assert extension(delta, x509.CRLNumber).value.crl_number == number
        assert extension(delta, x509.DeltaCRLIndicator).value.crl_number < number
        assert extension(delta, x509.IssuingDistributionPoint).value == \
            extension(full, x509.IssuingDistributionPoint).value
        numbers.append(number)
    assert numbers == sorted(set(numbers))


def test_lifting_a_hold_removes_the_entry_and_the_delta_says_remove_from_crl(revocation_service, new_card,
                                                                           tmp_path, dev_ca):
    services = revocation_service.services
    card = new_card()
    cert = card["auth"]
    apply(services, card, "card_lost", "2026-02-01T00:00:00Z")
    services.crl.publish_due()
    held = fetch_crl(revocation_service, cert)
    assert reason_of(held.get_revoked_certificate_by_serial_number(cert.serial_number)) is ReasonFlags.certificate_hold

    apply(services, card, "card_found", "2026-02-03T00:00:00Z")
    services.crl.publish_due()
    assert fetch_crl(revocation_service, cert).get_revoked_certificate_by_serial_number(cert.serial_number) is None
    delta = fetch_crl(revocation_service, cert, delta=True)
    assert extension(delta, x509.DeltaCRLIndicator).value.crl_number <= extension(held, x509.CRLNumber).value.crl_number
    entry = delta.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert reason_of(entry) is ReasonFlags.remove_from_crl
    assert openssl_verify(tmp_path, dev_ca.auth.certificate, fetch_crl(revocation_service, cert), cert).returncode == 0


def test_a_delta_lists_changes_since_its_base_and_nothing_else(revocation_service, new_card):
    services = revocation_service.services
    before, lost_then_revoked, later, found = (new_card() for _ in range(4))
    apply(services, before, "revocation_requested", "2026-02-01T00:00:00Z")
    apply(services, lost_then_revoked, "card_lost", "2026-02-01T00:00:00Z")
    apply(services, found, "card_lost", "2026-02-01T00:00:00Z")
    services.crl.rebuild_all()  # the base: three certificates per shard pair revoked or held
    apply(services, lost_then_revoked, "key_compromised", "2026-02-02T00:00:00Z")
    apply(services, later, "card_returned", "2026-02-02T00:00:00Z")
    apply(services, found, "card_found", "2026-02-02T00:00:00Z")
    services.crl.publish_due()

    def delta_entry(card):
        delta = services.crl.get("auth", crl_shard(card["auth"].serial_number), delta=True)
        entry = x509.load_der_x509_crl(delta.der).get_revoked_certificate_by_serial_number(card["auth"].serial_number)
        return entry and reason_of(entry)

    assert delta_entry(before) is None  # unchanged since the base
    assert delta_entry(lost_then_revoked) is ReasonFlags.key_compromise
    assert delta_entry(later) is ReasonFlags.cessation_of_operation
    assert delta_entry(found) is ReasonFlags.remove_from_crl


def test_a_hold_placed_and_lifted_after_the_base_is_still_removed_by_the_delta(revocation_service, new_card,
                                                                              dev_ca, tmp_path):
    """A client may combine the delta with any complete CRL since the base (RFC 5280 §5.2.4), and an intermediate
    one showed the hold."""
    services = revocation_service.services
    card = new_card()
    slug, shard, serial = "auth", crl_shard(card["auth"].serial_number), card["auth"].serial_number
    services.crl.rebuild_all()
    apply(services, card, "card_lost", "2026-02-01T00:00:00Z")
    services.crl.publish(slug, shard)
    intermediate = x509.load_der_x509_crl(services.crl.get(slug, shard).der)
    assert intermediate.get_revoked_certificate_by_serial_number(serial) is not None
    apply(services, card, "card_found", "2026-02-02T00:00:00Z")
    services.crl.publish(slug, shard)
    delta = x509.load_der_x509_crl(services.crl.get(slug, shard, delta=True).der)
    assert extension(delta, x509.DeltaCRLIndicator).value.crl_number < \
        extension(intermediate, x509.CRLNumber).value.crl_number
    assert reason_of(delta.get_revoked_certificate_by_serial_number(serial)) is ReasonFlags.remove_from_crl
    ca = dev_ca.auth.certificate
    assert openssl_verify(tmp_path, ca, intermediate, card["auth"]).returncode != 0  # on hold, by itself
    assert openssl_verify(tmp_path, ca, intermediate, card["auth"], delta=delta).returncode == 0  # + delta: good

    # Once the base has moved past the release, the released-holds record is gone and deltas stop listing it.
    assert services.redis.hlen(services.store.keys.crl_released(slug, shard)) == 1
    services.crl.rebuild_all()
    assert services.redis.hlen(services.store.keys.crl_released(slug, shard)) == 0
    services.crl.publish(slug, shard)
    delta = x509.load_der_x509_crl(services.crl.get(slug, shard, delta=True).der)
    assert len(delta) == 0


def test_openssl_combines_a_base_with_a_delta_that_revokes(revocation_service, new_card, dev_ca, tmp_path):
    services = revocation_service.services
    card = new_card()
    slug, shard = "auth", crl_shard(card["auth"].serial_number)
    services.crl.rebuild_all()
    base = x509.load_der_x509_crl(services.crl.get(slug, shard).der)
    apply(services, card, "key_compromised", "2026-02-01T00:00:00Z")
    services.crl.publish_due()
    delta = x509.load_der_x509_crl(services.crl.get(slug, shard, delta=True).der)
    assert extension(delta, x509.DeltaCRLIndicator).value.crl_number == extension(base, x509.CRLNumber).value.crl_number
    assert openssl_verify(tmp_path, dev_ca.auth.certificate, base, card["auth"]).returncode == 0
    refused = openssl_verify(tmp_path, dev_ca.auth.certificate, base, card["auth"], delta=delta)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr


def test_a_publication_built_against_a_base_that_moved_meanwhile_is_built_again(revocation_services, new_card):
    card = new_card()
    slug, shard = "auth", crl_shard(card["auth"].serial_number)
    assert revocation_services.crl.publish(slug, shard) == 1  # the base

    class Interleaved(StatusStore):
        """Another publisher moves the base while this one is reading the shard's entries."""

        raced = False

        def crl_entries(self, issuer, shard):
            if not self.raced:
                self.raced = True
                assert revocation_services.crl.publish(issuer, shard, rebase=True) == 2
            return super().crl_entries(issuer, shard)

    racing = CrlPublisher(Interleaved(revocation_services.redis, revocation_services.store.keys),
                          revocation_services.issuers, revocation_services.config)
    assert racing.publish(slug, shard) == 4  # number 3 was built against base 1 and refused
    delta = x509.load_der_x509_crl(revocation_services.crl.get(slug, shard, delta=True).der)
    assert extension(delta, x509.CRLNumber).value.crl_number == 4
    assert extension(delta, x509.DeltaCRLIndicator).value.crl_number == 2


# --- when shards are published ------------------------------------------------------------------------------


def test_publish_due_publishes_only_dirty_shards_within_the_rate_bound(revocation_services, new_card):
    config = dataclasses.replace(revocation_services.config, crl_min_interval=dt.timedelta(minutes=5))
    publisher = CrlPublisher(revocation_services.store, revocation_services.issuers, config)
    card = new_card()
    publisher.rebuild_all()
    start = dt.datetime.now(dt.UTC)
    numbers = {(s.issuer, s.shard): s.number for s in publisher.status()}
    assert publisher.publish_due(start) == []  # nothing changed, nothing near its nextUpdate

    apply(revocation_services, card, "card_returned", "2026-02-01T00:00:00Z")
    changed = {f"auth:{crl_shard(card['auth'].serial_number)}", f"signing:{crl_shard(card['signing'].serial_number)}"}
    assert {m.decode() for m in revocation_services.redis.smembers(CRL_DIRTY)} == changed
    assert publisher.publish_due(start + dt.timedelta(minutes=1)) == []  # too soon after the last publication
    assert set(publisher.publish_due(start + dt.timedelta(minutes=6))) == changed
    assert revocation_services.redis.scard(CRL_DIRTY) == 0
    for status in publisher.status():
        republished = f"{status.issuer}:{status.shard}" in changed
        assert (status.number > numbers[(status.issuer, status.shard)]) is republished
        assert status.entries == (1 if republished else 0)

    # Near nextUpdate (within a quarter of the validity) every shard is refreshed, changed or not.
    late = start + config.crl_validity * 0.8
    assert len(publisher.publish_due(late)) == len(numbers)
    assert publisher.publish_due(late) == []


def test_a_never_published_shard_is_published_on_first_request(revocation_services):
    crl = revocation_services.crl
    assert crl.status()[0].number is None
    first = crl.get("signing", 5)
    assert first is not None and crl.get("signing", 5, delta=True) is not None
    assert crl.get("signing", CRL_SHARD_COUNT) is None and crl.get("nobody", 0) is None


# --- the encoder ------------------------------------------------------------------------------------------------


def test_twenty_thousand_entries_parse_back_with_cryptography():
    issuer = DevCA.generate().signing
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    reasons = [None, ReasonFlags.key_compromise, ReasonFlags.certificate_hold, ReasonFlags.superseded,
               ReasonFlags.affiliation_changed, ReasonFlags.cessation_of_operation]
    rows = [(new_serial(), reasons[i % len(reasons)], start + dt.timedelta(seconds=i))
            for i in range(20_000)]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    der = build_crl(issuer.certificate, issuer.key, encode_entries(rows), number=7, this_update=now,
                    next_update=now + dt.timedelta(days=1), distribution_point="http://example.test/crl/signing/0.crl")
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(issuer.certificate.public_key())
    assert len(crl) == len(rows)
    assert [(e.serial_number, reason_of(e), e.revocation_date_utc) for e in crl] == rows
    assert [entry_serial(entry) for entry in revoked_entries(der)] == [serial for serial, _, _ in rows]


def test_encoding_is_byte_identical_to_cryptographys_builder():
    """The same CRL through cryptography's (quadratic) builder: the to-be-signed bytes must not differ by one."""
    issuer = DevCA.generate().auth
    now = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    rows = [
        (1, ReasonFlags.key_compromise, now),
        (0x80, None, now),  # top bit set: needs a 00 sign octet
        (0xFF00, ReasonFlags.unspecified, now),
        (2**158 + 5, ReasonFlags.certificate_hold, dt.datetime(2051, 1, 1, tzinfo=dt.UTC)),  # GeneralizedTime
        (12345678901234567, ReasonFlags.remove_from_crl, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
        *((1000 + code, reason, now) for code, reason in enumerate(ReasonFlags)),
    ]
    url = "http://127.0.0.1:8081/crl/auth/3.crl"
    for key, digest, base in [(issuer.key, hashes.SHA256(), None), (issuer.key, hashes.SHA256(), 41),
                              (ec.generate_private_key(ec.SECP384R1()), hashes.SHA384(), None)]:
        ours = x509.load_der_x509_crl(build_crl(
            issuer.certificate, key, encode_entries(rows), number=42, this_update=now,
            next_update=now + dt.timedelta(days=1), distribution_point=url, base_number=base,
            freshest=delta_url(url)))
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.certificate.subject)
                   .last_update(now).next_update(now + dt.timedelta(days=1)))
        for serial, reason, at in rows:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            if reason not in (None, ReasonFlags.unspecified):
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (builder
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
                   .add_extension(x509.CRLNumber(42), critical=False)
                   .add_extension(x509.IssuingDistributionPoint([x509.UniformResourceIdentifier(url)], None,
                                                                False, False, None, False, False), critical=True))
        if base is None:
            builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(delta_url(url))], None, None, None)]), critical=False)
        else:
            builder = builder.add_extension(x509.DeltaCRLIndicator(base), critical=True)
        theirs = builder.sign(key, digest)
        assert ours.tbs_certlist_bytes == theirs.tbs_certlist_bytes
        assert ours.is_signature_valid(key.public_key())
