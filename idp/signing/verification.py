"""Verifying a batch of document signatures made by the card's signing key, and the evidence that goes with them.

The same named checks as a login (idp/login/verification.py), in the same order and with the same stable codes,
plus three of their own:

1. `check_document_signatures_shape` — proof_malformed: one signature per document, each the length of an
   RSA-2048 signature, in the documents' order;
2. size and shape, parse, `check_policy` (SIGNING: the user-authentication certificate is refused with
   auth_certificate_used_for_signing), key usage, chain to a pinned signing root, validity — as for a login;
3. `check_document_signature` — signature_invalid: each signature is PKCS#1 v1.5 over the SHA-256 DigestInfo of
   that document's digest (the digest is what the relying party computed; the card does not hash it again);
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


def check_document_signature(certificate: JpkiCertificate, digest: bytes, signature: bytes) -> None:
    try:
        certificate.public_key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
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
                               request: SigningRequest, *, token_type: str) -> SignedBatch:
    now = verifier.clock()
    batch = check_document_signatures_shape(signatures, request)
    check_size_and_shape(certificate_der, batch[0], token_type)
    certificate = check_parses(certificate_der)
    check_policy(certificate, CertificateKind.SIGNING)
    check_key_usage(certificate)
    root = check_chain(certificate, verifier.trust, now)
    check_validity(certificate, now)
    for document, signature in zip(request.documents, batch, strict=True):
        check_document_signature(certificate, document.digest, signature)
    revocation = check_revocation(certificate, root, verifier.revocation_checker)
    ocsp_response = check_revocation_evidence(revocation)
    return SignedBatch(certificate, certificate_der, CRL_ISSUER_SLUG[CertificateKind.SIGNING], root, batch,
                       ocsp_response, now)
