"""Authorization codes and tokens in Redis.

Codes carry ≥ 128 random bits (Authlib's 48-character codes: ~285 bits), are stored only hashed, and are consumed
atomically by one Lua script: the first redemption gets the code, a second finds the "used" marker — that is a
replayed code (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.5), and every token issued from it is revoked.

The exchange in few round trips: on one Redis server the token endpoint's Redis work before it signs is one
script (`exchange_code`), in this order, each step only if the one before passed — the client's stored record
is still the one its assertion was verified against (`CLIENT_CHANGED` otherwise: the endpoint reads the client
again and starts over, nothing spent), the assertion's `jti` is recorded once (`JTI_USED` otherwise), the DPoP
proof's `jti`, if the request carried a proof, is recorded once (`DPOP_JTI_USED` otherwise: idp/oidc/dpop.py), and
the code is consumed as above. The tokens issued are then stored in one pipeline (`save_tokens`). On a Redis
Cluster the keys of one exchange sit in different slots, which one script may not touch, so each step is its own
command there, in the same order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

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
    sid: str | None = None  # the ID token's `sid` (Back-Channel Logout 1.0 §2.1)
    dpop_jkt: str | None = None  # the DPoP key the code is bound to (RFC 9449 §10), from PAR or dpop_jkt
    signing: str | None = None  # reference of the document signatures kept for this code (idp/signing/package.py)

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
    jkt: str | None = None  # the DPoP key's thumbprint the token is bound to (RFC 9449 §6: cnf.jkt)
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


def _record_json(record: AuthorizationCode | Token) -> str:
    """The stored JSON of a code or token: its fields, one level deep (dataclasses.asdict copies every value
    recursively, at several times the cost, for records whose only nested value is a small dict)."""
    return json.dumps({f.name: getattr(record, f.name) for f in fields(record)}, separators=(",", ":"))


# Consuming a code, the last step of both scripts below: KEYS[code] the code record, KEYS[used] its used marker
# (same hash tag), ARGV[ttl] the marker's TTL. Returns the record on first use, "USED" on a replay, nil when unknown.
_CODE_STEP = """
local record = redis.call('GET', KEYS[code])
if record then
  redis.call('DEL', KEYS[code])
  redis.call('SET', KEYS[used], '1', 'EX', ARGV[ttl])
  return record
end
if redis.call('EXISTS', KEYS[used]) == 1 then return 'USED' end
return false
"""
# KEYS: code record, used marker. ARGV: used-marker TTL.
_CONSUME_CODE = "local code, used, ttl = 1, 2, 1" + _CODE_STEP

# KEYS: the clients hash, the jti record, the code record, the code's used marker[, the DPoP proof's jti record].
# ARGV: client id, digest of the client record the caller verified with, jti TTL, used-marker TTL[, DPoP jti TTL].
# Returns "CLIENT" (record changed or gone: nothing spent), "JTI" (assertion replayed: code untouched), "DPOP"
# (proof replayed: code untouched), then as _CONSUME_CODE. One server only: the keys are in different slots.
_EXCHANGE_CODE = """
local registered = redis.call('HGET', KEYS[1], ARGV[1])
if not registered or redis.sha1hex(registered) ~= ARGV[2] then return 'CLIENT' end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 'JTI' end
if KEYS[5] and not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[5]) then return 'DPOP' end
local code, used, ttl = 3, 4, 4
""" + _CODE_STEP

REPLAYED = object()
CLIENT_CHANGED = object()
JTI_USED = object()
DPOP_JTI_USED = object()


class TokenStore:
    def __init__(self, client: redis.Redis, code_ttl: dt.timedelta, refresh_ttl: dt.timedelta):
        self.redis = client
        self.code_ttl = code_ttl
        self.refresh_ttl = refresh_ttl
        self._consume = client.register_script(_CONSUME_CODE)
        # One script may touch keys of several slots only on one server; a Cluster takes the steps one by one.
        self.one_server = not isinstance(client, redis.RedisCluster)
        self._exchange = client.register_script(_EXCHANGE_CODE) if self.one_server else None

    # --- codes ---------------------------------------------------------------------------------------------

    @staticmethod
    def _code_keys(digest: str) -> list[str]:
        return [keys.code(digest), keys.code_used(digest)]

    @staticmethod
    def _family_key(code_digest: str) -> str:
        return keys.code_tokens(code_digest)

    def save_code(self, code: AuthorizationCode) -> None:
        self.redis.set(self._code_keys(code.code_digest)[0], _record_json(code),
                       ex=int(self.code_ttl.total_seconds()))

    def consume_code(self, code: str):
        """The code's record (once), REPLAYED for a second use, or None for an unknown or expired code."""
        if not isinstance(code, str) or len(code) > 256:
            return None
        digest = token_digest(code)
        # The used marker outlives every token that can come from the code, so a late replay still revokes them.
        marker_ttl = int(self.refresh_ttl.total_seconds())
        answer = self._consume(keys=self._code_keys(digest), args=[marker_ttl])
        return self._consumed(digest, answer)

    def exchange_code(self, code: str, client_id: str, client_digest: str, jti_key: str, jti_ttl: int,
                      dpop_jti: tuple[str, int] | None = None):
        """One server only (`one_server`): the module docstring's exchange script; `dpop_jti` the proof's jti
        record and its TTL. Returns CLIENT_CHANGED, JTI_USED, DPOP_JTI_USED, then as `consume_code`. A code that
        is not a bounded string spends nothing and answers None."""
        if not isinstance(code, str) or len(code) > 256:
            return None
        digest = token_digest(code)
        script_keys = [keys.CLIENTS, jti_key, *self._code_keys(digest)]
        args = [client_id, client_digest, jti_ttl, int(self.refresh_ttl.total_seconds())]
        if dpop_jti is not None:
            script_keys.append(dpop_jti[0])
            args.append(dpop_jti[1])
        answer = self._exchange(keys=script_keys, args=args)
        if answer == b"CLIENT":
            return CLIENT_CHANGED
        if answer == b"JTI":
            return JTI_USED
        if answer == b"DPOP":
            return DPOP_JTI_USED
        return self._consumed(digest, answer)

    def _consumed(self, digest: str, answer):
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
        self.save_tokens([(value, token)])

    def save_tokens(self, issued: list[tuple[str, Token]], also: Callable[[redis.client.Pipeline], None] | None = None
                    ) -> None:
        """Store the tokens of one response (value, record) and link each to its code, in one round trip. On one
        server `also` queues more writes in the same transaction (the access record); on a Cluster, whose slots one
        transaction cannot span, it is called with None after the tokens are stored, to write on its own."""
        pipe = self.redis.pipeline(transaction=self.one_server)
        families: dict[str, list[str]] = {}
        for value, token in issued:
            digest = token_digest(value)
            pipe.set(self._token_key(digest), _record_json(token), ex=max(1, token.expires_in))
            if token.code_digest:
                families.setdefault(token.code_digest, []).append(digest)
        for code_digest, digests in families.items():
            family = self._family_key(code_digest)
            pipe.sadd(family, *digests)
            pipe.expire(family, int(self.refresh_ttl.total_seconds()))
        if also is not None and self.one_server:
            also(pipe)
        pipe.execute()
        if also is not None and not self.one_server:
            also(None)

    def get(self, value: str | None) -> Token | None:
        if not isinstance(value, str) or not value or len(value) > 256:
            return None
        raw = self.redis.get(self._token_key(token_digest(value)))
        return Token(**json.loads(raw)) if raw else None

    def revoke(self, value: str) -> None:
        self.revoke_digest(token_digest(value))

    def revoke_digest(self, digest: str) -> None:
        self.redis.delete(self._token_key(digest))
