"""A CRL's DER, encoded in one pass (RFC 5280 §5).

pyca/cryptography's `CertificateRevocationListBuilder` copies its entry list on every `add_revoked_certificate`,
so a million entries take quadratic time. A CRL is a simple structure, so we encode TBSCertList here, sign it with
cryptography, and leave parsing and checking to cryptography and OpenSSL (tests/test_crl.py compares our bytes
with cryptography's builder for the same input).

Entries are encoded one by one (`encode_entry`, `encode_entries`) and passed to `build_crl` as DER, because the
publisher keeps them encoded from one publication to the next (only changed entries are encoded again), and compares
them byte for byte against the base CRL's entries when it reads a whole shard. `build_crl` takes them as byte
strings to concatenate, one per entry or already joined runs of entries.
All encodings are DER (X.690 §10): definite minimal lengths, minimal INTEGERs, BOOLEAN TRUE as FF, a critical
flag only when TRUE (DEFAULT FALSE is omitted), no empty revokedCertificates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ReasonFlags

from revocation.storage.store import REASON_CODES

# --- DER primitives ---------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _integer(n: int) -> bytes:
    """A non-negative INTEGER: big-endian, with a leading 00 only when the top bit would read as a sign."""
    if n < 0:
        raise ValueError("serial numbers and CRL numbers are non-negative (RFC 5280 §4.1.2.2, §5.2.3)")
    content = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return b"\x02" + _length(len(content)) + content


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _time(moment: dt.datetime) -> bytes:
    """RFC 5280 §5.1.2.4: UTCTime for 1950–2049, GeneralizedTime otherwise; always UTC ("Z"), whole seconds."""
    if moment.tzinfo is None:
        raise ValueError("CRL times must be timezone-aware")
    if moment.tzinfo is not dt.UTC:
        moment = moment.astimezone(dt.UTC)
    if 1950 <= moment.year < 2050:
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % (
            moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % (
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _extension(oid: str, value: bytes, critical: bool = False) -> bytes:
    return _tlv(0x30, _oid(oid) + (b"\x01\x01\xff" if critical else b"") + _tlv(0x04, value))


# --- entries ----------------------------------------------------------------------------------------------

# crlEntryExtensions holding only a reasonCode (2.5.29.21, an ENUMERATED), one per reason. RFC 5280 §5.3.1:
# "unspecified" SHOULD be expressed by leaving the reasonCode out, so it maps to no extensions at all.
_REASON_EXTENSIONS: dict[ReasonFlags | None, bytes] = {
    reason: _tlv(0x30, _extension("2.5.29.21", b"\x0a\x01" + bytes((code,))))
    for reason, code in REASON_CODES.items() if reason is not ReasonFlags.unspecified
}
_REASON_EXTENSIONS[ReasonFlags.unspecified] = _REASON_EXTENSIONS[None] = b""


def encode_entry(serial: int, reason: ReasonFlags | None, revoked_at: dt.datetime) -> bytes:
    """One revokedCertificates element: SEQUENCE { userCertificate, revocationDate, crlEntryExtensions }."""
    return _tlv(0x30, _integer(serial) + _time(revoked_at) + _REASON_EXTENSIONS[reason])


def encode_entries(entries: Iterable[tuple[int, ReasonFlags | None, dt.datetime]]) -> list[bytes]:
    """`encode_entry` for many: the hot loop of a million-entry CRL, so the common case is inlined."""
    reasons, encoded = _REASON_EXTENSIONS, []
    append = encoded.append
    for serial, reason, at in entries:
        # Inlined: a UTC UTCTime and a serial short enough that the whole entry stays under 128 bytes, so every
        # length is one octet (2 INTEGER header + 15 UTCTime + serial + ≤14 extensions). Anything else: the slow way.
        if serial < 0 or serial.bit_length() > 640 or at.tzinfo is not dt.UTC or not 1950 <= at.year < 2050:
            append(encode_entry(serial, reason, at))
            continue
        number = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
        extensions = reasons[reason]
        append(b"\x30%c\x02%c%b\x17\x0d%02d%02d%02d%02d%02d%02dZ%b" % (
            17 + len(number) + len(extensions), len(number), number,
            at.year % 100, at.month, at.day, at.hour, at.minute, at.second, extensions))
    return encoded


def entry_serial(entry: bytes) -> int:
    """The serial number of an encoded entry (as produced by `encode_entry` or found by `revoked_entries`)."""
    _, serial_at = _read_header(entry, 0)
    length_at, body = _read_header(entry, serial_at)
    return int.from_bytes(entry[body:body + _content_length(entry, length_at)], "big", signed=True)


# --- the CRL ----------------------------------------------------------------------------------------------

_SHA256_WITH_RSA = _tlv(0x30, _oid("1.2.840.113549.1.1.11") + b"\x05\x00")  # RFC 4055 §5: NULL parameters
_ECDSA_WITH = {  # RFC 5758 §3.2: no parameters
    "sha256": _tlv(0x30, _oid("1.2.840.10045.4.3.2")),
    "sha384": _tlv(0x30, _oid("1.2.840.10045.4.3.3")),
    "sha512": _tlv(0x30, _oid("1.2.840.10045.4.3.4")),
}
_ED25519 = _tlv(0x30, _oid("1.3.101.112"))  # RFC 8410 §3


def _signature_algorithm(key) -> tuple[bytes, Callable[[bytes], bytes]]:
    """(AlgorithmIdentifier, sign function) for the CA's key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return _SHA256_WITH_RSA, lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # The hash is matched to the curve's strength (RFC 5480 §4): P-256 → SHA-256, P-384 → SHA-384, P-521 → SHA-512.
        digest = hashes.SHA256() if key.curve.key_size <= 256 else (
            hashes.SHA384() if key.curve.key_size <= 384 else hashes.SHA512())
        return _ECDSA_WITH[digest.name], lambda data: key.sign(data, ec.ECDSA(digest))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _ED25519, key.sign
    raise TypeError("CRL signing key must be RSA, ECDSA or Ed25519")


def _key_identifier(ca_certificate: x509.Certificate) -> bytes:
    try:
        return ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(ca_certificate.public_key()).digest


def _uri_point(url: str) -> bytes:
    """DistributionPointName as a context [0] CHOICE holding fullName [0] GeneralNames { [6] URI }."""
    return _tlv(0xA0, _tlv(0xA0, _tlv(0x86, url.encode("ascii"))))


def build_crl(ca_certificate: x509.Certificate, key, entries: list[bytes], *, number: int,
              this_update: dt.datetime, next_update: dt.datetime, distribution_point: str,
              base_number: int | None = None, freshest: str | None = None) -> bytes:
    """A signed CertificateList (RFC 5280 §5.1) over pre-encoded entries.

    `distribution_point` goes into the critical issuingDistributionPoint (§5.2.5): the CRL covers one shard, and
    a relying party must see it is the shard named in the certificate's CRL distribution point. With
    `base_number` this is a delta CRL (§5.2.4: critical deltaCRLIndicator); `freshest` (§5.2.6, complete CRLs
    only) says where its delta CRLs are.
    """
    algorithm, sign = _signature_algorithm(key)
    extensions = [
        _extension("2.5.29.35", _tlv(0x30, _tlv(0x80, _key_identifier(ca_certificate)))),  # §5.2.1
        _extension("2.5.29.20", _integer(number)),  # §5.2.3
        _extension("2.5.29.28", _tlv(0x30, _uri_point(distribution_point)), critical=True),  # §5.2.5
    ]
    if base_number is not None:
        extensions.append(_extension("2.5.29.27", _integer(base_number), critical=True))  # §5.2.4
    elif freshest is not None:
        extensions.append(_extension("2.5.29.46", _tlv(0x30, _tlv(0x30, _uri_point(freshest)))))  # §5.2.6
    head = b"".join((
        b"\x02\x01\x01",  # version v2: required once extensions are present (§5.1.2.1)
        algorithm,
        ca_certificate.subject.public_bytes(),  # issuer: byte-identical to the certificates' issuer field
        _time(this_update),
        _time(next_update),
    ))
    revoked = b"".join(entries)
    # §5.1.2.6: when nothing is revoked the list is absent, not empty.
    revoked_header = b"\x30" + _length(len(revoked)) if revoked else b""
    tail = _tlv(0xA0, _tlv(0x30, b"".join(extensions)))
    # The entries can be megabytes: each is copied once into the TBSCertList and once into the CertificateList,
    # with every length computed up front instead of wrapping ever larger byte strings.
    body_length = len(head) + len(revoked_header) + len(revoked) + len(tail)
    tbs = b"".join((b"\x30", _length(body_length), head, revoked_header, revoked, tail))
    signature = _tlv(0x03, b"\x00" + sign(tbs))  # BIT STRING with 0 unused bits
    return b"".join((b"\x30", _length(len(tbs) + len(algorithm) + len(signature)), tbs, algorithm, signature))


# --- reading back our own entries ---------------------------------------------------------------------------


def _read_header(der: bytes, offset: int) -> tuple[int, int]:
    """(offset of the length octets, offset of the content) of the TLV at `offset`."""
    length_at = offset + 1
    first = der[length_at]
    return length_at, length_at + 1 + (first & 0x7F if first & 0x80 else 0)


def _content_length(der: bytes, length_at: int) -> int:
    first = der[length_at]
    if not first & 0x80:
        return first
    return int.from_bytes(der[length_at + 1:length_at + 1 + (first & 0x7F)], "big")


def revoked_entries(crl_der: bytes) -> list[bytes]:
    """The revokedCertificates elements of a CRL built by `build_crl`, each as its DER bytes."""
    length_at, tbs = _read_header(crl_der, 0)  # CertificateList
    length_at, content = _read_header(crl_der, tbs)  # TBSCertList
    end = content + _content_length(crl_der, length_at)
    offset = content
    for _ in range(5):  # version, signature, issuer, thisUpdate, nextUpdate
        length_at, body = _read_header(crl_der, offset)
        offset = body + _content_length(crl_der, length_at)
    if offset >= end or crl_der[offset] != 0x30:
        return []  # no revokedCertificates: next comes [0] crlExtensions
    length_at, offset = _read_header(crl_der, offset)
    stop = offset + _content_length(crl_der, length_at)
    entries = []
    while offset < stop:
        length_at, body = _read_header(crl_der, offset)
        following = body + _content_length(crl_der, length_at)
        entries.append(crl_der[offset:following])
        offset = following
    return entries
