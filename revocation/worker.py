"""The background worker: applies events from the stream and republishes CRL shards that changed or age.

One loop, every step bounded: each round blocks at most `block_ms` for new events, applies at most `batch`
(EVENT_BATCH) as one batch, then publishes the CRL shards that are due. A round reads what is waiting, up to the
batch size, and never waits to fill a batch: a caught-up worker applies each event as it arrives, a worker behind
takes large batches, whose round trips are shared by more events. Run as many workers as you like; the consumer
group shares the work.
No single entry can fail a round: the stream dead-letters whatever it cannot apply (revocation/storage/stream.py),
so what reaches the retry below is Redis being unreachable, or a CRL publication failing.

Each round counts the entries it handled (`mykey_events_applied_total`, applied or refused) in process, and once a
minute the worker samples the stream's lag for the console's chart (observability/metrics.py, "History"): neither
adds a round trip to a round, bar the one sample a minute.

A worker may take one role only (`python -m revocation worker --only events|crl`): publishing a large shard takes
a while, and an events-only worker never makes an event wait behind it. Publication is safe from any number of
processes at once (a CRL built against a base that moved meanwhile is built again).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from revocation.services import Services

log = logging.getLogger(__name__)


def consumer_name() -> str:
    return f"worker-{socket.gethostname()}-{os.getpid()}"


ROLES = ("events", "crl")
CRL_POLL_SECONDS = 0.01  # a CRL-only worker looks for due shards this often (each shard is rate-bounded anyway)


def run_worker(services: Services, stop: threading.Event, batch: int | None = None, block_ms: int = 200,
               roles: tuple[str, ...] = ROLES) -> None:
    name = consumer_name()
    batch = batch or services.config.event_batch
    services.claim_layout()
    services.stream.ensure_group()
    while not stop.is_set():
        try:
            if "events" in roles:
                deliveries = services.stream.consume(name, services.applier, count=batch, block_ms=block_ms)
                services.count_handled(deliveries)
            services.stream_lag.sample(lambda: services.stream.health()["lag"])  # at most once a minute
            if "crl" in roles:
                services.crl.publish_due()
                if "events" not in roles:
                    stop.wait(CRL_POLL_SECONDS)
        except Exception:  # keep the worker alive through a Redis restart; the stream keeps what was not acked
            log.exception("worker round failed; retrying")
            stop.wait(1.0)

