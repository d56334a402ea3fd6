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
   the signature can be validated later without asking anyone. Given a time-stamping authority (`tsa_url`, RFC
   3161 over HTTP), pyHanko first asks it for a token over the signature value and adds it as the unsigned
   signature-time-stamp attribute (B-T); the token's certificate and the CRL its distribution point serves go
   into the DSS too (`_tsa_validation_data`), which makes the file baseline B-LT. The TSA is the website's own
   choice — an accredited one in production; the platform runs none (devstack/tsa.py is for development).

`validate(pdf, roots, tsa_roots)` is the documented library call for checking such a file: the signature is intact,
the document was not changed after signing, the certificate chains to one of `roots` (the pinned JPKI signing
roots), its revocation status is proved by the OCSP response embedded in the DSS alone — no network (hard-fail, no
fetching) — and a time-stamp, when there is one, verifies and chains to one of `tsa_roots` with its revocation
proved the same way. It says why when it fails, with a stable code, and names the PAdES level established.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
from dataclasses import dataclass
from io import BytesIO

from asn1crypto import algos, cms, tsp
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import ValidationInfoReadingError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from wire.fetch import Fetcher, FetchFailed, FetchPolicy

FIELD = "MyNumberCardSignature"
RESERVED = 16 * 1024  # bytes for the CMS in the placeholder: certificate + signature, with room
# What the card does: RSASSA-PKCS1-v1_5 over the SHA-256 DigestInfo (named in the CMS algorithm protection too).
MECHANISM = algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})
TSA_TIMEOUT = 10  # seconds for one exchange with the TSA or its CRL distribution point
MAX_TSA_ANSWER = 1024 * 1024  # bytes: a token is a few KiB; a TSA root's CRL can be large, never this large
# https to a TSA; plain http only to this computer (the development TSA, devstack/tsa.py).
_FETCHER = Fetcher(FetchPolicy(timeout=TSA_TIMEOUT, max_bytes=MAX_TSA_ANSWER, loopback_http=True))


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


def finish(prepared: Prepared, element: dict, index: int = 0, *, tsa_url: str | None = None) -> bytes:
    """The signed PDF, from the token response's `credential` element and the position of this document in it;
    with `tsa_url`, time-stamped by that RFC 3161 TSA and carrying its validation data (PAdES B-LT)."""
    return _run(_finish(prepared, element, index, tsa_url))


class TsaClient(TimeStamper):
    """RFC 3161 over HTTP (§3.4) to the TSA at `url`, through the bounded fetch every outbound call here uses: an
    answer is at most MAX_TSA_ANSWER bytes and arrives within TSA_TIMEOUT seconds, or there is no time-stamp."""

    def __init__(self, url: str):
        super().__init__()
        self.url = url

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        answer = await asyncio.to_thread(_fetch, self.url, req.dump(), "application/timestamp-query",
                                         "application/timestamp-reply")
        try:
            return tsp.TimeStampResp.load(answer)
        except ValueError:
            raise PadesError("timestamp_failed", "The time-stamping authority's answer was not understood.") from None


def _fetch(url: str, body: bytes | None = None, content_type: str | None = None, accept: str | None = None) -> bytes:
    try:
        return _FETCHER.fetch(url, body, content_type, accept=accept).body
    except FetchFailed:
        raise PadesError("timestamp_failed", "The time-stamping authority (or its revocation list) could not be "
                                             "reached.") from None


def _tsa_validation_data(signed_data: cms.ContentInfo) -> tuple[list, list]:
    """The time-stamp token's certificates, and the CRL each names in its distribution points, fetched now: what a
    verifier needs later to trust the token without asking anyone (B-LT). The TSA's root is the verifier's own
    trust anchor, so it is not required here."""
    signer_info = signed_data["content"]["signer_infos"][0]
    token = next(a["values"][0] for a in signer_info["unsigned_attrs"] if a["type"].native ==
                 "signature_time_stamp_token")
    certificates = [c.chosen for c in token["content"]["certificates"]]
    crls = []
    for certificate in certificates:
        for url in [point.url for point in certificate.crl_distribution_points if point.url]:
            try:
                crls.append(asn1_crl.CertificateList.load(_fetch(url)))
            except ValueError:
                raise PadesError("timestamp_failed", "The time-stamping authority's revocation list is not a "
                                                     "CRL.") from None
    return certificates, crls


async def _finish(prepared: Prepared, element: dict, index: int, tsa_url: str | None) -> bytes:
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
    # With a TSA: pyHanko asks it for a token over the signature value and adds it as the unsigned
    # signature-time-stamp attribute (B-T); its certificates and CRLs then join the DSS (B-LT).
    signed_data = await card.async_sign_prescribed_attributes("sha256", signed_attrs=attributes,
                                                              timestamper=TsaClient(tsa_url) if tsa_url else None)
    tsa_certificates, tsa_crls = _tsa_validation_data(signed_data) if tsa_url else ([], [])
    output = BytesIO(prepared.document)
    await PdfTBSDocument.async_finish_signing(output, prepared.digest, signed_data)
    output.seek(0)
    DocumentSecurityStore.add_dss(output, sig_contents=None, certs=certificates + tsa_certificates,
                                  ocsps=[asn1_ocsp.OCSPResponse.load(base64.b64decode(element["ocspResponse"]))],
                                  crls=tsa_crls)
    return output.getvalue()


@dataclass(frozen=True)
class Report:
    intact: bool
    trusted: bool
    revocation_embedded: bool
    signer: str  # the certificate's subject, as pyHanko words it
    timestamp: object  # the signature time-stamp's time (datetime), None when there is none
    level: str  # the PAdES baseline level the checks below establish: "B-B" or "B-LT" (see `_level`)

    def __repr__(self) -> str:  # the subject is the holder's name: never in a log line
        return (f"Report(intact={self.intact}, trusted={self.trusted}, revocation={self.revocation_embedded}, "
                f"level={self.level})")


def validate(pdf: bytes, roots: list, tsa_roots: list = ()) -> Report:
    """Validate the single card signature of `pdf` against `roots` (cryptography or asn1crypto certificates) and
    the revocation evidence embedded in the file, and its time-stamp, if any, against `tsa_roots`; raises
    PadesError(code, sentence) saying why when it fails."""
    return _run(_validate(pdf, list(roots), list(tsa_roots)))


def _level(signature, timestamped: bool) -> str:
    """pyHanko validates but does not name a PAdES level, so it is named here from what was validated. B-B: the
    signed attributes hold signing-certificate-v2 and no signing-time (pyHanko has checked that it names the
    signer). B-T: a valid, trusted signature time-stamp. B-LT: B-T, and everything proved from the DSS alone —
    which `_validate` always requires (no fetching, hard-fail revocation for the signer and the TSA). So a file that
    passes is B-LT when time-stamped and B-B otherwise (long-term data without a time-stamp is no level above B-B)."""
    names = {a["type"].native for a in signature.signer_info["signed_attrs"]}
    if "signing_certificate_v2" not in names or "signing_time" in names:
        return "none"
    return "B-LT" if timestamped else "B-B"


def _asn1(certificate) -> asn1_x509.Certificate:
    if isinstance(certificate, asn1_x509.Certificate):
        return certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))


async def _validate(pdf: bytes, roots: list, tsa_roots: list) -> Report:
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
    # The time-stamp is checked against the TSA roots only: a card root does not vouch for a time-stamp, nor a
    # TSA root for a card.
    ts_context = dss.as_validation_context({"trust_roots": [_asn1(r) for r in tsa_roots], "allow_fetching": False,
                                            "revocation_mode": "hard-fail"})
    status = await async_validate_pdf_signature(signatures[0], context, ts_validation_context=ts_context)
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
    stamp = status.timestamp_validity
    if stamp is not None and not (stamp.intact and stamp.valid and stamp.trusted):
        raise PadesError("timestamp_untrusted",
                         "The signature's time-stamp does not verify, or its authority is not trusted, or its "
                         "revocation status is not proved by the embedded evidence.")
    return Report(True, True, True, status.signing_cert.subject.human_friendly,
                  stamp.timestamp if stamp is not None else None, _level(signatures[0], stamp is not None))
