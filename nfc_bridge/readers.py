"""Open a transport by the reader name the CLI takes: `virtual`, `usb` (nfcpy) or `pcsc` (pyscard)."""

from __future__ import annotations

import os
from pathlib import Path

from nfc_bridge.apdu import CardError
from nfc_bridge.transports import Transport

READERS = ("virtual", "usb", "pcsc")
DEFAULT_CARD = Path(os.environ.get("MYKEY_VAR", "var")) / "cards" / "demo.json"


class NoSuchCardFile(CardError):
    code = "card_file_missing"


def open_reader(reader: str, card: Path | None = None, device: str | None = None) -> Transport:
    """A connected transport. `card` is the virtual card's file; `device` an nfcpy path or PC/SC reader name."""
    if reader == "virtual":
        from nfc_bridge.transports.virtual import VirtualTransport

        path = Path(card or DEFAULT_CARD)
        if not path.exists():
            raise NoSuchCardFile(f"There is no virtual card at {path}; make one with `card new --out {path}`.")
        return VirtualTransport.open(path)
    if reader == "usb":
        from nfc_bridge.transports.nfcpy import NfcpyTransport

        return NfcpyTransport.open(device or "usb")
    if reader == "pcsc":
        from nfc_bridge.transports.pcsc import PcscTransport

        return PcscTransport(device)
    raise ValueError(f"unknown reader {reader!r}; use one of {', '.join(READERS)}")
