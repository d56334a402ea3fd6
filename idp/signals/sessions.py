"""What an IdP browser session remembers for back-channel logout, and the holder's logouts that signal.

A session remembers the relying parties it logged into (`keys.session_rps`, expiring with the session: nothing is
kept after it), so logging out of it sends each of them a logout token naming that session's `sid`. The `sid` a
relying party sees is pairwise (causes.session_sid): derived from the session and the client, so two relying
parties cannot match their records of the same visit. The account keeps the digests of its live sessions
(`keys.account_sessions`), so "log out everywhere" ends every one of them.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from idp import keys
from idp.signals.causes import holder_cause, session_sid


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def sid_for(services, session_id: str, client_id: str) -> str:
    """The `sid` of this session for this client (the ID token's, and the logout token's)."""
    return session_sid(services.config.subkey("bcl-sid"), digest(session_id), client_id)


def remember_login(services, session_id: str, client_id: str) -> None:
    """Note that this session logged into `client_id`, for as long as the session lives."""
    key = keys.session_rps(digest(session_id))
    ttl = services.redis.ttl(keys.session(digest(session_id)))
    pipe = services.redis.pipeline(transaction=True)
    pipe.sadd(key, client_id)
    pipe.expire(key, ttl if ttl and ttl > 0 else int(services.config.session_ttl.total_seconds()))
    pipe.execute()


def session_ended(services, signals, session_id: str | None) -> int:
    """Logout tokens (sub and sid) to the relying parties this session logged into; call before ending it."""
    if not session_id or len(session_id) > 100:
        return 0
    session_digest = digest(session_id)
    raw = services.redis.get(keys.session(session_digest))
    clients = sorted(c.decode() for c in services.redis.smembers(keys.session_rps(session_digest)))
    services.redis.delete(keys.session_rps(session_digest))
    if raw is None or not clients:
        return 0
    account_id = json.loads(raw)["account_id"]
    return signals.session_logout(account_id, session_digest, clients, f"logout:{session_digest}")


def logged_out_everywhere(services, signals, account_id: str) -> int:
    """The holder ended every session: each IdP session of the account, and at every consented receiver
    session-revoked and a logout token."""
    cause = holder_cause(f"everywhere:{secrets.token_hex(8)}", int(services.clock().timestamp()))
    queued = signals.for_account(account_id, cause)
    services.sessions.end_all(account_id)
    return queued


def consent_withdrawn(services, signals, account_id: str, client_id: str) -> int:
    """The holder withdrew one relying party's consent: its sessions for the holder end (call before the
    withdrawal, while the consent is still there to be checked)."""
    if services.consents.get(account_id, client_id) is None:
        return 0
    cause = holder_cause(f"withdrawn:{secrets.token_hex(8)}", int(services.clock().timestamp()))
    return signals.for_account(account_id, cause, only=client_id, consented=True)
