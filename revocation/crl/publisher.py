"""The CRL publisher: per issuer and shard, a complete CRL and a delta CRL built from the status store.

The store's shard index is the truth; published CRLs are a cache of it (like Boulder's crl-updater). Each shard is
its own CRL scope, named by the critical issuingDistributionPoint that the dev CA also writes into the
certificates' CRL distribution point (RFC 5280 §5.2.5), with its own CRL number sequence (§5.2.3).

Every publication issues two CRLs at once, both stored in the shard's `crl_published` hash under their CRL number
(fields `full:<number>` and `delta:<number>`, next to the publication's number and times):

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
complete CRL that reflects it: when the base moves, the released entries the publisher knows of are deleted (each
only if unchanged — a compare-and-delete). Each of them was read together with, or before, the entries the new
base holds, and the store lifts a hold by removing the entry and recording the release in one transaction, so
whatever was released by then is absent from the new base. The delta also lists removeFromCRL for any entry of the
base that is gone, which covers a release recorded after the released holds were read.

Incremental publication. Re-reading a whole shard for every change costs time in proportion to the shard
(100,000 entries: ~0.5 s of HSCAN, decoding and encoding). So a publisher keeps, per shard, in process
(`_Shard`): its position in the shard's change log (`KeySpace.crl_changes`: the store appends a serial there in
the same MULTI as each write of that serial's index entry), every entry encoded as DER (serial → bytes) as the index
held at that position, the released holds, and what the delta needs — for each serial touched since the base,
its entry in the base, and its delta entry. A publication then runs one script (`_READ_CHANGES`, every key in the
shard's hash slot, so one atomic step on a server or a cluster node): it checks the base is still the one the
publisher knows, reads the change log after its position (XRANGE, at most `CHANGES_PAGE` entries a call), reads
those serials' index entries and released holds (HMGET), and takes the CRL number (HINCRBY). The publisher
applies them to its maps, joins the encoded entries and signs: the cost is the changes plus one pass over bytes
already encoded (hashing ~3.9 MB at 100,000 entries), not a read of the shard.

It reads everything instead (`_read_everything`, the only other path: position of the log first, then the released
holds, then the entries, then the base's entries — parsed from the stored base CRL unless it is the publisher's own)
when it holds nothing for the shard (a cold start), on `rebuild_all` (the operator says the truth changed), when the
base moved to a publication it did not make (another publisher's, which also cleared released holds it may know),
when the log no longer holds every entry after its position (trimmed past it: the script compares the log's count of
entries ever added and its first id with the position), and when it is further behind than the shard is large
(reading the shard is then cheaper). A newer CRL number alone, from another publisher that kept the same base, does
not force a read: the maps mirror the index, not any publication, so two publishers may alternate on a shard and
both stay incremental.

Why several publisher processes stay coherent: the CRL number is an HINCRBY, so no two publications share one;
storing is a compare-and-set (`_STORE_PUBLICATION`) that keeps a publication only if its number is above the stored
one and the base it was built against is still the base — a publisher that loses builds again from a fresh read. A
publisher's maps never depend on whether its publication was stored; only a base move it made itself changes what it
knows of the base, and only once stored. Every change-log entry is written with the index write it announces, after
it, in one MULTI (on a cluster, one pipeline to the slot's node, and the event is acknowledged only after it: a
crash in between re-applies the event, which writes both again), so reading the entry finds the write made, and a
serial changed again after the script read it has a later entry that the next read applies; entries are applied as
"read the serial's current value", so their order and repetition do not matter. A lost entry would matter: the
publisher's map would keep a stale entry until its next full read — which is why the log is never written apart from
the index, and why a gap in the log is detected and answered with a full read rather than trusted.

Storing and serving. A complete CRL is ~3.9 MB at 100,000 entries, so it never passes through a script: the
publisher writes both CRLs with a plain HSET under their number, then the compare-and-set (small arguments only)
makes that number current, or drops them when refused, and drops older numbers' CRLs but the base's (which is
therefore stored once, not copied into a field of its own). A reader reads the number, then that number's CRL; a
conditional GET is answered from the number and times alone (revocation/crl/web.py), without reading the CRL.

The change log is MAXLEN-bounded by the store (`CRL_CHANGES_MAXLEN`, approximate). The publisher also trims it,
in the same script that stores a publication moving the base, to the position that publication was built from
(XTRIM MINID ~): a publisher holding any older position knows an older base, so it reads everything anyway and
never needs what was trimmed. The log thus holds about the changes since the base, not a million entries.

`publish_due` is meant to run every second or so (it reads two fields per shard when nothing changed): it
republishes the shards the store marked dirty, at most once per `crl_min_interval` each, and any shard whose
nextUpdate is within a quarter of the validity.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.x509 import ReasonFlags

from jpki.issuer import Issuer
from jpki.profile import crl_url
from revocation.config import RevocationConfig
from revocation.crl.der import build_crl, encode_entries, entry_serial, revoked_entries
from revocation.storage.keys import CRL_DIRTY, serial_field, serial_from_field
from revocation.storage.store import CRL_ENTRY, REASONS_BY_CODE, StatusStore

PUBLISH_ATTEMPTS = 3
READ_ATTEMPTS = 8  # a reader that finds its CRL replaced between reading the number and the CRL reads again
# Change-log entries read per script call: its serials are HMGET as one call's arguments, and Redis's Lua unpacks
# at most ~8,000 values at once.
CHANGES_PAGE = 4_096

# Store a publication if it is newer than the stored one and its delta's base is still the base; when it moves
# the base, trim the change log to the position it was built from, and clear the released holds it reflects. The
# CRLs themselves were written before, by a plain HSET, as fields `full:<number>` and `delta:<number>`: a script's
# arguments are copied into Lua strings and back, which costs Redis ~7 ms of CPU for a 3.9 MB CRL, HSET ~1.5 ms.
# Refused, it drops its own CRLs; stored, it drops those of older numbers except the base's complete CRL, and the
# single `full`/`delta`/`base` fields of the layout before (a base stored that way is kept under its number).
# KEYS: published hash, released hash, change log.  ARGV: number, expected base number ('' = none), log id to
# trim to ('' = none), field count n, n field/value pairs, then released field/value pairs to delete if unchanged.
_STORE_PUBLICATION = """
local number = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'number') or '0') >= number
   or (redis.call('HGET', KEYS[1], 'base_number') or '') ~= ARGV[2] then
  redis.call('HDEL', KEYS[1], 'full:' .. ARGV[1], 'delta:' .. ARGV[1])
  return 0
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[3], 'MINID', '~', ARGV[3]) end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * n))
local base = redis.call('HGET', KEYS[1], 'base_number')
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  local kind, of = string.match(name, '^(%a+):(%d+)$')
  if kind and tonumber(of) < number and not (kind == 'full' and of == base) then
    redis.call('HDEL', KEYS[1], name)
  end
end
if redis.call('HEXISTS', KEYS[1], 'base') == 1 and redis.call('HEXISTS', KEYS[1], 'full:' .. base) == 0 then
  redis.call('HSET', KEYS[1], 'full:' .. base, redis.call('HGET', KEYS[1], 'base'))
end
redis.call('HDEL', KEYS[1], 'full', 'delta', 'base')
for i = 5 + 2 * n, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return 1
"""

# Where a publisher stands, and what changed since. KEYS: change log, index, released holds, published hash.
# ARGV: mode, log id, entries added up to it, known base number ('' = none), page size, most entries worth reading.
# Modes: 'position' answers {'position', last id, entries added, base number, base thisUpdate, base CRL or false
# when it is the known one} and reads nothing else; 'start' checks the base is the known one ({'base'} if not),
# reads a page after the position and takes a CRL number; 'next' reads the following page. A page answers
# {'ok', new id, entries added up to it, more pages (0/1), number or false, base thisUpdate or false, then per
# serial: field, index entry or false, release time or false}; {'gap'} when the log lost entries after the
# position, {'far'} when more entries follow it than worth reading.
_READ_CHANGES = """
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(as) < tonumber(bs))
end
local top, added, length, first, deleted = '0-0', 0, 0, '0-0', '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    local name = info[i]
    if name == 'length' then length = info[i + 1]
    elseif name == 'last-generated-id' then top = info[i + 1]
    elseif name == 'max-deleted-entry-id' then deleted = info[i + 1]
    elseif name == 'entries-added' then added = info[i + 1]
    elseif name == 'recorded-first-entry-id' then first = info[i + 1] end
  end
end
local mode, base_this = ARGV[1], false
if mode ~= 'next' then
  local base = redis.call('HMGET', KEYS[4], 'base_number', 'base_this')
  if mode == 'position' then
    local der = false
    if base[1] and base[1] ~= ARGV[4] then
      der = redis.call('HGET', KEYS[4], 'full:' .. base[1]) or redis.call('HGET', KEYS[4], 'base')
    end
    return {'position', top, added, base[1], base[2], der}
  end
  if (base[1] or '') ~= ARGV[4] then return {'base'} end
  base_this = base[2]
end
local since, known = ARGV[2], tonumber(ARGV[3])
local behind = added - known
if behind < 0 or before(since, deleted)
   or (behind > 0 and (length == 0 or (before(since, first) and length < behind))) then
  return {'gap'}
end
if behind > tonumber(ARGV[6]) then return {'far'} end
local page = tonumber(ARGV[5])
local read = redis.call('XRANGE', KEYS[1], '(' .. since, '+', 'COUNT', page)
local last, seen, serials = since, {}, {}
for _, item in ipairs(read) do
  last = item[1]
  local fields = item[2]
  for j = 1, #fields, 2 do
    if fields[j] == 's' and not seen[fields[j + 1]] then
      seen[fields[j + 1]] = true
      serials[#serials + 1] = fields[j + 1]
    end
  end
end
local number = false
if mode == 'start' then number = redis.call('HINCRBY', KEYS[4], 'counter', 1) end
local more = 0
if #read == page and last ~= top then more = 1 end
local reply = {'ok', last, known + #read, more, number, base_this}
if #serials > 0 then
  local entries = redis.call('HMGET', KEYS[2], unpack(serials))
  local released = redis.call('HMGET', KEYS[3], unpack(serials))
  for i, serial in ipairs(serials) do
    reply[#reply + 1] = serial
    reply[#reply + 1] = entries[i]
    reply[#reply + 1] = released[i]
  end
end
return reply
"""

_STATUS_FIELDS = ["number", "this", "next", "entries", "delta_base", "delta_entries"]


@dataclass
class _Shard:
    """What a publisher keeps of one shard between its publications (see the module notes)."""

    log_id: bytes  # position in the shard's change log: every entry up to it is reflected below
    log_count: int  # the log's count of entries ever added, up to log_id
    entries: dict[int, bytes]  # serial → its revokedCertificates element, as the index held at log_id
    released: dict[int, int]  # serial → release time (epoch seconds, 0 = unknown), as the released holds hash
    base_number: int | None  # the base CRL's number; None before the shard's first publication
    before_base: dict[int, bytes | None] = field(default_factory=dict)  # serial touched since the base → its base entry
    delta: dict[int, bytes] = field(default_factory=dict)  # serial → its delta entry, when fixed
    delta_now: set[int] = field(default_factory=set)  # serials the delta removes at the publication's own time
    # `entries`' values joined in order, as the last publication listed them (None: to join again), and the entries
    # added after them since: a new serial only appends, so the next list is one copy of bytes, not 100,000 joins.
    joined: bytes | None = None
    appended: list[bytes] = field(default_factory=list)

    def revoked(self) -> bytes:
        """Every entry, encoded and joined: the complete CRL's revokedCertificates content."""
        if self.joined is None:
            self.joined, self.appended = b"".join(self.entries.values()), []
        elif self.appended:
            self.joined, self.appended = b"".join([self.joined, *self.appended]), []
        return self.joined

    def base_entry(self, serial: int) -> bytes | None:
        return self.before_base[serial] if serial in self.before_base else self.entries.get(serial)

    def apply(self, serial: int, index_entry: bytes | None, released: int | None) -> None:
        """The serial's index entry and released hold as read now (None: absent)."""
        if serial not in self.before_base:
            self.before_base[serial] = self.entries.get(serial)  # untouched since the base: as in the base
        before = self.entries.get(serial)
        if index_entry is None:
            entry = None
            self.entries.pop(serial, None)
        else:
            reason, at = CRL_ENTRY.unpack(index_entry)
            entry = self.entries[serial] = encode_entries([(serial, REASONS_BY_CODE[reason], _time(at))])[0]
        if before is None and entry is not None:
            self.appended.append(entry)  # a new key goes last in the dict, so last in the list
        elif before != entry:
            self.joined = None  # changed or removed in the middle
        if released is None:
            self.released.pop(serial, None)
        else:
            self.released[serial] = released
        self.settle(serial)

    def settle(self, serial: int) -> None:
        """The serial's delta entry (RFC 5280 §5.2.4): its entry when new or changed since the base; removeFromCRL
        when it is gone and was in the base or a hold was lifted (at the release time, or the publication's)."""
        self.delta.pop(serial, None)
        self.delta_now.discard(serial)
        current = self.entries.get(serial)
        if current is not None:
            if current != self.base_entry(serial):
                self.delta[serial] = current
            return
        released = self.released.get(serial)
        if released:
            self.delta[serial] = encode_entries([(serial, ReasonFlags.remove_from_crl, _time(released))])[0]
        elif released is not None or self.base_entry(serial) is not None:
            self.delta_now.add(serial)

    def delta_entries(self, now: dt.datetime) -> list[bytes]:
        return [*self.delta.values(),
                *encode_entries([(serial, ReasonFlags.remove_from_crl, now) for serial in self.delta_now])]

    def moved_base(self, number: int) -> None:
        """This publication's complete CRL became the base, and the released holds known were cleared."""
        self.base_number = number
        self.before_base, self.delta, self.delta_now, self.released = {}, {}, set(), {}


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


def _time(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


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
        self._read_changes = self.redis.register_script(_READ_CHANGES)
        self._shards: dict[tuple[str, int], _Shard] = {}  # what this process knows of each shard it published
        self._lock = threading.Lock()  # one publication at a time in a process: they share `_shards`

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
        """Build, sign and store the shard's complete and delta CRLs; returns their CRL number. With `rebase`, from
        a read of the whole shard, and the complete CRL becomes the base of later deltas."""
        if not self.knows(slug, shard):
            raise KeyError(f"no CRL shard {slug}:{shard}")
        with self._lock:
            for _ in range(PUBLISH_ATTEMPTS):
                try:
                    number = self._publish_once(slug, shard, (now or self.clock()).replace(microsecond=0), rebase)
                except Exception:
                    self._shards.pop((slug, shard), None)  # whatever it held may be half-applied: read it all again
                    raise
                if number is not None:
                    return number
        raise RuntimeError("CRL shard kept changing under concurrent publishers")

    def _publish_once(self, slug: str, shard: int, now: dt.datetime, rebase: bool) -> int | None:
        issuer, key = self.issuers[slug], self.keys.crl_published(slug, shard)
        known = None if rebase else self._shards.get((slug, shard))
        caught_up = self._catch_up(slug, shard, known) if known is not None else None
        if caught_up is None:
            state, number, base_this = self._read_everything(slug, shard, known)
            self._shards[slug, shard] = state
        else:
            state, (number, base_this) = known, caught_up
        base_number = state.base_number
        next_update = now + self.config.crl_validity
        url = self.url(slug, shard)
        signed = dict(number=number, this_update=now, next_update=next_update, distribution_point=url)
        full = build_crl(issuer.certificate, issuer.key, [state.revoked()], freshest=delta_url(url), **signed)
        delta, changes = b"", []
        if base_number is not None:
            changes = state.delta_entries(now)
            delta = build_crl(issuer.certificate, issuer.key, changes, base_number=base_number, **signed)
        fields = {"number": number, "this": _epoch(now), "next": _epoch(next_update), "entries": len(state.entries),
                  "delta_base": base_number or b"", "delta_entries": len(changes),
                  "published_ms": int(now.timestamp() * 1000)}
        moves_base = rebase or base_number is None or now - _moment(base_this) >= self.base_period
        cleared: list[bytes | int] = []
        if moves_base:
            fields |= {"base_number": number, "base_this": _epoch(now)}
            for serial, released_at in state.released.items():
                cleared += [serial_field(serial), released_at]
        args = [number, base_number or b"", state.log_id if moves_base else b"", len(fields),
                *(x for pair in fields.items() for x in pair), *cleared]
        keys = [key, self.keys.crl_released(slug, shard), self.keys.crl_changes(slug, shard)]
        self.redis.hset(key, mapping={f"full:{number}": full, f"delta:{number}": delta})
        if not self._store_publication(keys=keys, args=args):
            return None
        if moves_base:
            state.moved_base(number)
        return number

    def _catch_up(self, slug: str, shard: int, state: _Shard) -> tuple[int, bytes | None] | None:
        """Apply the shard's changes since `state`'s position; (CRL number, base thisUpdate), or None when only a
        read of everything will do (the base moved, the log lost entries, or it is too far behind)."""
        keys = self._shard_keys(slug, shard)
        base = str(state.base_number) if state.base_number is not None else ""
        worth_reading = len(state.entries) + CHANGES_PAGE
        mode, taken = "start", None
        while True:
            reply = self._read_changes(keys=keys, args=[mode, state.log_id, state.log_count, base, CHANGES_PAGE,
                                                        worth_reading])
            if reply[0] != b"ok":
                return None
            log_id, log_count, more, number, base_this = reply[1:6]
            for at in range(6, len(reply), 3):
                serial_raw, index_entry, released = reply[at:at + 3]
                state.apply(serial_from_field(serial_raw), index_entry, int(released) if released else None)
            state.log_id, state.log_count = log_id, log_count
            if mode == "start":
                taken = (number, base_this)
            if not more:
                return taken
            mode = "next"

    def _read_everything(self, slug: str, shard: int, known: _Shard | None) -> tuple[_Shard, int, bytes | None]:
        """The shard read whole (one HSCAN of its index): its state, a fresh CRL number, the base's thisUpdate."""
        keys = self._shard_keys(slug, shard)
        known_base = str(known.base_number) if known is not None and known.base_number is not None else "-"
        _, log_id, log_count, base_number, base_this, base_der = self._read_changes(
            keys=keys, args=["position", "", 0, known_base, 0, 0])
        released = {serial: _epoch(at) if at else 0 for serial, at in self.store.crl_released(slug, shard)}
        rows = list(self.store.crl_entries(slug, shard))  # after the released holds: see the module notes
        state = _Shard(log_id, log_count, dict(zip((row[0] for row in rows), encode_entries(rows), strict=True)),
                       released, _int(base_number))
        number = self.redis.hincrby(keys[3], "counter", 1)
        if state.base_number is None:
            return state, number, base_this
        # The base's entries as a set of bytes, compared with the current ones in C; only the few that differ are
        # parsed for their serial. An entry encodes its serial, so a serial's base entry is the one gone from the
        # base's set, or else its current entry when the base holds that same entry.
        if base_der:
            base = set(revoked_entries(base_der))
        elif known is not None and known.base_number == state.base_number:  # the base is the one `known` built
            base = set(known.entries.values())
            base.difference_update(known.entries.get(serial) for serial in known.before_base)
            base.update(entry for entry in known.before_base.values() if entry is not None)
        else:  # the base's CRL is gone (removed by hand): a delta listing every entry is larger, but still true
            base = set()
        current = set(state.entries.values())
        gone = {entry_serial(entry): entry for entry in base - current}
        touched = {entry_serial(entry) for entry in current - base} | gone.keys() | released.keys()

        def base_entry(serial: int) -> bytes | None:
            if serial in gone:
                return gone[serial]
            entry = state.entries.get(serial)
            return entry if entry in base else None

        state.before_base = {serial: base_entry(serial) for serial in touched}
        for serial in touched:
            state.settle(serial)
        return state, number, base_this

    def _shard_keys(self, slug: str, shard: int) -> list[str]:
        """The keys `_READ_CHANGES` reads, all in the shard's hash slot."""
        return [self.keys.crl_changes(slug, shard), self.keys.crl_entries(slug, shard),
                self.keys.crl_released(slug, shard), self.keys.crl_published(slug, shard)]

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
        key, kind = self.keys.crl_published(slug, shard), "delta" if delta else "full"
        published = 0
        for _ in range(READ_ATTEMPTS):
            number, this_update, next_update = self.redis.hmget(key, ["number", "this", "next"])
            if number:
                # The CRL's own field, then the single field of the layout before; None when a newer publication
                # replaced it between the two reads: read again.
                der = next((value for value in self.redis.hmget(key, [f"{kind}:{int(number)}", kind])
                            if value is not None), None)
                if der:
                    return PublishedCrl(der, _moment(this_update), _moment(next_update), int(number))
                if der is None:
                    continue
            if published == PUBLISH_ATTEMPTS:
                break
            published += 1
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
