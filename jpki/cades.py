"""The CMS signed attributes of a document signature made by the card, as PAdES baseline B-B needs them.

A CMS signature with signed attributes is not a signature over the document: the signer signs the DER of the
attribute set, and one attribute, message-digest, carries the document's hash. PAdES (ETSI EN 319 142-1, B-B)
needs exactly three attributes there: content-type (id-data), message-digest, and the ESS signing-certificate-v2
(RFC 5035) that binds the signer's certificate into what was signed, so that a certificate with the same key
cannot be substituted later. It forbids signing-time (the time of a PAdES signature is the PDF's /M entry, or
better a time-stamp).

Why they are built on the card side. The website cannot build signing-certificate-v2: it learns which card signs
only after the signature. The bridge can: it reads the signing certificate after the signing PIN, before the card
signs. So the website sends the document's digest (the future message-digest), the bridge builds this set around
it with `signed_attributes`, and the card signs the SHA-256 of its DER (`to_be_signed`). The set is fixed: the
website adds nothing (an attribute the holder is not shown is one they did not approve), and the platform refuses
a set that holds anything else (`read_signed_attributes`, then idp/signing/verification.py's named checks).

Encoding. The signature covers the DER of a SET OF Attribute (tag 0x31), as RFC 5652 §5.4 says; inside a
SignerInfo the same content is tagged [0] IMPLICIT. asn1crypto builds and sorts the set (DER orders a SET OF by
its encodings), so what the bridge signs, what the platform checks and what the website embeds are the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509

ATTRIBUTES = ("content_type", "message_digest", "signing_certificate_v2")
MAX_ATTRIBUTES = 4096  # bytes: three attributes with one issuer name are well under 1 KiB


def signed_attributes(document_digest: bytes, certificate_der: bytes) -> bytes:
    """The DER (SET OF) of content-type id-data, message-digest = `document_digest` and signing-certificate-v2
    naming `certificate_der` (SHA-256 of it, with its issuer and serial number)."""
    certificate = asn1_x509.Certificate.load(certificate_der)
    cert_id = tsp.ESSCertIDv2({
        "hash_algorithm": {"algorithm": "sha256"},
        "cert_hash": hashlib.sha256(certificate_der).digest(),
        "issuer_serial": {"issuer": [asn1_x509.GeneralName({"directory_name": certificate.issuer})],
                          "serial_number": certificate.serial_number},
    })
    return cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [document_digest]}),
        cms.CMSAttribute({"type": "signing_certificate_v2", "values": [{"certs": [cert_id]}]}),
    ]).dump()


def to_be_signed(attributes_der: bytes) -> bytes:
    """The SHA-256 the card signs (as its DigestInfo): of the attributes' DER."""
    return hashlib.sha256(attributes_der).digest()


@dataclass(frozen=True)
class SignedAttributes:
    """A decoded set, as `read_signed_attributes` found it: each value is None when the attribute is absent."""

    names: tuple[str, ...]  # every attribute type in the set, in order (dotted OID when not known)
    content_type: str | None
    message_digest: bytes | None
    cert_ids: tuple[tsp.ESSCertIDv2, ...] | None


def read_signed_attributes(attributes_der: bytes) -> SignedAttributes:
    """Decode a signed-attributes set; raises ValueError when it is not DER of a SET OF Attribute with one value
    each. The meaning of what is found is for the caller to check."""
    if not isinstance(attributes_der, bytes) or not 0 < len(attributes_der) <= MAX_ATTRIBUTES:
        raise ValueError("signed attributes missing or too large")
    try:
        attributes = cms.CMSAttributes.load(attributes_der, strict=True)
        if attributes.dump(force=True) != attributes_der:  # DER, and sorted: one encoding for one set
            raise ValueError("signed attributes are not DER")
        names, found = [], {}
        for attribute in attributes:
            name = attribute["type"].native
            names.append(name)
            values = attribute["values"]
            if len(values) != 1:
                raise ValueError("an attribute must have exactly one value")
            found[name] = values[0]
        content_type = found["content_type"].native if "content_type" in found else None
        digest = found["message_digest"].native if "message_digest" in found else None
        cert_ids = None
        if "signing_certificate_v2" in found:
            cert_ids = tuple(found["signing_certificate_v2"]["certs"])
            for cert_id in cert_ids:  # parse every field now: a broken one is a malformed set, not a mismatch
                _ = cert_id.native
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("signed attributes do not decode") from exc
    return SignedAttributes(tuple(names), content_type, digest, cert_ids)


def cert_id_matches(cert_id: tsp.ESSCertIDv2, certificate_der: bytes) -> bool:
    """True when `cert_id` names `certificate_der`: SHA-256 of it, and (required here) its issuer and serial."""
    certificate = asn1_x509.Certificate.load(certificate_der)
    issuer_serial = cert_id["issuer_serial"]
    if cert_id["hash_algorithm"]["algorithm"].native != "sha256" or isinstance(issuer_serial, core.Void):
        return False
    names = list(issuer_serial["issuer"])
    return (cert_id["cert_hash"].native == hashlib.sha256(certificate_der).digest()
            and issuer_serial["serial_number"].native == certificate.serial_number
            and len(names) == 1 and names[0].name == "directory_name" and names[0].chosen == certificate.issuer)
