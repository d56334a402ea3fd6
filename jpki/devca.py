"""The development CA ("dev J-LIS"): issues JPKI-shaped certificates for development and tests only.

Its roots carry J-LIS's DNs plus a DEVELOPMENT marker so that nothing issued here can be mistaken for the
real thing, and the production trust profile pins J-LIS's own fingerprints, never these. Building is pure
(`DevCA.generate`, the `issue_*` methods); `save`/`load` are the only file I/O, under `var/pki/` by default, in
the issuer layout production uses (`jpki/issuer.py`, docs/configuration.md) plus `ca.json`. Production code never
imports this module; the `Issuer` value type lives in `jpki/issuer.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jpki.certificate import FourFacts, encode_birthdate, encode_der_utf8
from jpki.issuer import DEFAULT_REVOCATION_URL, Issuer, IssuerFilesMissing, load_issuers, save_issuers, write_file
from jpki.profile import (
    AUTH_POLICY_OID,
    MIN_SIGNING_AGE,
    SIGN_POLICY_OID,
    VALIDITY_BIRTHDAYS,
    CertificateKind,
    FourFactsOID,
    crl_shard,
    crl_url,
    ocsp_url,
    root_name,
)

DEVELOPMENT_MARKER = "DEVELOPMENT ONLY - not J-LIS"
ROOT_LIFETIME = dt.timedelta(days=20 * 365)
RESPONDER_LIFETIME = dt.timedelta(days=7)
RESPONDER_RENEW_BEFORE = dt.timedelta(days=2)
JST = dt.timezone(dt.timedelta(hours=9))
CA_META = "ca.json"  # the development CA's own file next to the issuer files: its revocation URL


class UnderageForSigning(ValueError):
    """Holders under 15 get no signing certificate (docs/jpki-profile.md §3)."""


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_serial() -> int:
    # 63 random bits, never zero (RFC 5280 §4.1.2.2: positive): unique in practice and small enough to keep
    # per-certificate storage small. Every bit random, the low ones too: status buckets and CRL shards are taken
    # from the serial modulo a power of two.
    return 1 + secrets.randbelow((1 << 63) - 1)


def age_on(birthdate: dt.date, day: dt.date) -> int:
    return day.year - birthdate.year - ((day.month, day.day) < (birthdate.month, birthdate.day))


def _birthday_in(birthdate: dt.date, year: int) -> dt.date:
    try:
        return birthdate.replace(year=year)
    except ValueError:  # 29 February in a common year
        return dt.date(year, 2, 28)


def validity_end(birthdate: dt.date, issued_on: dt.date) -> dt.datetime:
    """The end of the holder's 5th birthday after issue, 23:59:59 Japan time (docs/jpki-profile.md §3)."""
    first = _birthday_in(birthdate, issued_on.year)
    if first <= issued_on:
        first = _birthday_in(birthdate, issued_on.year + 1)
    last = _birthday_in(birthdate, first.year + VALIDITY_BIRTHDAYS - 1)
    return dt.datetime.combine(last, dt.time(23, 59, 59), JST).astimezone(dt.UTC)


@dataclass(frozen=True)
class DevCA:
    auth: Issuer
    signing: Issuer
    revocation_url: str = DEFAULT_REVOCATION_URL

    def issuer(self, kind: CertificateKind) -> Issuer:
        return self.auth if kind is CertificateKind.AUTH else self.signing

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def generate(cls, revocation_url: str = DEFAULT_REVOCATION_URL, now: dt.datetime | None = None) -> DevCA:
        now = now or dt.datetime.now(dt.UTC)
        issuers = {}
        for kind in CertificateKind:
            key = new_rsa_key()
            root = _root_certificate(kind, key, now)
            responder_key, responder = _responder_certificate(key, root, now)
            issuers[kind] = Issuer(kind, key, root, responder_key, responder)
        return cls(issuers[CertificateKind.AUTH], issuers[CertificateKind.SIGNING], revocation_url)

    def with_fresh_responders(self, now: dt.datetime | None = None) -> DevCA:
        """Re-issue any delegated OCSP responder certificate that is near its end."""
        now = now or dt.datetime.now(dt.UTC)
        fresh = {}
        for issuer in (self.auth, self.signing):
            if issuer.responder_certificate.not_valid_after_utc - now < RESPONDER_RENEW_BEFORE:
                key, cert = _responder_certificate(issuer.key, issuer.certificate, now)
                issuer = replace(issuer, responder_key=key, responder_certificate=cert)
            fresh[issuer.kind] = issuer
        return replace(self, auth=fresh[CertificateKind.AUTH], signing=fresh[CertificateKind.SIGNING])

    def issue_auth(self, public_key: rsa.RSAPublicKey, birthdate: dt.date,
                   issued_at: dt.datetime | None = None, serial: int | None = None,
                   not_after: dt.datetime | None = None) -> x509.Certificate:
        """A user-authentication certificate: opaque subject, no personal facts (docs/jpki-profile.md §3)."""
        issued_at = issued_at or dt.datetime.now(dt.UTC)
        builder = self._leaf(CertificateKind.AUTH, public_key, issued_at, serial,
                             not_after or validity_end(birthdate, issued_at.astimezone(JST).date()))
        builder = builder.add_extension(_key_usage(content_commitment=False), critical=True)
        return builder.sign(self.auth.key, hashes.SHA256())

    def issue_signing(self, public_key: rsa.RSAPublicKey, facts: FourFacts,
                      issued_at: dt.datetime | None = None, serial: int | None = None,
                      not_after: dt.datetime | None = None) -> x509.Certificate:
        """A signing certificate carrying the four basic facts in subjectAltName otherNames."""
        issued_at = issued_at or dt.datetime.now(dt.UTC)
        issued_on = issued_at.astimezone(JST).date()
        if age_on(facts.birthdate, issued_on) < MIN_SIGNING_AGE:
            raise UnderageForSigning("Holders under 15 are not issued a signing certificate.")
        builder = self._leaf(CertificateKind.SIGNING, public_key, issued_at, serial,
                             not_after or validity_end(facts.birthdate, issued_on))
        builder = builder.add_extension(_key_usage(content_commitment=True), critical=True)
        builder = builder.add_extension(x509.SubjectAlternativeName(_four_facts_names(facts)), critical=False)
        return builder.sign(self.signing.key, hashes.SHA256())

    def _leaf(self, kind: CertificateKind, public_key: rsa.RSAPublicKey, issued_at: dt.datetime,
              serial: int | None, not_after: dt.datetime) -> x509.CertificateBuilder:
        issuer = self.issuer(kind)
        serial = serial or new_serial()
        policy = AUTH_POLICY_OID if kind is CertificateKind.AUTH else SIGN_POLICY_OID
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(12).upper()),  # opaque by design
        ])
        crl = crl_url(self.revocation_url, kind, crl_shard(serial))
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(issued_at - dt.timedelta(minutes=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(policy, None)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_authority_key_id(issuer.certificate), critical=False)
            .add_extension(x509.CRLDistributionPoints([
                x509.DistributionPoint([x509.UniformResourceIdentifier(crl)], None, None, None)
            ]), critical=False)
            .add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(ocsp_url(self.revocation_url)))
            ]), critical=False)
        )

    # --- files ----------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """The issuer files in the production layout (jpki/issuer.py), and `ca.json` with the revocation URL."""
        directory = Path(directory)
        save_issuers(directory, (self.auth, self.signing))
        write_file(directory / CA_META, json.dumps({"revocation_url": self.revocation_url}, indent=2).encode())

    @classmethod
    def load(cls, directory: Path) -> DevCA:
        directory = Path(directory)
        meta = json.loads((directory / CA_META).read_text())
        try:
            issuers = load_issuers(directory)
        except IssuerFilesMissing as missing:
            # A development CA saved before the one issuer layout (`<slug>-root.pem`): it is made anew, not moved.
            raise IssuerFilesMissing(directory, missing.missing, f"Remove {directory} to make a new development CA "
                                     "(and new virtual cards from it).") from None
        return cls(issuers[CertificateKind.AUTH], issuers[CertificateKind.SIGNING], meta["revocation_url"])

    @classmethod
    def load_or_create(cls, directory: Path, revocation_url: str = DEFAULT_REVOCATION_URL) -> DevCA:
        """The CA under `directory`, created on first use; near-expired responder certificates renewed."""
        directory = Path(directory)
        if not (directory / CA_META).exists():
            ca = cls.generate(revocation_url)
            ca.save(directory)
            return ca
        ca = cls.load(directory)
        fresh = ca.with_fresh_responders()
        if fresh != ca:
            fresh.save(directory)
        return fresh


def _root_certificate(kind: CertificateKind, key: rsa.RSAPrivateKey, now: dt.datetime) -> x509.Certificate:
    name = root_name(kind, DEVELOPMENT_MARKER)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _responder_certificate(root_key: rsa.RSAPrivateKey, root: x509.Certificate,
                           now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A delegated OCSP responder (RFC 6960 §4.2.2.2): id-kp-OCSPSigning, ocsp-nocheck, short-lived.

    P-256 rather than RSA: a nonce response is signed live per request, and ECDSA signs ~20× faster.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        *root.subject,
        x509.NameAttribute(NameOID.COMMON_NAME, "OCSP responder"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + RESPONDER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(content_commitment=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(root), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return key, cert


def _key_usage(content_commitment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=content_commitment, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)


def _authority_key_id(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _four_facts_names(facts: FourFacts) -> list[x509.GeneralName]:
    values = [
        (FourFactsOID.NAME, facts.name),
        (FourFactsOID.NAME_SUBSTITUTE, facts.name_substitute),
        (FourFactsOID.SEX, facts.sex),
        (FourFactsOID.BIRTHDATE, encode_birthdate(facts.birthdate)),
        (FourFactsOID.ADDRESS, facts.address),
        (FourFactsOID.ADDRESS_SUBSTITUTE, facts.address_substitute),
    ]
    return [x509.OtherName(oid, encode_der_utf8(value)) for oid, value in values if value]
