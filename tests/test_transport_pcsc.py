"""The PC/SC transport against a real pcscd, with a software card in vsmartcard's virtual reader.

pyscard → libpcsclite → a private pcscd → vpcd → `nfc_bridge.vpcd.VpcdLink` → the card (see pcsc_env).
"""

from __future__ import annotations

import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from jpki.profile import CertificateKind
from nfc_bridge.apdu import CardRemoved
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports.pcsc import CardBusy, NoCardPresent, PcscTransport, ReaderNotFound
from nfc_bridge.virtual_card import VirtualCard
from nfc_bridge.vpcd import VpcdLink
from tests.conftest import AUTH_PIN
from tests.pcsc_env import (
    READER_NAME,
    PrivatePcscd,
    SystemPcscdRunning,
    free_port_block,
    use_private_socket,
    wait_for_card,
)

pytestmark = pytest.mark.pcsc

use_private_socket()  # before this process's first PC/SC call: libpcsclite reads the variable only once

SELECT_FILE = bytes.fromhex("00A4020C020001")
FILE = bytes((i * 7) & 0xFF for i in range(1000))


class StubCard:
    """Just enough of a card: SELECT answers 9000, READ BINARY reads one 1000-byte file.

    GET DATA (INS CA) answers the T=0 way, with 6Cxx for a wrong Le and 61xx before GET RESPONSE.
    """

    ATR = bytes.fromhex("3B80800101")  # PC/SC contactless form, T=1; TCK = 80 ^ 80 ^ 01

    def __init__(self):
        self.resets = 0
        self._pending = b""

    def reset(self) -> None:
        self.resets += 1

    def transmit(self, command: bytes) -> bytes:
        ins, p1, p2 = command[1], command[2], command[3]
        if ins == 0xA4:
            return b"\x90\x00"
        if ins == 0xB0:
            offset, le = p1 << 8 | p2, command[4] or 256
            if offset >= len(FILE):
                return b"\x6b\x00"
            return FILE[offset : offset + le] + b"\x90\x00"
        if ins == 0xCA:
            if command[4] != 0x20:
                return b"\x6c\x20"
            self._pending = FILE[:0x20]
            return b"\x61\x20"
        if ins == 0xC0 and self._pending:
            data, self._pending = self._pending[: command[4]], b""
            return data + b"\x90\x00"
        return b"\x6d\x00"


@pytest.fixture
def pcscd(tmp_path):
    try:
        with PrivatePcscd(tmp_path, vpcd_port=free_port_block()) as daemon:
            yield daemon
    except SystemPcscdRunning as reason:
        pytest.skip(str(reason))


def insert(card, pcscd: PrivatePcscd) -> VpcdLink:
    """Connect `card` to vpcd's first slot and wait until pcscd sees it."""
    link = VpcdLink(card, port=pcscd.vpcd_port).start()
    assert wait_for_card(pcscd.reader_names[0], present=True, timeout=5), "pcscd never saw the card"
    return link


@pytest.fixture
def stub_card(pcscd):
    card = StubCard()
    link = insert(card, pcscd)
    yield card
    link.stop()


def read_file(transport: PcscTransport) -> bytes:
    out = b""
    while len(out) < len(FILE):
        chunk = min(256, len(FILE) - len(out))
        response = transport.transmit(bytes((0x00, 0xB0, len(out) >> 8, len(out) & 0xFF, chunk % 256)))
        assert response[-2:] == b"\x90\x00"
        out += response[:-2]
    return out


def test_select_and_read_binary_round_trip_through_pcscd(stub_card):
    with PcscTransport(READER_NAME, timeout=5) as transport:
        assert transport.reader == f"{READER_NAME} 00 00"
        assert transport.transmit(SELECT_FILE) == b"\x90\x00"
        assert read_file(transport) == FILE


def test_first_reader_with_a_card_is_chosen_without_a_name(stub_card):
    with PcscTransport(timeout=5) as transport:
        assert transport.reader == f"{READER_NAME} 00 00"


def test_wrong_le_and_more_data_are_followed_up_for_the_caller(stub_card):
    with PcscTransport(READER_NAME, timeout=5) as transport:
        assert transport.transmit(bytes.fromhex("00CA010100")) == FILE[:0x20] + b"\x90\x00"


def test_closing_resets_the_card_so_a_verified_pin_does_not_outlive_the_session(stub_card):
    transport = PcscTransport(READER_NAME, timeout=5)
    transport.transmit(SELECT_FILE)
    before = stub_card.resets
    transport.close()
    assert stub_card.resets > before


def test_exclusive_keeps_other_applications_out_until_it_ends(stub_card):
    with PcscTransport(READER_NAME, timeout=2) as holder, PcscTransport(READER_NAME, timeout=0.5) as other:
        with holder.exclusive():
            with pytest.raises(CardBusy) as busy, other.exclusive():
                pass
            assert busy.value.code == "card_busy"
            assert holder.transmit(SELECT_FILE) == b"\x90\x00"
        # `other` gave up waiting, but libpcsclite keeps asking pcscd for it (every 0.1 s) and gets the card
        # once `holder` lets go. Give it that chance; it must then let go at once rather than keep the card.
        time.sleep(0.3)
        with holder.exclusive():
            assert holder.transmit(SELECT_FILE) == b"\x90\x00"


def test_exclusive_blocks_are_serialised_between_two_applications(stub_card):
    with PcscTransport(READER_NAME, timeout=5) as first, PcscTransport(READER_NAME, timeout=5) as second:
        second_got_in = threading.Event()

        def second_app():
            with second.exclusive():
                second_got_in.set()

        with first.exclusive():
            waiter = threading.Thread(target=second_app)
            waiter.start()
            assert not second_got_in.wait(0.5), "the second application got in during the first's transaction"
        waiter.join(5)
        assert second_got_in.is_set()


def test_card_taken_away_mid_session_raises_card_removed(pcscd):
    link = insert(StubCard(), pcscd)
    with PcscTransport(READER_NAME, timeout=5) as transport:
        assert transport.transmit(SELECT_FILE) == b"\x90\x00"
        link.stop()
        with pytest.raises(CardRemoved) as removed:
            transport.transmit(SELECT_FILE)
        assert removed.value.code == "card_removed"


def test_reader_without_a_card_raises_no_card(pcscd):
    with pytest.raises(NoCardPresent) as error:
        PcscTransport(READER_NAME, timeout=5)
    assert error.value.code == "no_card"


def test_unknown_reader_name_raises_reader_not_found(stub_card):
    with pytest.raises(ReaderNotFound) as error:
        PcscTransport("No Such Reader", timeout=5)
    assert error.value.code == "reader_not_found"


def test_pcscd_without_readers_raises_reader_not_found(tmp_path):
    try:
        daemon = PrivatePcscd(tmp_path, vpcd_port=None).start()
    except SystemPcscdRunning as reason:
        pytest.skip(str(reason))
    try:
        with pytest.raises(ReaderNotFound) as error:
            PcscTransport(timeout=5)
        assert error.value.code == "reader_not_found"
    finally:
        daemon.stop()


def test_no_pcscd_running_raises_reader_not_found():
    with pytest.raises(ReaderNotFound) as error:
        PcscTransport(timeout=5)
    assert error.value.code == "reader_not_found"
    assert "pcscd" in error.value.message


# --- the whole JPKI path through PC/SC --------------------------------------------------------------


def test_jpki_login_signature_through_pcscd_verifies_against_the_card_certificate(pcscd, card_file):
    link = insert(VirtualCard.load(card_file), pcscd)
    try:
        with PcscTransport(READER_NAME, timeout=5) as transport:
            client = JpkiClient.connect(transport)
            certificate = x509.load_der_x509_certificate(client.read_certificate(CertificateKind.AUTH))
            message = b"origin-hash || challenge-hash"
            with transport.exclusive():  # the verify + sign sequence, held against other applications
                signature = client.sign(CertificateKind.AUTH, message, AUTH_PIN)
        certificate.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    finally:
        link.stop()
