"""Login transactions (docs/design.md flow 1, Web eID's challenge rules).

A transaction binds one browser (by a secret in a `__Host-` cookie) to one card interaction:
- a challenge of 32 random bytes, valid at most 5 minutes, usable for one submission only;
- a one-use `handle` for the card side (in the QR code and in the bridge command): the first fetch consumes it
  and hands out a `submit_token` that only that fetcher knows;
- a short code that both the page and the card side show, so the holder sees they belong together.
When the holder's relying party asks for the four basic facts, a second challenge is signed with the signing key.

Round trips on the submit, the hot path (bench/login.py): the submit token's key holds the transaction as it was
handed to the card side, so claiming the token returns it — one command, not a claim and then a read — and the
outcome is saved with one more. Nothing a submission needs changes between the fetch and the submit; the browser's
own record (state, result) is the one the outcome is written to, and only while it exists (SET XX), so a
transaction the browser has meanwhile finished and discarded is never brought back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import redis

from idp import keys
from wire.errors import CodedError

CHALLENGE_BYTES = 32  # ≥ 256 bits (Web eID)
SPENT = b"spent"  # what a submit token's key holds once claimed; before, the transaction's JSON (an object)


class LoginError(CodedError):
    """A login transaction problem. `code` is stable; `status` is the HTTP status to answer with (400 unless
    given)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class LoginTransaction:
    id: str  # the browser's secret (cookie); stored only hashed in key names
    handle: str
    short_code: str
    challenge: str  # base64url
    signing_challenge: str | None  # base64url, when the four basic facts are asked for
    origin: str
    client_id: str
    rp_name: str
    return_to: str
    share: list[str]
    created_at: str
    expires_at: str
    state: str = "waiting"  # waiting → fetched → verified | failed
    error: str | None = None
    result: str | None = None  # sealed: account, auth time, certificate reference, facts
    fetched: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def expired_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.expires_at)

    def __repr__(self) -> str:  # the challenge, handle and id are secrets
        return f"LoginTransaction(state={self.state}, client={self.client_id})"


class LoginStore:
    def __init__(self, client: redis.Redis, ttl: dt.timedelta, clock: Callable[[], dt.datetime]):
        self.redis = client
        self.ttl = ttl
        self.clock = clock

    def _key(self, txn_id: str) -> str:
        return keys.login_transaction(_digest(txn_id))

    def _handle_key(self, handle: str) -> str:
        return keys.login_handle(_digest(handle))

    def _submit_key(self, token: str) -> str:
        return keys.login_submit(_digest(token))

    def create(self, origin: str, client_id: str, rp_name: str, return_to: str, share: list[str],
               wants_facts: bool, extra: dict | None = None) -> LoginTransaction:
        now = self.clock()
        txn = LoginTransaction(
            id=_b64(secrets.token_bytes(32)),
            handle=_b64(secrets.token_bytes(24)),
            short_code=f"{secrets.randbelow(10_000):04d}",
            challenge=_b64(secrets.token_bytes(CHALLENGE_BYTES)),
            signing_challenge=_b64(secrets.token_bytes(CHALLENGE_BYTES)) if wants_facts else None,
            origin=origin, client_id=client_id, rp_name=rp_name, return_to=return_to, share=share,
            created_at=now.isoformat(), expires_at=(now + self.ttl).isoformat(), extra=dict(extra or {}),
        )
        seconds = int(self.ttl.total_seconds()) + 30
        self.redis.set(self._key(txn.id), json.dumps(vars(txn)), ex=seconds)
        self.redis.set(self._handle_key(txn.handle), txn.id, ex=seconds)
        return txn

    def get(self, txn_id: str | None) -> LoginTransaction:
        """The transaction bound to this browser; expired or unknown ones raise."""
        raw = self.redis.get(self._key(txn_id)) if txn_id and len(txn_id) < 100 else None
        if raw is None:
            raise LoginError("login_not_found", "There is no login in progress in this browser.", 404)
        return self._unexpired(LoginTransaction(**json.loads(raw)))

    def _unexpired(self, txn: LoginTransaction) -> LoginTransaction:
        if self.clock() >= txn.expired_at and txn.state != "verified":
            raise LoginError("challenge_expired", "The login took longer than 5 minutes; please start again.", 410)
        return txn

    def fetch(self, handle: str) -> tuple[LoginTransaction, str]:
        """The card side's one fetch by handle: returns the transaction and a one-use submit token."""
        if not isinstance(handle, str) or not 10 <= len(handle) <= 64:
            raise LoginError("unknown_handle", "This login link is not valid.", 404)
        txn_id = self.redis.getdel(self._handle_key(handle))
        if txn_id is None:
            raise LoginError("unknown_handle", "This login link was already used or has expired.", 404)
        txn = replace(self.get(txn_id.decode()), state="fetched", fetched=True)
        token = _b64(secrets.token_bytes(32))
        with self.redis.pipeline(transaction=False) as pipe:  # two slots: one round trip, not a transaction
            pipe.set(self._submit_key(token), json.dumps(vars(txn)), ex=int(self.ttl.total_seconds()) + 30)
            pipe.set(self._key(txn.id), json.dumps(vars(txn)), xx=True, keepttl=True)
            pipe.execute()
        return txn, token

    def claim_submission(self, token: str) -> LoginTransaction:
        """The single submission a challenge allows (Web eID: single use), as docs/bridge-api.yaml promises:
        a token never handed out is `unknown_submission` (404); a token already spent is `challenge_used` (409).

        One command claims it: SET … XX GET swaps the transaction (as the fetch handed it out) for a spent marker
        only if the token exists and returns what was there, so two concurrent submissions cannot both claim it, an
        unknown token leaves nothing behind, and no second read is needed. The marker keeps the token's expiry.
        """
        if not isinstance(token, str) or not 10 <= len(token) <= 64:
            raise LoginError("unknown_submission", "This submission is not for a login in progress.", 404)
        claimed = self.redis.set(self._submit_key(token), SPENT, xx=True, keepttl=True, get=True)
        if claimed is None:
            raise LoginError("unknown_submission", "This submission is not for a login in progress.", 404)
        if claimed == SPENT:
            raise LoginError("challenge_used", "This challenge was already used; start the login again.", 409)
        return self._unexpired(LoginTransaction(**json.loads(claimed)))

    def finish(self, txn: LoginTransaction, result: str | None = None, error: str | None = None) -> LoginTransaction:
        state = "verified" if error is None else "failed"
        return self._save(replace(txn, state=state, result=result, error=error))

    def discard(self, txn: LoginTransaction) -> None:
        self.redis.delete(self._key(txn.id), self._handle_key(txn.handle))

    def _save(self, txn: LoginTransaction) -> LoginTransaction:
        """Write the outcome to the browser's record while it exists (XX): never recreate a discarded one."""
        self.redis.set(self._key(txn.id), json.dumps(vars(txn)), xx=True, keepttl=True)
        return txn
