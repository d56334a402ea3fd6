"""The resident-register event stream: a Redis Stream with one consumer group of appliers.

Entry format (docs/operators.md, "The event stream"): one field, `event`, holding one event as JSON
(docs/event-schema.json). The service's own submissions are validated before XADD; a feed may write entries
directly, so every entry is checked again when it is read.

At-least-once: an applied entry is acknowledged only after the applier finished with it (one XACK per batch,
naming the entries applied), so a consumer that dies between read and ack loses nothing — its pending entries are
claimed by another consumer once they have been idle long enough (XAUTOCLAIM), and the applier's idempotency by
`event_id` makes the second delivery harmless.

No entry holds back another. An entry that cannot be handled for any reason but Redis itself being unreachable —
unreadable, refused by the schema, refused by the applier, or the applier raising — is dead-lettered at its first
failure: one Lua script appends a record with a stable code to the dead-letter stream and acknowledges the entry,
atomically (the two keys share a hash slot), and the batch goes on. A Redis outage (`TRANSIENT`) is not the
entry's fault: the batch stops, unacknowledged entries stay pending and are delivered again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis
from redis.exceptions import ClusterError, OutOfMemoryError, ReadOnlyError, SlotNotCoveredError, TryAgainError

from revocation.domain.applier import Applier, Outcome
from revocation.domain.events import EventRefused, RevocationEvent, parse_event_json
from revocation.storage.keys import CONSUMER_GROUP, DEAD_LETTERS, STREAM

log = logging.getLogger(__name__)

STREAM_MAXLEN = 10_000_000  # approximate trim: the status store, not the stream, is the record of truth
RECLAIM_CHECK_S = 1.0  # how often a consumer looks for entries abandoned by dead consumers
DEAD_LETTERS_MAXLEN = 1_000_000  # approximate: a feed sending only junk cannot fill Redis
EVENT_FIELD = b"event"

# Redis unreachable, failing over, or refusing writes: retry later rather than blame the entry.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ClusterError, TryAgainError, ReadOnlyError,
             OutOfMemoryError, SlotNotCoveredError)

# KEYS: stream, dead letters. ARGV: group, entry id, '1' to delete the entry, maxlen, then the record's pairs.
_DEAD_LETTER = """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
return 1
"""


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    outcome: Outcome | None
    refused: EventRefused | None = None  # set when the entry was dead-lettered


class EventStream:
    def __init__(self, client: redis.Redis, stream: str = STREAM, group: str = CONSUMER_GROUP,
                 dead_letters: str = DEAD_LETTERS):
        self.redis = client
        self.stream = stream
        self.group = group
        self.dead_letters = dead_letters
        self._dead_letter = client.register_script(_DEAD_LETTER)
        self._group_made = False  # ensured once; a stream deleted since (NOGROUP) has it made again
        self._next_reclaim = 0.0  # monotonic time of the next look for abandoned entries

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_made = True

    def submit(self, event: RevocationEvent) -> str:
        """Append a validated event; returns its stream entry id."""
        entry = self.redis.xadd(self.stream, {EVENT_FIELD: json.dumps(event.to_json(), separators=(",", ":"))},
                                maxlen=STREAM_MAXLEN, approximate=True)
        return _text(entry)

    def consume(self, consumer: str, applier: Applier, count: int = 100, block_ms: int | None = None,
                reclaim_idle_ms: int = 30_000) -> list[Delivery]:
        """Handle up to `count` entries: first ones abandoned by dead consumers, then new ones. Each is applied and
        acknowledged, or dead-lettered; only a Redis outage (`TRANSIENT`) ends the batch early, by raising.

        The entries are read together, parsed one by one (an unreadable one is dead-lettered there), applied as
        one batch (`Applier.apply_batch`, which answers per event) and acknowledged by one XACK."""
        if not self._group_made:
            self.ensure_group()
        try:
            entries = self._read(consumer, count, block_ms, reclaim_idle_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # the stream was deleted since (a FLUSHDB): make the group again
            entries = self._read(consumer, count, block_ms, reclaim_idle_ms)
        done: dict[int, Delivery] = {}
        parsed: list[tuple[int, str, RevocationEvent]] = []
        try:
            for position, (entry_id, fields) in enumerate(entries):
                try:
                    parsed.append((position, _text(entry_id), entry_event(fields)))
                except EventRefused as refusal:
                    done[position] = self._refuse(_text(entry_id), refusal, None)
                except TRANSIENT:
                    raise
                except Exception as exc:  # a defect behind one entry must not hold back the others
                    done[position] = self._failed(_text(entry_id), None, exc)
            results = self._apply(applier, [event for _, _, event in parsed])
            for (position, entry_id, event), result in zip(parsed, results, strict=True):
                done[position] = self._verdict(entry_id, event, result)
        finally:
            applied = [delivery.entry_id for delivery in done.values() if delivery.refused is None]
            if applied:  # one acknowledgement for the entries applied (dead letters were acknowledged with theirs)
                self.redis.xack(self.stream, self.group, *applied)
        return [done[position] for position in sorted(done)]

    @staticmethod
    def _apply(applier: Applier, events: list[RevocationEvent]) -> list[Outcome | Exception]:
        """The batch's results; should the batch itself fail other than by an outage (a defect), each event is
        applied alone so that the failure lands on the event behind it. Applying again is safe: idempotent."""
        if not events:
            return []
        try:
            return applier.apply_batch(events)
        except TRANSIENT:
            raise
        except Exception:  # a defect in the batch code: find whose event it is
            log.warning("event batch failed; applying its events one at a time", extra={"code": "batch_failed"})
        results: list[Outcome | Exception] = []
        for event in events:
            try:
                [result] = applier.apply_batch([event])
            except TRANSIENT:
                raise
            except Exception as exc:
                result = exc
            results.append(result)
        return results

    def _read(self, consumer: str, count: int, block_ms: int | None, reclaim_idle_ms: int) -> list:
        """Entries abandoned by dead consumers (looked for at most every RECLAIM_CHECK_S, or at once when a batch of
        them was found or `reclaim_idle_ms` is 0), then new ones, up to `count` together: a worker that keeps up
        pays one round trip per round for reading, not two."""
        entries = []
        now = time.monotonic()
        if reclaim_idle_ms == 0 or now >= self._next_reclaim:
            entries = self._reclaim(consumer, count, reclaim_idle_ms)
            self._next_reclaim = now if len(entries) == count else now + min(RECLAIM_CHECK_S, reclaim_idle_ms / 1000)
        if len(entries) < count:
            answer = self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count - len(entries),
                                           block=block_ms)
            for _, items in answer or []:
                entries += items
        return entries

    def _reclaim(self, consumer: str, count: int, idle_ms: int) -> list:
        # Redis ≥ 7 drops entries deleted while pending from the pending list and reports them apart.
        _, entries, *_ = self.redis.xautoclaim(self.stream, self.group, consumer, min_idle_time=idle_ms,
                                               start_id="0-0", count=count)
        return [entry for entry in entries if entry and entry[1]]

    def _verdict(self, entry_id: str, event: RevocationEvent, result: Outcome | Exception) -> Delivery:
        if isinstance(result, EventRefused):
            return self._refuse(entry_id, result, event)
        if isinstance(result, Exception):
            return self._failed(entry_id, event, result)
        # One line per event, the operator's trace of it (it costs a worker about a seventh of its CPU per event).
        log.info("event applied", extra={"event_id": event.event_id, "type": event.type,
                                          "result": result.summary()})
        return Delivery(entry_id, result)

    def _failed(self, entry_id: str, event: RevocationEvent | None, exc: Exception) -> Delivery:
        """A defect or bad data behind this one event: dead-lettered as apply_failed, the exception's type only
        logged and recorded (its text can carry serials or handles)."""
        failure = exc.__class__.__name__
        known = {"event_id": event.event_id, "type": event.type} if event is not None else {}
        log.warning("event not applied: %s raised; moved to the dead-letter stream", failure,
                    extra={"code": "apply_failed", **known})
        refusal = EventRefused("apply_failed", f"Applying the event failed ({failure}) and it may be partly "
                                               "applied. Send it again, with the same event_id, once the cause "
                                               "is fixed: what was done is not done twice.")
        return self._refuse(entry_id, refusal, event, failure)

    def _refuse(self, entry_id: str, refusal: EventRefused, event: RevocationEvent | None,
                exception: str | None = None) -> Delivery:
        """Dead-letter the entry and acknowledge it in one step. The record holds codes and the refusal's sentence,
        never the entry's content; an entry refused for holding a My Number is deleted from the stream as well."""
        record = {"entry": entry_id, "code": refusal.code, "message": refusal.message}
        if event is not None:  # parsed, so its id and type passed the schema
            record |= {"event_id": event.event_id, "type": event.type}
        if exception is not None:
            record["exception"] = exception
        delete = refusal.code == "my_number_refused"
        self._dead_letter(keys=[self.stream, self.dead_letters],
                          args=[self.group, entry_id, "1" if delete else "0", DEAD_LETTERS_MAXLEN,
                                *(item for pair in record.items() for item in pair)])
        if exception is None:
            log.info("event refused; moved to the dead-letter stream", extra={"code": refusal.code})
        return Delivery(entry_id, None, refusal)

    def drain(self, consumer: str, applier: Applier, limit: int = 100_000, timeout_s: float = 60.0) -> list[Delivery]:
        """Consume until nothing new is waiting (bounded in count and time)."""
        done: list[Delivery] = []
        deadline = time.monotonic() + timeout_s
        while len(done) < limit and time.monotonic() < deadline:
            batch = self.consume(consumer, applier, count=min(500, limit - len(done)))
            if not batch:
                break
            done += batch
        return done

    def health(self) -> dict:
        """Stream length, consumer-group lag and pending entries, each consumer's idle time, dead letters."""
        self.ensure_group()
        groups = {_text(g["name"]): g for g in self.redis.xinfo_groups(self.stream)}
        group = groups.get(self.group, {})
        consumers = [{"name": _text(c["name"]), "pending": c["pending"], "idle_ms": c["idle"]}
                     for c in self.redis.xinfo_consumers(self.stream, self.group)]
        return {
            "length": self.redis.xlen(self.stream),
            "lag": group.get("lag"),
            "pending": group.get("pending", 0),
            "last_delivered": _text(group.get("last-delivered-id")),
            "consumers": consumers,
            "refused": self.redis.xlen(self.dead_letters),
        }


def entry_event(fields: dict) -> RevocationEvent:
    """The event of one stream entry: exactly one field, `event`, holding the event's JSON."""
    if set(map(_bytes, fields)) != {EVENT_FIELD}:
        raise EventRefused("malformed_entry", "A stream entry has exactly one field, 'event', holding the event as "
                                              "JSON (docs/operators.md).")
    [raw] = fields.values()
    return parse_event_json(raw)


def _bytes(value) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
