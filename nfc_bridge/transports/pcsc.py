"""PC/SC readers through pcscd and pyscard: contact readers, and contactless ones that speak PC/SC part 3.

This uses pyscard's low-level `smartcard.scard` module rather than its object layer: the transport owns one
context and one card handle, needs that handle for SCardBeginTransaction anyway, and maps every PC/SC return
code to the `CardError` family itself.

Every PC/SC call runs on the transport's own thread and the caller waits at most `timeout` seconds for it:
pcsc-lite puts no time limit on SCardTransmit, nor on SCardBeginTransaction, which waits for as long as
another application holds the card. Nothing here logs APDUs: a PIN travels in VERIFY.

A transport is used by one thread at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from smartcard import scard

from nfc_bridge.apdu import (
    CardError,
    CardNotResponding,
    CardRemoved,
    CommandAPDU,
    MalformedResponse,
    NoCardPresent,
    ReaderNotFound,
)
from nfc_bridge.transports import BaseTransport

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # an RSA-2048 signature takes a real card one to two seconds
_REMOVAL_SETTLE = 1.0  # pcscd polls serial and virtual readers every 0.4 s; give it time to notice
_MAX_GET_RESPONSE = 64  # 61xx chains longer than 64 × 256 bytes are a broken card, not a certificate


class CardBusy(CardError):
    code = "card_busy"


_NO_SERVICE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED}
_READER_GONE = {scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_UNKNOWN_READER,
                scard.SCARD_E_READER_UNAVAILABLE}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD}
# A failed exchange with one of these may be a card pulled away before pcscd noticed: look before judging.
_AMBIGUOUS = {scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_F_COMM_ERROR, scard.SCARD_W_UNRESPONSIVE_CARD,
              scard.SCARD_W_UNPOWERED_CARD}


def _describe(rv: int) -> str:
    return f"{scard.SCardGetErrorMessage(rv).rstrip('.')} (0x{rv & 0xFFFFFFFF:08X})"


def _error(rv: int, connected: bool) -> CardError:
    """The CardError for a PC/SC return code; `connected` tells a pulled card from a missing one."""
    if rv in _NO_SERVICE:
        return ReaderNotFound("The PC/SC service (pcscd) is not running, so no card reader can be used.")
    if rv in _READER_GONE:
        return ReaderNotFound("The card reader is not connected.")
    if rv in _CARD_GONE:
        if connected:
            return CardRemoved("The card was taken away from the reader.")
        return NoCardPresent("There is no card on the reader.")
    if rv == scard.SCARD_W_RESET_CARD:
        return CardRemoved("Another application reset the card; start again.")
    if rv == scard.SCARD_E_SHARING_VIOLATION:
        return CardBusy("Another application is using the card; try again when it has finished.")
    return CardNotResponding(f"The card reader failed: {_describe(rv)}.")


class _PcscThread:
    """One daemon thread that makes the PC/SC calls, so that the caller can stop waiting for one."""

    def __init__(self):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pcsc", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        done: Future = Future()
        self._calls.put((done, fn, args))
        return done

    def call(self, timeout: float, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on the thread; TimeoutError when it has not returned within `timeout` seconds."""
        return self.submit(fn, *args).result(timeout)

    def stop(self) -> None:
        self._calls.put(None)  # runs after whatever is queued, so a late disconnect still happens

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            done, fn, args = item
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)


class PcscTransport(BaseTransport):
    """The card on a PC/SC reader: the first reader with a card, or the first whose name contains
    `reader_name` and holds a card. Connects at once; raises ReaderNotFound or NoCardPresent."""

    def __init__(self, reader_name: str | None = None, *, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.reader: str | None = None
        self._pcsc = _PcscThread()
        self._context: int | None = None
        self._card: int | None = None
        self._protocol = scard.SCARD_PROTOCOL_T1
        self._in_transaction = False
        try:
            rv, self._context = self._call(scard.SCardEstablishContext, scard.SCARD_SCOPE_USER)
            if rv != scard.SCARD_S_SUCCESS:
                self._context = None
                raise _error(rv, connected=False)
            self.reader = self._pick_reader(reader_name)
            rv, self._card, self._protocol = self._call(
                scard.SCardConnect, self._context, self.reader, scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
            if rv != scard.SCARD_S_SUCCESS:
                self._card = None
                raise _error(rv, connected=False)
            log.debug("connected to the card on %s", self.reader)
        except BaseException:
            self.close()
            raise

    # --- Transport ------------------------------------------------------------------------------------

    def transmit(self, command: bytes) -> bytes:
        """Response data + SW1 SW2, with T=0's 6Cxx (wrong Le) and 61xx (more data) handled here."""
        response = self._exchange(command)
        if response[-2] == 0x6C:  # T=0 (ISO 7816-3): wrong Le; send the same command again with Le = SW2
            retry = _with_le(command, response[-1] or 256)
            if retry is not None:
                response = self._exchange(retry)
        data = bytearray()
        for _ in range(_MAX_GET_RESPONSE):
            if response[-2] != 0x61:
                return bytes(data) + response
            data += response[:-2]  # T=0 (ISO 7816-3): fetch the rest with GET RESPONSE, Le = SW2
            response = self._exchange(bytes((0x00, 0xC0, 0x00, 0x00, response[-1])))
        raise MalformedResponse("The card kept announcing more response data.")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """A PC/SC transaction: no other application reaches the card until the block ends."""
        if self._in_transaction:  # PC/SC transactions do not nest; the outer one already holds the card
            yield
            return
        self._begin_transaction()
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False
            self._end_transaction()

    def close(self) -> None:
        """Disconnect with a reset, so that a verified PIN does not outlive this session; release pcscd."""
        card, context = self._card, self._context
        self._card = self._context = None
        with contextlib.suppress(CardNotResponding):
            if card is not None:
                self._call(scard.SCardDisconnect, card, scard.SCARD_RESET_CARD)
            if context is not None:
                self._call(scard.SCardReleaseContext, context)
        self._pcsc.stop()

    # --- helpers --------------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._pcsc.call(self.timeout, fn, *args)
        except TimeoutError:
            raise CardNotResponding(f"The card did not answer within {self.timeout:g} seconds, or another "
                                    "application is holding it.") from None

    def _pick_reader(self, reader_name: str | None) -> str:
        rv, names = self._call(scard.SCardListReaders, self._context, [])
        if rv == scard.SCARD_E_NO_READERS_AVAILABLE or (rv == scard.SCARD_S_SUCCESS and not names):
            raise ReaderNotFound("No card reader is connected.")
        if rv != scard.SCARD_S_SUCCESS:
            raise _error(rv, connected=False)
        if reader_name:
            names = [n for n in names if reader_name.casefold() in n.casefold()]
            if not names:
                raise ReaderNotFound(f"No connected card reader's name contains {reader_name!r}.")
        rv, states = self._call(scard.SCardGetStatusChange, self._context, 0,
                                [(name, scard.SCARD_STATE_UNAWARE) for name in names])
        if rv != scard.SCARD_S_SUCCESS:
            raise _error(rv, connected=False)
        for name, state, _atr in states:
            if state & scard.SCARD_STATE_PRESENT and not state & scard.SCARD_STATE_MUTE:
                return name
        raise NoCardPresent("There is no card on the reader." if len(names) == 1
                            else "There is no card on any of the readers.")

    def _exchange(self, command: bytes) -> bytes:
        if self._card is None:
            raise CardRemoved("The connection to the card is closed.")
        pci = scard.SCARD_PCI_T0 if self._protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        rv, response = self._call(scard.SCardTransmit, self._card, pci, list(command))
        if rv != scard.SCARD_S_SUCCESS:
            raise self._session_error(rv)
        if len(response) < 2:
            raise MalformedResponse("The card's answer was too short to hold a status word.")
        return bytes(response)

    def _begin_transaction(self) -> None:
        if self._card is None:
            raise CardRemoved("The connection to the card is closed.")
        pending = self._pcsc.submit(scard.SCardBeginTransaction, self._card)
        try:
            rv = pending.result(self.timeout)
        except TimeoutError:
            # pcscd will grant the transaction later; end it then, so that it does not lock the card.
            self._pcsc.submit(scard.SCardEndTransaction, self._card, scard.SCARD_LEAVE_CARD)
            raise CardBusy("Another application is holding the card; try again when it is done.") from None
        if rv != scard.SCARD_S_SUCCESS:
            raise self._session_error(rv)

    def _end_transaction(self) -> None:
        # Never raises: the block's own outcome (a signature, or the error that ended it) is what matters.
        if self._card is None:
            return
        try:
            rv = self._call(scard.SCardEndTransaction, self._card, scard.SCARD_LEAVE_CARD)
        except CardNotResponding:
            log.warning("ending the PC/SC transaction on %s timed out", self.reader)
            return
        if rv != scard.SCARD_S_SUCCESS:
            log.info("ending the PC/SC transaction on %s failed: %s", self.reader, _describe(rv))

    def _session_error(self, rv: int) -> CardError:
        if rv in _AMBIGUOUS and self._card_left():
            return CardRemoved("The card was taken away from the reader.")
        return _error(rv, connected=True)

    def _card_left(self) -> bool:
        """Whether the reader has no card now, or reports it gone within a moment."""
        deadline = time.monotonic() + _REMOVAL_SETTLE
        known, wait_ms = scard.SCARD_STATE_UNAWARE, 0
        try:
            while wait_ms >= 0:
                rv, states = self._call(scard.SCardGetStatusChange, self._context, wait_ms,
                                        [(self.reader, known)])
                if rv == scard.SCARD_E_TIMEOUT:
                    return False
                if rv != scard.SCARD_S_SUCCESS:
                    return rv in _READER_GONE
                known = states[0][1] & ~scard.SCARD_STATE_CHANGED
                if not known & scard.SCARD_STATE_PRESENT:
                    return True
                wait_ms = int(1000 * (deadline - time.monotonic()))
        except CardNotResponding:
            pass
        return False


def _with_le(command: bytes, le: int) -> bytes | None:
    """The same command with another Le, or None when it is not a short APDU we can rewrite."""
    try:
        apdu = CommandAPDU.from_bytes(command)
    except ValueError:
        return None
    return dataclasses.replace(apdu, le=le).to_bytes()
