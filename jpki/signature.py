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


def digest_fingerprint(digest: bytes) -> str:
    """A short fingerprint of a digest the card is asked to sign, for a person to compare across two screens (the
    login page and the bridge): its first 8 bytes in upper-case hex, four groups of four (`89B4 E79D CCCE 7FCE`)."""
    text = digest[:8].hex().upper()
    return " ".join(text[i:i + 4] for i in range(0, 16, 4))
