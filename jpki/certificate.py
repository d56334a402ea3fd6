"""Parse a DER certificate into what the platform needs to know of it (docs/jpki-profile.md §3).

`parse_certificate(der)` answers: auth or signing, serial, issuer, validity, policy, public key, and for a
signing certificate the four basic facts. It checks shape, not trust: chains, revocation and validity
against a clock are the IdP's pipeline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.profile import (
    BIRTHDATE_ERA_PREFIX,
    ERA_DIGITS,
    POLICY_KIND,
    CertificateKind,
    FourFactsOID,
)
from wire.errors import FixedCodeError

# A JPKI certificate is about 1.5–2 KB; anything far larger is not one and is refused before parsing.
MAX_CERTIFICATE_DER = 8192


class CertificateError(FixedCodeError, ValueError):
    """A certificate could not be accepted as a JPKI certificate. `code` is stable."""

    code = "certificate_invalid"


class MalformedCertificate(CertificateError):
    code = "certificate_malformed"


class NotJpkiCertificate(CertificateError):
    code = "not_jpki_certificate"


@dataclass(frozen=True)
class FourFacts:
    """基本4情報 as carried by a signing certificate. Personal data: never log or echo it."""

    name: str
    address: str
    birthdate: dt.date
    sex: str  # as on the certificate: "1" male, "2" female (ISO/IEC 5218 codes)
    name_substitute: str | None = None
    address_substitute: str | None = None

    def __repr__(self) -> str:  # keep the facts out of tracebacks and logs
        return "FourFacts(<redacted>)"


@dataclass(frozen=True)
class JpkiCertificate:
    kind: CertificateKind
    serial: int
    issuer: x509.Name
    subject: x509.Name
    not_before: dt.datetime
    not_after: dt.datetime
    policy_oid: x509.ObjectIdentifier
    public_key: rsa.RSAPublicKey
    key_usage: frozenset[str]
    four_facts: FourFacts | None
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]
    certificate: x509.Certificate
    der: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    def __repr__(self) -> str:  # the serial is personal data (docs/jpki-profile.md §3)
        return f"JpkiCertificate(kind={self.kind.value}, not_after={self.not_after.isoformat()})"


def parse_certificate(der: bytes) -> JpkiCertificate:
    if not isinstance(der, bytes | bytearray) or not der:
        raise MalformedCertificate("No certificate was given.")
    if len(der) > MAX_CERTIFICATE_DER:
        raise MalformedCertificate("The certificate is larger than any JPKI certificate.")
    try:
        return _parse(bytes(der))
    except CertificateError:
        raise
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:  # cryptography parses fields lazily
        raise MalformedCertificate("The data is not a well-formed X.509 certificate.") from exc


def _parse(der: bytes) -> JpkiCertificate:
    cert = x509.load_der_x509_certificate(der)
    if cert.serial_number <= 0:  # RFC 5280 §4.1.2.2; cryptography still parses them, with a warning
        raise MalformedCertificate("The certificate's serial number is not positive.")
    extensions = cert.extensions
    policy_oid, kind = _jpki_policy(extensions)
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size != 2048:
        raise NotJpkiCertificate("JPKI certificates carry an RSA-2048 key; this one does not.")
    four_facts = _four_facts(extensions) if kind is CertificateKind.SIGNING else None
    return JpkiCertificate(
        kind=kind,
        serial=cert.serial_number,
        issuer=cert.issuer,
        subject=cert.subject,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        policy_oid=policy_oid,
        public_key=public_key,
        key_usage=_key_usage(extensions),
        four_facts=four_facts,
        crl_urls=_crl_urls(extensions),
        ocsp_urls=_ocsp_urls(extensions),
        certificate=cert,
        der=der,
    )


def _jpki_policy(extensions: x509.Extensions) -> tuple[x509.ObjectIdentifier, CertificateKind]:
    try:
        policies = extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound as exc:
        raise NotJpkiCertificate("The certificate has no certificate policy, so it is not JPKI's.") from exc
    kinds = {p.policy_identifier: POLICY_KIND[p.policy_identifier] for p in policies
             if p.policy_identifier in POLICY_KIND}
    if len(kinds) != 1:
        raise NotJpkiCertificate(
            "The certificate does not carry exactly one JPKI policy (user authentication or signing)."
        )
    return next(iter(kinds.items()))


_KEY_USAGE_FLAGS = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign",
)


def _key_usage(extensions: x509.Extensions) -> frozenset[str]:
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(flag for flag in _KEY_USAGE_FLAGS if getattr(usage, flag))


def _crl_urls(extensions: x509.Extensions) -> tuple[str, ...]:
    try:
        points = extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(name.value for point in points for name in (point.full_name or ())
                 if isinstance(name, x509.UniformResourceIdentifier))


def _ocsp_urls(extensions: x509.Extensions) -> tuple[str, ...]:
    try:
        access = extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(d.access_location.value for d in access
                 if d.access_method == x509.AuthorityInformationAccessOID.OCSP
                 and isinstance(d.access_location, x509.UniformResourceIdentifier))


def _four_facts(extensions: x509.Extensions) -> FourFacts:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise NotJpkiCertificate("The signing certificate carries no basic facts.") from exc
    values: dict[x509.ObjectIdentifier, str] = {}
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id in values:
            raise MalformedCertificate("The signing certificate repeats a basic fact.")
        values[other.type_id] = decode_der_string(other.value)
    required = (FourFactsOID.NAME, FourFactsOID.ADDRESS, FourFactsOID.BIRTHDATE, FourFactsOID.SEX)
    if any(oid not in values for oid in required):
        raise NotJpkiCertificate("The signing certificate lacks one of the four basic facts.")
    return FourFacts(
        name=values[FourFactsOID.NAME],
        address=values[FourFactsOID.ADDRESS],
        birthdate=decode_birthdate(values[FourFactsOID.BIRTHDATE]),
        sex=values[FourFactsOID.SEX],
        name_substitute=values.get(FourFactsOID.NAME_SUBSTITUTE) or None,
        address_substitute=values.get(FourFactsOID.ADDRESS_SUBSTITUTE) or None,
    )


# Era start dates, for the era digit in front of a date of birth.
_ERA_STARTS = (
    ("5", dt.date(2019, 5, 1)),
    ("4", dt.date(1989, 1, 8)),
    ("3", dt.date(1926, 12, 25)),
    ("2", dt.date(1912, 7, 30)),
    ("1", dt.date(1868, 1, 25)),
)


def encode_birthdate(birthdate: dt.date) -> str:
    plain = birthdate.strftime("%Y%m%d")
    if not BIRTHDATE_ERA_PREFIX:
        return plain
    era = next((digit for digit, start in _ERA_STARTS if birthdate >= start), "1")
    return era + plain


def decode_birthdate(value: str) -> dt.date:
    if BIRTHDATE_ERA_PREFIX and len(value) == 9 and value[0] in ERA_DIGITS:
        value = value[1:]
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError
        return dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError as exc:
        raise MalformedCertificate("The date of birth in the signing certificate is not a date.") from exc


# DER string types an otherName value may use: UTF8String, PrintableString, IA5String, VisibleString, BMPString.
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x1A: "ascii", 0x1E: "utf-16-be"}


def encode_der_utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return bytes((0x0C,)) + _der_length(len(raw)) + raw


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def decode_der_string(value: bytes) -> str:
    """Decode one DER-encoded string TLV, refusing any length that does not match the data."""
    if len(value) < 2 or value[0] not in _STRING_TAGS:
        raise MalformedCertificate("A basic fact is not encoded as a string.")
    first = value[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        size = first & 0x7F
        if size == 0 or size > 2 or len(value) < 2 + size:
            raise MalformedCertificate("A basic fact has a bad length.")
        length, offset = int.from_bytes(value[2 : 2 + size], "big"), 2 + size
    if offset + length != len(value):
        raise MalformedCertificate("A basic fact's length does not match its data.")
    try:
        return value[offset:].decode(_STRING_TAGS[value[0]])
    except UnicodeDecodeError as exc:
        raise MalformedCertificate("A basic fact is not valid text.") from exc
