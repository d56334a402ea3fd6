"""Every Redis key the mykey package uses, built here and nowhere else.

Keys that belong to one account share the hash tag `{a:<account id>}` (the account record, its consents and its
access log), so that anything touching one holder's data together stays in one slot of a Redis Cluster. The two
reverse indexes are one key per entry, each in its own slot, because each is claimed alone with SET NX:
- `mk:sn:{s:<serial digest>}` → account id: a certificate, known only by a keyed hash of its serial;
- `mk:id:{i:<MYKEY ID>}` → account id: the reservation that makes a MyKey ID unique (upper-cased, so that
  uniqueness ignores case).
"""

from __future__ import annotations

PREFIX = "mk"


def serial(digest: str) -> str:
    """String: the account a certificate maps to. `digest` is the keyed hash, never the serial itself."""
    return f"{PREFIX}:sn:{{s:{digest}}}"


def mykey_id(normalized: str) -> str:
    """String: the account holding this MyKey ID (normalized: upper case)."""
    return f"{PREFIX}:id:{{i:{normalized}}}"


def account_tag(account_id: str) -> str:
    return f"{{a:{account_id}}}"


def account(account_id: str) -> str:
    """Hash: created_at (epoch seconds) and, while the holder has one, mykey_id (as shown)."""
    return f"{PREFIX}:acct:{account_tag(account_id)}"


def consents(account_id: str) -> str:
    """Hash: client id -> "<granted at epoch> <scope> <scope> …"."""
    return f"{PREFIX}:consent:{account_tag(account_id)}"


def access_log(account_id: str) -> str:
    """List, newest first: one JSON entry (client id, claim names, time) per release of identity to an RP."""
    return f"{PREFIX}:log:{account_tag(account_id)}"


def as_text(value: bytes | str | None) -> str | None:
    """A reply as text, whether or not the client was made with decode_responses."""
    return value.decode() if isinstance(value, bytes) else value
