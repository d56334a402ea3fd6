"""What a relying party asks to have signed: RFC 9396 `authorization_details` in the Cloud Signature Consortium
API v2 shape for credential authorization.

A relying party adds one element of type `credential` to its authorization request:

    authorization_details=[{"type": "credential",
                            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                            "documentDigests": [{"hash": "<base64 SHA-256>", "label": "Contract"}, …]}]

Each `hash` is what the card signs (as the SHA-256 DigestInfo, PKCS#1 v1.5): for a PDF, the SHA-256 of the CMS
signed attributes the relying party prepared. The platform never sees a document, only these digests.

Why so strict. The holder approves what the login page and the bridge show — the relying party's name, each label
and a short fingerprint of each digest — with the signing PIN, and a legally recognised signature follows. So
everything shown is bounded and plain (no control characters, no markup that could pass for something else), the
batch is small enough to read (`MAX_DOCUMENTS`), only SHA-256 is accepted (the card's DigestInfo is SHA-256, and a
shorter hash would be a weaker promise than the holder believes), a digest appears once, and anything not
understood is refused rather than ignored: a field the relying party thought mattered must not be silently dropped
from what the holder approves. Every refusal is `invalid_authorization_details` (RFC 9396 §5) with a sentence
saying which rule failed; the sentence never repeats a label or a digest.

CSC fields we accept but that change nothing: `credentialID` (the holder's only signing credential is the card's;
if given it must be `jpki-sign`), `numSignatures` (if given it must equal the number of digests) and `locations`
(if given it must name this issuer).
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error

from jpki.signature import digest_fingerprint
from wire.json_input import JSONInputError
from wire.json_input import loads as json_loads

TYPE = "credential"  # CSC API v2 §8.4: credential authorization
SHA256_OID = "2.16.840.1.101.3.4.2.1"
SIGNATURE_ALGORITHM_OID = "1.2.840.113549.1.1.11"  # sha256WithRSAEncryption: PKCS#1 v1.5 over the DigestInfo
CREDENTIAL_ID = "jpki-sign"
MAX_DOCUMENTS = 10
MAX_LABEL = 100  # characters: a title, as a person reads it on a phone
MAX_PARAMETER = 8 * 1024  # the whole parameter, URL-decoded: ten digests and labels fit with room to spare
DIGEST_BYTES = 32
_FIELDS = frozenset({"type", "hashAlgorithmOID", "documentDigests", "credentialID", "numSignatures", "locations"})


class InvalidAuthorizationDetails(OAuth2Error):
    """RFC 9396 §5: the authorization_details were not acceptable. Goes back to the relying party's redirect URI."""

    error = "invalid_authorization_details"


@dataclass(frozen=True)
class Document:
    label: str
    digest: bytes  # the 32 bytes the card signs

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.digest)

    def __repr__(self) -> str:  # labels and digests stay out of logs
        return "Document(<redacted>)"


@dataclass(frozen=True)
class SigningRequest:
    documents: tuple[Document, ...]

    def to_json(self) -> list[dict]:
        """The stored form (login transaction): labels and base64 digests."""
        return [{"label": d.label, "hash": base64.b64encode(d.digest).decode()} for d in self.documents]

    @classmethod
    def from_json(cls, stored: list[dict]) -> SigningRequest:
        return cls(tuple(Document(d["label"], base64.b64decode(d["hash"])) for d in stored))

    def granted(self) -> dict:
        """The element as granted, for the token response (RFC 9396 §7)."""
        return {"type": TYPE, "credentialID": CREDENTIAL_ID, "hashAlgorithmOID": SHA256_OID,
                "documentDigests": self.to_json()}

    def __repr__(self) -> str:
        return f"SigningRequest({len(self.documents)} documents)"


fingerprint = digest_fingerprint  # the one way a digest is shown to a person (jpki/signature.py)


def _refuse(sentence: str, redirect_uri: str | None, state: str | None) -> InvalidAuthorizationDetails:
    return InvalidAuthorizationDetails(sentence, redirect_uri=redirect_uri, state=state)


def parse(raw: str | None, *, issuer: str, redirect_uri: str | None = None,
          state: str | None = None) -> SigningRequest | None:
    """The signing request in `raw` (the parameter's value), None when there is none; raises
    InvalidAuthorizationDetails, carrying `redirect_uri` and `state` for the error response."""
    if raw is None:
        return None

    def refuse(sentence: str) -> InvalidAuthorizationDetails:
        return _refuse(sentence, redirect_uri, state)

    if not isinstance(raw, str) or len(raw) > MAX_PARAMETER:
        raise refuse(f"authorization_details must be JSON of at most {MAX_PARAMETER} characters.")
    try:
        details = json_loads(raw.encode(), max_bytes=MAX_PARAMETER)
    except (JSONInputError, json.JSONDecodeError, UnicodeError):
        raise refuse("authorization_details is not valid JSON.") from None
    if not isinstance(details, list) or len(details) != 1 or not isinstance(details[0], dict):
        raise refuse("authorization_details must be an array holding exactly one object of type credential.")
    element = details[0]
    if element.get("type") != TYPE:
        raise refuse("The only authorization_details type supported is credential (CSC API v2).")
    unknown = set(element) - _FIELDS
    if unknown:
        raise refuse("authorization_details has fields this service does not support: "
                     + ", ".join(sorted(name[:40] for name in unknown)[:5]) + ".")
    if element.get("hashAlgorithmOID") != SHA256_OID:
        raise refuse(f"hashAlgorithmOID must be {SHA256_OID} (SHA-256); no other hash is accepted.")
    if element.get("credentialID", CREDENTIAL_ID) != CREDENTIAL_ID:
        raise refuse(f"credentialID, when given, must be {CREDENTIAL_ID}: the card's signing key.")
    if "locations" in element and element["locations"] != [issuer]:
        raise refuse("locations, when given, must name this issuer only.")
    digests = element.get("documentDigests")
    if not isinstance(digests, list) or not 1 <= len(digests) <= MAX_DOCUMENTS:
        raise refuse(f"documentDigests must list 1 to {MAX_DOCUMENTS} documents.")
    if "numSignatures" in element and element["numSignatures"] != len(digests):
        raise refuse("numSignatures, when given, must equal the number of documentDigests.")
    documents = tuple(_document(entry, refuse) for entry in digests)
    if len({d.digest for d in documents}) != len(documents):
        raise refuse("Each document digest may appear only once.")
    return SigningRequest(documents)


def _document(entry: object, refuse) -> Document:
    if not isinstance(entry, dict) or set(entry) != {"hash", "label"}:
        raise refuse("Each documentDigests entry must have exactly a hash and a label.")
    digest_text, label = entry["hash"], entry["label"]
    if not isinstance(digest_text, str) or len(digest_text) > 64:
        raise refuse("Each hash must be the base64 of a SHA-256 digest (32 bytes).")
    try:
        digest = base64.b64decode(digest_text, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("Each hash must be the base64 of a SHA-256 digest (32 bytes).") from None
    if len(digest) != DIGEST_BYTES:
        raise refuse("Each hash must be the base64 of a SHA-256 digest (32 bytes).")
    if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL or label != " ".join(label.split()):
        raise refuse(f"Each label must be 1 to {MAX_LABEL} characters of text, without leading, trailing or "
                     "repeated spaces.")
    if any(unicodedata.category(c)[0] == "C" or c in "<>" for c in label):
        raise refuse("A label may not contain control characters or angle brackets.")
    return Document(unicodedata.normalize("NFC", label), digest)
