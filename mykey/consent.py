"""The holder's consents and access record: which relying party may receive what, and which received what, when.

Like Mynaportal's access record or Estonia's data tracker, the holder sees every release of their identity and can
withdraw a consent. Only client ids, scope or claim *names* and times are stored, never a claim's value: names
are checked against the scope-token syntax (RFC 6749 §3.3), which a name, an address or a date of birth written
in Japanese cannot pass.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from mykey import keys
from mykey.keys import as_text

ACCESS_LOG_LENGTH = 1000  # entries kept per account, newest first; older ones are trimmed (LTRIM) on each record

_NAME = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §3.3 scope-token, bounded

# Consents only grow until withdrawn: a grant adds its scopes to those already granted (so asking for less later
# does not take back more), and renews the time. Atomic, so two consent pages approved at once lose nothing.
# KEYS: consent hash.  ARGV: client id, granted at (epoch seconds), scope…  Value: "<epoch> <scope> <scope> …"
_GRANT = """
local merged, list = {}, {}
local current = redis.call('HGET', KEYS[1], ARGV[1])
local granted = current and string.match(current, '^%S+ (.*)$')
if granted then
  for scope in string.gmatch(granted, '%S+') do merged[scope] = true end
end
for i = 3, #ARGV do merged[ARGV[i]] = true end
for scope in pairs(merged) do list[#list + 1] = scope end
table.sort(list)
local value = ARGV[2]
if #list > 0 then value = value .. ' ' .. table.concat(list, ' ') end
redis.call('HSET', KEYS[1], ARGV[1], value)
return value
"""


def _names(names: Iterable[str]) -> list[str]:
    checked = list(names)
    if not all(isinstance(name, str) and _NAME.fullmatch(name) for name in checked):
        raise ValueError("Scopes and claims are recorded by name only (RFC 6749 scope-token syntax).")
    return checked


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _moment(seconds: int | str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


@dataclass(frozen=True)
class Consent:
    client_id: str
    scopes: tuple[str, ...]
    granted_at: dt.datetime

    @classmethod
    def unpack(cls, client_id: str, value: str) -> Consent:
        granted_at, *scopes = value.split(" ")
        return cls(client_id, tuple(scopes), _moment(granted_at))


class ConsentStore:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._grant = client.register_script(_GRANT)

    def grant(self, account_id: str, client_id: str, scopes: Iterable[str], now: dt.datetime) -> Consent:
        """Record the holder's consent for `client_id` to receive `scopes`, on top of what it already had."""
        value = self._grant(keys=[keys.consents(account_id)], args=[client_id, _epoch(now), *_names(scopes)])
        return Consent.unpack(client_id, as_text(value))

    def get(self, account_id: str, client_id: str) -> Consent | None:
        value = as_text(self.redis.hget(keys.consents(account_id), client_id))
        return Consent.unpack(client_id, value) if value else None

    def covers(self, account_id: str, client_id: str, scopes: Iterable[str]) -> bool:
        """Whether the holder already agreed to give `client_id` every one of `scopes`."""
        consent = self.get(account_id, client_id)
        return consent is not None and set(scopes) <= set(consent.scopes)

    def withdraw(self, account_id: str, client_id: str) -> bool:
        """Forget the consent; the next login at that relying party asks again. False if there was none."""
        return bool(self.redis.hdel(keys.consents(account_id), client_id))

    def list(self, account_id: str) -> list[Consent]:
        """Every consent the holder gave, most recent first."""
        consents = [Consent.unpack(as_text(client_id), as_text(value))
                    for client_id, value in self.redis.hgetall(keys.consents(account_id)).items()]
        return sorted(consents, key=lambda c: (-c.granted_at.timestamp(), c.client_id))


@dataclass(frozen=True)
class AccessEntry:
    client_id: str
    claims: tuple[str, ...]
    at: dt.datetime
    token_type: str | None = None  # "card" or "smartphone": what the holder logged in with; None on older entries


class AccessLog:
    """Append-only per account, bounded: the last `length` releases (ACCESS_LOG_LENGTH), newest first."""

    def __init__(self, client: redis.Redis, length: int = ACCESS_LOG_LENGTH):
        if length < 1:
            raise ValueError("An access log keeps at least one entry.")
        self.redis = client
        self.length = length

    def record(self, account_id: str, client_id: str, claims: Iterable[str], at: dt.datetime,
               token_type: str | None = None, pipe: redis.client.Pipeline | None = None) -> None:
        """Note that `client_id` received these claims (names only) about the holder at `at`, after a login with
        `token_type` (a card or a phone), so the holder can tell a release they did not make from one they did.
        Given a transaction `pipe` (one server), the push and trim are queued on it for its caller to execute."""
        fields = {"client_id": client_id, "claims": _names(claims), "at": _epoch(at)}
        if token_type is not None:
            fields["token_type"] = _names([token_type])[0]
        entry = json.dumps(fields, separators=(",", ":"))
        key = keys.access_log(account_id)
        queue = pipe if pipe is not None else self.redis.pipeline(transaction=True)  # one key: push and trim together
        queue.lpush(key, entry)
        queue.ltrim(key, 0, self.length - 1)
        if pipe is None:
            queue.execute()

    def list(self, account_id: str, count: int = 100) -> list[AccessEntry]:
        """The newest `count` entries, newest first."""
        if count <= 0:
            return []
        entries = (json.loads(raw) for raw in self.redis.lrange(keys.access_log(account_id), 0, count - 1))
        return [AccessEntry(e["client_id"], tuple(e["claims"]), _moment(e["at"]), e.get("token_type"))
                for e in entries]
