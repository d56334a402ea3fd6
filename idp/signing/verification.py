"""Verifying a batch of document signatures made by the card's signing key, and the evidence that goes with them.

The same named checks as a login (idp/login/verification.py), in the same order and with the same stable codes,
plus their own:

1. `check_document_signatures_shape`, `check_signed_attributes_shape` — proof_malformed: one signature and one
   set of signed attributes per document, each signature the length of an RSA-2048 signature, in the documents'
   order;
2. size and shape, parse, `check_policy` (SIGNING: the user-authentication certificate is refused with
   auth_certificate_used_for_signing), key usage, chain to a pinned signing root, validity — as for a login;
3. for each document, its CMS signed attributes (jpki/cades.py: the bridge builds them once it has read the
   signing certificate, and the card signs the SHA-256 of their DER):
   `check_signed_attributes_decode` — proof_malformed: DER of a SET OF Attribute, one value each;
   `check_signed_attributes_content` — signed_attributes_invalid: exactly content-type, message-digest and
   signing-certificate-v2, nothing else (an attribute the holder was not shown is one they did not approve);
   content-type is id-data; message-digest is the relying party's digest for that document, byte for byte; the
   one ESSCertIDv2 names the submitted signing certificate (its SHA-256, issuer and serial number);
   `check_document_signature` — signature_invalid: the signature is PKCS#1 v1.5 over the SHA-256 DigestInfo of
   the SHA-256 of those attributes. The content is checked before the signature for the same reason the
   signature is checked before revocation: what cannot be right is refused at no cost;
4. revocation, as for a login (revoked, on hold, unknown: refused; the checker fails closed);
5. `check_revocation_evidence` — revocation_unknown: the answer came from OCSP and its signed response is kept.
   A relying party building a long-term signature (PAdES B-LT) needs that response in its document; a status
   learnt from the CRL fallback is true but carries no per-certificate evidence, so signing waits for OCSP.

Every signature is checked before revocation, for the reason the login gives: a bad signature learns nothing
about the certificate's status and costs no OCSP trip. Messages never contain a label, a digest or a signature.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from idp.login.verification import (
    CertificateVerifier,
    ErrorCode,
    VerificationError,
    check_chain,
    check_key_usage,
    check_parses,
    check_policy,
    check_revocation,
    check_size_and_shape,
    check_validity,
)
from idp.signing.details import SigningRequest
from jpki.cades import ATTRIBUTES, cert_id_matches, read_signed_attributes, to_be_signed
from jpki.certificate import JpkiCertificate
from jpki.profile import CRL_ISSUER_SLUG, RSA_SIGNATURE_LENGTH, CertificateKind


@dataclass(frozen=True)
class SignedBatch:
    """A verified batch: what the relying party receives (idp/signing/package.py)."""

    certificate: JpkiCertificate
    certificate_der: bytes
    issuer: str  # "sign"
    root: x509.Certificate
    signatures: tuple[bytes, ...]
    signed_attributes: tuple[bytes, ...]  # the DER (SET OF) each signature is over, in the documents' order
    ocsp_response: bytes
    signed_at: dt.datetime

    def __repr__(self) -> str:
        return f"SignedBatch({len(self.signatures)} signatures)"


def check_document_signatures_shape(signatures: object, request: SigningRequest) -> tuple[bytes, ...]:
    if (not isinstance(signatures, list | tuple) or len(signatures) != len(request.documents)
            or any(not isinstance(s, bytes) or len(s) != RSA_SIGNATURE_LENGTH for s in signatures)):
        raise VerificationError(ErrorCode.PROOF_MALFORMED,
                                "The card's answer must hold one signature for each document, in order.")
    return tuple(signatures)


def check_signed_attributes_shape(attributes: object, request: SigningRequest) -> tuple[bytes, ...]:
    if (not isinstance(attributes, list | tuple) or len(attributes) != len(request.documents)
            or any(not isinstance(a, bytes) for a in attributes)):
        raise VerificationError(ErrorCode.PROOF_MALFORMED,
                                "The card's answer must hold the signed attributes of each document, in order.")
    return tuple(attributes)


def check_signed_attributes_decode(attributes_der: bytes):
    try:
        return read_signed_attributes(attributes_der)
    except ValueError:
        raise VerificationError(ErrorCode.PROOF_MALFORMED,
                                "A document's signed attributes are not a DER-encoded set of CMS attributes.") from None


def check_signed_attributes_content(found, digest: bytes, certificate_der: bytes) -> None:
    if sorted(found.names) != sorted(ATTRIBUTES):
        raise VerificationError(ErrorCode.SIGNED_ATTRIBUTES_INVALID,
                                "A document's signed attributes must be exactly content-type, message-digest and "
                                "signing-certificate-v2.")
    if found.content_type != "data":
        raise VerificationError(ErrorCode.SIGNED_ATTRIBUTES_INVALID,
                                "A document's signed content type must be id-data.")
    if found.message_digest != digest:
        raise VerificationError(ErrorCode.SIGNED_ATTRIBUTES_INVALID,
                                "A document's signed message digest is not the digest the website asked to sign.")
    if len(found.cert_ids) != 1 or not cert_id_matches(found.cert_ids[0], certificate_der):
        raise VerificationError(ErrorCode.SIGNED_ATTRIBUTES_INVALID,
                                "A document's signed attributes do not name the signing certificate sent with them.")


def check_document_signature(certificate: JpkiCertificate, attributes_der: bytes, signature: bytes) -> None:
    try:
        certificate.public_key.verify(signature, to_be_signed(attributes_der), padding.PKCS1v15(),
                                      utils.Prehashed(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(ErrorCode.SIGNATURE_INVALID,
                                "A document signature from the card does not match the document it was asked "
                                "for. Please start again.") from None


def check_revocation_evidence(result) -> bytes:
    if not result.ocsp_response:
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN,
                                "The signing certificate's status could be learnt only from the revocation list, "
                                "which is no proof a signature can carry. Please try again in a few minutes.")
    return result.ocsp_response


def verify_document_signatures(verifier: CertificateVerifier, certificate_der: bytes, signatures: object,
                               signed_attributes: object, request: SigningRequest, *, token_type: str) -> SignedBatch:
    now = verifier.clock()
    batch = check_document_signatures_shape(signatures, request)
    attributes = check_signed_attributes_shape(signed_attributes, request)
    check_size_and_shape(certificate_der, batch[0], token_type)
    certificate = check_parses(certificate_der)
    check_policy(certificate, CertificateKind.SIGNING)
    check_key_usage(certificate)
    root = check_chain(certificate, verifier.trust, now)
    check_validity(certificate, now)
    for document, attributes_der, signature in zip(request.documents, attributes, batch, strict=True):
        check_signed_attributes_content(check_signed_attributes_decode(attributes_der), document.digest,
                                        certificate_der)
        check_document_signature(certificate, attributes_der, signature)
    revocation = check_revocation(certificate, root, verifier.revocation_checker)
    ocsp_response = check_revocation_evidence(revocation)
    return SignedBatch(certificate, certificate_der, CRL_ISSUER_SLUG[CertificateKind.SIGNING], root, batch,
                       attributes, ocsp_response, now)
