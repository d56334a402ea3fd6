"""The signing request's way through a login: the transaction carries it, the card side is shown it, the submit
verifies the batch, and the code exchange hands the result over.

- `start_fields` / `request_of`: the request as the login transaction stores it (its `extra`), read back.
- `fetch_fields`: what the bridge (or a phone app) is shown: each document's label and fingerprint, the digest it
  signs, and the plain statement that the website receives the signing certificate with the four basic facts in it.
- `verify_submission`: the batch the card side posted — each document's signature and the CMS signed attributes
  it is over (idp/signing/verification.py), bound to the same card as the
  login (the signing certificate's record must name the login's auth certificate, 紐付け), then sealed and kept
  for the code exchange (idp/signing/package.py). Returns the reference the login result carries.
- `release`: at the code exchange, the element for the token response; `documents`: what of it the holder's
  sealed access record keeps (each label and fingerprint, mykey/record.py), in the release entry of that exchange.
The card side's refusals (declined, signing PIN locked) come in by idp/signing/api.py.
"""

from __future__ import annotations

import base64
import binascii

from idp.login.transactions import LoginTransaction
from idp.login.verification import VerificationError, check_record
from idp.signing import package
from idp.signing.details import MAX_DOCUMENTS, SigningRequest, fingerprint
from idp.signing.verification import verify_document_signatures
from jpki.cades import MAX_ATTRIBUTES

EXTRA = "signing"  # the login transaction's extra[...] entry
RECEIVES = "signing_certificate"  # what fetch_fields says the website receives
MAX_SIGNATURE_FIELD = 1024  # base64url of a 256-byte signature is 342 characters
MAX_ATTRIBUTES_FIELD = (MAX_ATTRIBUTES * 4 + 2) // 3  # base64url of the largest signed-attributes set accepted


def start_fields(signing: SigningRequest | None) -> dict:
    return {EXTRA: signing.to_json()} if signing is not None else {}


def request_of(txn: LoginTransaction) -> SigningRequest | None:
    stored = (txn.extra or {}).get(EXTRA)
    return SigningRequest.from_json(stored) if stored else None


def fetch_fields(txn: LoginTransaction) -> dict:
    signing = request_of(txn)
    if signing is None:
        return {}
    return {"signing": {
        "documents": [{"label": d.label, "hash": base64.b64encode(d.digest).decode(), "fingerprint": d.fingerprint}
                      for d in signing.documents],
        "receives": RECEIVES,
    }}


def _signatures(value: object) -> list[bytes]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_DOCUMENTS \
            or any(not isinstance(v, str) or len(v) > MAX_SIGNATURE_FIELD for v in value):
        raise VerificationError("proof_malformed", "The document signatures must be a list of base64url texts.")
    try:
        return [base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)) for v in value]
    except (binascii.Error, ValueError):
        raise VerificationError("proof_malformed", "A document signature is not base64url.") from None


def _attributes(value: object) -> list[bytes]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_DOCUMENTS \
            or any(not isinstance(v, str) or len(v) > MAX_ATTRIBUTES_FIELD for v in value):
        raise VerificationError("proof_malformed", "The signed attributes must be a list of base64url texts.")
    try:
        return [base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)) for v in value]
    except (binascii.Error, ValueError):
        raise VerificationError("proof_malformed", "A document's signed attributes are not base64url.") from None


def verify_submission(services, txn: LoginTransaction, body: dict, auth_serial: int, token_type: str,
                      certificate_der: bytes) -> str | None:
    """The reference of the kept package, or None when the login asked for no signature."""
    signing = request_of(txn)
    if signing is None:
        if body.get("document_signatures") is not None or body.get("document_signed_attributes") is not None:
            raise VerificationError("proof_malformed", "This login asked for no document signature.")
        return None
    batch = verify_document_signatures(services.verifier, certificate_der, _signatures(body.get("document_signatures")),
                                       _attributes(body.get("document_signed_attributes")), signing,
                                       token_type=token_type)
    record = services.certificates.find(batch.issuer, batch.certificate.serial)
    if record is None or record.auth_serial != auth_serial:  # 紐付け: both certificates from one card
        raise VerificationError("certificates_not_linked",
                                "The signing and user-authentication certificates are not from the same card.")
    check_record(record)
    return package.keep(services, txn.client_id, package.granted_details(signing, batch))


def release(services, reference: str | None, client_id: str) -> dict | None:
    """The token response's authorization_details element, once (deleted as it is read); None if there is none."""
    return package.take(services, reference, client_id)


def documents(element: dict | None) -> list[tuple[str, str]]:
    """(label, fingerprint) of each document in a released element: what the holder's access record keeps of it."""
    if element is None:
        return []
    return [(d["label"], fingerprint(base64.b64decode(d["hash"]))) for d in element["documentDigests"]]
