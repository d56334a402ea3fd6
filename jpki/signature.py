"""What the card signs and how the host checks it (docs/jpki-profile.md §2, docs/design.md flow 1).

The host hashes; the card wraps the DigestInfo in PKCS#1 v1.5 type-1 padding and does RSA-2048. The result is
an ordinary RSASSA-PKCS1-v1_5 signature over the original message.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# DER of DigestInfo{ AlgorithmIdentifier{ sha256, NULL }, OCTET STRING (32 bytes) } up to the digest.
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
DIGEST_INFO_LENGTH = len(SHA256_DIGEST_INFO_PREFIX) + 32


def digest_info_sha256(message: bytes) -> bytes:
    """The DigestInfo the card signs for `message` (hashed here, on the host)."""
    return SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(message).digest()


def login_message(origin: str, challenge: bytes) -> bytes:
    """`SHA-256(origin) ‖ SHA-256(challenge)`: binds a login signature to one site and one challenge (Web eID)."""
    return hashlib.sha256(origin.encode("utf-8")).digest() + hashlib.sha256(challenge).digest()


def verify_signature(public_key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> bool:
    """True when `signature` is the card's RSASSA-PKCS1-v1_5/SHA-256 signature over `message`."""
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# --- the access record's key (mykey/record.py) ----------------------------------------------------------------
#
# The card's auth key signs one fixed message per platform when the holder opens their access record; PKCS#1 v1.5
# is deterministic, so the same card always gives the same signature and the key derived from it can be made
# again by the holder's card alone. A login must never be able to obtain that signature, so the two messages can
# never be equal: a login message is always 64 octets (two SHA-256 digests), a history message never is (the label,
# a zero octet, then the SHA-256 of the platform's origin: 65 octets). The bridge also refuses any login challenge
# that carries the label (`is_history_bait`), so a hostile service cannot even try.
#
# Document signing (idp/signing) has the card sign the digest of CMS signed attributes that carry a digest the
# website chose (jpki/cades.py), so a website could send the history message's SHA-256 as a "document". That
# signature is made with the *signing* key (nfc_bridge/login.py signs documents with CertificateKind.SIGNING only),
# and the record's key comes from the *auth* key's signature, so it would open nothing; the bridge refuses such a
# digest all the same (`is_history_digest`), both the website's and the attributes' digest the card actually signs
# (the latter could match only through a SHA-256 preimage, but it is what reaches the card, so it is what is checked),
# so that what the card signs for a website is never the history message under any key.

HISTORY_LABEL = b"JPKI MyKey access-record key v1."  # 32 octets: the message is 65, never a login's 64


def history_message(origin: str) -> bytes:
    """What the card signs to open the access record kept by the platform at `origin` (never 64 octets long)."""
    return HISTORY_LABEL + b"\x00" + hashlib.sha256(origin.encode("utf-8")).digest()


def is_history_bait(origin: str, challenge: bytes) -> bool:
    """True when a login (or facts) challenge could make the card sign something tied to the access record's key:
    the challenge contains the label or the history message, or the message to sign would equal it."""
    message = history_message(origin)
    return HISTORY_LABEL in challenge or message in challenge or login_message(origin, challenge) == message


def is_history_digest(origin: str, digest: bytes) -> bool:
    """True when a digest (a document's, or the one the card would sign) is the history message's own SHA-256."""
    return digest == hashlib.sha256(history_message(origin)).digest()


def digest_fingerprint(digest: bytes) -> str:
    """A short fingerprint of a digest the card is asked to sign, for a person to compare across two screens (the
    login page and the bridge): its first 8 bytes in upper-case hex, four groups of four (`89B4 E79D CCCE 7FCE`)."""
    text = digest[:8].hex().upper()
    return " ".join(text[i:i + 4] for i in range(0, 16, 4))
