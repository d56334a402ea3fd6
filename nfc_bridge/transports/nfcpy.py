"""USB contactless readers driven directly by nfcpy: Sony RC-S380, PN533 and relatives, no pcscd.

`NfcpyTransport.open("usb")` opens the reader, waits a bounded time for an ISO-DEP card (Type 4B first: a My
Number Card is ISO 14443 Type B, docs/jpki-profile.md §1; Type 4A for phones and other cards), and then moves APDUs with
nfcpy's `Type4Tag.transceive`, which handles ISO 14443-4 block numbering, chaining and waiting-time
extensions and gives back the response data with SW1 SW2, errors included.

nfcpy logs every frame at DEBUG level, VERIFY's PIN among them; this module caps the `nfc` loggers at INFO and
itself never logs command or response data.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Iterator, Sequence

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt4

from nfc_bridge.apdu import (
    CardError,
    CardNotResponding,
    CardRemoved,
    MalformedResponse,
    NoCardPresent,
    ReaderNotFound,
)
from nfc_bridge.transports import BaseTransport

log = logging.getLogger(__name__)

DEFAULT_WAIT = 10.0  # seconds a person gets to put the card on the reader
POLL_INTERVAL = 0.2
# Type B first: that is the My Number Card. 106 kbit/s is the only rate both sides are sure to have.
DEFAULT_TARGETS = ("106B", "106A")

_KERNEL_HINT = (
    "On Linux the kernel NFC drivers (port100 for the Sony RC-S380, pn533_usb for PN533 readers) may be "
    "holding the device: unload them with `sudo modprobe -r port100 pn533_usb` (or blacklist them), and make "
    "sure a udev rule lets your user open it; `python -m nfc` diagnoses both."
)


class ReaderUnsupported(CardError):
    code = "reader_unsupported"


def cap_nfcpy_logging() -> None:
    """nfcpy logs frames in hex at DEBUG (nfc.clf, nfc.tag.tt4, the drivers): keep the whole tree at INFO."""
    nfc_log = logging.getLogger("nfc")
    if nfc_log.getEffectiveLevel() < logging.INFO:
        nfc_log.setLevel(logging.INFO)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if name.startswith("nfc.") and isinstance(child, logging.Logger) and 0 < child.level < logging.INFO:
            child.setLevel(logging.INFO)


def open_frontend(path: str) -> nfc.ContactlessFrontend:
    """The reader at nfcpy `path` (`usb`, `usb:054c:06c1`, `usb:001:004`, `tty:USB0:pn532`)."""
    try:
        return nfc.ContactlessFrontend(path)
    except OSError as error:  # nfcpy raises IOError with ENODEV, EACCES or EBUSY; libusb missing: OSError
        if error.errno == errno.EACCES:
            reason = f"Permission denied opening the NFC reader at {path!r}."
        elif error.errno == errno.EBUSY:
            reason = f"The NFC reader at {path!r} is busy: a kernel driver or another program holds it."
        elif error.errno == errno.ENODEV:
            reason = f"No NFC reader found at {path!r}; check that it is plugged in."
        else:
            reason = f"The NFC reader at {path!r} could not be opened ({error})."
        raise ReaderNotFound(f"{reason} {_KERNEL_HINT}") from error
    except ValueError as error:  # an empty or malformed path
        message = f"{path!r} is not an nfcpy reader path such as 'usb' or 'usb:054c:06c1'."
        raise ReaderNotFound(message) from error


def _is_iso_dep(target: nfc.clf.RemoteTarget) -> bool:
    """Whether the target announced ISO 14443-4: Type A in SAK b6, Type B in the ATQB's
    Protocol_Type b1 (ISO 14443-3). nfcpy would activate a Type B card that did not, so look ourselves."""
    if target.brty.endswith("B"):
        return bool(target.sensb_res and len(target.sensb_res) >= 12 and target.sensb_res[10] & 0x01)
    return bool(target.sel_res and target.sel_res[0] & 0x20)


def wait_for_card(clf: nfc.ContactlessFrontend, wait: float = DEFAULT_WAIT,
                  targets: Sequence[str] = DEFAULT_TARGETS,
                  interval: float = POLL_INTERVAL) -> nfc.tag.tt4.Type4Tag:
    """Poll until an ISO-DEP card is activated, at most `wait` seconds. Raises NoCardPresent."""
    deadline = time.monotonic() + wait
    seen_other = False
    while True:
        try:
            target = clf.sense(*(nfc.clf.RemoteTarget(brty) for brty in targets), iterations=1)
        except nfc.clf.UnsupportedTargetError as error:
            message = (f"The reader {clf} cannot poll for {', '.join(targets)} cards; a My Number Card "
                       "needs Type B (106B), e.g. a Sony RC-S380 or PN533.")
            raise ReaderUnsupported(message) from error
        except OSError as error:
            raise ReaderNotFound(f"The NFC reader {clf} stopped working ({error}). {_KERNEL_HINT}") from error
        if target is not None and _is_iso_dep(target):
            tag = _activate(clf, target)
            if tag is not None:
                return tag
        elif target is not None:
            seen_other = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    if seen_other:
        raise NoCardPresent("The card on the reader is not an ISO 14443-4 card, so not a My Number Card.")
    raise NoCardPresent(f"No card was placed on the reader within {wait:g} seconds.")


def _activate(clf: nfc.ContactlessFrontend, target: nfc.clf.RemoteTarget) -> nfc.tag.tt4.Type4Tag | None:
    """nfcpy's ATTRIB/RATS; None when the card left or answered nonsense (the caller polls again)."""
    try:
        tag = nfc.tag.activate(clf, target)  # catches CommunicationError itself and returns None
    except OSError as error:
        raise ReaderNotFound(f"The NFC reader {clf} stopped working ({error}). {_KERNEL_HINT}") from error
    except (IndexError, TypeError):
        # nfcpy 1.0.4 indexes ATS bytes without checking their length; a truncated answer lands here.
        log.info("card activation failed on a malformed answer; polling again")
        return None
    return tag if isinstance(tag, nfc.tag.tt4.Type4Tag) else None


class NfcpyTransport(BaseTransport):
    """One activated ISO-DEP card. `tag` is an nfcpy Type4Tag; `frontend`, when given, is closed by close().

    Transmit and `exclusive()` share one lock, so no other thread's APDU can fall between VERIFY and SIGN.
    """

    def __init__(self, tag: nfc.tag.tt4.Type4Tag, frontend: nfc.ContactlessFrontend | None = None):
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            raise TypeError(f"expected an activated nfcpy Type4Tag, got {type(tag).__name__}")
        cap_nfcpy_logging()
        self.tag: nfc.tag.tt4.Type4Tag | None = tag
        self._frontend = frontend
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str = "usb", wait: float = DEFAULT_WAIT,
             targets: Sequence[str] = DEFAULT_TARGETS) -> NfcpyTransport:
        """Open the reader at `path` and wait up to `wait` seconds for a card."""
        cap_nfcpy_logging()
        clf = open_frontend(path)
        try:
            tag = wait_for_card(clf, wait, targets)
        except BaseException:
            clf.close()
            raise
        log.info("card found on %s: %s", clf, type(tag).__name__)
        return cls(tag, frontend=clf)

    # --- Transport ------------------------------------------------------------------------------------

    def transmit(self, command: bytes) -> bytes:
        with self._lock:
            if self.tag is None:
                raise CardRemoved("The connection to the card is closed.")
            try:
                response = self.tag.transceive(bytes(command))
            except nfc.tag.TagCommandError as error:
                raise self._link_error(error.errno) from error
            except nfc.clf.CommunicationError as error:
                # nfcpy 1.0.4 does not wrap errors during S(WTX) (tt4.IsoDepInitiator.exchange).
                raise self._link_error(nfc.tag.TIMEOUT_ERROR) from error
            except OSError as error:
                message = f"The NFC reader stopped working ({error}); was it unplugged?"
                raise ReaderNotFound(message) from error
        if response is None or len(response) < 2:
            raise MalformedResponse("The card's answer was too short to hold a status word.")
        return bytes(response)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            yield

    def close(self) -> None:
        with self._lock:
            self.tag = None
            frontend, self._frontend = self._frontend, None
        if frontend is not None:
            frontend.close()  # switches the RF field off: the card loses any verified PIN

    # --- helpers --------------------------------------------------------------------------------------

    def is_card_present(self) -> bool:
        """Presence check by R(NAK) (ISO 14443-4 §7.5): a card in the field answers with R(ACK)."""
        with self._lock:
            if self.tag is None:
                return False
            try:
                return bool(self.tag.is_present)
            except OSError:
                return False

    def _link_error(self, reason: int) -> CardError:
        """The error for a failed ISO-DEP exchange; a presence check tells a pulled card from a stuck one."""
        if not self.is_card_present():
            return CardRemoved("The card was taken away from the reader; place it on the reader and hold it "
                               "still until the operation finishes.")
        if reason == nfc.tag.PROTOCOL_ERROR:
            return CardNotResponding("The card broke the ISO 14443-4 protocol; take it off the reader and "
                                     "try again.")
        if reason == nfc.tag.RECEIVE_ERROR:
            return CardNotResponding("The radio link to the card kept failing; hold the card flat on the "
                                     "reader and try again.")
        return CardNotResponding("The card did not answer in time; take it off the reader and try again.")
