"""How bytes reach a card: one small interface, three implementations (nfcpy, PC/SC, virtual).

A transport moves one command APDU to the card and returns the raw response (data + SW1 SW2). It knows
nothing about JPKI. Errors on the way (card pulled away, reader gone, no answer) are raised as
`nfc_bridge.apdu.CardError` subclasses so that callers handle one family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    def transmit(self, command: bytes) -> bytes:
        """Send one short command APDU; return the response bytes including SW1 SW2."""
        ...

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Hold the card for a sequence that must not be interleaved (verify PIN + sign)."""
        ...

    def close(self) -> None: ...


class BaseTransport:
    """Defaults for transports that have no notion of exclusive access or nothing to release."""

    def transmit(self, command: bytes) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
