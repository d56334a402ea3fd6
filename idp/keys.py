"""Every Redis key the IdP uses, built here and nowhere else (mykey's and the revocation service's are in their
own keys modules).

Secrets never appear in a key: a login id, handle, submit token, session id, code or token is named by its SHA-256
digest (the callers pass the digest). Keys that one Lua script touches together share a hash tag, so the same code
runs on one server or a Redis Cluster:
- `{<first 16 hex of the code digest>}`: an authorization code and its used marker, swapped in one script so that a
  code is spent exactly once (RFC 6749 §4.1.2, OIDC Core §3.1.3.2) and a replay still finds the marker;
- `{<first 16 hex of the transaction digest>}`: a login transaction (alone, but tagged like the codes so that a
  later script over its state needs no key rename).
Every other key is used alone, one command at a time, and has no tag.
"""

from __future__ import annotations

PREFIX = "idp"

CLIENTS = f"{PREFIX}:clients"  # hash: client_id → registration (JSON)
SIGNING_KEYS = f"{PREFIX}:signing-keys"  # hash: kid → sealed ID-token signing key
SIGNING_KEYS_LOCK = f"{SIGNING_KEYS}:lock"  # held while one process rotates the keys


def _tag(digest: str) -> str:
    return f"{{{digest[:16]}}}"


# --- login (idp/login/transactions.py) ------------------------------------------------------------------------

def login_transaction(digest: str) -> str:
    """String: a login transaction (JSON), by the digest of its id."""
    return f"{PREFIX}:login:{_tag(digest)}:{digest}"


def login_handle(digest: str) -> str:
    """String: the transaction id a one-use handle leads to, by the digest of the handle."""
    return f"{PREFIX}:login:handle:{digest}"


def login_submit(digest: str) -> str:
    """String: the transaction a one-use submit token answers, by the digest of the token."""
    return f"{PREFIX}:login:submit:{digest}"


# --- the holder's browser (idp/holder/sessions.py) ------------------------------------------------------------

def session(digest: str) -> str:
    """String: a browser session (JSON), by the digest of its id."""
    return f"{PREFIX}:session:{digest}"


# --- signals to relying parties (idp/signals/) ------------------------------------------------------------------

def session_rps(digest: str) -> str:
    """Set: the client ids a browser session logged into (for back-channel logout), by the session id's digest;
    it expires with the session."""
    return f"{PREFIX}:session-rps:{digest}"


def account_sessions(account_id: str) -> str:
    """Set: the digests of an account's browser sessions (to end them all), expiring with the newest."""
    return f"{PREFIX}:account-sessions:{account_id}"


SSF_STREAMS = f"{PREFIX}:ssf:streams"  # hash: client_id → its SSF stream (JSON); one stream per client


def ssf_token(digest: str) -> str:
    """String: an access token with the `ssf` scope (client id), by the digest of its value."""
    return f"{PREFIX}:ssf:token:{digest}"


def outbox(name: str) -> str:
    """Stream: the signed tokens waiting for one receiver, oldest first (`ssf:<client_id>` or `bcl:<client_id>`)."""
    return f"{PREFIX}:signals:out:{{{name}}}"


def outbox_state(name: str) -> str:
    """Hash: the head entry's delivery attempts, next try and last error; same slot as its outbox."""
    return f"{PREFIX}:signals:try:{{{name}}}"


def outbox_lease(name: str) -> str:
    """String: the worker that pushes this outbox now (one at a time keeps the order)."""
    return f"{PREFIX}:signals:lease:{{{name}}}"


SIGNALS_DEAD_LETTERS = f"{PREFIX}:signals:dead"  # stream: tokens given up on, per client (operator console)
SIGNALS_FEED_GROUP = "idp-signals"  # consumer group of the IdP's signals workers on the status feeds


# --- OpenID Provider (idp/oidc/) -------------------------------------------------------------------------------

def code(digest: str) -> str:
    """String: an authorization code's record, until it is spent; same slot as `code_used`."""
    return f"{PREFIX}:code:{_tag(digest)}:{digest}"


def code_used(digest: str) -> str:
    """String: the marker a spent code leaves, so a replay revokes what the code gave (RFC 6749 §4.1.2)."""
    return f"{PREFIX}:code-used:{_tag(digest)}:{digest}"


def code_tokens(code_digest: str) -> str:
    """Set: the digests of the tokens one code gave."""
    return f"{PREFIX}:code-tokens:{code_digest}"


def token(digest: str) -> str:
    """String: an access or refresh token's record, by the digest of its value."""
    return f"{PREFIX}:token:{digest}"


def client_assertion_jti(digest: str) -> str:
    """String: a private_key_jwt assertion's jti already seen (RFC 7523 §3 item 7), by digest of sub and jti."""
    return f"{PREFIX}:jti:{digest}"


def spent_nonce(digest: str) -> str:
    """String: a nonce a code already carried (OIDC Core §15.5.2), by digest of client_id and nonce."""
    return f"{PREFIX}:nonce:{digest}"


# --- opening the holder's access record (idp/holder/history.py) ---------------------------------------------

def history(digest: str) -> str:
    """String: an opening of the access record (JSON), by the digest of the browser's secret."""
    return f"{PREFIX}:history:{digest}"


def history_handle(digest: str) -> str:
    """String: the digest of the browser's secret a one-use history handle leads to, by the digest of the handle."""
    return f"{PREFIX}:history:handle:{digest}"


def history_submit(digest: str) -> str:
    """String: the opening a one-use submit token answers (the digest of the browser's secret), by its digest."""
    return f"{PREFIX}:history:submit:{digest}"


# --- FAPI 2.0: pushed authorization requests and DPoP (idp/oidc/par.py, idp/oidc/dpop.py) ----------------------

def pushed_request(digest: str) -> str:
    """String: a pushed authorization request's parameters (RFC 9126), by the digest of its request_uri."""
    return f"{PREFIX}:par:{digest}"


def dpop_jti(digest: str) -> str:
    """String: a DPoP proof's jti already seen (RFC 9449 §11.1), by digest of the key's thumbprint and the jti."""
    return f"{PREFIX}:dpop-jti:{digest}"
