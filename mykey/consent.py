"""The holder's consents: which relying party may receive what — a keyed lookup, not a per-holder list.

The platform must answer one question without the holder present: "has this holder agreed that this relying
party receives these scopes?" (the authorization endpoint, and back-channel notices that go only to relying
parties a holder uses). It never needs the opposite question, "which relying parties does this holder use?", and
keeping the answer to that one would let whoever reads Redis trace a person across websites. So each consent is
its own key, named by HMAC-SHA256(platform secret, account ‖ client) truncated to 128 bits: the key names
neither, no key or value lists a holder's consents, and the value holds the scope names only — no time.

The holder still sees their consents on the account page once their card opened the record: the page asks the keyed
lookup for every registered relying party (`get_many`), and the time each was given comes from a note in the sealed
access record (mykey/record.py), which only their card opens — so a renewal, which makes older notes unreadable,
never hides a consent that is still in force. Withdrawing needs no list: the page posts the client id and the key
is recomputed.

Only scope *names* are stored, never a claim's value: names are checked against the scope-token syntax
(RFC 6749 §3.3), which a name, an address or a date of birth written in Japanese cannot pass. A consent lapses
CONSENT_RETENTION after it was last given, rounded up to the end of that month (the relying party then asks
again).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from mykey import keys, retention
from mykey.keys import as_text

CONSENT_RETENTION = dt.timedelta(days=400)  # from the last grant; a yearly user is not asked again every year
_DIGEST_BYTES = 16
_FORMAT = "1"  # the value's first word: "1 <scope> <scope> …" (so an empty consent is still a value)

_NAME = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §3.3 scope-token, bounded

# Consents only grow until withdrawn: a grant adds its scopes to those already granted (so asking for less later
# does not take back more), and renews the retention. Atomic, so two consent pages approved at once lose nothing.
# KEYS: the consent.  ARGV: expiry (epoch seconds), format word, scope…  Value: "<format> <scope> <scope> …"
_GRANT = """
local merged, list = {}, {}
local current = redis.call('GET', KEYS[1])
local granted = current and string.match(current, '^%S+ (.*)$')
if granted then
  for scope in string.gmatch(granted, '%S+') do merged[scope] = true end
end
for i = 3, #ARGV do merged[ARGV[i]] = true end
for scope in pairs(merged) do list[#list + 1] = scope end
table.sort(list)
local value = ARGV[2]
if #list > 0 then value = value .. ' ' .. table.concat(list, ' ') end
redis.call('SET', KEYS[1], value, 'EXAT', ARGV[1])
return value
"""


def names(values: Iterable[str]) -> list[str]:
    """`values` if every one is a scope or claim name (RFC 6749 scope-token syntax), else ValueError."""
    checked = list(values)
    if not all(isinstance(name, str) and _NAME.fullmatch(name) for name in checked):
        raise ValueError("Scopes and claims are recorded by name only (RFC 6749 scope-token syntax).")
    return checked


@dataclass(frozen=True)
class Consent:
    client_id: str
    scopes: tuple[str, ...]
    granted_at: dt.datetime | None = None  # known only inside the sealed record (mykey/record.py)

    @classmethod
    def unpack(cls, client_id: str, value: str) -> Consent:
        _format, *scopes = value.split(" ")
        return cls(client_id, tuple(scopes))


class ConsentStore:
    def __init__(self, client: redis.Redis, secret: bytes, retention: dt.timedelta = CONSENT_RETENTION):
        if len(secret) < 16:
            raise ValueError("The consent-lookup secret must be at least 16 bytes.")
        self.redis = client
        self.retention = retention
        self._secret = secret
        self._grant = client.register_script(_GRANT)

    def _key(self, account_id: str, client_id: str) -> str:
        message = b"consent:" + account_id.encode() + b"\x00" + client_id.encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:_DIGEST_BYTES]
        return keys.consent(base64.urlsafe_b64encode(digest).rstrip(b"=").decode())

    def grant(self, account_id: str, client_id: str, scopes: Iterable[str], now: dt.datetime) -> Consent:
        """Record the holder's consent for `client_id` to receive `scopes`, on top of what it already had.
        `now` is the moment of the grant: the consent lapses `retention` after it, rounded up to a month's end so
        that its TTL does not date the grant (mykey/retention.py); the exact time is kept only in the sealed record
        (AccessRecord.note_consent)."""
        value = self._grant(keys=[self._key(account_id, client_id)],
                            args=[retention.by_month(now, self.retention), _FORMAT, *names(scopes)])
        return Consent.unpack(client_id, as_text(value))

    def get(self, account_id: str, client_id: str) -> Consent | None:
        """The keyed lookup: what this holder agreed this relying party receives, or None."""
        value = as_text(self.redis.get(self._key(account_id, client_id)))
        return Consent.unpack(client_id, value) if value else None

    def get_many(self, account_id: str, client_ids: list[str]) -> list[Consent]:
        """The holder's consents among `client_ids` (every registered relying party, for the holder's own page; the
        receivers of a signal, idp/signals/causes.py), in one round trip. Each is the keyed lookup `get`; nothing is
        listed that the platform could not ask one by one."""
        with self.redis.pipeline(transaction=False) as pipe:
            for client_id in client_ids:
                pipe.get(self._key(account_id, client_id))
            values = pipe.execute()
        return [Consent.unpack(client_id, as_text(value)) for client_id, value in zip(client_ids, values, strict=True)
                if value]

    def covers(self, account_id: str, client_id: str, scopes: Iterable[str]) -> bool:
        """Whether the holder already agreed to give `client_id` every one of `scopes`."""
        consent = self.get(account_id, client_id)
        return consent is not None and set(scopes) <= set(consent.scopes)

    def withdraw(self, account_id: str, client_id: str) -> bool:
        """Forget the consent; the next login at that relying party asks again. False if there was none."""
        return bool(self.redis.delete(self._key(account_id, client_id)))
