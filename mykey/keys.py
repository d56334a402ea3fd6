"""Every Redis key the mykey package uses, built here and nowhere else.

Keys that belong to one account share the hash tag `{a:<account id>}` (the account record and its sealed access
record), so that anything touching one holder's data together stays in one slot of a Redis Cluster. The two
reverse indexes and the consents are one key per entry, each in its own slot, each used alone:
- `mk:sn:{s:<serial digest>}` → account id: a certificate, known only by a keyed hash of its serial;
- `mk:id:{i:<MYKEY ID>}` → account id: the reservation that makes a MyKey ID unique (upper-cased, so that
  uniqueness ignores case);
- `mk:consent:{c:<keyed hash of account and client>}` → the scopes agreed to (mykey/consent.py).
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
    """Hash: created_at (epoch seconds of the first day of the month it was made: no login time) and, while the
    holder has one, mykey_id (as shown)."""
    return f"{PREFIX}:acct:{account_tag(account_id)}"


def consent(digest: str) -> str:
    """String: "1 <scope> <scope> …", what one holder agreed one relying party may receive. `digest` is a keyed hash
    of (account, client) (mykey/consent.py): neither can be read from the key, and no key lists a holder's consents."""
    return f"{PREFIX}:consent:{{c:{digest}}}"


def record_key(account_id: str) -> str:
    """Hash: pub (the X25519 public key the holder's entries are sealed to), cert (keyed hash of the certificate
    whose card made it)."""
    return f"{PREFIX}:rkey:{account_tag(account_id)}"


def record(account_id: str) -> str:
    """List, newest first: HPKE-sealed access-record entries (mykey/record.py), readable with the holder's card only."""
    return f"{PREFIX}:rec:{account_tag(account_id)}"


def record_consents(account_id: str) -> str:
    """List, newest first: HPKE-sealed notes of the consents the holder gave (which RP, what, when)."""
    return f"{PREFIX}:rcons:{account_tag(account_id)}"


def record_pending(account_id: str) -> str:
    """List, newest first: entries written while the holder had no key for their current certificate, sealed with a
    platform key until the holder opens the record; the list expires 30 days after its first entry."""
    return f"{PREFIX}:rpend:{account_tag(account_id)}"


# What accounts kept before the access record was sealed (mykey/record.py): a plain hash of consents and a plain
# list of releases per account. Only `purge_plain_records` uses these, to delete them when upgrading.
PLAIN_RECORD_PATTERNS = (f"{PREFIX}:consent:{{a:*", f"{PREFIX}:log:{{a:*")


def as_text(value: bytes | str | None) -> str | None:
    """A reply as text, whether or not the client was made with decode_responses."""
    return value.decode() if isinstance(value, bytes) else value
