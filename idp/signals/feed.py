"""The signals worker's reading of the revocation service's status feeds (wire/status_feed.py).

The IdP's signals workers form one consumer group, `idp-signals`, on the feed of every CRL shard of the auth
certificates (the certificate a login uses: the one the IdP's sessions and accounts hang on). An entry is
acknowledged only after its tokens are queued in the receivers' outboxes, so a worker killed in between has the
entry delivered again — to itself after a restart, or claimed by another worker once idle for RECLAIM_IDLE_MS —
and the tokens queued again carry the same `jti`s (idp/signals/tokens.py): at least once, duplicates marked.
The group starts at the beginning of each feed, so changes written before the first worker started are not
lost either.

On one Redis server a round is one XREADGROUP over all of a reader's feeds; on a Redis Cluster the feeds sit in
different slots, which one command may not name together, so each is read in turn. A worker runs FEED_READERS
readers as threads, each on its share of the shards: one entry costs a Redis round trip for the consents (every
receiver's keyed lookup, pipelined) and a signature per token, and the round trips of one reader overlap with the
others' work. A subject's
entries stay in order: one certificate's changes are in one shard, read by one reader.
"""

from __future__ import annotations

import logging
import time

import redis
from redis.cluster import RedisCluster

from idp import keys
from idp.signals.causes import Signals, certificate_cause
from jpki.profile import CRL_ISSUER_SLUG, CRL_SHARD_COUNT, CertificateKind
from wire import status_feed

log = logging.getLogger(__name__)

AUTH = CRL_ISSUER_SLUG[CertificateKind.AUTH]
RECLAIM_IDLE_MS = 30_000
RECLAIM_EVERY_S = 5.0


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FeedReader:
    def __init__(self, client: redis.Redis, signals: Signals, consumer: str, shards=range(CRL_SHARD_COUNT)):
        self.redis = client
        self.signals = signals
        self.consumer = consumer
        self.feeds = [status_feed.feed_key(AUTH, shard) for shard in shards]
        self._next_reclaim = 0.0

    def ensure_groups(self) -> None:
        for feed in self.feeds:
            try:
                self.redis.xgroup_create(feed, keys.SIGNALS_FEED_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def step(self, count: int = 100, block_ms: int = 200) -> int:
        """Read, handle and acknowledge up to `count` entries (abandoned ones first); how many were handled."""
        entries = self._reclaim(count) if time.monotonic() >= self._next_reclaim else []
        if not entries:
            entries = self._read(count, block_ms)
        done: dict[str, list[str]] = {}
        for feed, entry_id, fields in entries:
            try:
                self.handle(feed, entry_id, fields)
            except redis.RedisError:
                raise
            except Exception as exc:  # a defect behind one entry: left pending, claimed and tried again later
                log.warning("status feed entry failed (%s); it will be tried again", exc.__class__.__name__,
                            extra={"code": "feed_entry_failed"})
                continue
            done.setdefault(feed, []).append(entry_id)
        for feed, entry_ids in done.items():  # one acknowledgement per feed, once its entries' tokens are queued
            self.redis.xack(feed, keys.SIGNALS_FEED_GROUP, *entry_ids)
        return len(entries)

    def _read(self, count: int, block_ms: int) -> list:
        if isinstance(self.redis, RedisCluster):
            found = []
            for feed in self.feeds:
                for _, items in self.redis.xreadgroup(keys.SIGNALS_FEED_GROUP, self.consumer, {feed: ">"},
                                                      count=count) or []:
                    found += [(feed, _text(i), f) for i, f in items]
            if not found:
                time.sleep(block_ms / 1000)
            return found
        answer = self.redis.xreadgroup(keys.SIGNALS_FEED_GROUP, self.consumer, dict.fromkeys(self.feeds, ">"),
                                       count=count, block=block_ms)
        return [(_text(feed), _text(i), f) for feed, items in answer or [] for i, f in items]

    def _reclaim(self, count: int) -> list:
        self._next_reclaim = time.monotonic() + RECLAIM_EVERY_S
        found = []
        for feed in self.feeds:
            _, items, *_ = self.redis.xautoclaim(feed, keys.SIGNALS_FEED_GROUP, self.consumer,
                                                 min_idle_time=RECLAIM_IDLE_MS, start_id="0-0", count=count)
            found += [(feed, _text(i), f) for i, f in items if f]
        return found

    def handle(self, feed: str, entry_id: str, fields: dict) -> int:
        """Queue the tokens one feed entry causes; how many. An entry that cannot be read is skipped (logged by
        code only): it is the revocation service's own write, so that is a defect, not a holder's input."""
        fields = {_text(k): _text(v) for k, v in fields.items()}
        try:
            serial = int(fields["s"], 16)
            state = fields["e"]
            reason = int(fields["r"]) if "r" in fields else None
            previous = int(fields["p"], 16) if "p" in fields else None
        except (KeyError, ValueError):
            log.warning("unreadable status feed entry skipped", extra={"code": "feed_entry_unreadable"})
            return 0
        at = int(entry_id.split("-")[0]) // 1000
        cause = certificate_cause(f"{feed}/{entry_id}", at, state, reason, previous is not None)
        if cause is None:
            return 0
        mykey = self.signals.services.mykey
        account_id = mykey.account_of(AUTH, previous if previous is not None else serial)
        if account_id is None:
            return 0  # a card that never logged in: no relying party knows it
        return self.signals.for_account(account_id, cause)
