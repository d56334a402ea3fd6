"""A virtual card's making and its file: issuing a card's keys and certificates from the development CA, and
the JSON file format the emulator (`nfc_bridge/virtual_card.py`) reads and rewrites.

Development and tests only. The development CA is imported when a card is made (`new_card_state`), not when this
module is: the emulator reads and rewrites card files, and the bridge loads the emulator for `--reader virtual`,
without it.

The file (format 1) holds `token` (the JPKI token type), `files` (EF id in hex → contents in hex: the
certificates, the CA certificates and the token EF), `keys` (kind → PKCS #8 PEM) and `pins` (kind → salt, scrypt
hash and tries left). It is replaced whole on every write (write, fsync, rename), so a crash never leaves half a
card.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.certificate import FourFacts
from jpki.profile import (
    AUTH_PIN_TRIES,
    EF_AUTH_CA_CERT,
    EF_AUTH_CERT,
    EF_SIGN_CA_CERT,
    EF_SIGN_CERT,
    EF_TOKEN,
    MIN_SIGNING_AGE,
    SIGN_PIN_TRIES,
    TOKEN_LENGTH,
    CertificateKind,
    TokenType,
)
from nfc_bridge.pin import check_pin_format

if TYPE_CHECKING:
    from jpki.devca import DevCA

CARD_FORMAT = 1


def pin_hash(pin: str, salt: bytes) -> bytes:
    """How a PIN is kept in the file: salted scrypt, never the PIN itself."""
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=2**12, r=8, p=1, dklen=32)


@dataclass(frozen=True)
class Holder:
    """Who a virtual card is for. The facts go only into the signing certificate."""

    name: str = "デジタル 太郎"
    address: str = "東京都千代田区永田町一丁目1番1号"
    birthdate: dt.date = dt.date(1990, 1, 2)
    sex: str = "1"

    def four_facts(self) -> FourFacts:
        return FourFacts(name=self.name, address=self.address, birthdate=self.birthdate, sex=self.sex)


def new_card_state(ca: DevCA, pin: str, sign_pin: str, holder: Holder | None = None,
                   smartphone: bool = False, issued_at: dt.datetime | None = None,
                   keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey] | None = None) -> dict:
    """Generate keys "on the card", have the dev CA certify them, and return the card's state."""
    from jpki.devca import age_on, new_rsa_key  # development only: see the module docstring

    check_pin_format(CertificateKind.AUTH, pin)
    holder = holder or Holder()
    issued_at = issued_at or dt.datetime.now(dt.UTC)
    auth_key, sign_key = keys or (new_rsa_key(), new_rsa_key())
    files = {
        EF_AUTH_CERT: ca.issue_auth(auth_key.public_key(), holder.birthdate, issued_at),
        EF_AUTH_CA_CERT: ca.auth.certificate,
    }
    keys_on_card = {CertificateKind.AUTH: auth_key}
    pins = {CertificateKind.AUTH: (pin, AUTH_PIN_TRIES)}
    if age_on(holder.birthdate, issued_at.date()) >= MIN_SIGNING_AGE:
        check_pin_format(CertificateKind.SIGNING, sign_pin)
        files[EF_SIGN_CERT] = ca.issue_signing(sign_key.public_key(), holder.four_facts(), issued_at)
        files[EF_SIGN_CA_CERT] = ca.signing.certificate
        keys_on_card[CertificateKind.SIGNING] = sign_key
        pins[CertificateKind.SIGNING] = (sign_pin, SIGN_PIN_TRIES)
    token = TokenType.SMARTPHONE if smartphone else TokenType.MY_NUMBER_CARD
    state_files = {f"{fid:04X}": _der(cert).hex() for fid, cert in files.items()}
    state_files[f"{EF_TOKEN:04X}"] = token.value.encode().ljust(TOKEN_LENGTH, b" ").hex()
    return {
        "format": CARD_FORMAT,
        "token": token.value,
        "files": state_files,
        "keys": {kind.value: key_pem(key) for kind, key in keys_on_card.items()},
        "pins": {kind.value: _pin_state(value, tries) for kind, (value, tries) in pins.items()},
    }


def _pin_state(pin: str, tries: int) -> dict:
    salt = secrets.token_bytes(16)
    return {"salt": salt.hex(), "hash": pin_hash(pin, salt).hex(), "tries_left": tries}


def key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def write_card_file(path: Path, state: dict) -> None:
    """Replace the card file whole (write, fsync, rename): a crash never leaves a half-written card."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_card_state(path: Path) -> dict:
    return json.loads(Path(path).read_text())
