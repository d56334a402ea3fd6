"""The background worker: applies events from the stream and republishes CRL shards that changed or age.

One loop, every step bounded: each round blocks at most `block_ms` for new events, applies at most `batch`,
then publishes the CRL shards that are due. Run as many workers as you like; the consumer group shares the work.
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


def run_worker(services: Services, stop: threading.Event, batch: int = 100, block_ms: int = 200) -> None:
    name = consumer_name()
    services.stream.ensure_group()
    while not stop.is_set():
        try:
            services.stream.consume(name, services.applier, count=batch, block_ms=block_ms)
            services.crl.publish_due()
        except Exception:  # keep the worker alive through a Redis restart; the stream keeps what was not acked
            log.exception("worker round failed; retrying")
            stop.wait(1.0)
