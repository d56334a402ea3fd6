"""Pre-signed OCSP responses held in this process, dropped as soon as Redis says their cache entry changed.

Redis is the cache of record (revocation/ocsp/responder.py); this is a copy of what a worker read from it, so that
a repeated nonce-less request costs no round trip. Coherence comes from Redis itself: server-assisted client-side
caching in broadcasting mode (`CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <the OCSP cache prefix>`, Redis 6 and
later). One connection per process asks Redis to announce every change to a key under the prefix — written, deleted
or expired, by anyone — and subscribes to those announcements on `__redis__:invalidate`.

What it promises:

- A revocation is never answered from a stale copy in the usual case: the store's compare-and-set deletes the
  cache entry, Redis sends the announcement in the same event-loop turn as its reply to that write, and every lookup
  first reads whatever announcements have arrived (a non-blocking poll, no round trip) before it trusts a copy.
- A copy read from Redis is kept only if no announcement for its key arrived between the lookup and the keep (a
  generation number, and the generation at which each of the last CHANGES_REMEMBERED announced keys changed), so a
  read racing a revocation cannot put the old answer back, while changes to other keys — a stream of revocations —
  do not stop a process from holding what it reads. A ticket older than what is remembered is refused.
- If the announcing connection fails, or stays silent past HEARTBEAT_SECONDS after a PING, every copy is dropped
  and nothing is held until it is back: at worst a silent network partition leaves about 2 × HEARTBEAT_SECONDS in
  which a copy may outlive its Redis entry. A forked child starts empty with its own connection.
- A copy is never served past the expiry its Redis entry had (a while before the response's nextUpdate), and at
  most MAX_HELD copies are kept, the oldest dropped first.

Not used with a Redis Cluster: announcements in broadcasting mode come only from the node a connection is on, so
one connection would miss changes on every other node. Why not redis-py's own client-side cache (`cache_config`):
it refuses Redis servers older than 7.4, and the platform runs on 7.0.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

import redis

MAX_HELD = 20_000  # per process: about 1 kB each
CHANGES_REMEMBERED = 4_096  # announced keys whose generation is remembered, for `keep`
HEARTBEAT_SECONDS = 1.0
INVALIDATIONS = "__redis__:invalidate"
NOT_LISTENING = -1
Value = TypeVar("Value")


class HeldResponses(Generic[Value]):
    """Values read from Redis hashes under `prefix`, held by (key, field) while Redis has not announced a change."""

    def __init__(self, client: redis.Redis, prefix: str, max_held: int = MAX_HELD):
        self._pool = client.connection_pool
        self._prefix = prefix
        self._max_held = max_held
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, tuple[Value, float]]] = {}  # key → field → (value, expires at, epoch s)
        self._generation = 0
        self._changed: OrderedDict[str, int] = OrderedDict()  # key → generation of its latest announcement
        self._floor = 0  # a ticket older than this cannot be checked key by key: refused
        self._connection = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        self._heard_at = 0.0
        self._ping_sent_at: float | None = None

    def lookup(self, key: str, field: str) -> tuple[Value | None, int]:
        """The held value (or None) and a ticket to pass to `keep` for what is read from Redis instead."""
        with self._lock:
            if not self._listening():
                return None, NOT_LISTENING
            entry = self._held.get(key, {}).get(field)
            if entry is not None and entry[1] > time.time():
                return entry[0], self._generation
            return None, self._generation

    def keep(self, key: str, field: str, value: Value, expires_at: float, ticket: int) -> None:
        """Hold `value`, read from Redis after `lookup` gave `ticket`, unless a change was announced since."""
        with self._lock:
            if ticket == NOT_LISTENING or not self._listening() or ticket < self._floor:
                return
            if ticket != self._generation and self._changed.get(key, -1) > ticket:
                return  # announced since the lookup: what was read may already be stale
            if key not in self._held and len(self._held) >= self._max_held:
                del self._held[next(iter(self._held))]  # the oldest key first
            self._held.setdefault(key, {})[field] = (value, expires_at)

    def __len__(self) -> int:
        return sum(len(fields) for fields in self._held.values())

    # --- the announcing connection (called with the lock held) ------------------------------------------------

    def _listening(self) -> bool:
        if self._pid != os.getpid():  # forked: the parent's connection and copies are not ours
            self._connection, self._pid = None, os.getpid()
            self._forget_all()
        now = time.monotonic()
        if self._connection is None:
            if now < self._retry_at:
                return False
            try:
                self._connect()
            except (redis.RedisError, OSError):
                self._retry_at = now + HEARTBEAT_SECONDS
                return False
        try:
            while self._connection.can_read(timeout=0):  # bounded by what has arrived
                self._read(self._connection.read_response())
            if self._ping_sent_at is None and now - self._heard_at > HEARTBEAT_SECONDS:
                self._connection.send_command("PING")
                self._ping_sent_at = now
            elif self._ping_sent_at is not None and now - self._ping_sent_at > HEARTBEAT_SECONDS:
                raise redis.ConnectionError("no answer to PING on the invalidation connection")
        except (redis.RedisError, OSError):
            self._disconnect()
            self._retry_at = now + HEARTBEAT_SECONDS
            return False
        return True

    def _read(self, message) -> None:
        kind = message[0]
        self._heard_at = time.monotonic()
        if kind in (b"pong", "pong"):
            self._ping_sent_at = None
        elif kind in (b"message", "message"):
            self._generation += 1
            if message[2] is None:  # FLUSHDB / FLUSHALL
                self._forget_all()
            else:
                for key in message[2]:
                    key = key.decode() if isinstance(key, bytes) else key
                    self._held.pop(key, None)
                    self._changed[key] = self._generation
                    self._changed.move_to_end(key)
                while len(self._changed) > CHANGES_REMEMBERED:
                    self._floor = max(self._floor, self._changed.popitem(last=False)[1])

    def _connect(self) -> None:
        # RESP2, so that the announcements arrive as ordinary Pub/Sub messages on a connection of our own.
        connection = self._pool.connection_class(**{**self._pool.connection_kwargs, "protocol": 2})
        connection.connect()
        try:
            connection.send_command("CLIENT", "ID")
            own_id = connection.read_response()
            connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", "PREFIX", self._prefix)
            connection.read_response()
            connection.send_command("SUBSCRIBE", INVALIDATIONS)
            connection.read_response()
        except BaseException:
            connection.disconnect()
            raise
        self._connection, self._ping_sent_at, self._heard_at = connection, None, time.monotonic()
        self._forget_all()  # anything held before was not covered by this connection's announcements

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()
        self._connection = None
        self._forget_all()

    def _forget_all(self) -> None:
        self._held.clear()
        self._generation += 1
        self._floor = self._generation
        self._changed.clear()
