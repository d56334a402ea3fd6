"""IdP browser sessions after a card login, and the certificate they came from.

Every use of a session (and of a refresh token) asks the status store whether the certificate is still good
(`IdpServices.certificate_good`, through idp/certificate_records.py):
a revoked or held certificate ends the sessions and tokens that came from it (docs/design.md, the last step of flow 2).
Sessions, codes and tokens name that certificate only by a sealed reference (`IdpServices.seal_certificate`):
no serial is stored in clear outside the revocation service.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import redis

from idp import keys


@dataclass(frozen=True)
class Session:
    account_id: str
    auth_time: int
    certificate: str  # sealed (issuer, serial) of the certificate the login used
    # One-time notes for the authorization request a login or consent was made for, keyed by the request's
    # digest: "login_for", "consent_for", "deny_for"; and "facts" (sealed) until a code carries them.
    flags: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Session(auth_time={self.auth_time})"


class SessionStore:
    def __init__(self, client: redis.Redis, ttl: dt.timedelta, certificate_good: Callable[[str], bool]):
        self.redis = client
        self.ttl = ttl
        self.certificate_good = certificate_good

    @staticmethod
    def _key(session_id: str) -> str:
        return keys.session(hashlib.sha256(session_id.encode()).hexdigest())

    def create(self, session: Session) -> str:
        """A new session; the account's index of live sessions (`end_all`) expires with its newest one."""
        session_id = secrets.token_urlsafe(32)
        ttl = int(self.ttl.total_seconds())
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._key(session_id), json.dumps(asdict(session)), ex=ttl)
        pipe.sadd(keys.account_sessions(session.account_id), hashlib.sha256(session_id.encode()).hexdigest())
        pipe.expire(keys.account_sessions(session.account_id), ttl)
        pipe.execute()
        return session_id

    def end_all(self, account_id: str) -> int:
        """End every session of the account ("log out everywhere"); how many were still live."""
        index = keys.account_sessions(account_id)
        digests = [d.decode() for d in self.redis.smembers(index)]
        ended = self.redis.delete(*(keys.session(d) for d in digests)) if digests else 0
        self.redis.delete(index)
        return ended

    def get(self, session_id: str | None) -> Session | None:
        """The live session, or None: unknown, expired, or its certificate no longer good (then it is ended)."""
        if not session_id or len(session_id) > 100:
            return None
        raw = self.redis.get(self._key(session_id))
        if raw is None:
            return None
        session = Session(**json.loads(raw))
        if not self.certificate_good(session.certificate):
            self.end(session_id)
            return None
        return session

    def set_flags(self, session_id: str, **flags) -> None:
        session = self.get(session_id)
        if session is not None:
            self._put(session_id, replace(session, flags={**session.flags, **flags}))

    def take_flag(self, session_id: str, name: str, expected: str | None = None):
        """Remove and return a one-time flag; with `expected`, only when it holds that value."""
        session = self.get(session_id)
        if session is None or name not in session.flags:
            return None
        value = session.flags[name]
        if expected is not None and value != expected:
            return None
        self._put(session_id, replace(session, flags={k: v for k, v in session.flags.items() if k != name}))
        return value

    def _put(self, session_id: str, session: Session) -> None:
        self.redis.set(self._key(session_id), json.dumps(asdict(session)), keepttl=True)

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.redis.delete(self._key(session_id))
