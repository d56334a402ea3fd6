"""The IdP's token-signing keys (ES256 and RS256), their rotation, and the published JWKS.

Rotation (OIDC Core §10.1.1): a new key is published in the JWKS first and signs only after
`key_rotation_overlap`, so relying parties that cache the JWKS have fetched it before they meet a token signed
with it; the key it replaces stays published until its last tokens have expired. Keys live in Redis (shared by
every IdP process), private halves encrypted with AES-GCM under a key derived from the platform secret.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import time
from dataclasses import dataclass

import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, KeySet, RSAKey

from idp.config import IdpConfig
from idp.keys import SIGNING_KEYS, SIGNING_KEYS_LOCK

KEYS_HASH = SIGNING_KEYS
ALGORITHMS = ("RS256", "ES256")
# How long a process may sign from the keys it last read. A rotation made elsewhere is seen this much later; that is
# harmless, as a new key is published `key_rotation_overlap` before it signs and a retired one stays published.
READ_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_jwk: dict
    signs_from: dt.datetime
    retired_at: dt.datetime | None

    def public_jwk(self) -> dict:
        return {k: v for k, v in self.private_jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")} | {
            "kid": self.kid, "alg": self.alg, "use": "sig"}

    def __repr__(self) -> str:
        return f"SigningKey({self.alg}, kid={self.kid})"


class SigningKeys:
    def __init__(self, client: redis.Redis, config: IdpConfig):
        self.redis = client
        self.config = config
        self._aead = AESGCM(config.subkey("signing-keys"))
        self._imported: dict[str, RSAKey | ECKey] = {}  # kid → the key imported for signing
        self._read: tuple[float, list[SigningKey]] | None = None  # (monotonic time, keys) of the last read

    # --- storage -------------------------------------------------------------------------------------------

    def all(self) -> list[SigningKey]:
        """Every stored key, read now."""
        keys = []
        for kid, blob in self.redis.hgetall(KEYS_HASH).items():
            record = json.loads(self._aead.decrypt(blob[:12], blob[12:], kid))
            keys.append(SigningKey(kid.decode(), record["alg"], record["jwk"],
                                   dt.datetime.fromisoformat(record["signs_from"]),
                                   dt.datetime.fromisoformat(record["retired_at"]) if record["retired_at"] else None))
        keys.sort(key=lambda k: k.signs_from)
        self._read = (time.monotonic(), keys)
        return list(keys)

    def _recent(self) -> list[SigningKey]:
        """The stored keys as read at most READ_CACHE_SECONDS ago: every token signed needs them twice (header and
        key), and each read decrypts every key."""
        if self._read is None or time.monotonic() - self._read[0] > READ_CACHE_SECONDS:
            return self.all()
        return list(self._read[1])

    def _save(self, key: SigningKey) -> None:
        self._read = None
        record = json.dumps({"alg": key.alg, "jwk": key.private_jwk, "signs_from": key.signs_from.isoformat(),
                             "retired_at": key.retired_at.isoformat() if key.retired_at else None}).encode()
        nonce = os.urandom(12)
        self.redis.hset(KEYS_HASH, key.kid, nonce + self._aead.encrypt(nonce, record, key.kid.encode()))

    # --- lifecycle -----------------------------------------------------------------------------------------

    def ensure(self, now: dt.datetime | None = None) -> None:
        """At start: one signing key per algorithm, usable at once (nobody has tokens from us yet)."""
        now = now or dt.datetime.now(dt.UTC)
        # Every worker of every IdP process runs this at start: one at a time, so they make one key, not many.
        with self.redis.lock(SIGNING_KEYS_LOCK, timeout=30, blocking_timeout=30):
            have = {k.alg for k in self.all() if k.retired_at is None}
            for alg in ALGORITHMS:
                if alg not in have:
                    self._save(_generate(alg, signs_from=now))

    def rotate(self, alg: str, now: dt.datetime | None = None) -> SigningKey:
        """Publish a new key now; it takes over signing after the overlap, and the old key retires then."""
        now = now or dt.datetime.now(dt.UTC)
        new = _generate(alg, signs_from=now + self.config.key_rotation_overlap)
        for key in self.all():
            if key.alg == alg and key.retired_at is None:
                self._save(SigningKey(key.kid, key.alg, key.private_jwk, key.signs_from, new.signs_from))
        self._save(new)
        return new

    def current(self, alg: str, now: dt.datetime | None = None) -> SigningKey:
        """The newest key of `alg` that may sign now."""
        now = now or dt.datetime.now(dt.UTC)
        usable = [k for k in self._recent() if k.alg == alg and k.signs_from <= now and (k.retired_at is None or
                                                                                        now < k.retired_at)]
        if not usable:
            raise LookupError(f"no {alg} signing key is active")
        return usable[-1]

    def jwks(self, now: dt.datetime | None = None) -> dict:
        """Published keys: upcoming ones, current ones, and retired ones whose tokens may still be in use."""
        now = now or dt.datetime.now(dt.UTC)
        keep_after_retiring = max(self.config.id_token_ttl, self.config.access_token_ttl)
        published = [k for k in self._recent() if k.retired_at is None or now < k.retired_at + keep_after_retiring]
        return {"keys": [k.public_jwk() for k in published]}

    def prune(self, now: dt.datetime | None = None) -> int:
        """Forget retired keys that no published token can still need."""
        now = now or dt.datetime.now(dt.UTC)
        keep_after_retiring = max(self.config.id_token_ttl, self.config.access_token_ttl)
        gone = [k.kid for k in self.all() if k.retired_at and now >= k.retired_at + keep_after_retiring]
        if gone:
            self._read = None
            self.redis.hdel(KEYS_HASH, *gone)
        return len(gone)

    def key_set(self, alg: str, now: dt.datetime | None = None) -> KeySet:
        """A one-key set with the current key of `alg`, in the shape Authlib's id_token encoder takes."""
        return KeySet([self._imported_key(self.current(alg, now))])

    def _imported_key(self, key: SigningKey) -> RSAKey | ECKey:
        """Importing a private RSA JWK checks the key, which takes tens of milliseconds: do it once per key. A kid
        names one key material for its whole life (rotation makes a new kid), so the kid is a safe cache key."""
        imported = self._imported.get(key.kid)
        if imported is None:
            imported = (RSAKey if key.alg == "RS256" else ECKey).import_key(key.private_jwk,
                                                                           {"kid": key.kid, "alg": key.alg})
            self._imported[key.kid] = imported
        return imported


def _generate(alg: str, signs_from: dt.datetime) -> SigningKey:
    kid = f"{alg.lower()}-{signs_from:%Y%m%d}-{secrets.token_hex(4)}"
    if alg == "RS256":
        jwk = RSAKey.generate_key(2048, private=True)
    elif alg == "ES256":
        jwk = ECKey.generate_key("P-256", private=True)
    else:
        raise ValueError(f"unsupported algorithm {alg}")
    return SigningKey(kid, alg, jwk.as_dict(private=True), signs_from, None)
