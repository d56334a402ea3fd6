"""Short-lived personal data at rest in Redis (the four basic facts between login and token) is sealed.

AES-GCM under a key derived from the platform secret, with the record's key as associated data so a sealed
value cannot be moved to another record.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class Sealer:
    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, value: dict, context: str) -> str:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, json.dumps(value).encode(), context.encode())
        return base64.urlsafe_b64encode(blob).decode()

    def open(self, sealed: str, context: str) -> dict:
        blob = base64.urlsafe_b64decode(sealed)
        return json.loads(self._aead.decrypt(blob[:12], blob[12:], context.encode()))
