"""A software My Number Card: the JPKI AP only, answering the same APDUs with the same status words.

For development and tests. The card is made, and its file written, by `nfc_bridge/card_file.py`; this module
only answers APDUs. Its state (files, keys, PIN counters) is rewritten whole, before the answer, every time a
counter changes, so a PIN locked in one run stays locked in the next — as on a real card. PINs are kept only as
salted scrypt hashes. The card has no text AP and no visual AP: selecting them answers 6A82, and every AID it is asked
for is remembered in `selected_aids` so tests can prove the bridge never asks.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils

from jpki.profile import (
    AUTH_PIN_TRIES,
    CLA_ISO,
    CLA_PROPRIETARY,
    EF_AUTH_CERT,
    EF_AUTH_KEY,
    EF_AUTH_PIN,
    EF_SIGN_CERT,
    EF_SIGN_KEY,
    EF_SIGN_PIN,
    INS_READ_BINARY,
    INS_SELECT,
    INS_SIGN,
    INS_VERIFY,
    JPKI_AP_AID,
    SIGN_PIN_TRIES,
    CertificateKind,
    TokenType,
)
from nfc_bridge.apdu import CommandAPDU, ResponseAPDU
from nfc_bridge.card_file import CARD_FORMAT, key_pem, pin_hash, read_card_state, write_card_file

SW_OK = 0x9000
SW_END_OF_FILE = 0x6282
SW_WRONG_LENGTH = 0x6700
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_PIN_BLOCKED = 0x6983
SW_NOT_ALLOWED = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_OFFSET_OUT_OF_RANGE = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

_PIN_EF_KIND = {EF_AUTH_PIN: CertificateKind.AUTH, EF_SIGN_PIN: CertificateKind.SIGNING}
_KEY_EF_KIND = {EF_AUTH_KEY: CertificateKind.AUTH, EF_SIGN_KEY: CertificateKind.SIGNING}
_MAX_TRIES = {CertificateKind.AUTH: AUTH_PIN_TRIES, CertificateKind.SIGNING: SIGN_PIN_TRIES}

# DigestInfo prefixes the card accepts for signing: the host hashes, the card only pads and exponentiates.
_DIGEST_INFO = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1(),  # noqa: S303 - what a card accepts
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}


def _atr() -> bytes:
    """A contactless-style ATR (PC/SC part 3): 3B 8n 80 01, historical bytes, then the XOR check byte."""
    historical = b"JPKIVIRT"
    body = bytes((0x8 << 4 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


@dataclass
class _Pin:
    salt: bytes
    digest: bytes
    tries_left: int

    def matches(self, candidate: bytes) -> bool:
        try:
            text = candidate.decode("ascii")
        except UnicodeDecodeError:
            return False
        return hmac.compare_digest(pin_hash(text, self.salt), self.digest)


class VirtualCard:
    """The JPKI AP of a My Number Card (or of a smartphone's secure element), in software."""

    ATR = _atr()

    def __init__(self, state: dict, path: Path | None = None):
        if state.get("format") != CARD_FORMAT:
            raise ValueError("unsupported virtual card file format")
        self.path = Path(path) if path else None
        self.token = TokenType(state["token"])
        self._files = {int(fid, 16): bytes.fromhex(data) for fid, data in state["files"].items()}
        self._keys = {
            CertificateKind(kind): serialization.load_pem_private_key(pem.encode(), password=None)
            for kind, pem in state["keys"].items()
        }
        self._pins = {
            CertificateKind(kind): _Pin(bytes.fromhex(p["salt"]), bytes.fromhex(p["hash"]), p["tries_left"])
            for kind, p in state["pins"].items()
        }
        self.selected_aids: list[bytes] = []
        self.present = True
        self.reset()

    # --- lifecycle ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> VirtualCard:
        path = Path(path)
        return cls(read_card_state(path), path)

    def reset(self) -> None:
        """Power cycle: nothing selected, no PIN verified (security status lives only while powered)."""
        self._ap_selected = False
        self._ef: int | None = None
        self._verified: set[CertificateKind] = set()

    def tries_left(self, kind: CertificateKind) -> int:
        return self._pins[kind].tries_left

    def certificate(self, kind: CertificateKind) -> bytes | None:
        return self._files.get(EF_AUTH_CERT if kind is CertificateKind.AUTH else EF_SIGN_CERT)

    def _save(self) -> None:
        if self.path is None:
            return
        write_card_file(self.path, self._state())

    def _state(self) -> dict:
        return {
            "format": CARD_FORMAT,
            "token": self.token.value,
            "files": {f"{fid:04X}": data.hex() for fid, data in self._files.items()},
            "keys": {kind.value: key_pem(key) for kind, key in self._keys.items()},
            "pins": {
                kind.value: {"salt": p.salt.hex(), "hash": p.digest.hex(), "tries_left": p.tries_left}
                for kind, p in self._pins.items()
            },
        }

    # --- the APDU interface ---------------------------------------------------------------------------

    def transmit(self, command: bytes) -> bytes:
        try:
            apdu = CommandAPDU.from_bytes(bytes(command))
        except ValueError:
            return SW_WRONG_LENGTH.to_bytes(2, "big")
        return self.process(apdu).to_bytes()

    def process(self, apdu: CommandAPDU) -> ResponseAPDU:
        if apdu.cla not in (CLA_ISO, CLA_PROPRIETARY):
            return ResponseAPDU(b"", SW_CLA_NOT_SUPPORTED)
        handler = {
            (CLA_ISO, INS_SELECT): self._select,
            (CLA_ISO, INS_READ_BINARY): self._read_binary,
            (CLA_ISO, INS_VERIFY): self._verify,
            (CLA_PROPRIETARY, INS_SIGN): self._sign,
        }.get((apdu.cla, apdu.ins))
        if handler is None:
            return ResponseAPDU(b"", SW_INS_NOT_SUPPORTED)
        return handler(apdu)

    def _select(self, apdu: CommandAPDU) -> ResponseAPDU:
        if apdu.p1 == 0x04:  # by DF name (AID)
            self.selected_aids.append(apdu.data)
            if apdu.data != JPKI_AP_AID:
                return ResponseAPDU(b"", SW_FILE_NOT_FOUND)
            self.reset()
            self._ap_selected = True
            return ResponseAPDU(b"", SW_OK)
        if apdu.p1 == 0x02:  # EF under the current DF
            if len(apdu.data) != 2:
                return ResponseAPDU(b"", SW_WRONG_LENGTH)
            fid = int.from_bytes(apdu.data, "big")
            if not self._ap_selected or not self._exists(fid):
                return ResponseAPDU(b"", SW_FILE_NOT_FOUND)
            self._ef = fid
            return ResponseAPDU(b"", SW_OK)
        return ResponseAPDU(b"", SW_WRONG_P1P2)

    def _exists(self, fid: int) -> bool:
        if fid in _PIN_EF_KIND:
            return _PIN_EF_KIND[fid] in self._pins
        if fid in _KEY_EF_KIND:
            return _KEY_EF_KIND[fid] in self._keys
        return fid in self._files

    def _read_binary(self, apdu: CommandAPDU) -> ResponseAPDU:
        if self._ef is None:
            return ResponseAPDU(b"", SW_NOT_ALLOWED)
        if self._ef not in self._files:
            return ResponseAPDU(b"", SW_INCOMPATIBLE_FILE)
        if apdu.p1 & 0x80:  # short EF identifier addressing: not offered by the JPKI AP
            return ResponseAPDU(b"", SW_WRONG_P1P2)
        if not self._may_read(self._ef):
            return ResponseAPDU(b"", SW_SECURITY_NOT_SATISFIED)
        data = self._files[self._ef]
        offset = (apdu.p1 << 8) | apdu.p2
        if offset > len(data):
            return ResponseAPDU(b"", SW_OFFSET_OUT_OF_RANGE)
        wanted = apdu.le or 256
        chunk = data[offset : offset + wanted]
        return ResponseAPDU(chunk, SW_OK if len(chunk) == wanted else SW_END_OF_FILE)

    def _may_read(self, fid: int) -> bool:
        if fid == EF_SIGN_CERT:
            return CertificateKind.SIGNING in self._verified
        if fid == EF_AUTH_CERT and self.token is TokenType.SMARTPHONE:
            return CertificateKind.AUTH in self._verified
        return True

    def _verify(self, apdu: CommandAPDU) -> ResponseAPDU:
        if apdu.p1 != 0x00 or apdu.p2 != 0x80:
            return ResponseAPDU(b"", SW_WRONG_P1P2)
        kind = _PIN_EF_KIND.get(self._ef) if self._ef is not None else None
        if kind is None:
            return ResponseAPDU(b"", SW_NOT_ALLOWED)
        pin = self._pins[kind]
        if not apdu.data:  # tries-left query: spends nothing
            return ResponseAPDU(b"", SW_PIN_BLOCKED if pin.tries_left == 0 else 0x63C0 | pin.tries_left)
        if pin.tries_left == 0:
            return ResponseAPDU(b"", SW_PIN_BLOCKED)
        # Spend the try and persist it before comparing, as a card does: pulling the card mid-check
        # must not give an attacker a free guess.
        pin.tries_left -= 1
        self._save()
        if pin.matches(apdu.data):
            pin.tries_left = _MAX_TRIES[kind]
            self._save()
            self._verified.add(kind)
            return ResponseAPDU(b"", SW_OK)
        self._verified.discard(kind)
        return ResponseAPDU(b"", 0x63C0 | pin.tries_left)

    def _sign(self, apdu: CommandAPDU) -> ResponseAPDU:
        if apdu.p1 != 0x00 or apdu.p2 != 0x80:
            return ResponseAPDU(b"", SW_WRONG_P1P2)
        kind = _KEY_EF_KIND.get(self._ef) if self._ef is not None else None
        if kind is None:
            return ResponseAPDU(b"", SW_NOT_ALLOWED)
        if kind not in self._verified:
            return ResponseAPDU(b"", SW_SECURITY_NOT_SATISFIED)
        prefix = _prefix_of(apdu.data)
        algorithm = _DIGEST_INFO.get(prefix)
        digest = apdu.data[len(prefix):]
        if algorithm is None or len(digest) != algorithm.digest_size:
            return ResponseAPDU(b"", SW_WRONG_DATA)
        signature = self._keys[kind].sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
        return ResponseAPDU(signature, SW_OK)


def _prefix_of(digest_info: bytes) -> bytes:
    for prefix in _DIGEST_INFO:
        if digest_info.startswith(prefix):
            return prefix
    return b""
