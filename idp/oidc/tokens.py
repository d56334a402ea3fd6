"""Authorization codes and tokens in Redis.

Codes carry ≥ 128 random bits (Authlib's 48-character codes: ~285 bits), are stored only hashed, and are consumed
atomically by one Lua script: the first redemption gets the code, a second finds the "used" marker — that is a
replayed code (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.5), and every token issued from it is revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field

import redis
from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin

from idp import keys

ACR = "aal3"  # card + PIN: a hardware cryptographic authenticator with a memorised secret


def token_digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_token_value(*_args, **_kwargs) -> str:
    """An access or refresh token value (Authlib's generator hook): 256 random bits, base64url, which is RFC 6750
    §2.1's b64token alphabet. Authlib's default draws each of 42 characters separately, at ten times the cost."""
    return secrets.token_urlsafe(32)


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code_digest: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    account_id: str
    auth_time: int
    certificate: str  # sealed reference
    facts: str | None = None  # sealed four basic facts, when they were asked for and signed for

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return ACR

    def __repr__(self) -> str:
        return f"AuthorizationCode(client={self.client_id})"


@dataclass
class Token(TokenMixin):
    client_id: str
    scope: str
    account_id: str
    sub: str
    certificate: str  # sealed reference
    issued_at: int
    expires_in: int
    kind: str  # "access" or "refresh"
    code_digest: str | None = None
    facts: str | None = None
    revoked: bool = False
    extra: dict = field(default_factory=dict)

    def check_client(self, client) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self):
        return self

    def get_client(self):  # set by the bearer-token validator from the client registry
        return getattr(self, "_client", None)

    def __repr__(self) -> str:
        return f"Token({self.kind}, client={self.client_id})"


# KEYS: code record, used marker (same hash tag). ARGV: used-marker TTL.
# Returns the record on first use, "USED" on a replay, nil when unknown.
_CONSUME_CODE = """
local record = redis.call('GET', KEYS[1])
if record then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
  return record
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'USED' end
return false
"""

REPLAYED = object()


class TokenStore:
    def __init__(self, client: redis.Redis, code_ttl: dt.timedelta, refresh_ttl: dt.timedelta):
        self.redis = client
        self.code_ttl = code_ttl
        self.refresh_ttl = refresh_ttl
        self._consume = client.register_script(_CONSUME_CODE)

    # --- codes ---------------------------------------------------------------------------------------------

    @staticmethod
    def _code_keys(digest: str) -> list[str]:
        return [keys.code(digest), keys.code_used(digest)]

    @staticmethod
    def _family_key(code_digest: str) -> str:
        return keys.code_tokens(code_digest)

    def save_code(self, code: AuthorizationCode) -> None:
        self.redis.set(self._code_keys(code.code_digest)[0], json.dumps(asdict(code)),
                       ex=int(self.code_ttl.total_seconds()))

    def consume_code(self, code: str):
        """The code's record (once), REPLAYED for a second use, or None for an unknown or expired code."""
        if not isinstance(code, str) or len(code) > 256:
            return None
        digest = token_digest(code)
        # The used marker outlives every token that can come from the code, so a late replay still revokes them.
        marker_ttl = int(self.refresh_ttl.total_seconds())
        answer = self._consume(keys=self._code_keys(digest), args=[marker_ttl])
        if answer is None:
            return None
        if answer == b"USED":
            self.revoke_code_family(digest)
            return REPLAYED
        return AuthorizationCode(**json.loads(answer))

    def revoke_code_family(self, code_digest: str) -> int:
        digests = self.redis.smembers(self._family_key(code_digest))
        for digest in digests:
            self.revoke_digest(digest.decode())
        return len(digests)

    # --- tokens --------------------------------------------------------------------------------------------

    def _token_key(self, digest: str) -> str:
        return keys.token(digest)

    def save_token(self, value: str, token: Token) -> None:
        digest = token_digest(value)
        pipe = self.redis.pipeline(transaction=False)  # one round trip; the keys may sit in different slots
        pipe.set(self._token_key(digest), json.dumps(asdict(token)), ex=max(1, token.expires_in))
        if token.code_digest:
            family = self._family_key(token.code_digest)
            pipe.sadd(family, digest)
            pipe.expire(family, int(self.refresh_ttl.total_seconds()))
        pipe.execute()

    def get(self, value: str | None) -> Token | None:
        if not isinstance(value, str) or not value or len(value) > 256:
            return None
        raw = self.redis.get(self._token_key(token_digest(value)))
        return Token(**json.loads(raw)) if raw else None

    def revoke(self, value: str) -> None:
        self.revoke_digest(token_digest(value))

    def revoke_digest(self, digest: str) -> None:
        self.redis.delete(self._token_key(digest))
