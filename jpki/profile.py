"""The JPKI profile as constants (docs/jpki-profile.md §1–3). One place; everything else imports from here.

Items docs/jpki-profile.md marks (uncertain) are single constants here so that one edit changes them.
"""

from __future__ import annotations

import enum

from cryptography import x509
from cryptography.x509.oid import NameOID

# §1 Applications. Only the JPKI AP is ever selected; the other AIDs are here so that a test can prove
# no code path sends them.
JPKI_AP_AID = bytes.fromhex("D392F000260100000001")
TEXT_AP_AID = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP: holds the My Number. Never selected.
VISUAL_AP_AID = bytes.fromhex("D3921000310001010402")  # 券面確認AP. Never selected.
FORBIDDEN_AIDS = frozenset({TEXT_AP_AID, VISUAL_AP_AID})


class CertificateKind(enum.StrEnum):
    AUTH = "auth"  # 利用者証明用電子証明書
    SIGNING = "signing"  # 署名用電子証明書


# §1 Elementary files inside the JPKI AP.
EF_AUTH_CERT = 0x000A
EF_AUTH_CA_CERT = 0x000B
EF_AUTH_PIN = 0x0018
EF_AUTH_KEY = 0x0017
EF_SIGN_CERT = 0x0001
EF_SIGN_CA_CERT = 0x0002
EF_SIGN_PIN = 0x001B
EF_SIGN_KEY = 0x001A
EF_TOKEN = 0x0006

CERT_EF = {CertificateKind.AUTH: EF_AUTH_CERT, CertificateKind.SIGNING: EF_SIGN_CERT}
PIN_EF = {CertificateKind.AUTH: EF_AUTH_PIN, CertificateKind.SIGNING: EF_SIGN_PIN}
KEY_EF = {CertificateKind.AUTH: EF_AUTH_KEY, CertificateKind.SIGNING: EF_SIGN_KEY}

# The token file: 0x20 bytes, the string padded (with spaces on real cards).
TOKEN_LENGTH = 0x20


class TokenType(enum.StrEnum):
    MY_NUMBER_CARD = "JPKIAPICCTOKEN2"
    JUKI_CARD = "JPKIAPICCTOKEN"  # 住基カード: refused
    SMARTPHONE = "JPKIAPGPSETOKEN"  # smartphone secure element


# §1 PINs.
AUTH_PIN_TRIES = 3
SIGN_PIN_TRIES = 5
AUTH_PIN_ALPHABET = "0123456789"
AUTH_PIN_LENGTH = 4
SIGN_PIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SIGN_PIN_MIN, SIGN_PIN_MAX = 6, 16

# §2 Commands.
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
INS_SIGN = 0x2A
CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
MAX_READ_CHUNK = 0xFF  # Le ≤ 0xFF per READ BINARY chunk (00 would mean 256; some readers choke on it)
RSA_SIGNATURE_LENGTH = 256

# §3 Certificates.
AUTH_POLICY_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.1.3.30")
SIGN_POLICY_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.1.1.20")
SIGN_POLICY_OID_JLIS_TEST = x509.ObjectIdentifier("1.2.392.200149.8.5.1.0.20")  # J-LIS test environment
POLICY_KIND = {
    AUTH_POLICY_OID: CertificateKind.AUTH,
    SIGN_POLICY_OID: CertificateKind.SIGNING,
    SIGN_POLICY_OID_JLIS_TEST: CertificateKind.SIGNING,
}


class FourFactsOID:
    """subjectAltName otherName type-ids carrying the four basic facts (基本4情報) in signing certificates."""

    NAME = x509.ObjectIdentifier("1.2.392.200149.8.5.5.1")
    NAME_SUBSTITUTE = x509.ObjectIdentifier("1.2.392.200149.8.5.5.2")
    SEX = x509.ObjectIdentifier("1.2.392.200149.8.5.5.3")
    BIRTHDATE = x509.ObjectIdentifier("1.2.392.200149.8.5.5.4")
    ADDRESS = x509.ObjectIdentifier("1.2.392.200149.8.5.5.5")
    ADDRESS_SUBSTITUTE = x509.ObjectIdentifier("1.2.392.200149.8.5.5.6")


# Date of birth is an era digit + YYYYMMDD, e.g. 419900102 (uncertain). Era digits as J-LIS numbers them.
ERA_DIGITS = {"1": "明治", "2": "大正", "3": "昭和", "4": "平成", "5": "令和"}
BIRTHDATE_ERA_PREFIX = True  # flip if real certificates turn out to carry plain YYYYMMDD

# keyUsage per kind (signing's nonRepudiation is uncertain, so it is not required, only allowed).
AUTH_KEY_USAGE_REQUIRED = frozenset({"digital_signature"})
SIGN_KEY_USAGE_REQUIRED = frozenset({"digital_signature"})
SIGN_KEY_USAGE_ISSUED = frozenset({"digital_signature", "content_commitment"})

# Certificates are valid to the holder's 5th birthday after issue; no signing certificate under 15.
VALIDITY_BIRTHDAYS = 5
MIN_SIGNING_AGE = 15

JLIS_OU = "Japan Agency for Local Authority Information Systems"
ROOT_OU = {
    CertificateKind.AUTH: "JPKI for user authentication",
    CertificateKind.SIGNING: "JPKI for digital signature",
}


def root_name(kind: CertificateKind, marker: str | None = None) -> x509.Name:
    """J-LIS's root DN for a kind; `marker` adds an OU (the dev CA's DEVELOPMENT marker)."""
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ROOT_OU[kind]),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, JLIS_OU),
    ]
    if marker:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, marker))
    return x509.Name(attrs)


# SHA-256 fingerprints of J-LIS's production roots, for pinning (docs/jpki-profile.md §3).
JLIS_ROOT_FINGERPRINTS = {
    CertificateKind.AUTH: {
        "auth-2015": "4DCFC4CA0AAF9FB2A3081B3F0C991C320B3ACC008667A341EEAEC5AF1D58CA7D",
        "auth-2023": "64114F29620C24ED2631D46476A040E7EE740D956089C00B036A6A8118C322B5",
    },
    CertificateKind.SIGNING: {
        "signing-2015": "19645405A1FE14377434BD55957628AC4038557C542403A2243F21C706FC9355",
        "signing-2019": "79679C33E4CC9319440F1AD120A597FF1844E2EF217063ADB176966FD5E6FBEB",
        "signing-2023": "D227F6CDE11D35C5252178F106F843D24651944975413B539FA2FB68DBFA365F",
    },
}

# Revocation URLs carried in certificates. The CRL shard is fixed at issuance from the serial (see
# `crl_shard`); the revocation service serves `/crl/<issuer>/<shard>.crl` and `/ocsp`.
CRL_SHARD_COUNT = 16
CRL_ISSUER_SLUG = {kind: kind.value for kind in CertificateKind}  # one name per kind: events, URLs, CLI, keys


def crl_shard(serial: int, shard_count: int = CRL_SHARD_COUNT) -> int:
    """The CRL shard a certificate belongs to, for the whole of its life."""
    return serial % shard_count


def crl_url(base_url: str, kind: CertificateKind, shard: int) -> str:
    return f"{base_url.rstrip('/')}/crl/{CRL_ISSUER_SLUG[kind]}/{shard}.crl"


def ocsp_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/ocsp"
