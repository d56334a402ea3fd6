"""Prometheus metrics for both services, counted in Redis so that every process and machine adds to one total.

A service registers counters and gauges; `/metrics` renders them in the Prometheus text format with
prometheus_client (a custom collector reads the Redis totals at scrape time). Label values are codes and names
only — never serials, tokens or personal data.

Counting costs no Redis round trip on the request path: `Counter.inc` adds to the process's own tally, and one
flusher thread per process and Redis adds the tallies to the Redis totals (one pipeline of HINCRBY) at most once
every FLUSH_SECONDS, and at exit. A total in Redis is therefore up to FLUSH_SECONDS behind, except at a scrape:
`/metrics` publishes a flush request on FLUSH_CHANNEL, every process's flusher flushes at once and acknowledges,
and the scrape waits (at most SCRAPE_WAIT_SECONDS) for as many acknowledgements as PUBLISH counted subscribers, so
the totals it reads hold every count made before it began (docs/operators.md, "Metrics"). When the totals are wiped
(FLUSHDB; EPOCH_KEY goes with them), counts still pending from before are dropped rather than added to the new
totals.

History, for the operator console's charts. Prometheus keeps history where there is one; the console must draw the
last hour without it, so the totals also get a short per-minute past, bounded by construction:
- a counter's flush adds each count to the total and, in the same pipeline (no extra round trip, none on a request
  path), to the hash of the current minute `metrics:{<name>}:m:<unix minute>` (same fields as the total), which
  expires HISTORY_SECONDS after the flush that created or last touched it. A count belongs to the minute in which
  it reached Redis: at most FLUSH_SECONDS late, so a count made in the last second of a minute may land in the next.
- a gauge that has no count (the event stream's lag) is a `SampledGauge`: a process that watches it writes at most
  one sample per minute (HSET of the value under the same kind of per-minute key, the last writer of a minute wins),
  so several workers sampling the same value cost one write each a minute and leave one number.
Each metric's buckets share its hash tag, so one metric's hour is read by one pipeline of HGETALL on one server, on
a Redis Cluster too; about HISTORY_SECONDS / 60 buckets per metric exist at most, each as small as the total.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable

import redis
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "metrics"
FLUSH_SECONDS = 1.0
FLUSH_CHANNEL = f"{PREFIX}:flush"
EPOCH_KEY = f"{PREFIX}:epoch"  # changes when the totals are wiped (FLUSHDB): counts from before it are dropped
SCRAPE_WAIT_SECONDS = 1.0
HISTORY_SECONDS = 2 * 3600 + 60  # how long a per-minute bucket lives after its last write (the console shows one hour)
log = logging.getLogger(__name__)


class _Flusher:
    """One per process and Redis client: owns the pending tallies of that client's counters and adds them to Redis
    at most once every FLUSH_SECONDS, at once when a scrape asks (FLUSH_CHANNEL), and at exit."""

    def __init__(self, client: redis.Redis):
        self.client = weakref.ref(client)  # the thread ends once nothing counts on this client any more
        self.lock = threading.Lock()
        self.pending: dict[str, Tally[str]] = {}  # Redis key → field → count not yet in Redis
        self.pid = os.getpid()
        self.stopped = threading.Event()
        try:
            self.epoch = self._epoch(client)  # counts added from now on belong to this epoch of the totals
        except redis.RedisError:
            self.epoch = None  # unknown: the first flush that reaches Redis adopts the current one
        self.pubsub = self._subscribe()  # before the first count returns, so that a scrape already reaches us
        self.thread = threading.Thread(target=self._run, name="metrics-flusher", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def add(self, key: str, field: str, count: int = 1) -> None:
        with self.lock:
            self.pending.setdefault(key, Tally())[field] += count

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        if not pending:
            return
        client = self.client()
        if client is None:
            return
        try:
            epoch = self._epoch(client)
            if self.epoch is not None and epoch != self.epoch:
                self.epoch = epoch  # the totals were wiped since (some of) these were counted: never add them
                return
            self.epoch = epoch
            pipe = client.pipeline(transaction=False)
            minute = _minute()
            for key, fields in pending.items():
                bucket = minute_key(key, minute)
                for field, count in fields.items():
                    pipe.hincrby(key, field, count)
                    pipe.hincrby(bucket, field, count)
                pipe.expire(bucket, HISTORY_SECONDS)
            pipe.execute()
        except redis.RedisError:
            with self.lock:  # keep them for the next flush; a metric must never be lost for a blip
                for key, fields in pending.items():
                    self.pending.setdefault(key, Tally()).update(fields)

    @staticmethod
    def _epoch(client: redis.Redis) -> bytes | None:
        client.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
        return client.get(EPOCH_KEY)

    def stop(self) -> None:
        self.stopped.set()
        if os.getpid() == self.pid:
            self.flush()

    def _subscribe(self):
        try:
            pubsub = self.client().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(FLUSH_CHANNEL)
            return pubsub
        except redis.RedisError:
            return None  # the thread tries again

    def _run(self) -> None:
        while not self.stopped.is_set() and self.client() is not None:  # ends at stop(), with the client or process
            try:
                if self.pubsub is None:
                    self.pubsub = self._subscribe()
                    if self.pubsub is None:
                        self.flush()
                        self.stopped.wait(FLUSH_SECONDS)
                        continue
                message = self.pubsub.get_message(timeout=FLUSH_SECONDS)
                self.flush()
                client = self.client()
                if message is not None and client is not None:  # acknowledge on the key the scrape named
                    client.pipeline(transaction=False).incr(message["data"]).expire(message["data"], 60).execute()
            except redis.RedisError:
                self.pubsub = None
                self.stopped.wait(FLUSH_SECONDS)
            except Exception as exc:  # never let the thread die: counts would silently stop reaching Redis
                log.warning("metrics flusher: %s; retrying", type(exc).__name__)  # the type only, as everywhere
                self.stopped.wait(FLUSH_SECONDS)
        if self.pubsub is not None:
            self.pubsub.close()


_flushers: dict[int, _Flusher] = {}
_flushers_lock = threading.Lock()


def _flusher_for(client: redis.Redis) -> _Flusher:
    flusher = _flushers.get(id(client))
    if flusher is None or flusher.client() is not client or flusher.pid != os.getpid():
        # A forked child starts its own, with nothing pending; a new client may reuse a collected one's id.
        with _flushers_lock:
            flusher = _flushers.get(id(client))
            if flusher is None or flusher.client() is not client or flusher.pid != os.getpid():
                flusher = _flushers[id(client)] = _Flusher(client)
    return flusher


def flush_everywhere(client: redis.Redis) -> None:
    """Ask every process's flusher on this Redis to flush now and wait (bounded) until they have."""
    ack = f"{PREFIX}:flushed:{secrets.token_hex(8)}"
    try:
        listeners = client.publish(FLUSH_CHANNEL, ack)
        deadline = time.monotonic() + SCRAPE_WAIT_SECONDS
        while int(client.get(ack) or 0) < listeners and time.monotonic() < deadline:
            time.sleep(0.005)
        client.delete(ack)
    except redis.RedisError:
        pass  # the scrape reads what is there


class Counter:
    """A labelled counter whose total lives in one Redis hash (field = the labels as JSON)."""

    def __init__(self, client: redis.Redis, name: str, documentation: str, labels: tuple[str, ...]):
        self.redis = client
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.key = f"{PREFIX}:{{{name}}}"

    def inc(self, count: int = 1, /, **labels: str) -> None:
        """Count one (or `count`), in this process; the flusher adds it to the Redis total (no round trip here)."""
        _flusher_for(self.redis).add(self.key, json.dumps([labels[name] for name in self.labels]), count)

    def history(self, minutes: int = 60, now: float | None = None) -> list[tuple[int, dict[tuple[str, ...], int]]]:
        """The last `minutes` minutes, oldest first: (the minute's start in Unix seconds, labels → count)."""
        return [(start, {tuple(json.loads(field)): int(value) for field, value in fields.items()})
                for start, fields in _read_minutes(self.redis, self.key, minutes, now)]

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for field, value in self.redis.hgetall(self.key).items():
            family.add_metric(json.loads(field), int(value))
        return family


class SampledGauge:
    """A gauge's value at most once a minute per process, kept per minute like a counter's history (module
    docstring); `sample` is cheap to call every round: it reads the value only when this minute has no sample yet
    from this process."""

    def __init__(self, client: redis.Redis, name: str):
        self.redis = client
        self.name = name
        self.key = f"{PREFIX}:{{{name}}}"
        self._last_minute: int | None = None

    def sample(self, read: Callable[[], float | None], now: float | None = None) -> bool:
        """Record `read()` for the current minute unless this process already did; None (unknown) records nothing.
        True when a sample was written."""
        minute = _minute(now)
        if minute == self._last_minute:
            return False
        value = read()
        if value is None:
            return False
        bucket = minute_key(self.key, minute)
        self.redis.pipeline(transaction=False).hset(bucket, "[]", value).expire(bucket, HISTORY_SECONDS).execute()
        self._last_minute = minute
        return True

    def history(self, minutes: int = 60, now: float | None = None) -> list[tuple[int, float | None]]:
        """The last `minutes` minutes, oldest first: (the minute's start in Unix seconds, the sample or None)."""
        return [(start, float(fields[b"[]"]) if b"[]" in fields else None)
                for start, fields in _read_minutes(self.redis, self.key, minutes, now)]


def minute_key(key: str, minute: int) -> str:
    """The per-minute bucket of a metric's key: the same hash tag, so the same slot as its total."""
    return f"{key}:m:{minute}"


def _minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


def _read_minutes(client: redis.Redis, key: str, minutes: int, now: float | None) -> list[tuple[int, dict]]:
    last = _minute(now)
    span = range(last - minutes + 1, last + 1)
    pipe = client.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(minute_key(key, minute))
    return [(minute * 60, fields) for minute, fields in zip(span, pipe.execute(), strict=True)]


Gauges = Callable[[], Iterable[GaugeMetricFamily]]


class _Collector:
    def __init__(self, counters: Iterable[Counter], gauges: Iterable[Gauges]):
        self.counters = list(counters)
        self.gauges = list(gauges)

    def collect(self):
        for counter in self.counters:
            yield counter.family()
        for gauges in self.gauges:
            yield from gauges()


def metrics_response(counters: Iterable[Counter], gauges: Iterable[Gauges] = ()) -> Response:
    counters = list(counters)
    for client in {id(counter.redis): counter.redis for counter in counters}.values():
        flush_everywhere(client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(counters, gauges))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def gauge(name: str, documentation: str, labels: list[str], samples: Iterable[tuple[list[str], float]]):
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in samples:
        family.add_metric(label_values, value)
    return family
