"""The certificate status store: the source of truth for every certificate's status (Redis).

A certificate's record is 15 bytes (+ the auth serial on a signing certificate: the 紐付け link), packed and kept
in a bucket hash. Status changes are compare-and-set through one Lua script, so concurrent appliers never lose
an update, and each change updates in the same step what derives from it in the same hash slot: the
certificate's history and its cached OCSP response. The CRL shard index (other slot) is synced right after,
idempotently.

The event worker changes many certificates at once (`apply_steps`): one pipeline reads every record, each
certificate's steps are folded in order in Python (the same change functions), compare-and-set scripts write the
results — one call for all the batch's certificates on one server, one per slot on a cluster (a certificate whose
record moved meanwhile is read and folded again) — and one pipeline syncs the CRL index of every certificate a
status step touched (one script per shard: each entry written, then its change-log entry and, when the status
changed or an event registered the certificate, its status feed entry for the IdP, wire/status_feed.py), then a
last one writes renewal links and dirty-shard marks. A few round trips for a batch instead of five per certificate.
redis-py's cluster pipeline refuses EVALSHA, so on a Redis Cluster the scripts go as EVAL (Redis caches the compiled
script by its digest either way); every script call touches the keys of one slot only, so the cluster pipeline
routes it to that slot's node.

The bucket counts (STATUS_BUCKETS, HOLDER_BUCKETS) decide which key holds each record, so they are fixed for a
deployment's life: the first revocation process to start records them (`claim_layout`), every later one must
agree or refuse to start, and a reader that does not carry the settings itself builds its store from the record
(`StatusStore.from_layout`; the IdP does, through deploy/composition.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import redis
from cryptography.x509 import ReasonFlags
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from revocation.storage.keys import CRL_DIRTY, LAYOUT, KeySpace, serial_field, serial_from_field
from wire import status_feed
from wire.errors import CodedError


class CertificateStatus(enum.IntEnum):
    GOOD = 0
    REVOKED = 1
    ON_HOLD = 2


# RFC 5280 §5.3.1 CRLReason codes.
REASON_CODES = {
    ReasonFlags.unspecified: 0, ReasonFlags.key_compromise: 1, ReasonFlags.ca_compromise: 2,
    ReasonFlags.affiliation_changed: 3, ReasonFlags.superseded: 4, ReasonFlags.cessation_of_operation: 5,
    ReasonFlags.certificate_hold: 6, ReasonFlags.remove_from_crl: 8, ReasonFlags.privilege_withdrawn: 9,
    ReasonFlags.aa_compromise: 10,
}
REASONS_BY_CODE = {code: reason for reason, code in REASON_CODES.items()}
_NO_REASON = 255

_RECORD = struct.Struct(">BBBIII")  # status, reason, shard, revoked_at, not_after, changed_at
CRL_ENTRY = struct.Struct(">BI")  # a CRL index value: reason code, revocation time (read by revocation/crl/)


def _epoch(moment: dt.datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


def _moment(seconds: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None


@dataclass(frozen=True)
class StatusRecord:
    status: CertificateStatus
    reason: ReasonFlags | None
    shard: int
    revoked_at: dt.datetime | None
    not_after: dt.datetime
    changed_at: dt.datetime | None  # occurred_at of the last event that changed or confirmed the status
    auth_serial: int | None = None  # on a signing certificate: the auth certificate of the same card

    def pack(self) -> bytes:
        reason = REASON_CODES[self.reason] if self.reason else _NO_REASON
        head = _RECORD.pack(self.status, reason, self.shard, _epoch(self.revoked_at), _epoch(self.not_after),
                            _epoch(self.changed_at))
        return head + (serial_field(self.auth_serial) if self.auth_serial else b"")

    @classmethod
    def unpack(cls, raw: bytes) -> StatusRecord:
        status, reason, shard, revoked_at, not_after, changed_at = _RECORD.unpack_from(raw)
        tail = raw[_RECORD.size:]
        return cls(CertificateStatus(status), REASONS_BY_CODE.get(reason), shard, _moment(revoked_at),
                   _moment(not_after), _moment(changed_at), serial_from_field(tail) if tail else None)

    @classmethod
    def issued(cls, shard: int, not_after: dt.datetime, auth_serial: int | None = None) -> StatusRecord:
        return cls(CertificateStatus.GOOD, None, shard, None, not_after, None, auth_serial)


# Compare-and-set of one certificate record, with what derives from it in the same slot.
# KEYS: status bucket, history list, OCSP cache.  ARGV: field, expected ('' = absent), new, history entries (0..n)
_CAS_RECORD = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if #ARGV > 3 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 4)) end
redis.call('DEL', KEYS[3])
return 1
"""


# The CRL index of many serials of one shard, each write followed by its change-log entry, and by its status feed
# entry when the status changed (wire/status_feed.py): one atomic step.
# KEYS: shard entries, released holds, change log, status feed. ARGV: change-log maxlen, feed maxlen, then per
# serial: field, packed entry ('' = not revoked: remove it; '-' = leave the index alone: a registration), release
# time ('' = none; only with an empty entry), feed entry ('' = none; else "k=v k=v").
_CRL_SYNC = """
for i = 3, #ARGV, 4 do
  local serial, entry, released, feed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if entry ~= '-' then
    if entry == '' then
      redis.call('HDEL', KEYS[1], serial)
      if released ~= '' then redis.call('HSET', KEYS[2], serial, released) end
    else
      redis.call('HSET', KEYS[1], serial, entry)
      redis.call('HDEL', KEYS[2], serial)
    end
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 's', serial)
  end
  if feed ~= '' then
    local pairs_ = {}
    for k, v in string.gmatch(feed, '(%w+)=(%w+)') do
      pairs_[#pairs_ + 1] = k
      pairs_[#pairs_ + 1] = v
    end
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', unpack(pairs_))
  end
end
return 1
"""


# The compare-and-set above for many certificates in one call (one server, or one slot of a cluster); one answer
# each. KEYS: 3 per certificate, as above. ARGV per certificate: field, expected, new, n, then n history entries.
_CAS_RECORDS = """
local answers, a = {}, 1
for k = 1, #KEYS, 3 do
  local n = tonumber(ARGV[a + 3])
  if (redis.call('HGET', KEYS[k], ARGV[a]) or '') == ARGV[a + 1] then
    redis.call('HSET', KEYS[k], ARGV[a], ARGV[a + 2])
    if n > 0 then redis.call('RPUSH', KEYS[k + 1], unpack(ARGV, a + 4, a + 3 + n)) end
    redis.call('DEL', KEYS[k + 2])
    answers[#answers + 1] = 1
  else
    answers[#answers + 1] = 0
  end
  a = a + 4 + n
end
return answers
"""
PACKED_CALL_ITEMS = 256  # items per packed script call: bounds how long one call holds Redis


def run_packed(client: redis.Redis, script: Script, items: Sequence[tuple[list, list]]) -> list:
    """Run a script that loops over items — each (keys, args), its keys in one slot, its args self-delimiting —
    packing as many items as share a slot into one call (all of them on one server, PACKED_CALL_ITEMS at a time),
    the calls in one pipeline (`run_script_pipelined`); the script answers a list, one answer per item."""
    groups: dict[int, list[int]] = {}
    if isinstance(client, RedisCluster):
        for index, (keys, _) in enumerate(items):
            groups.setdefault(key_slot(_bytes(keys[0])), []).append(index)
    elif items:
        groups[0] = list(range(len(items)))
    calls, members = [], []
    for indices in groups.values():
        for start in range(0, len(indices), PACKED_CALL_ITEMS):
            chunk = indices[start:start + PACKED_CALL_ITEMS]
            calls.append(([key for i in chunk for key in items[i][0]], [arg for i in chunk for arg in items[i][1]]))
            members.append(chunk)
    answers: list = [None] * len(items)
    for chunk, answer in zip(members, run_script_pipelined(client, script, calls), strict=True):
        for index, value in zip(chunk, answer, strict=True):
            answers[index] = value
    return answers


def _bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def run_script_pipelined(client: redis.Redis, script: Script, calls: Sequence[tuple[list, list]]) -> list:
    """Run `script` once per (keys, args) in one pipeline; the answers in order. Each call's keys share a slot.

    On one server: EVALSHA, and a script the server does not hold (a restart, SCRIPT FLUSH) is loaded and only
    those calls sent again — a NOSCRIPT call ran nothing. On a Redis Cluster: EVAL, which its pipeline accepts.
    Any other error is raised (the first), after the pipeline ran: callers' scripts are compare-and-sets, safe
    to run again."""
    if not calls:
        return []
    cluster = isinstance(client, RedisCluster)
    answers: list = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        pipe = client.pipeline(transaction=False)
        for index in todo:
            keys, args = calls[index]
            if cluster:
                pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
            else:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
        for index, answer in zip(todo, pipe.execute(raise_on_error=False), strict=True):
            answers[index] = answer
        todo = [index for index in todo if isinstance(answers[index], NoScriptError)]
        if not todo:
            break
        client.script_load(script.script)
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
    return answers


@dataclass(frozen=True)
class Step:
    """One thing a batch does to one certificate: register `record` if the serial is unknown, or apply `change`
    (a change function: hold, release, revoke) with the `history` entry to keep when the status changes.
    `redelivered`: the step comes again from an event applied before (it may complete what a crash interrupted),
    so its shard is marked dirty even though the status no longer changes."""

    register: StatusRecord | None = None
    change: Callable[[StatusRecord], StatusRecord | None] | None = None
    history: dict | None = None
    redelivered: bool = False
    releases_at: dt.datetime | None = None  # a release step: its time (to recognise a hold it lifted before)


@dataclass
class _Fold:
    """One certificate's steps folded over its record as read: what to write, and each step's result."""

    raw: bytes | None
    record: StatusRecord | None = None
    results: list[tuple[StatusRecord | None, bool]] = dataclasses.field(default_factory=list)
    history: list[bytes] = dataclasses.field(default_factory=list)
    status_changed: bool = False
    touches_index: bool = False
    redelivered: bool = False
    released_at: dt.datetime | None = None
    registered: bool = False  # a register step recorded it now, or (redelivered) may have before a crash

    def write(self) -> bytes | None:
        """The packed record to compare-and-set, or None when it stays as read."""
        packed = self.record.pack() if self.record is not None else None
        return packed if packed != self.raw else None


CRL_CHANGES_MAXLEN = 1_000_000  # approximate; a publisher that fell further behind reads the whole shard again
REGISTER_BATCH = 10_000  # certificates per pipeline round trip in `register_many`


class StorageLayoutError(CodedError):
    """The recorded storage layout is missing, unreadable, or not the one this process was configured with."""

    status = 503


def claim_layout(client: redis.Redis, keys: KeySpace) -> None:
    """Record `keys`' bucket counts as the deployment's, or check them against those already recorded.

    Raises StorageLayoutError (storage_layout_mismatch) when another count was recorded: a process with other
    counts would read and write every certificate under other keys, and find none of the existing records.
    """
    if client.set(LAYOUT, keys.layout(), nx=True):
        return
    recorded = _recorded_layout(client)
    if recorded != keys:
        raise StorageLayoutError(
            "storage_layout_mismatch",
            f"This Redis holds certificate status laid out with {recorded.layout().replace(' ', ' and ')}, but "
            f"this process is configured with {keys.layout().replace(' ', ' and ')}. STATUS_BUCKETS and "
            "HOLDER_BUCKETS are fixed for a deployment's life: set them back to the recorded values.")


def _recorded_layout(client: redis.Redis) -> KeySpace:
    raw = client.get(LAYOUT)
    if raw is None:
        raise StorageLayoutError(
            "storage_layout_unknown",
            "This Redis holds no certificate status layout yet: start the revocation service or its worker first.")
    try:
        return KeySpace.from_layout(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise StorageLayoutError(
            "storage_layout_unreadable",
            f"The storage layout recorded under {LAYOUT} cannot be read; restore it as "
            "'status_buckets=N holder_buckets=M' with the deployment's STATUS_BUCKETS and HOLDER_BUCKETS.") from None


class StatusStore:
    def __init__(self, client: redis.Redis, keys: KeySpace | None = None):
        self.redis = client
        self.keys = keys or KeySpace()
        self._cas = client.register_script(_CAS_RECORD)
        self._cas_many = client.register_script(_CAS_RECORDS)
        self._crl_sync = client.register_script(_CRL_SYNC)

    @classmethod
    def from_layout(cls, client: redis.Redis) -> StatusStore:
        """A store over the layout the revocation service recorded (`claim_layout`), for a reader that does not
        carry STATUS_BUCKETS and HOLDER_BUCKETS itself. It reads the record once and writes nothing; it raises
        StorageLayoutError when no revocation process has started on this Redis yet."""
        return cls(client, _recorded_layout(client))

    # --- reading ------------------------------------------------------------------------------------------

    def get(self, issuer: str, serial: int) -> StatusRecord | None:
        raw = self.redis.hget(self.keys.status(issuer, serial), serial_field(serial))
        return StatusRecord.unpack(raw) if raw else None

    def history(self, issuer: str, serial: int) -> list[dict]:
        return [json.loads(item) for item in self.redis.lrange(self.keys.history(issuer, serial), 0, -1)]

    def links(self, issuer: str, serial: int) -> tuple[int | None, int | None]:
        """(previous, next) serial of a renewal chain (新旧紐付け)."""
        raw = self.redis.hmget(self.keys.links(issuer, serial), [b"p" + serial_field(serial),
                                                                  b"n" + serial_field(serial)])
        return tuple(serial_from_field(v) if v else None for v in raw)  # type: ignore[return-value]

    def latest(self, issuer: str, serial: int, limit: int = 32) -> int:
        """Follow renewal links forward to the newest certificate of the chain."""
        return self._follow(issuer, serial, 1, limit)

    def first(self, issuer: str, serial: int, limit: int = 32) -> int:
        """Follow renewal links back to the first certificate of the chain (a stable anchor)."""
        return self._follow(issuer, serial, 0, limit)

    def _follow(self, issuer: str, serial: int, direction: int, limit: int) -> int:
        """Walk one way along (previous, next) links, at most `limit` steps (a card is renewed every 5 years)."""
        for _ in range(limit):
            step = self.links(issuer, serial)[direction]
            if step is None:
                break
            serial = step
        return serial

    def crl_entries(self, issuer: str, shard: int) -> Iterator[tuple[int, ReasonFlags, dt.datetime]]:
        """Every revoked or held certificate of a CRL shard: (serial, reason, revocation time)."""
        for field, raw in self.redis.hscan_iter(self.keys.crl_entries(issuer, shard), count=10_000):
            reason, at = CRL_ENTRY.unpack(raw)
            yield serial_from_field(field), REASONS_BY_CODE[reason], _moment(at)

    def crl_released(self, issuer: str, shard: int) -> Iterator[tuple[int, dt.datetime]]:
        """Holds lifted since the shard's last full CRL: (serial, release time), for removeFromCRL in a delta."""
        for field, raw in self.redis.hscan_iter(self.keys.crl_released(issuer, shard), count=10_000):
            yield serial_from_field(field), _moment(int(raw))

    # --- writing ------------------------------------------------------------------------------------------

    def register(self, issuer: str, serial: int, record: StatusRecord) -> bool:
        """Record a newly issued certificate; False if it was already known (idempotent)."""
        return bool(self._cas(keys=self._cas_keys(issuer, serial), args=[serial_field(serial), b"", record.pack()]))

    def register_many(self, issuer: str, rows: Iterable[tuple[int, StatusRecord]]) -> int:
        """Record many newly issued certificates (a migration, a backfill); returns how many were new.

        Writes what `register` writes for each: the record only if the serial is unknown (HSETNX), then drops any
        cached OCSP response of the serials that were new. Pipelined, REGISTER_BATCH at a time, without scripts:
        redis-py's cluster pipeline refuses EVALSHA, and plain commands let it split each batch by node. The two
        steps are not one atomic step per certificate, and need not be: a response cached in between is one
        for the record just written, and dropping it only costs a re-signature.
        """
        added = 0
        batch: list[tuple[int, StatusRecord]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == REGISTER_BATCH:
                added += self._register_batch(issuer, batch)
                batch = []
        return added + (self._register_batch(issuer, batch) if batch else 0)

    def _register_batch(self, issuer: str, rows: list[tuple[int, StatusRecord]]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for serial, record in rows:
            pipe.hsetnx(self.keys.status(issuer, serial), serial_field(serial), record.pack())
        new = [serial for (serial, _), written in zip(rows, pipe.execute(), strict=True) if written]
        if new:
            pipe = self.redis.pipeline(transaction=False)
            for serial in new:
                pipe.delete(self.keys.ocsp_cache(issuer, serial))
            pipe.execute()
        return len(new)

    def link_renewal(self, issuer: str, old_serial: int, new_serial: int) -> None:
        """Link old → new and new → old. The two may sit in different slots, so two idempotent writes."""
        self.redis.hset(self.keys.links(issuer, old_serial), b"n" + serial_field(old_serial),
                        serial_field(new_serial))
        self.redis.hset(self.keys.links(issuer, new_serial), b"p" + serial_field(new_serial),
                        serial_field(old_serial))

    def transition(self, issuer: str, serial: int, change, history: dict | None = None,
                   attempts: int = 16) -> tuple[StatusRecord | None, bool]:
        """Apply `change(record) -> record | None` atomically; returns (record now, whether it changed).

        `change` returns None to leave the record as it is. Retries when another applier got there first.
        """
        field = serial_field(serial)
        key = self.keys.status(issuer, serial)
        for _ in range(attempts):
            raw = self.redis.hget(key, field)
            if raw is None:
                return None, False
            current = StatusRecord.unpack(raw)
            updated = change(current)
            if updated is None or updated == current:
                self._sync_crl_index(issuer, serial, current, None)
                return current, False
            status_changed = (updated.status, updated.reason) != (current.status, current.reason)
            entries = [json.dumps(history, separators=(",", ":"))] if history and status_changed else []
            if self._cas(keys=self._cas_keys(issuer, serial), args=[field, raw, updated.pack(), *entries]):
                self._sync_crl_index(issuer, serial, updated, current if status_changed else None)
                return updated, status_changed
        raise RuntimeError("status record kept changing under concurrent appliers")

    def _cas_keys(self, issuer: str, serial: int) -> list[str]:
        return [self.keys.status(issuer, serial), self.keys.history(issuer, serial),
                self.keys.ocsp_cache(issuer, serial)]

    def _sync_crl_index(self, issuer: str, serial: int, record: StatusRecord,
                        before: StatusRecord | None) -> None:
        """Make the shard's CRL index agree with the record. Idempotent: safe to repeat after a crash. Each sync
        also appends the serial to the shard's change log (`KeySpace.crl_changes`), in the same MULTI."""
        released = record.changed_at if (before is not None and before.status is CertificateStatus.ON_HOLD
                                         and record.status is CertificateStatus.GOOD) else None
        pipe = self.redis.pipeline(transaction=True)
        self._queue_crl_sync(pipe, issuer, serial, record, released, feed=before is not None)
        pipe.execute()
        if before is not None:
            self.redis.sadd(CRL_DIRTY, f"{issuer}:{record.shard}")

    def _queue_crl_sync(self, pipe, issuer: str, serial: int, record: StatusRecord,
                        released_at: dt.datetime | None, feed: bool = False) -> None:
        """Queue on `pipe` the index write for `record` (entry set, or removed with the release noted when a hold
        was lifted at `released_at`), then its change-log entry: a publisher that reads the log entry finds the
        write already made; with `feed` (the status changed), its status feed entry too."""
        field = serial_field(serial)
        entries = self.keys.crl_entries(issuer, record.shard)
        if record.status is CertificateStatus.GOOD:
            pipe.hdel(entries, field)
            if released_at is not None:
                pipe.hset(self.keys.crl_released(issuer, record.shard), field, _epoch(released_at))
        else:
            pipe.hset(entries, field, CRL_ENTRY.pack(REASON_CODES[record.reason], _epoch(record.revoked_at)))
            pipe.hdel(self.keys.crl_released(issuer, record.shard), field)
        pipe.xadd(self.keys.crl_changes(issuer, record.shard), {"s": field}, maxlen=CRL_CHANGES_MAXLEN,
                  approximate=True)
        if feed:
            pipe.xadd(self.keys.status_feed(issuer, record.shard), _feed_entry(serial, record),
                      maxlen=status_feed.FEED_MAXLEN, approximate=True)

    # --- writing a batch ----------------------------------------------------------------------------------

    def apply_steps(self, steps: dict[tuple[str, int], list[Step]],
                    links: Sequence[tuple[str, int, int]] = (), attempts: int = 16,
                    ) -> dict[tuple[str, int], list[tuple[StatusRecord | None, bool]]]:
        """Apply each certificate's steps in order, as `register` and `transition` would one after another, in a
        few round trips; returns, per (issuer, serial), each step's (record after it, whether it changed).

        "Changed" means newly registered for a register step and a changed status for a change step, as the
        single-certificate methods answer. Afterwards every certificate a change step reached has its CRL index
        synced (also when nothing changed: that completes a sync a crash interrupted), with its change-log entry;
        `links` (issuer, old, new) are written after, and shards whose index changed, or that a redelivered step
        reached, are marked dirty (a crash between the records and the marks leaves the status changed and the
        shard unmarked; the redelivery marks it).
        """
        todo = list(steps)
        folds: dict[tuple[str, int], _Fold] = {}
        for _ in range(attempts):
            pipe = self.redis.pipeline(transaction=False)
            for issuer, serial in todo:
                pipe.hget(self.keys.status(issuer, serial), serial_field(serial))
            # A redelivered release may have lifted a hold whose release a crash kept out of the CRL index: the
            # certificate's last history entry tells (same slot as the record; read only in that case).
            lifted = [(issuer, serial) for issuer, serial in todo
                      if any(step.redelivered and step.releases_at for step in steps[issuer, serial])]
            for issuer, serial in lifted:
                pipe.lindex(self.keys.history(issuer, serial), -1)
            answers = pipe.execute()
            last = dict(zip(lifted, answers[len(todo):], strict=True))
            for certificate, raw in zip(todo, answers, strict=False):
                folds[certificate] = _fold(raw, steps[certificate], last.get(certificate))
            writing = [certificate for certificate in todo if folds[certificate].write() is not None]
            answers = run_packed(self.redis, self._cas_many, [
                (self._cas_keys(issuer, serial),
                 [serial_field(serial), folds[issuer, serial].raw or b"", folds[issuer, serial].write(),
                  len(folds[issuer, serial].history), *folds[issuer, serial].history]) for issuer, serial in writing])
            todo = [certificate for certificate, written in zip(writing, answers, strict=True) if not written]
            if not todo:
                break
        else:
            raise RuntimeError("status records kept changing under concurrent appliers")
        self._sync_many(folds, links)
        return {certificate: fold.results for certificate, fold in folds.items()}

    def _sync_many(self, folds: dict[tuple[str, int], _Fold], links: Sequence[tuple[str, int, int]]) -> None:
        """The CRL index of every certificate a change step reached, one script per shard (its entries, released
        holds and change log share the shard's slot); then, once those are written, the renewal links and the
        dirty-shard marks — a publisher that takes a mark finds the index already written."""
        by_shard: dict[tuple[str, int], list[bytes]] = {}
        dirty: set[str] = set()
        renewed = {(issuer, new): old for issuer, old, new in links}
        for (issuer, serial), fold in folds.items():
            record = fold.record
            if record is None:
                continue
            # The status feed (wire/status_feed.py): a changed status, a registration by an event, and again on a
            # redelivery (it may complete what a crash interrupted: at least once).
            rows = by_shard.setdefault((issuer, record.shard), [])
            if fold.registered:  # the registration first, then (below) any change the same batch made after it
                rows.extend((serial_field(serial), b"-", b"", status_feed.encode(status_feed.entry(
                    serial, status_feed.GOOD, previous=renewed.get((issuer, serial)))).encode()))
            if not fold.touches_index:
                continue
            feed = b""
            if fold.status_changed or fold.redelivered:
                feed = status_feed.encode(_feed_entry(serial, record)).encode()
            if record.status is CertificateStatus.GOOD:
                entry, released = b"", (str(_epoch(fold.released_at)).encode() if fold.released_at else b"")
            else:
                entry, released = CRL_ENTRY.pack(REASON_CODES[record.reason], _epoch(record.revoked_at)), b""
            rows.extend((serial_field(serial), entry, released, feed))
            if fold.status_changed or fold.redelivered:
                dirty.add(f"{issuer}:{record.shard}")
        run_script_pipelined(self.redis, self._crl_sync, [
            ([self.keys.crl_entries(issuer, shard), self.keys.crl_released(issuer, shard),
              self.keys.crl_changes(issuer, shard), self.keys.status_feed(issuer, shard)],
             [CRL_CHANGES_MAXLEN, status_feed.FEED_MAXLEN, *rows])
            for (issuer, shard), rows in by_shard.items() if rows])
        pipe = self.redis.pipeline(transaction=False)
        for issuer, old, new in links:
            pipe.hset(self.keys.links(issuer, old), b"n" + serial_field(old), serial_field(new))
            pipe.hset(self.keys.links(issuer, new), b"p" + serial_field(new), serial_field(old))
        if dirty:
            pipe.sadd(CRL_DIRTY, *sorted(dirty))
        if len(pipe):
            pipe.execute()


def _feed_entry(serial: int, record: StatusRecord) -> dict[str, str]:
    """The status feed entry that says what `record` is now (wire/status_feed.py)."""
    if record.status is CertificateStatus.REVOKED:
        return status_feed.entry(serial, status_feed.REVOKED, REASON_CODES.get(record.reason, 0))
    return status_feed.entry(serial, status_feed.HELD if record.status is CertificateStatus.ON_HOLD
                             else status_feed.GOOD)


def _fold(raw: bytes | None, steps: list[Step], last_history: bytes | None = None) -> _Fold:
    """`steps` applied in order to the record packed in `raw` (None: not registered), the certificate's last
    history entry given when a redelivered release is among them. Pure: no I/O."""
    fold = _Fold(raw, StatusRecord.unpack(raw) if raw else None)
    for step in steps:
        record = fold.record
        if step.register is not None:
            if record is None:
                fold.record = step.register
            fold.registered |= record is None or step.redelivered
            fold.results.append((fold.record, record is None))
            continue
        if record is None:  # a change to a certificate never registered does nothing, as `transition` answers
            fold.results.append((None, False))
            continue
        fold.touches_index = True
        fold.redelivered |= step.redelivered
        updated = step.change(record)
        if updated is None or updated == record:
            if step.redelivered and _lifted_by(step, record, last_history):
                fold.released_at = step.releases_at
            fold.results.append((record, False))
            continue
        changed = (updated.status, updated.reason) != (record.status, record.reason)
        if changed:
            fold.status_changed = True
            if step.history:
                fold.history.append(json.dumps(step.history, separators=(",", ":")).encode())
            if record.status is CertificateStatus.ON_HOLD and updated.status is CertificateStatus.GOOD:
                fold.released_at = updated.changed_at
            elif updated.status is not CertificateStatus.GOOD:
                fold.released_at = None
        fold.record = updated
        fold.results.append((updated, changed))
    return fold


def _lifted_by(step: Step, record: StatusRecord, last_history: bytes | None) -> bool:
    """Whether `record` is as `step` (a redelivered release) left it after lifting a hold: good since the step's
    time, and the last history entry that release's own."""
    if step.releases_at is None or last_history is None or record.status is not CertificateStatus.GOOD:
        return False
    entry = json.loads(last_history)
    return (record.changed_at == step.releases_at and entry.get("do") == "release"
            and entry.get("event_id") == (step.history or {}).get("event_id"))


def hold(at: dt.datetime):
    """A change function: put a good certificate on hold, unless a newer event already spoke. On a certificate
    already on hold only note the time (like `release` on a good one), so that a release older than this hold,
    arriving after it, lifts nothing: order is by occurred_at, not by arrival."""
    def change(record: StatusRecord) -> StatusRecord | None:
        if record.status is CertificateStatus.REVOKED or (record.changed_at and at <= record.changed_at):
            return None
        if record.status is CertificateStatus.ON_HOLD:
            return replace(record, changed_at=at)
        return replace(record, status=CertificateStatus.ON_HOLD, reason=ReasonFlags.certificate_hold,
                       revoked_at=at, changed_at=at)
    return change


def release(at: dt.datetime):
    """Lift a hold; on a good certificate only note the time, so an older `card_lost` arriving late is ignored."""
    def change(record: StatusRecord) -> StatusRecord | None:
        if record.status is CertificateStatus.REVOKED or (record.changed_at and at <= record.changed_at):
            return None
        return replace(record, status=CertificateStatus.GOOD, reason=None, revoked_at=None, changed_at=at)
    return change


def revoke(reason: ReasonFlags, at: dt.datetime):
    """Revocation is final and applies whatever its arrival order; the first revocation recorded stays."""
    def change(record: StatusRecord) -> StatusRecord | None:
        if record.status is CertificateStatus.REVOKED:
            return None
        return replace(record, status=CertificateStatus.REVOKED, reason=reason, revoked_at=at, changed_at=at)
    return change
