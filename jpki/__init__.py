"""The JPKI profile as code: constants, certificate parsing, what the card signs, and the development CA.

Pure: no state, no network. See docs/jpki-profile.md for the facts behind each constant.
"""

from jpki.certificate import (
    CertificateError,
    FourFacts,
    JpkiCertificate,
    MalformedCertificate,
    NotJpkiCertificate,
    parse_certificate,
)
from jpki.profile import CertificateKind, TokenType
from jpki.signature import digest_info_sha256, login_message, verify_signature

__all__ = [
    "CertificateError",
    "CertificateKind",
    "FourFacts",
    "JpkiCertificate",
    "MalformedCertificate",
    "NotJpkiCertificate",
    "TokenType",
    "digest_info_sha256",
    "login_message",
    "parse_certificate",
    "verify_signature",
]
