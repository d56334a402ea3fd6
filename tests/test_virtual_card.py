"""The virtual card answers the JPKI AP's APDUs with a real card's status words and keeps its PIN counters."""

import pytest

from jpki.profile import JPKI_AP_AID, TEXT_AP_AID, CertificateKind
from nfc_bridge.apdu import CommandAPDU, ResponseAPDU
from nfc_bridge.virtual_card import VirtualCard
from tests.conftest import AUTH_PIN, SIGN_PIN


def send(card, cla, ins, p1, p2, data=b"", le=None) -> ResponseAPDU:
    return ResponseAPDU.from_bytes(card.transmit(CommandAPDU(cla, ins, p1, p2, data, le).to_bytes()))


def select_ap(card):
    return send(card, 0x00, 0xA4, 0x04, 0x0C, JPKI_AP_AID)


def select_ef(card, fid):
    return send(card, 0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))


def verify(card, pin: str | None):
    return send(card, 0x00, 0x20, 0x00, 0x80, pin.encode() if pin else b"")


@pytest.fixture
def card(card_file):
    return VirtualCard.load(card_file)


def test_selects_only_the_jpki_ap(card):
    assert select_ap(card).sw == 0x9000
    assert send(card, 0x00, 0xA4, 0x04, 0x0C, TEXT_AP_AID).sw == 0x6A82
    assert card.selected_aids == [JPKI_AP_AID, TEXT_AP_AID]


def test_files_need_the_ap_selected_first(card):
    assert select_ef(card, 0x000A).sw == 0x6A82
    select_ap(card)
    assert select_ef(card, 0x000A).sw == 0x9000
    assert select_ef(card, 0x1234).sw == 0x6A82


@pytest.mark.parametrize(("apdu", "sw"), [
    ((0x10, 0xA4, 0x04, 0x0C, JPKI_AP_AID), 0x6E00),  # unknown class
    ((0x00, 0xCA, 0x00, 0x00), 0x6D00),  # unknown instruction
    ((0x00, 0xA4, 0x08, 0x0C, b"\x00\x0a"), 0x6A86),  # select by path: not offered
    ((0x00, 0xA4, 0x02, 0x0C, b"\x00"), 0x6700),  # a file id is two bytes
    ((0x00, 0xB0, 0x00, 0x00, b"", 4), 0x6986),  # read with no file selected
    ((0x00, 0x20, 0x00, 0x80), 0x6986),  # verify with no PIN file selected
    ((0x80, 0x2A, 0x00, 0x80, b"\x30" * 51, 256), 0x6986),  # sign with no key selected
])
def test_refusals_carry_the_iso_status_word(card, apdu, sw):
    select_ap(card)
    assert send(card, *apdu).sw == sw


def test_malformed_command_bytes_get_wrong_length(card):
    assert ResponseAPDU.from_bytes(card.transmit(b"\x00\xa4")).sw == 0x6700


def test_reads_in_chunks_and_reports_end_of_file(card):
    select_ap(card)
    select_ef(card, 0x000A)
    whole = card.certificate(CertificateKind.AUTH)
    head = send(card, 0x00, 0xB0, 0x00, 0x00, le=4)
    assert head.sw == 0x9000 and head.data == whole[:4]
    offset = len(whole) - 10
    tail = send(card, 0x00, 0xB0, offset >> 8, offset & 0xFF, le=0xFF)
    assert tail.sw == 0x6282 and tail.data == whole[-10:]
    past = len(whole) + 1
    assert send(card, 0x00, 0xB0, past >> 8, past & 0xFF, le=1).sw == 0x6B00
    assert send(card, 0x00, 0xB0, 0x80, 0x00, le=1).sw == 0x6A86  # SFI addressing is not offered


def test_key_and_pin_files_cannot_be_read(card):
    select_ap(card)
    for fid in (0x0017, 0x0018):
        select_ef(card, fid)
        assert send(card, 0x00, 0xB0, 0x00, 0x00, le=4).sw == 0x6981


def test_signing_certificate_needs_the_signing_pin(card):
    select_ap(card)
    select_ef(card, 0x0001)
    assert send(card, 0x00, 0xB0, 0x00, 0x00, le=4).sw == 0x6982
    select_ef(card, 0x001B)
    assert verify(card, SIGN_PIN).sw == 0x9000
    select_ef(card, 0x0001)
    assert send(card, 0x00, 0xB0, 0x00, 0x00, le=4).sw == 0x9000


def test_tries_left_query_spends_nothing(card):
    select_ap(card)
    select_ef(card, 0x0018)
    assert verify(card, None).sw == 0x63C3
    assert verify(card, None).sw == 0x63C3
    select_ef(card, 0x001B)
    assert verify(card, None).sw == 0x63C5


def test_auth_pin_locks_after_three_wrong_pins_and_stays_locked_across_runs(card_file):
    card = VirtualCard.load(card_file)
    select_ap(card)
    select_ef(card, 0x0018)
    assert [verify(card, "0000").sw for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert verify(card, AUTH_PIN).sw == 0x6983  # even the right PIN: locked
    assert verify(card, None).sw == 0x6983
    again = VirtualCard.load(card_file)  # the next run of the card
    select_ap(again)
    select_ef(again, 0x0018)
    assert verify(again, None).sw == 0x6983
    assert verify(again, AUTH_PIN).sw == 0x6983
    assert again.tries_left(CertificateKind.AUTH) == 0


def test_a_wrong_try_is_saved_before_the_answer(card_file):
    card = VirtualCard.load(card_file)
    select_ap(card)
    select_ef(card, 0x0018)
    verify(card, "9999")
    assert VirtualCard.load(card_file).tries_left(CertificateKind.AUTH) == 2


def test_right_pin_restores_the_counter(card):
    select_ap(card)
    select_ef(card, 0x0018)
    verify(card, "0000")
    verify(card, "0000")
    assert verify(card, AUTH_PIN).sw == 0x9000
    assert verify(card, None).sw == 0x63C3


def test_signing_pin_allows_five_tries(card):
    select_ap(card)
    select_ef(card, 0x001B)
    answers = [verify(card, "WRONG1").sw for _ in range(5)]
    assert answers == [0x63C4, 0x63C3, 0x63C2, 0x63C1, 0x63C0]


def test_no_signature_without_the_right_pin(card):
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + bytes(32)
    select_ap(card)
    select_ef(card, 0x0017)
    assert send(card, 0x80, 0x2A, 0x00, 0x80, digest_info, 256).sw == 0x6982
    select_ef(card, 0x0018)
    verify(card, "0000")
    select_ef(card, 0x0017)
    assert send(card, 0x80, 0x2A, 0x00, 0x80, digest_info, 256).sw == 0x6982
    select_ef(card, 0x0018)
    verify(card, AUTH_PIN)
    select_ef(card, 0x0017)
    signed = send(card, 0x80, 0x2A, 0x00, 0x80, digest_info, 256)
    assert signed.sw == 0x9000 and len(signed.data) == 256


def test_the_auth_pin_does_not_unlock_the_signing_key(card):
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + bytes(32)
    select_ap(card)
    select_ef(card, 0x0018)
    verify(card, AUTH_PIN)
    select_ef(card, 0x001A)
    assert send(card, 0x80, 0x2A, 0x00, 0x80, digest_info, 256).sw == 0x6982


def test_a_power_cycle_forgets_the_verified_pin(card):
    select_ap(card)
    select_ef(card, 0x0018)
    verify(card, AUTH_PIN)
    card.reset()
    select_ap(card)
    select_ef(card, 0x0017)
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + bytes(32)
    assert send(card, 0x80, 0x2A, 0x00, 0x80, digest_info, 256).sw == 0x6982


@pytest.mark.parametrize("payload", [b"", b"\x01" * 32, bytes.fromhex("3031300d060960864801650304020105000420") + b"x"])
def test_sign_refuses_what_is_not_a_digest_info(card, payload):
    select_ap(card)
    select_ef(card, 0x0018)
    verify(card, AUTH_PIN)
    select_ef(card, 0x0017)
    assert send(card, 0x80, 0x2A, 0x00, 0x80, payload or b"", 256).sw in (0x6A80,)


def test_card_file_keeps_pins_only_as_salted_hashes(card_file):
    import json

    pins = json.loads(card_file.read_text())["pins"]
    assert set(pins) == {"auth", "signing"}
    for entry in pins.values():
        assert set(entry) == {"salt", "hash", "tries_left"}
        assert len(bytes.fromhex(entry["hash"])) == 32 and len(bytes.fromhex(entry["salt"])) == 16


def test_child_card_has_no_signing_application(make_card):
    import datetime as dt

    from nfc_bridge.card_file import Holder

    card = VirtualCard.load(make_card(Holder(birthdate=dt.date.today().replace(year=dt.date.today().year - 10))))
    select_ap(card)
    assert select_ef(card, 0x0001).sw == 0x6A82
    assert select_ef(card, 0x001B).sw == 0x6A82
    assert select_ef(card, 0x000A).sw == 0x9000


def test_the_emulator_answers_apdus_without_the_development_ca():
    """Making a card (nfc_bridge/card_file.py) needs the dev CA; answering APDUs does not."""
    import subprocess
    import sys

    probe = "import sys, nfc_bridge.virtual_card; print('jpki.devca' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "False"
