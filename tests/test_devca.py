"""The development CA: J-LIS-shaped roots with a DEVELOPMENT marker, leaves and OCSP responders that openssl accepts."""

import datetime as dt
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jpki.devca import DEVELOPMENT_MARKER, RESPONDER_LIFETIME, DevCA, new_rsa_key, new_serial
from jpki.issuer import IssuerFilesMissing, load_issuers
from jpki.profile import JLIS_OU, CertificateKind


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_roots_carry_jlis_names_and_the_development_marker(dev_ca):
    for issuer, ou in ((dev_ca.auth, "JPKI for user authentication"),
                       (dev_ca.signing, "JPKI for digital signature")):
        root = issuer.certificate
        units = [a.value for a in root.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        assert units == [ou, JLIS_OU, DEVELOPMENT_MARKER]
        assert root.subject == root.issuer
        usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign
        assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert root.public_key().key_size == 2048


def test_openssl_verifies_leaves_against_their_own_root_only(dev_ca, tmp_path):
    key = new_rsa_key()
    leaf = dev_ca.issue_auth(key.public_key(), dt.date(1990, 1, 2))
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    (tmp_path / "auth.pem").write_bytes(pem(dev_ca.auth.certificate))
    (tmp_path / "sign.pem").write_bytes(pem(dev_ca.signing.certificate))
    good = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "auth.pem", tmp_path / "leaf.pem"],
                          capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.strip().endswith(": OK")
    wrong = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "sign.pem", tmp_path / "leaf.pem"],
                           capture_output=True, text=True)
    assert wrong.returncode != 0


def test_ocsp_responder_is_delegated_short_lived_and_nocheck(dev_ca):
    for issuer in (dev_ca.auth, dev_ca.signing):
        responder = issuer.responder_certificate
        assert responder.issuer == issuer.certificate.subject
        responder.verify_directly_issued_by(issuer.certificate)
        eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
        responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
        lifetime = responder.not_valid_after_utc - responder.not_valid_before_utc
        assert lifetime <= RESPONDER_LIFETIME + dt.timedelta(minutes=5)


def test_saved_ca_loads_back_identical_with_private_keys_unreadable_to_others(tmp_path):
    created = DevCA.load_or_create(tmp_path / "pki", "http://127.0.0.1:9999")
    loaded = DevCA.load_or_create(tmp_path / "pki")
    assert loaded.revocation_url == "http://127.0.0.1:9999"
    for kind in CertificateKind:
        assert loaded.issuer(kind).certificate == created.issuer(kind).certificate
        assert loaded.issuer(kind).responder_certificate == created.issuer(kind).responder_certificate
    keys = list((tmp_path / "pki").glob("*.key.pem"))
    assert len(keys) == 4
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list((tmp_path / "pki").glob("*.tmp"))


def test_the_dev_ca_saves_the_production_issuer_layout_that_the_one_loader_reads(tmp_path):
    ca = DevCA.generate("http://127.0.0.1:9999")
    ca.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "ca.json", *(f"{slug}-{name}" for slug in ("auth", "signing")
                     for name in ("ca.pem", "crl-signer.key.pem", "ocsp.pem", "ocsp.key.pem"))])
    issuers = load_issuers(tmp_path)  # the loader REVOCATION_ISSUERS=<directory> uses in production
    for kind in CertificateKind:
        assert issuers[kind].certificate == ca.issuer(kind).certificate
        assert issuers[kind].responder_certificate == ca.issuer(kind).responder_certificate
        assert issuers[kind].key.public_key().public_numbers() == ca.issuer(kind).key.public_key().public_numbers()


def test_the_issuer_loader_names_every_missing_file_and_nothing_else(tmp_path):
    DevCA.generate().save(tmp_path)
    (tmp_path / "auth-crl-signer.key.pem").unlink()
    (tmp_path / "signing-ocsp.pem").unlink()
    with pytest.raises(IssuerFilesMissing) as refused:
        load_issuers(tmp_path)
    assert refused.value.code == "issuer_files_missing"
    assert refused.value.missing == ["auth-crl-signer.key.pem", "signing-ocsp.pem"]
    assert "BEGIN" not in refused.value.message


def test_a_dev_ca_saved_in_the_old_root_layout_is_refused_with_what_to_do(tmp_path):
    DevCA.generate().save(tmp_path)
    for slug in ("auth", "signing"):  # the layout before jpki/issuer.py: <slug>-root.pem, <slug>-root.key.pem
        (tmp_path / f"{slug}-ca.pem").rename(tmp_path / f"{slug}-root.pem")
        (tmp_path / f"{slug}-crl-signer.key.pem").rename(tmp_path / f"{slug}-root.key.pem")
    with pytest.raises(IssuerFilesMissing) as refused:
        DevCA.load_or_create(tmp_path)
    assert refused.value.message.endswith(f"Remove {tmp_path} to make a new development CA (and new virtual cards "
                                          "from it).")


def test_responders_near_their_end_are_renewed_on_load(tmp_path):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    DevCA.generate("http://127.0.0.1:1", now=past).save(tmp_path)
    before = DevCA.load(tmp_path).auth.responder_certificate
    renewed = DevCA.load_or_create(tmp_path).auth.responder_certificate
    assert renewed != before
    assert renewed.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    assert DevCA.load(tmp_path).auth.responder_certificate == renewed


@pytest.mark.parametrize("kind", list(CertificateKind))
def test_serials_are_positive_and_distinct(dev_ca, kind):
    key = new_rsa_key()
    from jpki.certificate import FourFacts

    facts = FourFacts(name="n", address="a", birthdate=dt.date(1980, 1, 1), sex="1")
    issue = ((lambda: dev_ca.issue_auth(key.public_key(), facts.birthdate)) if kind is CertificateKind.AUTH
             else (lambda: dev_ca.issue_signing(key.public_key(), facts)))
    serials = {issue().serial_number for _ in range(5)}
    assert len(serials) == 5 and all(0 < s < 2**63 for s in serials)


def test_serials_are_positive_and_random_in_every_bit_so_they_spread_over_buckets_and_shards():
    serials = [new_serial() for _ in range(256)]
    assert all(0 < serial < 1 << 63 for serial in serials)
    assert {serial % 2 for serial in serials} == {0, 1}  # the CRL shard and status bucket come from the low bits
    assert len({serial % 16 for serial in serials}) == 16
