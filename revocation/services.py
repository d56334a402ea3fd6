"""Wiring: one place that builds the revocation service's parts from its configuration, and the one way a request
handler reaches them (`current()`, after `create_app` has `install`ed them on the app)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from flask import Flask, current_app

from jpki.issuer import Issuer
from observability.metrics import Counter, SampledGauge
from operator_console.registry import OperatorRegistry
from revocation.config import RevocationConfig, load_issuers
from revocation.crl.publisher import CrlPublisher
from revocation.domain.applier import Applier
from revocation.ocsp.responder import OcspResponder
from revocation.storage.audit import AuditLog
from revocation.storage.keys import KeySpace
from revocation.storage.store import StatusStore, claim_layout
from revocation.storage.stream import Delivery, EventStream
from wire.redis_connect import connect_redis

EXTENSION = "revocation"  # the key in Flask's app.extensions
log = logging.getLogger(__name__)


@dataclass
class Services:
    config: RevocationConfig
    redis: redis.Redis
    issuers: dict[str, Issuer]
    store: StatusStore
    stream: EventStream
    applier: Applier
    ocsp: OcspResponder
    crl: CrlPublisher
    audit: AuditLog
    operators: OperatorRegistry
    ocsp_responses: Counter
    events_applied: Counter  # per stream entry handled: result applied | refused (dead-lettered)
    stream_lag: SampledGauge  # once a minute by each worker and by the console (observability/metrics.py)
    layout_claimed: bool = False

    def claim_layout(self) -> None:
        """Record the storage layout, or check it against the recorded one, once per process (storage/store.py
        `claim_layout`); StorageLayoutError when this process's bucket counts are not the deployment's."""
        if not self.layout_claimed:
            claim_layout(self.redis, self.store.keys)
            self.layout_claimed = True

    def count_handled(self, deliveries: list[Delivery]) -> None:
        """Count stream entries handled, by a worker's round or an API call that applied what was waiting, for
        `mykey_events_applied_total` (in process; the metrics flusher adds them to Redis)."""
        refused = sum(1 for delivery in deliveries if delivery.refused is not None)
        if refused:
            self.events_applied.inc(refused, result="refused")
        if len(deliveries) > refused:
            self.events_applied.inc(len(deliveries) - refused, result="applied")


def build_services(config: RevocationConfig, client: redis.Redis | None = None) -> Services:
    client = client or connect_redis(config.redis_url, config.redis_cluster)
    issuers = load_issuers(config)
    store = StatusStore(client, KeySpace(config.status_buckets, config.holder_buckets))
    ocsp = OcspResponder(store, issuers, config)
    crl = CrlPublisher(store, issuers, config)
    # No OCSP re-signing listener: the store's compare-and-set drops a changed certificate's cached response, and
    # the responder signs the next one when it is first asked for (revocation/ocsp/responder.py), once per change.
    applier = Applier(store, config.moved_abroad_revokes_auth)
    services = Services(
        config=config,
        redis=client,
        issuers=issuers,
        store=store,
        stream=EventStream(client),
        applier=applier,
        ocsp=ocsp,
        crl=crl,
        audit=AuditLog(client),
        operators=OperatorRegistry(client),
        ocsp_responses=Counter(client, "mykey_ocsp_responses_total",
                               "OCSP responses by certificate status (good, revoked, on_hold, not_issued) or error",
                               ("status",)),
        events_applied=Counter(client, "mykey_events_applied_total",
                               "Stream entries handled by the workers: applied, or refused (dead-lettered)",
                               ("result",)),
        stream_lag=SampledGauge(client, "mykey_event_stream_lag"),
    )
    try:
        services.claim_layout()  # refuses to start with bucket counts other than the deployment's
    except (redis.ConnectionError, redis.TimeoutError):
        # Redis is not there yet: the app checks before its first request, the worker before its first round,
        # and a command fails on its first Redis call anyway.
        log.warning("storage layout not checked: Redis is unreachable", extra={"code": "storage_layout_deferred"})
    return services


def install(app: Flask, services: Services) -> None:
    """Make `services` the ones this app's request handlers see through `current()`."""
    app.extensions[EXTENSION] = services


def current() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION]
