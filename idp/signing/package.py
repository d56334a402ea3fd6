"""From a verified batch to what the relying party receives, once, in the token response.

Where the signatures go (a choice the issue left open). They travel with the tokens: the token response's
`authorization_details` (RFC 9396 §7, "the authorization details granted") carries, for the one `credential`
element the relying party asked for, each document's digest, label, signature and the CMS signed attributes that
signature is over (built by the bridge around the digest, jpki/cades.py), and the evidence every one of
those signatures needs — the signing certificate, its chain up to the pinned root, and the OCSP response that said
"good" when the card signed. The evidence is the same for every document of a batch (one card, one check), so it
is given once in the element rather than copied per document. The token response was chosen over an endpoint
bound to the access token because the code exchange is already single use, authenticated (private_key_jwt or the
client secret) and PKCE-bound: the signatures reach only the client the holder signed for, exactly once, with no
second request to protect and no window in which the platform keeps them for a later call.

Between the card and the token response the batch waits in Redis, sealed (AES-GCM, idp/holder/sealing.py) under
a random reference that the sealed login result, the session flag and the authorization code carry; taking it
deletes it (GETDEL), and it expires with the login anyway (`PACKAGE_TTL`). The platform never holds a document,
only digests, labels and signatures, and not beyond the exchange.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

from cryptography.hazmat.primitives.serialization import Encoding

from idp.signing.details import SIGNATURE_ALGORITHM_OID, SigningRequest
from idp.signing.verification import SignedBatch

CONTEXT = "signing-package"
PACKAGE_TTL = dt.timedelta(minutes=15)  # login (5 min) + consent + code (≤ 10 min): the longest honest path


def _key(reference: str) -> str:
    return f"idp:signing:package:{hashlib.sha256(reference.encode()).hexdigest()}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def granted_details(request: SigningRequest, batch: SignedBatch) -> dict:
    """The `credential` element of the token response's authorization_details (docs/relying-parties.md)."""
    element = request.granted()
    for entry, signature, attributes in zip(element["documentDigests"], batch.signatures, batch.signed_attributes,
                                            strict=True):
        entry["signature"] = _b64(signature)
        entry["signedAttributes"] = _b64(attributes)  # what the signature is over: the website embeds them as is
    element |= {
        "signatureAlgorithmOID": SIGNATURE_ALGORITHM_OID,
        "certificates": [_b64(batch.certificate_der), _b64(batch.root.public_bytes(Encoding.DER))],
        "ocspResponse": _b64(batch.ocsp_response),
        "signedAt": batch.signed_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return element


def keep(services, client_id: str, element: dict) -> str:
    """Seal the element for `client_id` and keep it until the code exchange; returns its reference."""
    reference = secrets.token_urlsafe(24)
    sealed = services.sealer.seal({"client_id": client_id, "element": element}, CONTEXT)
    services.redis.set(_key(reference), sealed, ex=int(PACKAGE_TTL.total_seconds()))
    return reference


def take(services, reference: str | None, client_id: str) -> dict | None:
    """The element kept under `reference`, deleted as it is read; None when gone or made for another client."""
    if not reference:
        return None
    sealed = services.redis.getdel(_key(reference))
    if sealed is None:
        return None
    kept = services.sealer.open(sealed.decode(), CONTEXT)
    return kept["element"] if kept["client_id"] == client_id else None
