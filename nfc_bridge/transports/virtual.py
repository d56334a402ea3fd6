"""The in-process transport: APDUs go straight to a `VirtualCard`."""

from __future__ import annotations

from pathlib import Path

from nfc_bridge.apdu import CardRemoved
from nfc_bridge.transports import BaseTransport
from nfc_bridge.virtual_card import VirtualCard


class VirtualTransport(BaseTransport):
    def __init__(self, card: VirtualCard):
        self.card = card

    @classmethod
    def open(cls, card_file: Path) -> VirtualTransport:
        return cls(VirtualCard.load(card_file))

    def transmit(self, command: bytes) -> bytes:
        if not self.card.present:
            raise CardRemoved("The card was taken away from the reader.")
        return self.card.transmit(command)
