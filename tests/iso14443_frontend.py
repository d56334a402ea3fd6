"""An nfcpy reader with a contactless card in its field, in-process: no hardware, no radio.

`SimulatedReader` is an nfcpy *device driver* (the object `nfc.clf.ContactlessFrontend.device` holds, see
`nfc/clf/device.py`). nfcpy's own frontend and tag code run unchanged on top of it:

    ContactlessFrontend.sense()    -> device.mute(), device.sense_ttb() / device.sense_tta()
    nfc.tag.activate()             -> Type4BTag sends ATTRIB (Type4ATag sends RATS) through clf.exchange()
    ContactlessFrontend.exchange() -> device.send_cmd_recv_rsp(target, frame, timeout)

Frames are what nfcpy hands a real driver: PCB + INF, without the CRC that reader hardware adds.

`Picc` is the card's contactless side: ISO/IEC 14443-3 activation (ATQB/ATTRIB for Type B, ATS for Type A)
and the ISO/IEC 14443-4 half-duplex block protocol (I-blocks with block numbers, chaining both ways, R(ACK),
R(NAK), S(WTX), S(DESELECT)) in front of any object with `transmit(apdu: bytes) -> bytes`.

A PCD (nfcpy) that breaks a rule makes the fake raise `ProtocolViolation`, so a test fails loudly instead of
timing out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nfc
import nfc.clf
import nfc.clf.device

# ISO 14443-3 (ATQB, ATTRIB) / ISO 14443-4 §5 (RATS, ATS): frame size by FSCI/FSDI; 9-15 are RFU.
FRAME_SIZES = (16, 24, 32, 40, 48, 64, 96, 128, 256)
CRC_LENGTH = 2  # not in the frames nfcpy sees, but counted in FSC/FSD (ISO 14443-4 §7.1)
PUPI = bytes.fromhex("4A504B49")
UID = bytes.fromhex("08C0FFEE")  # single-size UID; first byte 08h marks a random one (ISO 14443-3)


class ProtocolViolation(AssertionError):
    """nfcpy sent something an ISO 14443 card must not be sent."""


@dataclass
class PiccSettings:
    fsci: int = 8  # the card's own frame size (FSC), 8 = 256 bytes
    fwi: int = 7  # frame waiting time index, FWT = 2^FWI × 4096/fc (≈ 38 ms for 7)
    wtx_per_command: int = 0  # how many S(WTX) requests precede each response
    response_frame_size: int | None = None  # chain responses at this frame size even when FSD is larger
    iso_dep: bool = True  # False: a card that announces no ISO 14443-4 (a memory card)


class Picc:
    """A proximity card's ISO 14443 layer around an APDU-level `card`."""

    def __init__(self, card, technology: str = "B", settings: PiccSettings | None = None):
        if technology not in ("A", "B"):
            raise ValueError("technology must be 'A' or 'B'")
        self.card = card
        self.technology = technology
        self.settings = settings or PiccSettings()
        self.power_off()

    @property
    def fsc(self) -> int:
        return FRAME_SIZES[self.settings.fsci]

    def power_off(self) -> None:
        """RF field gone: the card loses all state, its power-up state is IDLE (ISO 14443-3)."""
        self.state = "idle"
        self.fsd = 0
        self.block_number = 1  # ISO 14443-4 §7.5 rule 9: the PICC starts at 1
        self.last_block: bytes | None = None
        self.command = bytearray()  # chained command received so far
        self.outgoing: list[bytes] = []  # response chunks not yet sent
        self.wtx_left = 0
        if hasattr(self.card, "reset"):
            self.card.reset()

    # --- ISO 14443-3 activation ---------------------------------------------------------------------

    def answer_sensb(self) -> bytes | None:
        """ATQB (ISO 14443-3 §7.9): 50h, PUPI, application data, protocol info."""
        if self.technology != "B" or self.state not in ("idle", "ready"):
            return None
        self.state = "ready"
        protocol_info = bytes((
            0x00,  # 106 kbit/s only
            self.settings.fsci << 4 | int(self.settings.iso_dep),  # Max_Frame_Size | Protocol_Type b1
            self.settings.fwi << 4,  # FWI | ADC 00 | FO 00 (no NAD, no CID)
        ))
        return b"\x50" + PUPI + bytes(4) + protocol_info

    def answer_sens(self) -> tuple[bytes, bytes, bytes] | None:
        """SENS_RES, NFCID1 and SEL_RES (SAK) after anticollision (ISO 14443-3); SAK b6 = ISO 14443-4."""
        if self.technology != "A" or self.state not in ("idle", "ready"):
            return None
        self.state = "ready"
        return bytes.fromhex("0400"), UID, b"\x20" if self.settings.iso_dep else b"\x00"

    def _attrib(self, frame: bytes) -> bytes | None:
        # ISO 14443-3 §7.10: 1Dh, PUPI, Param 1..4; answer MBLI|CID (§7.11).
        if len(frame) < 9 or frame[1:5] != PUPI:
            return None  # addressed to another card
        fsdi = frame[6] & 0x0F
        if fsdi > 8 or frame[7] & 0x0F != 0x1 or frame[8] & 0x0F != 0:
            raise ProtocolViolation(f"ATTRIB parameters {frame[5:9].hex()} not for an ISO 14443-4 card")
        return self._activated(FRAME_SIZES[fsdi], b"\x00")

    def _rats(self, frame: bytes) -> bytes:
        # ISO 14443-4 §5.1: E0h, FSDI|CID. §5.2: ATS = TL T0 TA TB TC (TB: FWI|SFGI, TC: no NAD, no CID).
        fsdi = frame[1] >> 4
        if fsdi > 8 or frame[1] & 0x0F != 0:
            raise ProtocolViolation(f"RATS parameter {frame[1]:02X}h unsupported")
        ats = bytes((0x70 | self.settings.fsci, 0x00, self.settings.fwi << 4, 0x00))
        return self._activated(FRAME_SIZES[fsdi], bytes((len(ats) + 1,)) + ats)

    def _activated(self, fsd: int, answer: bytes) -> bytes:
        self.fsd, self.state, self.block_number = fsd, "active", 1
        return answer

    # --- ISO 14443-4 block protocol ----------------------------------------------------------------

    def answer(self, frame: bytes) -> bytes | None:
        """The card's answer to one frame, or None when a card would stay silent."""
        frame = bytes(frame)
        if self.state == "ready" and self.technology == "B" and frame[:1] == b"\x1D":
            return self._attrib(frame)
        if self.state == "ready" and self.technology == "A" and frame[:1] == b"\xE0":
            return self._rats(frame)
        if self.state != "active":
            return None  # HALT or not activated: silent (ISO 14443-3 state machines)
        if len(frame) + CRC_LENGTH > self.fsc:
            raise ProtocolViolation(f"a {len(frame)}-byte frame exceeds FSC {self.fsc} (ISO 14443-4 §7.1)")
        pcb = frame[0]
        if pcb & 0x08:  # b4: CID follows; we announced no CID support
            raise ProtocolViolation("CID sent to a card without CID support (ISO 14443-4 §7.1)")
        if pcb & 0xE2 == 0x02:
            return self._i_block(pcb, frame[1:])
        if pcb & 0xE6 == 0xA2:
            return self._r_block(pcb)
        if pcb & 0xC7 == 0xC2:
            return self._s_block(pcb, frame[1:])
        raise ProtocolViolation(f"PCB {pcb:02X}h is no I-, R- or S-block (ISO 14443-4 §7.1)")

    def _send(self, block: bytes) -> bytes:
        if len(block) + CRC_LENGTH > self.fsd:
            raise AssertionError("the fake card built a frame longer than FSD")  # our bug, not nfcpy's
        self.last_block = block
        return block

    def _i_block(self, pcb: int, inf: bytes) -> bytes:
        if self.outgoing:
            raise ProtocolViolation("I-block while the card is still chaining its answer (ISO 14443-4 §7.5)")
        if pcb & 0x01 == self.block_number:
            raise ProtocolViolation("I-block with the card's own block number: no toggle (§7.5)")
        self.block_number ^= 1  # rule 10
        self.command += inf
        if pcb & 0x10:  # chaining: acknowledge and wait for the rest (rule B)
            return self._send(bytes((0xA2 | self.block_number,)))
        command, self.command = bytes(self.command), bytearray()
        self.outgoing = self._chunks(self.card.transmit(command))
        self.wtx_left = self.settings.wtx_per_command
        if self.wtx_left:
            return self._send(b"\xF2\x01")  # S(WTX) request, WTXM 1 (§7.3)
        return self._next_chunk()

    def _r_block(self, pcb: int) -> bytes:
        number, nak = pcb & 0x01, bool(pcb & 0x10)
        if number == self.block_number:
            return self._send(self.last_block or bytes((0xA2 | self.block_number,)))  # rule 11: re-send
        if nak:
            return self._send(bytes((0xA2 | self.block_number,)))  # rule 12: R(NAK) of another number
        if not self.outgoing:
            raise ProtocolViolation("R(ACK) of a new block number while the card is not chaining")
        self.block_number ^= 1  # rule 13: the PCD acknowledged our chained block; send the next one
        return self._next_chunk()

    def _s_block(self, pcb: int, inf: bytes) -> bytes:
        if pcb & 0x30 == 0x00:  # S(DESELECT): answer, then HALT (ISO 14443-4 §8)
            self.state = "halt"
            return self._send(b"\xC2")
        if pcb & 0x30 == 0x30 and self.wtx_left:  # S(WTX) response (§7.3): it must echo our WTXM
            if inf[:1] != b"\x01":
                raise ProtocolViolation(f"S(WTX) response with WTXM {inf.hex()} instead of 01")
            self.wtx_left -= 1
            return self._send(b"\xF2\x01") if self.wtx_left else self._next_chunk()
        raise ProtocolViolation(f"unexpected S-block {pcb:02X}h")

    def _chunks(self, response: bytes) -> list[bytes]:
        size = min(self.fsd, self.settings.response_frame_size or self.fsd) - 1 - CRC_LENGTH
        return [response[i : i + size] for i in range(0, len(response), size)] or [b""]

    def _next_chunk(self) -> bytes:
        chunk = self.outgoing.pop(0)
        chaining = 0x10 if self.outgoing else 0x00
        return self._send(bytes((0x02 | chaining | self.block_number,)) + chunk)


class SimulatedReader(nfc.clf.device.Device):
    """An nfcpy device whose field holds at most one `Picc`. Test controls: `place`, `remove_card`,
    `lose_responses`; `frames` records every (command, response) pair the radio carried."""

    def __init__(self, picc: Picc | None = None, max_data_size: int = 290):
        # nfc.clf.device.Device.__init__ only raises NotImplementedError; these feed its __str__.
        self._vendor_name, self._device_name, self._chipset_name = "Test", "SimulatedReader", "ISO 14443"
        self._path = "sim:0"
        self.max_data_size = max_data_size  # 290 is what RC-S380's driver reports
        self.picc = picc
        self.frames: list[tuple[bytes, bytes]] = []
        self.field_on = False
        self._remove_after: int | None = None
        self._lose = 0
        self.on_frame: Callable[[bytes], None] | None = None

    # --- test controls ------------------------------------------------------------------------------

    def place(self, picc: Picc) -> None:
        self.picc = picc
        self._remove_after = None

    def remove_card(self, after_frames: int = 0) -> None:
        """Take the card out of the field after it has answered `after_frames` more frames."""
        self._remove_after = after_frames
        self._maybe_remove()

    def lose_responses(self, count: int) -> None:
        """The next `count` answers are corrupted on air: the reader sees a timeout (the card did answer)."""
        self._lose = count

    def _maybe_remove(self) -> None:
        if self._remove_after == 0 and self.picc is not None:
            self.picc.power_off()
            self.picc, self._remove_after = None, None

    # --- nfc.clf.device.Device ----------------------------------------------------------------------

    def close(self) -> None:
        self.mute()

    def mute(self) -> None:
        self.field_on = False
        if self.picc is not None:
            self.picc.power_off()

    def sense_ttb(self, target):
        if target.brty != "106B":
            raise nfc.clf.UnsupportedTargetError(f"unsupported bitrate {target.brty}")
        self.field_on = True
        sensb_res = self.picc.answer_sensb() if self.picc else None
        return nfc.clf.RemoteTarget("106B", sensb_res=bytearray(sensb_res)) if sensb_res else None

    def sense_tta(self, target):
        if target.brty != "106A":
            raise nfc.clf.UnsupportedTargetError(f"unsupported bitrate {target.brty}")
        self.field_on = True
        found = self.picc.answer_sens() if self.picc else None
        if found is None:
            return None
        sens_res, uid, sel_res = (bytearray(x) for x in found)
        return nfc.clf.RemoteTarget("106A", sens_res=sens_res, sdd_res=uid, sel_res=sel_res)

    def sense_ttf(self, target):
        return None  # no FeliCa card in this field

    def sense_dep(self, target):
        return None

    def listen_tta(self, target, timeout):
        raise nfc.clf.UnsupportedTargetError("the simulated reader does not emulate cards")

    listen_ttb = listen_ttf = listen_dep = listen_tta

    def send_cmd_recv_rsp(self, target, data, timeout):
        if not self.field_on:
            raise ProtocolViolation("exchange without a sensed target")
        if not timeout or timeout <= 0:
            raise ProtocolViolation(f"exchange with an unbounded timeout {timeout!r}")
        if len(data) > self.max_data_size:
            raise ProtocolViolation(f"{len(data)} bytes exceed the reader's send buffer")
        if self.on_frame:
            self.on_frame(bytes(data))
        answer = self.picc.answer(bytes(data)) if self.picc else None
        self.frames.append((bytes(data), answer or b""))
        if self._remove_after is not None:
            self._remove_after -= 1
            self._maybe_remove()
        if answer is None:
            raise nfc.clf.TimeoutError  # what RC-S380/PN533 drivers raise when nothing came back
        if self._lose:
            self._lose -= 1
            raise nfc.clf.TimeoutError
        return bytearray(answer)

    def get_max_send_data_size(self, target):
        return self.max_data_size

    def get_max_recv_data_size(self, target):
        return self.max_data_size


def simulated_frontend(card=None, technology: str = "B", settings: PiccSettings | None = None,
                       max_data_size: int = 290) -> tuple[nfc.ContactlessFrontend, SimulatedReader]:
    """A real `nfc.ContactlessFrontend` driving a `SimulatedReader`, with `card` (if any) in the field."""
    reader = SimulatedReader(Picc(card, technology, settings) if card is not None else None, max_data_size)
    clf = nfc.ContactlessFrontend()  # no path: opens nothing
    clf.device = reader
    return clf, reader
