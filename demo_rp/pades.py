"""A PDF signed by the holder's My Number Card, as PAdES, through the platform: prepare, have it signed, finish;
and the check a relying party (or anyone) runs on the result.

pyHanko does the PDF and CMS work in its interrupted ("remote") signing mode:

1. `prepare(pdf)` — the signature placeholder is written into a copy of the document and the byte ranges around
   it are hashed. That SHA-256 is the document's digest: it goes, with a label, into the authorization request's
   `authorization_details` (idp/signing/details.py), and it will be the CMS message-digest attribute.
2. The holder signs with the card. The bridge, having read the signing certificate after the signing PIN, builds
   the CMS signed attributes around that digest — content-type, message-digest and the ESS signing-certificate-v2
   that PAdES baseline B-B requires (jpki/cades.py) — and the card signs the SHA-256 of their DER. The token
   response's `authorization_details` brings, per document, the signature and those attributes, and once for the
   batch the signing certificate, its chain and the OCSP response that said "good" (idp/signing/package.py).
3. `finish(prepared, element, index)` — the attributes are checked to carry this document's digest, the CMS is
   assembled from them and the card's signature with the certificate in it, embedded in the placeholder, and an
   incremental update adds the document security store (DSS: the certificate, the root, the OCSP response), so
   the signature can be validated later without asking anyone.

`validate(pdf, roots)` is the documented library call for checking such a file: the signature is intact, the
document was not changed after signing, the certificate chains to one of `roots` (the pinned JPKI signing roots),
and its revocation status is proved by the OCSP response embedded in the DSS alone — no network (hard-fail, no
fetching). It says why when it fails, with a stable code.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
from dataclasses import dataclass
from io import BytesIO

from asn1crypto import algos, cms
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import ValidationInfoReadingError
from pyhanko_certvalidator.registry import SimpleCertificateStore

FIELD = "MyNumberCardSignature"
RESERVED = 16 * 1024  # bytes for the CMS in the placeholder: certificate + signature, with room
# What the card does: RSASSA-PKCS1-v1_5 over the SHA-256 DigestInfo (named in the CMS algorithm protection too).
MECHANISM = algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})


class PadesError(Exception):
    """Why a file was refused. `code` is stable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Prepared:
    """A document waiting for the card's signature (keep it on the website's side until the token response)."""

    document: bytes  # the PDF with the placeholder
    digest: PreparedByteRangeDigest

    @property
    def to_sign(self) -> bytes:
        """The document's SHA-256 (of its byte ranges): what the website asks to have signed, the message-digest."""
        return self.digest.document_digest

    @property
    def to_sign_b64(self) -> str:
        return base64.b64encode(self.to_sign).decode()


def _run(coroutine):
    """pyHanko is asynchronous; these calls are not. Inside a running event loop (an async web app, Playwright's
    sync API) the coroutine runs on a worker thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def prepare(pdf: bytes, *, reason: str | None = None) -> Prepared:
    return _run(_prepare(pdf, reason))


async def _prepare(pdf: bytes, reason: str | None) -> Prepared:
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    placeholder = signers.ExternalSigner(signing_cert=None, cert_registry=None, signature_value=256,
                                         signature_mechanism=MECHANISM)
    meta = signers.PdfSignatureMetadata(field_name=FIELD, md_algorithm="sha256", reason=reason,
                                        subfilter=fields.SigSeedSubFilter.PADES)
    pdf_signer = signers.PdfSigner(meta, signer=placeholder, new_field_spec=fields.SigFieldSpec(FIELD))
    digest, _tbs, output = await pdf_signer.async_digest_doc_for_signing(writer, bytes_reserved=RESERVED)
    return Prepared(output.getvalue(), digest)


def finish(prepared: Prepared, element: dict, index: int = 0) -> bytes:
    """The signed PDF, from the token response's `credential` element and the position of this document in it."""
    return _run(_finish(prepared, element, index))


async def _finish(prepared: Prepared, element: dict, index: int) -> bytes:
    entry = element["documentDigests"][index]
    if base64.b64decode(entry["hash"]) != prepared.to_sign:
        raise PadesError("digest_mismatch", "The signature returned is for another document.")
    certificates = [asn1_x509.Certificate.load(base64.b64decode(c)) for c in element["certificates"]]
    signer_certificate, chain = certificates[0], certificates[1:]
    registry = SimpleCertificateStore.from_certs(chain)
    card = signers.ExternalSigner(signing_cert=signer_certificate, cert_registry=registry,
                                  signature_value=base64.b64decode(entry["signature"]), signature_mechanism=MECHANISM)
    try:
        attributes = cms.CMSAttributes.load(base64.b64decode(entry["signedAttributes"]))
        found = {a["type"].native: a["values"][0].native for a in attributes}
    except (ValueError, TypeError, KeyError):
        raise PadesError("attributes_malformed", "The signed attributes returned could not be read.") from None
    if found.get("message_digest") != prepared.to_sign:
        raise PadesError("digest_mismatch", "The signed attributes returned are for another document.")
    signed_data = await card.async_sign_prescribed_attributes("sha256", signed_attrs=attributes)
    output = BytesIO(prepared.document)
    await PdfTBSDocument.async_finish_signing(output, prepared.digest, signed_data)
    output.seek(0)
    DocumentSecurityStore.add_dss(output, sig_contents=None, certs=certificates,
                                  ocsps=[asn1_ocsp.OCSPResponse.load(base64.b64decode(element["ocspResponse"]))])
    return output.getvalue()


@dataclass(frozen=True)
class Report:
    intact: bool
    trusted: bool
    revocation_embedded: bool
    signer: str  # the certificate's subject, as pyHanko words it

    def __repr__(self) -> str:  # the subject is the holder's name: never in a log line
        return f"Report(intact={self.intact}, trusted={self.trusted}, revocation={self.revocation_embedded})"


def validate(pdf: bytes, roots: list) -> Report:
    """Validate the single card signature of `pdf` against `roots` (cryptography or asn1crypto certificates) and
    the revocation evidence embedded in the file; raises PadesError(code, sentence) saying why when it fails."""
    return _run(_validate(pdf, roots))


def _asn1(certificate) -> asn1_x509.Certificate:
    if isinstance(certificate, asn1_x509.Certificate):
        return certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))


async def _validate(pdf: bytes, roots: list) -> Report:
    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        signatures = reader.embedded_signatures
    except (PdfReadError, ValueError, KeyError) as exc:
        raise PadesError("not_a_pdf", "The file could not be read as a PDF.") from exc
    if len(signatures) != 1:
        raise PadesError("signature_missing", f"The file must hold exactly one signature; it holds {len(signatures)}.")
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except (ValidationInfoReadingError, PdfReadError, KeyError, ValueError):  # no DSS, or a broken one
        raise PadesError("revocation_info_missing",
                         "The file carries no document security store with the OCSP evidence.") from None
    ocsps = list(dss.ocsps)
    if not ocsps:
        raise PadesError("revocation_info_missing", "The file's document security store holds no OCSP response.")
    context = dss.as_validation_context({"trust_roots": [_asn1(r) for r in roots], "allow_fetching": False,
                                         "revocation_mode": "hard-fail"})
    status = await async_validate_pdf_signature(signatures[0], context)
    if not status.intact:
        raise PadesError("signature_not_intact", "The document was changed after it was signed: the signature no "
                                                 "longer matches its content.")
    if not status.valid:
        raise PadesError("signature_invalid", "The signature value does not verify with the signer's certificate.")
    if status.modification_level is not None and status.modification_level.name not in ("NONE", "LTA_UPDATES"):
        raise PadesError("document_modified", "The document was changed after it was signed.")
    if not status.trusted:
        raise PadesError("untrusted_or_unproved",
                         "The signer's certificate does not chain to a trusted root, or its revocation status is "
                         "not proved by the embedded evidence.")
    return Report(True, True, True, status.signing_cert.subject.human_friendly)
