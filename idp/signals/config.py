"""The signals settings, read from the environment here (docs/configuration.md lists them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

SET_ALGS = ("RS256", "ES256")


@dataclass(frozen=True)
class SignalsConfig:
    # ES256: a signature per SET per receiver is the worker's main cost, and ES256 costs about a third of RS256
    # (bench/report.md, "Signals": 1,000 SETs/s on 2 cores, p99 0.3 s with ES256, 0.4-1.5 s with RS256). RS256 for
    # receivers whose JOSE library verifies nothing else.
    set_alg: str = "ES256"
    push_timeout: float = 5.0  # seconds for one push, connect to answer
    push_max_attempts: int = 24  # tries of one token before it is dead-lettered (~64 minutes with the backoff)
    push_backoff_first: float = 1.0  # seconds before the second try; doubles each time
    push_backoff_max: float = 300.0  # the backoff's ceiling
    outbox_maxlen: int = 100_000  # tokens kept per receiver, approximately: the oldest go first past that
    poll_wait_max: float = 10.0  # seconds a poll without returnImmediately may wait for a token

    @classmethod
    def from_env(cls, environ=os.environ) -> SignalsConfig:
        def number(name: str, default, kind=float):
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, not {raw!r}.") from None
            if value <= 0:
                raise ValueError(f"{name} must be greater than 0.")
            return value

        alg = environ.get("SIGNALS_SET_ALG", cls.set_alg)
        if alg not in SET_ALGS:
            raise ValueError(f"SIGNALS_SET_ALG must be one of {', '.join(SET_ALGS)}.")
        return cls(set_alg=alg,
                   push_timeout=number("SIGNALS_PUSH_TIMEOUT_SECONDS", cls.push_timeout),
                   push_max_attempts=number("SIGNALS_PUSH_MAX_ATTEMPTS", cls.push_max_attempts, int),
                   push_backoff_first=number("SIGNALS_PUSH_BACKOFF_SECONDS", cls.push_backoff_first),
                   push_backoff_max=number("SIGNALS_PUSH_BACKOFF_MAX_SECONDS", cls.push_backoff_max),
                   outbox_maxlen=number("SIGNALS_OUTBOX_MAXLEN", cls.outbox_maxlen, int),
                   poll_wait_max=number("SIGNALS_POLL_WAIT_MAX_SECONDS", cls.poll_wait_max))
