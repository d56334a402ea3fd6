"""The resident-register event stream: a Redis Stream with one consumer group of appliers.

At-least-once: an entry is acknowledged only after the applier finished with it (one XACK per batch, naming the
entries finished), so a consumer that dies between read and ack loses nothing — its pending entries are claimed
by another consumer once they have been idle long enough (XAUTOCLAIM), and the applier's idempotency by
`event_id` makes the second delivery harmless.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis

from revocation.applier import Applier, Outcome
from revocation.events import EventRefused, RevocationEvent, parse_event
from revocation.keys import CONSUMER_GROUP, STREAM

log = logging.getLogger(__name__)

DEAD_LETTERS = f"{STREAM}:refused"
STREAM_MAXLEN = 10_000_000  # approximate trim: the status store, not the stream, is the record of truth


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    outcome: Outcome | None
    refused: EventRefused | None = None


class EventStream:
    def __init__(self, client: redis.Redis, stream: str = STREAM, group: str = CONSUMER_GROUP):
        self.redis = client
        self.stream = stream
        self.group = group

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def submit(self, event: RevocationEvent) -> str:
        """Append a validated event; returns its stream entry id."""
        entry = self.redis.xadd(self.stream, {"event": json.dumps(event.to_json(), separators=(",", ":"))},
                                maxlen=STREAM_MAXLEN, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else entry

    def consume(self, consumer: str, applier: Applier, count: int = 100, block_ms: int | None = None,
                reclaim_idle_ms: int = 30_000) -> list[Delivery]:
        """Apply and acknowledge up to `count` entries: first ones abandoned by dead consumers, then new ones."""
        self.ensure_group()
        entries = self._reclaim(consumer, count, reclaim_idle_ms)
        if len(entries) < count:
            answer = self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count - len(entries),
                                           block=block_ms)
            for _, items in answer or []:
                entries += items
        done: list[Delivery] = []
        try:
            for entry_id, fields in entries:
                done.append(self._handle(entry_id, fields, applier))
        finally:
            if done:  # one acknowledgement for the batch, of exactly the entries finished with
                self.redis.xack(self.stream, self.group, *(delivery.entry_id for delivery in done))
        return done

    def _reclaim(self, consumer: str, count: int, idle_ms: int) -> list:
        _, entries, *_ = self.redis.xautoclaim(self.stream, self.group, consumer, min_idle_time=idle_ms,
                                               start_id="0-0", count=count)
        return [entry for entry in entries if entry and entry[1]]

    def _handle(self, entry_id, fields: dict, applier: Applier) -> Delivery:
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        try:
            event = parse_event(json.loads(fields[b"event"]))
        except (EventRefused, KeyError, ValueError) as exc:
            refused = exc if isinstance(exc, EventRefused) else EventRefused("malformed_entry", "Unreadable entry.")
            # Never reached for events submitted through this service (validated before XADD); kept for hand-made
            # entries. The entry moves to a dead-letter stream so that an operator can see it.
            self.redis.xadd(DEAD_LETTERS, {"entry": entry_id, "code": refused.code})
            return Delivery(entry_id, None, refused)
        outcome = applier.apply(event)
        log.info("event applied", extra={"event_id": event.event_id, "type": event.type,
                                          "result": outcome.summary()})
        return Delivery(entry_id, outcome)

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
        """Stream length, consumer-group lag and pending entries, and each consumer's idle time."""
        self.ensure_group()
        groups = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g
                  for g in self.redis.xinfo_groups(self.stream)}
        group = groups.get(self.group, {})
        consumers = [
            {"name": c["name"].decode() if isinstance(c["name"], bytes) else c["name"],
             "pending": c["pending"], "idle_ms": c["idle"]}
            for c in self.redis.xinfo_consumers(self.stream, self.group)
        ]
        return {
            "length": self.redis.xlen(self.stream),
            "lag": group.get("lag"),
            "pending": group.get("pending", 0),
            "last_delivered": _text(group.get("last-delivered-id")),
            "consumers": consumers,
            "refused": self.redis.xlen(DEAD_LETTERS),
        }


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
