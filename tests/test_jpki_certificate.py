import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jpki.certificate import (
    FourFacts,
    MalformedCertificate,
    NotJpkiCertificate,
    decode_birthdate,
    decode_der_string,
    encode_birthdate,
    encode_der_utf8,
    parse_certificate,
)
from jpki.devca import UnderageForSigning, new_rsa_key, validity_end
from jpki.profile import AUTH_POLICY_OID, SIGN_POLICY_OID, CertificateKind, crl_shard

FACTS = FourFacts(name="山田 花子", address="大阪府大阪市北区中之島一丁目3番20号",
                  birthdate=dt.date(1985, 7, 30), sex="2")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def holder_key():
    return new_rsa_key()


def test_auth_certificate_parses_as_auth_without_personal_facts(dev_ca, holder_key):
    cert = parse_certificate(der(dev_ca.issue_auth(holder_key.public_key(), FACTS.birthdate)))
    assert cert.kind is CertificateKind.AUTH
    assert cert.policy_oid == AUTH_POLICY_OID
    assert cert.four_facts is None
    assert cert.key_usage == {"digital_signature"}
    assert cert.issuer == dev_ca.auth.certificate.subject
    assert cert.public_key.public_numbers() == holder_key.public_key().public_numbers()
    assert cert.not_before < dt.datetime.now(dt.UTC) < cert.not_after


def test_signing_certificate_carries_the_four_basic_facts(dev_ca, holder_key):
    cert = parse_certificate(der(dev_ca.issue_signing(holder_key.public_key(), FACTS)))
    assert cert.kind is CertificateKind.SIGNING
    assert cert.policy_oid == SIGN_POLICY_OID
    assert cert.four_facts == FACTS
    assert cert.key_usage == {"digital_signature", "content_commitment"}


def test_certificates_point_at_their_crl_shard_and_the_ocsp_responder(dev_ca, holder_key):
    for kind, slug in ((CertificateKind.AUTH, "auth"), (CertificateKind.SIGNING, "signing")):
        issued = (dev_ca.issue_auth(holder_key.public_key(), FACTS.birthdate) if kind is CertificateKind.AUTH
                  else dev_ca.issue_signing(holder_key.public_key(), FACTS))
        cert = parse_certificate(der(issued))
        assert cert.crl_urls == (f"{dev_ca.revocation_url}/crl/{slug}/{crl_shard(cert.serial)}.crl",)
        assert cert.ocsp_urls == (f"{dev_ca.revocation_url}/ocsp",)


def test_repr_hides_serial_and_facts(dev_ca, holder_key):
    cert = parse_certificate(der(dev_ca.issue_signing(holder_key.public_key(), FACTS)))
    shown = repr(cert) + repr(cert.four_facts)
    assert str(cert.serial) not in shown and f"{cert.serial:x}" not in shown.lower()
    assert FACTS.name not in shown and FACTS.address not in shown and "1985" not in shown


def test_holder_under_15_gets_no_signing_certificate(dev_ca, holder_key):
    child = FourFacts(name="子", address="東京都", birthdate=dt.date.today() - dt.timedelta(days=14 * 365), sex="1")
    with pytest.raises(UnderageForSigning):
        dev_ca.issue_signing(holder_key.public_key(), child)


@pytest.mark.parametrize(("birthdate", "issued", "end"), [
    (dt.date(1990, 1, 2), dt.date(2026, 11, 23), dt.date(2031, 1, 2)),
    (dt.date(1990, 11, 23), dt.date(2026, 11, 23), dt.date(2031, 11, 23)),  # birthday on issue day: not "after"
    (dt.date(1990, 11, 24), dt.date(2026, 11, 23), dt.date(2030, 11, 24)),
    (dt.date(1992, 2, 29), dt.date(2026, 3, 1), dt.date(2031, 2, 28)),  # leap-day holder
])
def test_validity_ends_on_the_fifth_birthday_after_issue(birthdate, issued, end):
    ends = validity_end(birthdate, issued)
    assert ends.astimezone(dt.timezone(dt.timedelta(hours=9))).date() == end


def test_birthdate_round_trips_with_era_digit():
    assert encode_birthdate(dt.date(1990, 1, 2)) == "419900102"
    assert encode_birthdate(dt.date(2020, 1, 1)) == "520200101"
    assert encode_birthdate(dt.date(1960, 5, 5)) == "319600505"
    assert decode_birthdate("419900102") == dt.date(1990, 1, 2)
    assert decode_birthdate("19900102") == dt.date(1990, 1, 2)
    for bad in ("", "4199013", "41990x102", "419901332"):
        with pytest.raises(MalformedCertificate):
            decode_birthdate(bad)


def test_der_strings_refuse_lying_lengths():
    assert decode_der_string(encode_der_utf8("東京都" * 50)) == "東京都" * 50
    assert decode_der_string(b"\x13\x01" + b"2") == "2"
    for bad in (b"", b"\x0c", b"\x0c\x05abc", b"\x0c\x01ab", b"\x04\x01a", b"\x0c\x85\x00\x00\x00\x00\x01a",
                b"\x0c\x02\xff\xfe"):
        with pytest.raises(MalformedCertificate):
            decode_der_string(bad)


def _self_signed(key, policies=None, sign_key=None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not jpki")])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in policies]), critical=False)
    return der(builder.sign(sign_key or key, hashes.SHA256()))


def test_a_certificate_without_a_jpki_policy_is_refused(holder_key):
    with pytest.raises(NotJpkiCertificate):
        parse_certificate(_self_signed(holder_key))
    with pytest.raises(NotJpkiCertificate):
        parse_certificate(_self_signed(holder_key, [x509.ObjectIdentifier("2.23.140.1.2.1")]))


def test_a_certificate_claiming_both_policies_is_refused(holder_key):
    with pytest.raises(NotJpkiCertificate):
        parse_certificate(_self_signed(holder_key, [AUTH_POLICY_OID, SIGN_POLICY_OID]))


def test_a_non_rsa_key_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(NotJpkiCertificate):
        parse_certificate(_self_signed(key, [AUTH_POLICY_OID]))


def test_signing_certificate_without_facts_is_refused(dev_ca, holder_key):
    with pytest.raises(NotJpkiCertificate):
        parse_certificate(_self_signed(holder_key, [SIGN_POLICY_OID]))


@pytest.mark.parametrize("data", [b"", b"\x30\x03\x02\x01\x01", b"\x30" * 9000, "text"])
def test_garbage_is_a_malformed_certificate(data):
    with pytest.raises(MalformedCertificate) as info:
        parse_certificate(data)
    assert info.value.code == "certificate_malformed"


def test_truncated_certificate_is_malformed(dev_ca, holder_key):
    good = der(dev_ca.issue_auth(holder_key.public_key(), FACTS.birthdate))
    with pytest.raises(MalformedCertificate):
        parse_certificate(good[:-10])


def test_a_certificate_with_an_invalid_version_is_malformed_not_a_crash(dev_ca, holder_key):
    # Found by the fuzzer: cryptography raises InvalidVersion (not a ValueError) for X.509 version 2 (v2 = 1).
    good = der(dev_ca.issue_auth(holder_key.public_key(), FACTS.birthdate))
    version_v3 = b"\xa0\x03\x02\x01\x02"
    assert good.count(version_v3) == 1
    with pytest.raises(MalformedCertificate):
        parse_certificate(good.replace(version_v3, b"\xa0\x03\x02\x01\x01"))


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_a_certificate_with_a_negative_serial_is_malformed(dev_ca, holder_key):
    cert = dev_ca.issue_auth(holder_key.public_key(), FACTS.birthdate)
    good = der(cert)
    encoded = cert.serial_number.to_bytes(cert.serial_number.bit_length() // 8 + 1, "big")  # DER: minimal, signed
    field = bytes([0x02, len(encoded)]) + encoded
    assert good.count(field) == 1
    negative = bytes([0x02, len(encoded), 0x80 | encoded[0]]) + encoded[1:]
    with pytest.raises(MalformedCertificate, match="not positive"):
        parse_certificate(good.replace(field, negative))
