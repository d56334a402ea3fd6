"""Put a software card into vsmartcard's virtual PC/SC reader (vpcd), so pcscd and every PC/SC program see it.

vpcd is a pcscd reader driver (Debian package `vsmartcard-vpcd`). For each of its slots it listens on a TCP
port — `DEVICENAME /dev/null:<port>` in its reader.conf; slot n uses port + n; the default is 35963 — and
whoever connects is the card in that slot. Connecting inserts the card; closing the socket pulls it out.

Wire format (vsmartcard's vpcd.c): every message, either way, is a 2-byte big-endian length and then that
many bytes. From vpcd, a 1-byte message is a control code (power off, power on, reset, send the ATR); anything
longer is a command APDU. The card answers the ATR request and every APDU; power and reset get no answer.

Nothing here logs APDUs: a PIN travels in VERIFY.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Protocol

log = logging.getLogger(__name__)

VPCD_DEFAULT_PORT = 35963

_CTRL_POWER_OFF = 0
_CTRL_POWER_ON = 1
_CTRL_RESET = 2
_CTRL_ATR = 4

# What the card says when its own code fails: ISO 7816-4 "no precise diagnosis". vpcd would otherwise
# drop the connection, which pcscd reports as a removed card.
_SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"


class Card(Protocol):
    ATR: bytes

    def transmit(self, command: bytes) -> bytes: ...

    def reset(self) -> None: ...


class VpcdLink:
    """`with VpcdLink(card, port=p):` — the card sits in vpcd's reader until the block ends.

    A daemon thread connects to vpcd and answers it. When vpcd drops the connection (pcscd restarting) the
    thread connects again; it gives up after `connect_attempts` failed attempts in a row, `retry_interval`
    seconds apart, so nothing waits forever for a pcscd that is not coming back.
    """

    def __init__(self, card: Card, host: str = "127.0.0.1", port: int = VPCD_DEFAULT_PORT, *,
                 connect_attempts: int = 50, retry_interval: float = 0.1):
        self.card = card
        self.address = (host, port)
        self.connect_attempts = connect_attempts
        self.retry_interval = retry_interval
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=f"vpcd-card-{port}", daemon=True)

    def start(self) -> VpcdLink:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Pull the card out: close the connection and end the thread."""
        self._stopping.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            # Wakes the thread's blocking recv at once; closing is left to the thread that owns the socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> VpcdLink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set() and failures < self.connect_attempts:
            try:
                sock = socket.create_connection(self.address, timeout=1.0)
            except OSError:
                failures += 1
                self._stopping.wait(self.retry_interval)
                continue
            with self._lock:
                self._sock = sock
            try:
                if self._stopping.is_set():  # stop() ran while we were connecting and saw no socket
                    break
                sock.settimeout(None)  # vpcd polls at its own pace; stop() unblocks us by shutdown
                if self._serve(sock):
                    failures = 0  # a real session; only connections that never worked count against us
                else:
                    failures += 1
            except OSError as exc:
                log.info("vpcd connection on port %d lost: %s", self.address[1], exc.strerror or exc)
            finally:
                with self._lock:
                    self._sock = None
                sock.close()
        if not self._stopping.is_set():
            log.warning("gave up connecting the virtual card to vpcd at %s:%d", *self.address)

    def _serve(self, sock: socket.socket) -> bool:
        """Answer vpcd until it closes the connection. True when at least one message was exchanged."""
        exchanged = False
        while True:
            header = _recv_exactly(sock, 2)
            if header is None:
                return exchanged
            message = _recv_exactly(sock, int.from_bytes(header, "big"))
            if message is None:
                return exchanged
            exchanged = True
            reply = self._answer(message)
            if reply is not None:
                sock.sendall(len(reply).to_bytes(2, "big") + reply)

    def _answer(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            code = message[0]
            if code == _CTRL_ATR:
                return bytes(self.card.ATR)
            if code in (_CTRL_POWER_OFF, _CTRL_POWER_ON, _CTRL_RESET):
                self.card.reset()  # a power cycle: nothing selected, no PIN verified
            return None
        try:
            return bytes(self.card.transmit(message))
        except Exception as exc:  # the card's bug must not look like a pulled card
            log.error("virtual card failed on a command (%s); answering 6F00", type(exc).__name__)
            return _SW_NO_PRECISE_DIAGNOSIS


def _recv_exactly(sock: socket.socket, length: int) -> bytes | None:
    """`length` bytes, or None when the peer closed the connection first."""
    data = bytearray()
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
