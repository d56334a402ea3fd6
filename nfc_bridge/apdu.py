"""ISO 7816-4 short APDUs and the status words a JPKI card answers with.

Every failure a card can cause ends up as one exception family, `CardError`, with a stable `code` that the
CLI, the bridge agent and the tests all use. Messages never contain command data (a PIN travels in one).
"""

from __future__ import annotations

from dataclasses import dataclass

from wire.errors import FixedCodeError

SW_OK = 0x9000

# Short APDUs only (docs/jpki-profile.md §2): nfcpy refuses extended length and Android's IsoDep defaults to 261 bytes.
MAX_SHORT_DATA = 255
MAX_SHORT_LE = 256


class CardError(FixedCodeError):
    """Anything that went wrong between the host and the card."""

    code = "card_error"


class MalformedResponse(CardError):
    code = "malformed_response"


class CardRemoved(CardError):
    code = "card_removed"


class CardNotResponding(CardError):
    code = "card_not_responding"


class ReaderNotFound(CardError):
    code = "reader_not_found"


class NoCardPresent(CardError):
    code = "no_card"


class StatusWordError(CardError):
    """The card answered with a status word other than 9000."""

    code = "unexpected_status"

    def __init__(self, sw: int, message: str | None = None):
        self.sw = sw
        super().__init__(message or f"The card answered with status {sw:04X}.")


class WrongPin(StatusWordError):
    code = "wrong_pin"

    def __init__(self, sw: int):
        self.tries_left = sw & 0x0F
        tries = "1 try" if self.tries_left == 1 else f"{self.tries_left} tries"
        super().__init__(sw, f"The PIN is wrong; {tries} left before the card locks it.")


class PinLocked(StatusWordError):
    code = "pin_locked"

    def __init__(self, sw: int):
        super().__init__(
            sw, "The PIN is locked after too many wrong tries; only the municipal office can reset it."
        )


class SecurityStatusNotSatisfied(StatusWordError):
    code = "security_status_not_satisfied"

    def __init__(self, sw: int):
        super().__init__(sw, "The card refused: the PIN has not been verified for this operation.")


class FileNotFound(StatusWordError):
    code = "file_not_found"

    def __init__(self, sw: int):
        super().__init__(sw, "The card has no such application or file.")


class WrongLength(StatusWordError):
    code = "wrong_length"

    def __init__(self, sw: int):
        super().__init__(sw, "The card refused the command's length.")


class OffsetOutOfRange(StatusWordError):
    code = "offset_out_of_range"

    def __init__(self, sw: int):
        super().__init__(sw, "The card refused a read past the end of the file.")


class WrongParameters(StatusWordError):
    code = "wrong_parameters"

    def __init__(self, sw: int):
        super().__init__(sw, "The card refused the command's parameters.")


class InstructionNotSupported(StatusWordError):
    code = "instruction_not_supported"

    def __init__(self, sw: int):
        super().__init__(sw, "The card does not support this command.")


# Locked PIN: a real card may send any of these (docs/jpki-profile.md §2, uncertain which); treat them alike.
PIN_LOCKED_SWS = frozenset({0x63C0, 0x6983, 0x6984})

_BY_SW: dict[int, type[StatusWordError]] = {
    0x6982: SecurityStatusNotSatisfied,
    0x6A82: FileNotFound,
    0x6A81: InstructionNotSupported,
    0x6700: WrongLength,
    0x6B00: OffsetOutOfRange,
    0x6A86: WrongParameters,
    0x6A80: WrongParameters,
    0x6D00: InstructionNotSupported,
    0x6E00: InstructionNotSupported,
}


def status_error(sw: int) -> StatusWordError:
    """The exception for a non-9000 status word."""
    if sw in PIN_LOCKED_SWS:
        return PinLocked(sw)
    if sw & 0xFFF0 == 0x63C0:
        return WrongPin(sw)
    return _BY_SW.get(sw, StatusWordError)(sw)


@dataclass(frozen=True)
class CommandAPDU:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self):
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be one byte")
        if len(self.data) > MAX_SHORT_DATA:
            raise ValueError("command data longer than a short APDU allows")
        if self.le is not None and not 1 <= self.le <= MAX_SHORT_LE:
            raise ValueError("Le must be 1..256 in a short APDU")

    def __repr__(self) -> str:  # a VERIFY carries the PIN: never show command data
        return (f"CommandAPDU({self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X}, "
                f"{len(self.data)} data bytes, le={self.le})")

    def to_bytes(self) -> bytes:
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le % 256,))
        return out

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandAPDU:
        """Parse a short command APDU (cases 1–4). Raises ValueError on anything else."""
        if len(raw) < 4:
            raise ValueError("command shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        lc = body[0]
        if lc == 0:
            raise ValueError("extended-length APDUs are not supported")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, data=bytes(body[1:]))
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, data=bytes(body[1 : 1 + lc]), le=body[-1] or 256)
        raise ValueError("Lc does not match the command's length")


@dataclass(frozen=True)
class ResponseAPDU:
    data: bytes
    sw: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        if not isinstance(raw, bytes | bytearray) or len(raw) < 2:
            raise MalformedResponse("The card's answer was too short to hold a status word.")
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    def __repr__(self) -> str:  # responses carry certificates and signatures: show only their size
        return f"ResponseAPDU({len(self.data)} data bytes, sw={self.sw:04X})"

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    def check(self) -> ResponseAPDU:
        """Return self when the status is 9000, else raise the status word's exception."""
        if self.sw != SW_OK:
            raise status_error(self.sw)
        return self
