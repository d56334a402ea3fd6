"""The JPKI application over any transport (docs/jpki-profile.md §2).

`JpkiClient.connect(transport)` selects the JPKI AP and reads the token; then read certificates, ask how many
PIN tries are left, and sign. PIN safety is built in, not left to callers: the tries left are queried before
every VERIFY, a VERIFY is never repeated, the last try is spent only after an explicit confirmation, and a
PIN of the wrong shape never reaches the card.

There is deliberately no "select any AID" method: the only application this code can select is the JPKI AP.
"""

from __future__ import annotations

from collections.abc import Callable

from jpki.certificate import MAX_CERTIFICATE_DER
from jpki.profile import (
    CERT_EF,
    CLA_ISO,
    CLA_PROPRIETARY,
    EF_TOKEN,
    INS_READ_BINARY,
    INS_SELECT,
    INS_SIGN,
    INS_VERIFY,
    JPKI_AP_AID,
    KEY_EF,
    MAX_READ_CHUNK,
    PIN_EF,
    RSA_SIGNATURE_LENGTH,
    TOKEN_LENGTH,
    CertificateKind,
    TokenType,
)
from jpki.signature import SHA256_DIGEST_INFO_PREFIX, digest_info_sha256
from nfc_bridge.apdu import (
    CardError,
    CommandAPDU,
    FileNotFound,
    MalformedResponse,
    PinLocked,
    ResponseAPDU,
    WrongPin,
    status_error,
)
from nfc_bridge.pin import LastTryNotConfirmed, check_pin_format
from nfc_bridge.transports import Transport

ConfirmLastTry = Callable[[], bool]

# An RSA-2048 public key alone takes 270 bytes: a "certificate" shorter than this is not one.
MIN_CERTIFICATE_DER = 300


class UnsupportedCard(CardError):
    code = "unsupported_card"


class JukiCardRefused(CardError):
    code = "juki_card_refused"

    def __init__(self):
        super().__init__(
            "This is a Basic Resident Registration Card (住基カード), not a My Number Card; it cannot be used."
        )


class JpkiClient:
    def __init__(self, transport: Transport, token: TokenType):
        self.transport = transport
        self.token = token
        self._verified: set[CertificateKind] = set()  # PINs verified in this card session

    @classmethod
    def connect(cls, transport: Transport) -> JpkiClient:
        """Select the JPKI AP and identify the card by its token; refuse a 住基カード."""
        try:
            _send(transport, CommandAPDU(CLA_ISO, INS_SELECT, 0x04, 0x0C, JPKI_AP_AID))
        except FileNotFound as exc:
            raise UnsupportedCard("This card has no JPKI application: it is not a My Number Card.") from exc
        _select_ef(transport, EF_TOKEN)
        raw = _read_exactly(transport, TOKEN_LENGTH, allow_short=True)
        text = raw.rstrip(b" \x00").decode("ascii", errors="replace")
        try:
            token = TokenType(text)
        except ValueError as exc:
            raise UnsupportedCard("The card's JPKI application has an unknown token.") from exc
        if token is TokenType.JUKI_CARD:
            raise JukiCardRefused()
        return cls(transport, token)

    @property
    def verified(self) -> frozenset[CertificateKind]:
        """The PINs verified in this card session."""
        return frozenset(self._verified)

    @property
    def is_smartphone(self) -> bool:
        return self.token is TokenType.SMARTPHONE

    def needs_pin_to_read(self, kind: CertificateKind) -> bool:
        """The signing certificate, and a smartphone's auth certificate, are readable only after the PIN."""
        return kind is CertificateKind.SIGNING or self.is_smartphone

    def read_certificate(self, kind: CertificateKind) -> bytes:
        """The DER certificate of `kind` (see `needs_pin_to_read`)."""
        _select_ef(self.transport, CERT_EF[kind])
        header = _read_exactly(self.transport, 4)
        total = _der_total_length(header)
        return header + _read_exactly(self.transport, total - 4, offset=4)

    def pin_tries_left(self, kind: CertificateKind) -> int:
        """Tries left for a PIN, without spending one (VERIFY with no data). 0 means locked."""
        _select_ef(self.transport, PIN_EF[kind])
        response = _transmit(self.transport, CommandAPDU(CLA_ISO, INS_VERIFY, 0x00, 0x80))
        try:
            response.check()
        except WrongPin as answer:  # 63Cx is the expected answer to the query
            return answer.tries_left
        except PinLocked:
            return 0
        # 9000: this card reports an already-verified PIN; it still has tries.
        raise MalformedResponse("The card did not say how many PIN tries are left.")

    def verify_pin(self, kind: CertificateKind, pin: str, confirm_last_try: ConfirmLastTry | None = None) -> None:
        """Send the PIN once. Raises WrongPin (with tries left), PinLocked or LastTryNotConfirmed."""
        check_pin_format(kind, pin)
        tries = self.pin_tries_left(kind)
        if tries == 0:
            raise PinLocked(0x6983)
        if tries == 1 and not (confirm_last_try and confirm_last_try()):
            raise LastTryNotConfirmed()
        _select_ef(self.transport, PIN_EF[kind])
        _send(self.transport, CommandAPDU(CLA_ISO, INS_VERIFY, 0x00, 0x80, pin.encode("ascii")))
        self._verified.add(kind)

    def sign(self, kind: CertificateKind, message: bytes, pin: str,
             confirm_last_try: ConfirmLastTry | None = None) -> bytes:
        """RSASSA-PKCS1-v1_5/SHA-256 signature over `message`, made by the card's `kind` key.

        The host hashes `message`; the card signs its DigestInfo. Verify with
        `jpki.signature.verify_signature(certificate.public_key, message, signature)`.
        """
        return self._sign_digest_info(kind, digest_info_sha256(message), pin, confirm_last_try)

    def sign_digest(self, kind: CertificateKind, digest: bytes, pin: str,
                    confirm_last_try: ConfirmLastTry | None = None) -> bytes:
        """RSASSA-PKCS1-v1_5 signature over a SHA-256 `digest` computed elsewhere (a document's, by the website that
        holds the document): the card signs its DigestInfo, and the digest is not hashed again."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError("a SHA-256 digest is 32 bytes")
        return self._sign_digest_info(kind, SHA256_DIGEST_INFO_PREFIX + digest, pin, confirm_last_try)

    def _sign_digest_info(self, kind: CertificateKind, digest_info: bytes, pin: str,
                          confirm_last_try: ConfirmLastTry | None) -> bytes:
        with self.transport.exclusive():
            if kind not in self._verified:
                self.verify_pin(kind, pin, confirm_last_try)
            _select_ef(self.transport, KEY_EF[kind])
            response = _send(self.transport,
                             CommandAPDU(CLA_PROPRIETARY, INS_SIGN, 0x00, 0x80, digest_info, le=256))
        if len(response.data) != RSA_SIGNATURE_LENGTH:
            raise MalformedResponse("The card's signature does not have the length of an RSA-2048 signature.")
        return response.data


def _transmit(transport: Transport, apdu: CommandAPDU) -> ResponseAPDU:
    return ResponseAPDU.from_bytes(transport.transmit(apdu.to_bytes()))


def _send(transport: Transport, apdu: CommandAPDU) -> ResponseAPDU:
    return _transmit(transport, apdu).check()


def _select_ef(transport: Transport, fid: int) -> None:
    _send(transport, CommandAPDU(CLA_ISO, INS_SELECT, 0x02, 0x0C, fid.to_bytes(2, "big")))


def _read_exactly(transport: Transport, length: int, offset: int = 0, allow_short: bool = False) -> bytes:
    """READ BINARY `length` bytes from `offset` in short chunks; the card must give exactly what it was asked."""
    out = bytearray()
    while len(out) < length:
        position = offset + len(out)
        if position > 0x7FFF:
            raise MalformedResponse("The file is larger than READ BINARY can address.")
        want = min(MAX_READ_CHUNK, length - len(out))
        response = _transmit(transport, CommandAPDU(CLA_ISO, INS_READ_BINARY, position >> 8, position & 0xFF,
                                                    le=want))
        if response.sw == 0x6282 and allow_short:  # end of file before Le: fine for the short token file
            return bytes(out + response.data)
        if response.sw in (0x6282, 0x6B00):
            raise MalformedResponse("The file on the card is shorter than its own length field says.")
        if response.sw != 0x9000:
            raise status_error(response.sw)
        if len(response.data) != want:
            raise MalformedResponse("The card returned a different amount of data than was asked for.")
        out += response.data
    return bytes(out)


def _der_total_length(header: bytes) -> int:
    """Total length of a DER SEQUENCE from its first 4 bytes (`30 82 LL LL` on a JPKI card)."""
    if header[0] != 0x30:
        raise MalformedResponse("The certificate file does not hold a DER certificate.")
    first = header[1]
    if first < 0x80:
        total = 2 + first
    elif first == 0x81:
        total = 3 + header[2]
    elif first == 0x82:
        total = 4 + int.from_bytes(header[2:4], "big")
    else:
        raise MalformedResponse("The certificate's length field is not one a certificate uses.")
    if not MIN_CERTIFICATE_DER <= total <= MAX_CERTIFICATE_DER:
        raise MalformedResponse("The certificate's length field is out of range.")
    return total
