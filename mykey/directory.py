"""The MyKey directory: certificate serial (keyed hash) → account → MyKey ID (docs/jpki-profile.md §5).

Three identifiers, each with one job:
- the certificate serial is never stored: only HMAC-SHA256(secret, "serial:" ‖ issuer ‖ ":" ‖ serial as 20 octets),
  truncated to 128 bits, so a copy of the database cannot be joined with OCSP responses or CRLs;
- the account id is random, internal and immutable: everything else (pairwise `sub`, consents, access log) hangs
  off it, and nobody ever sees it;
- the MyKey ID is what the holder sees: generated on first login, replaceable by a chosen one, or given up.

A renewed certificate (新旧紐付け, followed back through `renewal_links.previous`) lands on the account of the
certificate it replaced. Every mapping is claimed with SET NX, so concurrent first logins of one card agree on
one account, and a MyKey ID is reserved for exactly one account before any account record points at it.

A login reads the certificate's mapping in one pipeline with its other reads (`queue_mapping`, then
`resolve(..., mapped=...)`), so a returning card costs the directory one more round trip (its account), not two.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import redis

from mykey import keys
from mykey.keys import as_text
from wire.errors import FixedCodeError

# No 0/O, 1/I/L: a generated ID is read off a screen or over the phone and typed back without doubt.
GENERATED_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GENERATED_LENGTH = 8
RENEWAL_STEPS = 32  # how far back a renewal chain is followed; a card is renewed every 5 years at most
_RESERVE_ATTEMPTS = 16  # 31^8 ≈ 8.5e11 IDs: with 10^8 taken, 16 collisions in a row are out of reach
_SWAP_ATTEMPTS = 8
_SERIAL_OCTETS = 20  # RFC 5280 §4.1.2.2: a serial is at most 20 octets; fixed width keeps the message unambiguous
_DIGEST_BYTES = 16  # 128 bits: collisions stay out of reach for billions of certificates, and keys stay short
_UNREAD = object()  # resolve's `mapped` when the caller did not read the mapping itself

_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{6,32}")
_TWELVE_DIGITS = re.compile(r"[0-9]{12}")

# Release a MyKey ID only if this account still holds it, so a late release never frees someone else's ID.
_RELEASE_ID = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Compare-and-set of the account's MyKey ID. ARGV: expected ('' = none), new ('' = none).
# Returns -1 for an unknown account, 0 if the ID changed meanwhile, 1 when set.
_SWAP_ID = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if (redis.call('HGET', KEYS[1], 'mykey_id') or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'mykey_id') else redis.call('HSET', KEYS[1], 'mykey_id', ARGV[2]) end
return 1
"""


class RenewalLinks(Protocol):
    """The revocation service's 新旧紐付け, seen from here: the certificate a renewal replaced."""

    def previous(self, issuer: str, serial: int) -> int | None: ...


@dataclass(frozen=True)
class Account:
    # Neither identifier goes into a repr: reprs end up in logs and tracebacks.
    account_id: str = field(repr=False)
    mykey_id: str | None = field(repr=False)
    created_at: dt.datetime


class MyKeyIdError(FixedCodeError):
    """A MyKey ID change refused; `code` is stable for pages, APIs and tests. Messages never echo the input."""

    code = "mykey_id_error"


class MyKeyIdTaken(MyKeyIdError):
    code = "mykey_id_taken"


class MyKeyIdInvalid(MyKeyIdError):
    code = "mykey_id_invalid"


class UnknownAccount(LookupError):
    pass


def validate_custom_id(candidate: str) -> str:
    """The ID as it will be shown (surrounding spaces dropped), or MyKeyIdInvalid."""
    value = candidate.strip() if isinstance(candidate, str) else ""
    if not _CUSTOM_ID.fullmatch(value):
        raise MyKeyIdInvalid("A MyKey ID has 6 to 32 characters: letters A-Z, digits, '_' and '-'.")
    if not any(c.isalpha() for c in value):
        raise MyKeyIdInvalid("A MyKey ID needs at least one letter.")
    # Privacy rule: nothing accepts a 12-digit My Number, not even inside an ID or split by separators.
    if _TWELVE_DIGITS.search(value.replace("-", "").replace("_", "")):
        raise MyKeyIdInvalid("A MyKey ID may not hold 12 digits in a row: it could be a My Number.")
    return value


class MyKeyDirectory:
    def __init__(self, client: redis.Redis, secret: bytes, renewal_links: RenewalLinks):
        if len(secret) < 16:
            raise ValueError("The serial-hashing secret must be at least 16 bytes.")
        self.redis = client
        self.renewal_links = renewal_links
        self._secret = secret
        self._release = client.register_script(_RELEASE_ID)
        self._swap = client.register_script(_SWAP_ID)

    # --- certificates → accounts --------------------------------------------------------------------------

    def queue_mapping(self, pipeline: redis.client.Pipeline, issuer: str, serial: int,
                      ) -> Callable[[bytes | str | None], str | None]:
        """Queue the read of the certificate's mapping (one command) on a pipeline the caller executes; the returned
        function turns its reply into what `resolve` takes as `mapped`."""
        pipeline.get(keys.serial(self._digest(issuer, serial)))
        return as_text

    def resolve(self, issuer: str, serial: int, now: dt.datetime, *, mapped: str | object | None = _UNREAD,
                ) -> Account:
        """The account of this certificate; on the card's first login, a new account with a generated MyKey ID.
        `mapped`: the mapping as the caller already read it (`queue_mapping`), None when there was none."""
        key = keys.serial(self._digest(issuer, serial))
        if mapped is _UNREAD:
            mapped = as_text(self.redis.get(key))
        account_id = mapped or self._claim(key, issuer, serial, now)
        account = self.get(account_id)
        if account is None:
            raise UnknownAccount("A certificate maps to an account that does not exist.")
        return account

    def account_of(self, issuer: str, serial: int) -> str | None:
        """The account this certificate maps to, or its renewal chain's (followed back), without creating one:
        None for a card that never logged in. Read by the signals worker (idp/signals/), which must find the
        holder behind a status change and may never make an account for it."""
        account_id = as_text(self.redis.get(keys.serial(self._digest(issuer, serial))))
        return account_id or self._account_of_ancestor(issuer, serial)

    def _claim(self, key: str, issuer: str, serial: int, now: dt.datetime) -> str:
        """Map an unknown certificate to its renewal chain's account, or to a new one. Whoever loses the SET NX
        adopts the winner's account (and drops the one it made), so one card never ends up with two."""
        inherited = self._account_of_ancestor(issuer, serial)
        candidate = inherited or self._create_account(now)
        if self.redis.set(key, candidate, nx=True):
            return candidate
        if inherited is None:
            self._discard(candidate)
        return as_text(self.redis.get(key))

    def _account_of_ancestor(self, issuer: str, serial: int) -> str | None:
        seen = {serial}
        for _ in range(RENEWAL_STEPS):
            serial = self.renewal_links.previous(issuer, serial)
            if serial is None or serial in seen:  # chain start, or a loop in bad data
                return None
            seen.add(serial)
            account_id = as_text(self.redis.get(keys.serial(self._digest(issuer, serial))))
            if account_id:
                return account_id
        return None

    def certificate_digest(self, issuer: str, serial: int) -> str:
        """The keyed hash a certificate is known by (never the serial): the access record tells cards apart by it."""
        return self._digest(issuer, serial)

    def _digest(self, issuer: str, serial: int) -> str:
        if not 0 <= serial < 1 << (8 * _SERIAL_OCTETS):
            raise ValueError("A certificate serial is a non-negative integer of at most 20 octets (RFC 5280).")
        message = b"serial:" + issuer.encode() + b":" + serial.to_bytes(_SERIAL_OCTETS, "big")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:_DIGEST_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # --- accounts -----------------------------------------------------------------------------------------

    def get(self, account_id: str) -> Account | None:
        record = {as_text(k): as_text(v) for k, v in self.redis.hgetall(keys.account(account_id)).items()}
        if not record:
            return None
        return Account(account_id, record.get("mykey_id"),
                       dt.datetime.fromtimestamp(int(record["created_at"]), dt.UTC))

    def _create_account(self, now: dt.datetime) -> str:
        """A new account, reachable from nowhere until its serial mapping is claimed. Its ID is reserved first,
        so the record never names an ID it does not hold."""
        account_id = secrets.token_hex(16)
        mykey_id = self._reserve_generated(account_id)
        # Only the month: the creation is the card's first login, and the exact time of a login is the holder's to
        # know (mykey/record.py), not something the account record should keep.
        month = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        self.redis.hset(keys.account(account_id), mapping={"created_at": int(month.timestamp()), "mykey_id": mykey_id})
        return account_id

    def _discard(self, account_id: str) -> None:
        account = self.get(account_id)
        self.redis.delete(keys.account(account_id))
        if account and account.mykey_id:
            self._release_id(account.mykey_id, account_id)

    def _require(self, account_id: str) -> Account:
        account = self.get(account_id)
        if account is None:
            raise UnknownAccount("No such account.")
        return account

    # --- MyKey IDs ----------------------------------------------------------------------------------------

    def set_custom_id(self, account_id: str, new_id: str) -> Account:
        """Replace the account's MyKey ID with one the holder chose: reserve the new one, then release the old."""
        wanted = validate_custom_id(new_id)
        self._require(account_id)
        reservation = keys.mykey_id(wanted.upper())
        if not self.redis.set(reservation, account_id, nx=True) and as_text(self.redis.get(reservation)) != account_id:
            raise MyKeyIdTaken("That MyKey ID is already taken.")
        return self._switch(account_id, wanted)

    def give_up(self, account_id: str) -> Account:
        """Release the account's MyKey ID. The account, its consents and its pairwise subjects stay as they are."""
        return self._switch(account_id, None)

    def issue_new_id(self, account_id: str) -> Account:
        """A fresh generated MyKey ID for an account that gave its ID up; an account that has one keeps it."""
        account = self._require(account_id)
        if account.mykey_id is not None:
            return account
        return self._switch(account_id, self._reserve_generated(account_id))

    def _reserve_generated(self, account_id: str) -> str:
        for _ in range(_RESERVE_ATTEMPTS):
            candidate = "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(GENERATED_LENGTH))
            if candidate.isdigit():  # every MyKey ID has a letter, generated or chosen
                continue
            if self.redis.set(keys.mykey_id(candidate), account_id, nx=True):
                return candidate
        raise RuntimeError("No free MyKey ID found; the ID space is too full.")

    def _switch(self, account_id: str, new_id: str | None) -> Account:
        """Point the account at `new_id` (already reserved for it, or None) and release the ID it held before.
        Compare-and-set on the record, retried if another change to the same account got there first."""
        for _ in range(_SWAP_ATTEMPTS):
            account = self._require(account_id)
            old = account.mykey_id
            outcome = self._swap(keys=[keys.account(account_id)], args=[old or "", new_id or ""])
            if outcome == -1:
                raise UnknownAccount("No such account.")
            if outcome == 1:
                if old is not None and (new_id is None or old.upper() != new_id.upper()):
                    self._release_id(old, account_id)
                return replace(account, mykey_id=new_id)
        raise RuntimeError("The account's MyKey ID kept changing under concurrent requests.")

    def _release_id(self, mykey_id: str, account_id: str) -> None:
        self._release(keys=[keys.mykey_id(mykey_id.upper())], args=[account_id])
