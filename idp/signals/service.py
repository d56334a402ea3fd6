"""The signals parts of one IdP process, built once from its services: streams, outboxes, the cause mapping."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from idp.signals.causes import Signals
from idp.signals.config import SignalsConfig
from idp.signals.outbox import Outboxes
from idp.signals.streams import StreamStore

EXTENSION = "signals"


@dataclass
class SignalsService:
    services: object  # IdpServices
    config: SignalsConfig
    streams: StreamStore
    outboxes: Outboxes
    signals: Signals


def build_signals(services, config: SignalsConfig | None = None) -> SignalsService:
    config = config or SignalsConfig.from_env()
    streams = StreamStore(services.redis, services.config.development)
    outboxes = Outboxes(services.redis, config.outbox_maxlen)
    return SignalsService(services, config, streams, outboxes, Signals(services, streams, outboxes, config))


def current_signals() -> SignalsService:
    return current_app.extensions[EXTENSION]
