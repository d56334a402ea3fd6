"""PIN rules the host enforces before a PIN ever reaches the card (docs/jpki-profile.md §1–2), and the sentences
the holder reads about a PIN.

A PIN of the wrong shape is refused here, so it never costs the holder a try. The PIN itself never appears
in a message, a log line or an exception. After a wrong PIN the holder is told how many tries are left in a plain
sentence (`wrong_pin_sentence`): two or more is information, one is a warning (the next wrong PIN locks it), none
says what to do — only the municipal office resets a locked PIN (`LOCKED_SENTENCE`).
"""

from __future__ import annotations

from jpki.profile import (
    AUTH_PIN_ALPHABET,
    AUTH_PIN_LENGTH,
    SIGN_PIN_ALPHABET,
    SIGN_PIN_MAX,
    SIGN_PIN_MIN,
    CertificateKind,
)
from nfc_bridge.apdu import CardError


class InvalidPinFormat(CardError):
    code = "invalid_pin_format"


class LastTryNotConfirmed(CardError):
    code = "last_try_not_confirmed"

    def __init__(self):
        super().__init__(
            "Only one PIN try is left: a wrong PIN now locks the card until the municipal office resets it. "
            "Nothing was sent; confirm explicitly to use the last try."
        )


def check_pin_format(kind: CertificateKind, pin: str) -> None:
    if not isinstance(pin, str):
        raise InvalidPinFormat("The PIN must be text.")
    if kind is CertificateKind.AUTH:
        if len(pin) != AUTH_PIN_LENGTH or any(c not in AUTH_PIN_ALPHABET for c in pin):
            raise InvalidPinFormat("The user-authentication PIN is exactly 4 digits.")
    elif not SIGN_PIN_MIN <= len(pin) <= SIGN_PIN_MAX or any(c not in SIGN_PIN_ALPHABET for c in pin):
        raise InvalidPinFormat(
            "The signing PIN is 6 to 16 characters, digits and capital letters A–Z only."
        )


def pin_label(kind: CertificateKind) -> str:
    return "user-authentication PIN (4 digits)" if kind is CertificateKind.AUTH else "signing PIN (6–16 characters)"


LOCKED_SENTENCE = ("This PIN is locked after too many wrong tries. Nothing on this computer can unlock it: take the "
                   "card to your municipal office (市区町村の窓口) to have the PIN reset.")


def wrong_pin_sentence(tries_left: int) -> str:
    """What a person reads after a wrong PIN, by the tries the card says are left (never the PIN itself)."""
    if tries_left <= 0:
        return "Wrong PIN. " + LOCKED_SENTENCE
    if tries_left == 1:
        return ("Warning: wrong PIN, and only 1 try is left. One more wrong PIN locks this PIN until the municipal "
                "office resets it; check the PIN before trying again.")
    return f"Wrong PIN. {tries_left} tries left before the card locks this PIN."
