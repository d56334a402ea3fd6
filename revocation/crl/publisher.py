"""The CRL publisher: per issuer and shard, a complete CRL and a delta CRL built from the status store.

The store's shard index is the truth; published CRLs are a cache of it (like Boulder's crl-updater). Each shard is
its own CRL scope, named by the critical issuingDistributionPoint that the dev CA also writes into the
certificates' CRL distribution point (RFC 5280 §5.2.5), with its own CRL number sequence (§5.2.3).

Every publication issues two CRLs at once, both stored in the shard's `crl_published` hash:

- a complete CRL: every revoked or held certificate of the shard;
- a delta CRL against the shard's *base*, an earlier complete CRL: every entry added or changed since the base,
  and removeFromCRL for every hold lifted since the base (§5.3.1, docs/jpki-profile.md §4: lost card found).

Both carry the same CRL number: §5.2.3 requires a complete and a delta CRL of one scope issued at the same time
to share their number and say the same thing. A relying party may combine the delta with any complete CRL
numbered from the base up to (not including) the delta's number (§5.2.4), so the delta lists removeFromCRL even
for a hold placed and lifted after the base: an intermediate complete CRL may have shown it.

The base moves to the newly published complete CRL when it is older than half the CRL validity (or on
`rebuild_all`), after that publication's delta has been built against the old base, so every delta has a base
older than itself. A lifted hold stays in the shard's released-holds hash exactly until the base moves to a
complete CRL that reflects it: when the base moves, the released entries read *before* that CRL's entries are
deleted (each only if unchanged — a compare-and-delete). Reading them first matters: the store lifts a hold by
removing the entry and recording the release in one transaction, so whatever was released by then is absent from
the new base. The delta also lists removeFromCRL for any entry of the base that is gone, found by comparing the
base's encoded entries with the current ones, which covers a release recorded after the base was read.

`publish_due` is meant to run every second or so (it reads two fields per shard when nothing changed): it
republishes the shards the store marked dirty, at most once per `crl_min_interval` each, and any shard whose
nextUpdate is within a quarter of the validity. Publications never go backwards: a Lua compare-and-set stores one
only if its number is higher than the stored one and the base it was built against is still the base; otherwise
the publisher builds again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.x509 import ReasonFlags

from jpki.issuer import Issuer
from jpki.profile import crl_url
from revocation.config import RevocationConfig
from revocation.crl.der import build_crl, encode_entries, encode_entry, entry_serial, revoked_entries
from revocation.storage.keys import CRL_DIRTY, serial_field
from revocation.storage.store import StatusStore

PUBLISH_ATTEMPTS = 3

# Store a publication if it is newer than the stored one and its delta's base is still the base; when it moves
# the base, clear the released holds it reflects.
# KEYS: published hash, released hash.  ARGV: number, expected base number ('' = none), field count n,
# n field/value pairs, then released field/value pairs to delete if unchanged.
_STORE_PUBLICATION = """
if tonumber(redis.call('HGET', KEYS[1], 'number') or '0') >= tonumber(ARGV[1]) then return 0 end
if (redis.call('HGET', KEYS[1], 'base_number') or '') ~= ARGV[2] then return 0 end
local n = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * n))
for i = 4 + 2 * n, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return 1
"""

_STATUS_FIELDS = ["number", "this", "next", "entries", "delta_base", "delta_entries"]


class CrlVersion(NamedTuple):
    """Which publication a shard's CRL is, without its bytes: enough to answer a conditional GET."""

    number: int
    this_update: dt.datetime
    next_update: dt.datetime

    @property
    def tag(self) -> str:
        """Changes with every publication: the CRL number, and thisUpdate in case a store was ever reset."""
        return f"{self.number}-{_epoch(self.this_update)}"


class PublishedCrl(NamedTuple):
    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime
    number: int

    @property
    def version(self) -> CrlVersion:
        return CrlVersion(self.number, self.this_update, self.next_update)


@dataclass(frozen=True)
class ShardStatus:
    """One shard's latest publication, for the ops pages. No serials: counts and times only."""

    issuer: str
    shard: int
    url: str
    number: int | None
    this_update: dt.datetime | None
    next_update: dt.datetime | None
    entries: int
    delta_base: int | None
    delta_entries: int
    age_seconds: int | None
    dirty: bool

    def as_dict(self) -> dict:
        times = {name: getattr(self, name).isoformat() if getattr(self, name) else None
                 for name in ("this_update", "next_update")}
        return {**self.__dict__, **times}


def delta_url(url: str) -> str:
    """`…/<shard>.crl` → `…/<shard>-delta.crl`, where the shard's delta CRL is served."""
    return url.removesuffix(".crl") + "-delta.crl"


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _moment(raw: bytes | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(raw), dt.UTC) if raw else None


def _int(raw: bytes | None) -> int | None:
    return int(raw) if raw else None


class CrlPublisher:
    def __init__(self, store: StatusStore, issuers: dict[str, Issuer], config: RevocationConfig,
                 clock: Callable[[], dt.datetime] | None = None):
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.issuers = issuers
        self.config = config
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.base_period = config.crl_validity / 2
        self.refresh_margin = config.crl_validity / 4  # republish when nextUpdate is this close
        self._store_publication = self.redis.register_script(_STORE_PUBLICATION)

    # --- which CRLs exist ---------------------------------------------------------------------------------

    def shards(self) -> Iterator[tuple[str, int]]:
        for slug in self.issuers:
            for shard in range(self.config.crl_shards):
                yield slug, shard

    def knows(self, slug: str, shard: int) -> bool:
        return slug in self.issuers and 0 <= shard < self.config.crl_shards

    def url(self, slug: str, shard: int) -> str:
        """The shard's URL: the one the dev CA writes into certificates, and the CRL's issuingDistributionPoint."""
        return crl_url(self.config.base_url, self.issuers[slug].kind, shard)

    # --- publishing ---------------------------------------------------------------------------------------

    def publish(self, slug: str, shard: int, *, now: dt.datetime | None = None, rebase: bool = False) -> int:
        """Build, sign and store the shard's complete and delta CRLs; returns their CRL number."""
        if not self.knows(slug, shard):
            raise KeyError(f"no CRL shard {slug}:{shard}")
        for _ in range(PUBLISH_ATTEMPTS):
            number = self._publish_once(slug, shard, (now or self.clock()).replace(microsecond=0), rebase)
            if number is not None:
                return number
        raise RuntimeError("CRL shard kept changing under concurrent publishers")

    def _publish_once(self, slug: str, shard: int, now: dt.datetime, rebase: bool) -> int | None:
        issuer, key = self.issuers[slug], self.keys.crl_published(slug, shard)
        base_number, base_this, base_der = self.redis.hmget(key, ["base_number", "base_this", "base"])
        released = list(self.store.crl_released(slug, shard))  # before the entries: see the module notes
        rows = list(self.store.crl_entries(slug, shard))
        entries = encode_entries(rows)
        number = self.redis.hincrby(key, "counter", 1)
        next_update = now + self.config.crl_validity
        url = self.url(slug, shard)
        signed = dict(number=number, this_update=now, next_update=next_update, distribution_point=url)
        full = build_crl(issuer.certificate, issuer.key, entries, freshest=delta_url(url), **signed)
        delta, changes = b"", []
        if base_number:
            changes = _changes_since(base_der, entries, rows, released, now)
            delta = build_crl(issuer.certificate, issuer.key, changes, base_number=int(base_number), **signed)
        fields = {"number": number, "this": _epoch(now), "next": _epoch(next_update), "entries": len(rows),
                  "full": full, "delta": delta, "delta_base": base_number or b"", "delta_entries": len(changes),
                  "published_ms": int(now.timestamp() * 1000)}
        moves_base = rebase or not base_number or now - _moment(base_this) >= self.base_period
        cleared: list[bytes | int] = []
        if moves_base:
            fields |= {"base": full, "base_number": number, "base_this": _epoch(now)}
            for serial, released_at in released:
                cleared += [serial_field(serial), _epoch(released_at) if released_at else 0]
        args = [number, base_number or b"", len(fields), *(x for pair in fields.items() for x in pair), *cleared]
        stored = self._store_publication(keys=[key, self.keys.crl_released(slug, shard)], args=args)
        return number if stored else None

    def publish_due(self, now: dt.datetime | None = None) -> list[str]:
        """Publish the shards that changed (at most once per `crl_min_interval` each), that were never published,
        or whose nextUpdate is near. Returns the shards published, as "issuer:shard"."""
        now = now or self.clock()
        dirty = {member.decode() for member in self.redis.smembers(CRL_DIRTY)}
        states = self._read_all(["next", "published_ms"])
        done = []
        for (slug, shard), (next_update, published_ms) in zip(self.shards(), states, strict=True):
            member = f"{slug}:{shard}"
            due = next_update is None or _moment(next_update) - now <= self.refresh_margin
            claimed = False
            if member in dirty:
                since_ms = now.timestamp() * 1000 - int(published_ms or 0)
                if not due and since_ms < self.config.crl_min_interval / dt.timedelta(milliseconds=1):
                    continue  # rate bound: the shard stays dirty for a later round
                # Claim before reading the entries: a change that lands during the build marks the shard again.
                claimed = bool(self.redis.srem(CRL_DIRTY, member))
                if not claimed and not due:
                    continue  # another publisher took it
            elif not due:
                continue
            try:
                self.publish(slug, shard, now=now)
            except Exception:
                if claimed:
                    self.redis.sadd(CRL_DIRTY, member)
                raise
            done.append(member)
        known = {f"{slug}:{shard}" for slug, shard in self.shards()}
        if dirty - known:
            self.redis.srem(CRL_DIRTY, *(dirty - known))  # shards of an issuer or shard count no longer configured
        return done

    def rebuild_all(self) -> list[str]:
        """Publish every shard of every issuer, with fresh delta bases (after a key, URL or data change)."""
        done = []
        for slug, shard in self.shards():
            self.redis.srem(CRL_DIRTY, f"{slug}:{shard}")
            self.publish(slug, shard, rebase=True)
            done.append(f"{slug}:{shard}")
        return done

    # --- reading ------------------------------------------------------------------------------------------

    def get(self, slug: str, shard: int, delta: bool = False) -> PublishedCrl | None:
        """The shard's latest complete (or delta) CRL; None for an unknown issuer or shard. A shard never
        published is published now; its first delta needs a base, so takes a second publication."""
        if not self.knows(slug, shard):
            return None
        key = self.keys.crl_published(slug, shard)
        for _ in range(3):
            der, this_update, next_update, number = self.redis.hmget(
                key, ["delta" if delta else "full", "this", "next", "number"])
            if der:
                return PublishedCrl(der, _moment(this_update), _moment(next_update), int(number))
            self.publish(slug, shard)
        return None

    def version(self, slug: str, shard: int, delta: bool = False) -> CrlVersion | None:
        """The shard's latest publication without reading the CRL itself (which can be tens of MB); None for an
        unknown shard, one never published, or a delta not issued yet."""
        if not self.knows(slug, shard):
            return None
        number, this_update, next_update, delta_base = self.redis.hmget(
            self.keys.crl_published(slug, shard), ["number", "this", "next", "delta_base"])
        if not number or (delta and not delta_base):
            return None
        return CrlVersion(int(number), _moment(this_update), _moment(next_update))

    def status(self, now: dt.datetime | None = None) -> list[ShardStatus]:
        now = now or self.clock()
        dirty = {member.decode() for member in self.redis.smembers(CRL_DIRTY)}
        result = []
        for (slug, shard), values in zip(self.shards(), self._read_all(_STATUS_FIELDS), strict=True):
            number, this_update, next_update, entries, delta_base, delta_entries = values
            this_update = _moment(this_update)
            result.append(ShardStatus(
                slug, shard, self.url(slug, shard), _int(number), this_update, _moment(next_update),
                _int(entries) or 0, _int(delta_base), _int(delta_entries) or 0,
                int((now - this_update).total_seconds()) if this_update else None, f"{slug}:{shard}" in dirty))
        return result

    def _read_all(self, fields: list[str]) -> list[list[bytes | None]]:
        pipe = self.redis.pipeline(transaction=False)
        for slug, shard in self.shards():
            pipe.hmget(self.keys.crl_published(slug, shard), fields)
        return pipe.execute()


def _changes_since(base_der: bytes, entries: list[bytes], rows: list, released: list, now: dt.datetime) -> list[bytes]:
    """The delta's entries (RFC 5280 §5.2.4): what differs from the base, and removeFromCRL for lifted holds."""
    base = set(revoked_entries(base_der))
    changes = [entry for entry in entries if entry not in base]  # new, or changed (a hold became a revocation)
    removed = {serial: at or now for serial, at in released}  # serial → release time
    for entry in base.difference(entries):
        removed.setdefault(entry_serial(entry), now)
    if removed:
        current = {serial for serial, _, _ in rows}
        changes += [encode_entry(serial, ReasonFlags.remove_from_crl, at)
                    for serial, at in removed.items() if serial not in current]
    return changes

