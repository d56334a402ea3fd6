"""`python -m idp signals run`: the signals worker — reads the status feeds and pushes every receiver's outbox.

One process runs FEED_READERS feed readers (feed.py; the first in its main loop, the others as threads) and one
pusher thread per outbox that has a push receiver (delivery.py), found again every REFRESH_S (a stream created,
turned to push or deleted; a client with a back-channel logout URI registered). Run one or several: the consumer
group shares the feeds, and the lease of each outbox lets one worker push it at a time, in order. Stopping
(SIGTERM, Ctrl-C) loses nothing: an unacknowledged feed entry is read again, an undelivered token stays in its
outbox.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading

import redis

from idp.signals.delivery import Pusher, owner_name, push_fetcher
from idp.signals.feed import FeedReader
from idp.signals.service import SignalsService
from idp.signals.streams import PUSH
from jpki.profile import CRL_SHARD_COUNT

log = logging.getLogger(__name__)

REFRESH_S = 2.0
FEED_READERS = 4  # threads reading the feeds, each its share of the shards


def run_worker(signals: SignalsService, stop: threading.Event, block_ms: int = 200) -> None:
    """Read the feeds (FEED_READERS threads) and push every push receiver's outbox (a thread each) until `stop`."""
    services = signals.services
    consumer = f"signals-{socket.gethostname()}-{os.getpid()}"
    readers = [FeedReader(services.redis, signals.signals, f"{consumer}-{n}", range(n, CRL_SHARD_COUNT, FEED_READERS))
               for n in range(FEED_READERS)]
    reader, others = readers[0], readers[1:]
    threads = [threading.Thread(target=read_feeds, args=(other, stop, block_ms), daemon=True, name="feed reader")
               for other in others]
    for thread in threads:
        thread.start()
    fetcher = push_fetcher(signals.config, services.config.development, services.config.fetch_ca_file)
    owner = owner_name()
    pushers: dict[str, threading.Thread] = {}
    next_refresh = 0.0
    groups_made = False
    while not stop.is_set():
        try:
            if not groups_made:
                reader.ensure_groups()
                groups_made = True
            if services.clock().timestamp() >= next_refresh:
                next_refresh = services.clock().timestamp() + REFRESH_S
                signals.signals.forget_receivers()
                for name in push_outboxes(signals) - set(pushers):
                    pusher = Pusher(name, services.redis, signals.outboxes, signals.streams, services.clients,
                                    signals.config, fetcher, owner, stop)
                    pushers[name] = threading.Thread(target=pusher.run, name=f"push {name}", daemon=True)
                    pushers[name].start()
            reader.step(block_ms=block_ms)
        except redis.RedisError:
            log.warning("signals feed round failed on Redis; retrying", extra={"code": "redis_unavailable"})
            stop.wait(1.0)
        except Exception as exc:  # keep the worker alive; what was not acknowledged is read again
            log.warning("signals round failed (%s); retrying", exc.__class__.__name__,
                        extra={"code": "signals_round_failed"})
            stop.wait(1.0)
    for thread in [*pushers.values(), *threads]:
        thread.join(5)


def read_feeds(reader: FeedReader, stop: threading.Event, block_ms: int) -> None:
    """One more feed reader's loop (the first runs in run_worker's own loop)."""
    while not stop.is_set():
        try:
            reader.ensure_groups()
            while not stop.is_set():
                reader.step(block_ms=block_ms)
        except Exception as exc:  # Redis away, or a defect: log by code, wait, read again
            log.warning("signals feed reader failed (%s); retrying", exc.__class__.__name__,
                        extra={"code": "feed_reader_failed"})
            stop.wait(1.0)


def push_outboxes(signals: SignalsService) -> set[str]:
    """The outboxes someone must push: SSF push streams, and clients with a back-channel logout URI."""
    streams, clients = signals.signals.receivers()
    names = {f"ssf:{c}" for c, stream in streams.items() if stream.method == PUSH}
    return names | {f"bcl:{c}" for c, client in clients.items() if client.backchannel_logout_uri}


class _NoCertificateReads:
    """The worker's `CertificateRecords`: it verifies no login, so it reads no certificate; a renewal's previous
    serial comes with the feed entry itself (wire/status_feed.py `p`)."""

    def find(self, issuer, serial):
        raise RuntimeError("the signals worker reads no certificate")

    def find_queued(self, pipeline, issuer, serial):
        raise RuntimeError("the signals worker reads no certificate")

    def previous(self, issuer, serial):
        return None


def run_from_command(config, client) -> int:
    """`python -m idp signals run`: build the IdP's services on `client` and work until SIGTERM or Ctrl-C."""
    import signal

    from idp.services import build_services
    from idp.signals.service import build_signals
    from observability.logs import use_json_logs

    use_json_logs()
    try:
        signals = build_signals(build_services(config, client, certificates=_NoCertificateReads()))
    except ValueError as exc:
        print(f"error (configuration): {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("signals worker running: status feeds → SSF streams and back-channel logout (Ctrl-C stops)", flush=True)
    try:
        run_worker(signals, stop)
    except KeyboardInterrupt:
        stop.set()
    return 0
