"""The JPKI client: card identification, certificate reads, and PIN safety, over the virtual transport."""

import json

import pytest

from jpki import parse_certificate, verify_signature
from jpki.profile import EF_AUTH_CERT, JPKI_AP_AID, TEXT_AP_AID, VISUAL_AP_AID, CertificateKind
from nfc_bridge.apdu import (
    CardError,
    CardNotResponding,
    CommandAPDU,
    MalformedResponse,
    PinLocked,
    SecurityStatusNotSatisfied,
    WrongPin,
)
from nfc_bridge.client import JpkiClient, JukiCardRefused, UnsupportedCard
from nfc_bridge.pin import InvalidPinFormat, LastTryNotConfirmed
from nfc_bridge.transports import BaseTransport
from nfc_bridge.transports.virtual import VirtualTransport
from nfc_bridge.virtual_card import VirtualCard
from tests.conftest import AUTH_PIN, SIGN_PIN

AUTH, SIGNING = CertificateKind.AUTH, CertificateKind.SIGNING


class Recorder(BaseTransport):
    """Passes APDUs to the card and keeps the commands, so tests can check what was sent and in what order."""

    def __init__(self, inner):
        self.inner = inner
        self.commands: list[CommandAPDU] = []

    def transmit(self, command: bytes) -> bytes:
        self.commands.append(CommandAPDU.from_bytes(command))
        return self.inner.transmit(command)

    def verifies(self):
        return [c for c in self.commands if c.ins == 0x20]


@pytest.fixture
def recorder(card_file):
    return Recorder(VirtualTransport.open(card_file))


def test_reads_a_certificate_the_dev_ca_issued(recorder, dev_ca):
    client = JpkiClient.connect(recorder)
    cert = parse_certificate(client.read_certificate(AUTH))
    assert cert.kind is AUTH and cert.issuer == dev_ca.auth.certificate.subject
    reads = [c for c in recorder.commands if c.ins == 0xB0]
    assert all(c.le <= 0xFF for c in reads), "short READ BINARY chunks only"
    assert reads[1].le == 4, "the length comes from the first 4 bytes of the DER header"


def test_a_signature_verifies_against_the_cards_certificate(recorder):
    client = JpkiClient.connect(recorder)
    cert = parse_certificate(client.read_certificate(AUTH))
    signature = client.sign(AUTH, b"message to sign", AUTH_PIN)
    assert verify_signature(cert.public_key, b"message to sign", signature)
    assert not verify_signature(cert.public_key, b"another message", signature)


def test_signing_key_signs_after_the_signing_pin(recorder):
    client = JpkiClient.connect(recorder)
    client.verify_pin(SIGNING, SIGN_PIN)
    cert = parse_certificate(client.read_certificate(SIGNING))
    assert cert.four_facts is not None
    assert verify_signature(cert.public_key, b"doc", client.sign(SIGNING, b"doc", SIGN_PIN))


def test_tries_left_are_queried_before_every_verify(recorder):
    client = JpkiClient.connect(recorder)
    with pytest.raises(WrongPin):
        client.sign(AUTH, b"m", "0000")
    client.sign(AUTH, b"m", AUTH_PIN)
    verifies = recorder.verifies()
    assert [bool(c.data) for c in verifies] == [False, True, False, True]


def test_a_wrong_pin_is_sent_once_and_never_retried(recorder, card_file):
    client = JpkiClient.connect(recorder)
    with pytest.raises(WrongPin) as info:
        client.sign(AUTH, b"m", "0000")
    assert info.value.tries_left == 2
    assert len([c for c in recorder.verifies() if c.data]) == 1
    assert not [c for c in recorder.commands if c.ins == 0x2A], "no SIGN after a wrong PIN"
    assert VirtualCard.load(card_file).tries_left(AUTH) == 2


def test_the_last_try_needs_an_explicit_confirmation(recorder):
    client = JpkiClient.connect(recorder)
    for _ in range(2):
        with pytest.raises(WrongPin):
            client.verify_pin(AUTH, "0000")
    sent_before = len(recorder.verifies())
    with pytest.raises(LastTryNotConfirmed):
        client.sign(AUTH, b"m", AUTH_PIN)
    with pytest.raises(LastTryNotConfirmed):
        client.sign(AUTH, b"m", AUTH_PIN, confirm_last_try=lambda: False)
    assert all(not c.data for c in recorder.verifies()[sent_before:]), "nothing spent without confirmation"
    assert len(client.sign(AUTH, b"m", AUTH_PIN, confirm_last_try=lambda: True)) == 256


def test_a_locked_pin_is_reported_and_nothing_is_sent(recorder):
    client = JpkiClient.connect(recorder)
    for _ in range(2):
        with pytest.raises(WrongPin):
            client.verify_pin(AUTH, "0000")
    with pytest.raises(PinLocked):
        client.verify_pin(AUTH, "0000", confirm_last_try=lambda: True)
    sent = len(recorder.verifies())
    with pytest.raises(PinLocked) as info:
        client.sign(AUTH, b"m", AUTH_PIN)
    assert info.value.code == "pin_locked" and "municipal office" in info.value.message
    assert [c.data for c in recorder.verifies()[sent:]] == [b""]
    assert client.pin_tries_left(AUTH) == 0


@pytest.mark.parametrize(("kind", "pin"), [(AUTH, "123"), (AUTH, "12345"), (AUTH, "12a4"), (AUTH, ""),
                                           (SIGNING, "ABC12"), (SIGNING, "abc123"), (SIGNING, "A" * 17),
                                           (SIGNING, "ABC-123"), (AUTH, "１２３４")])
def test_a_pin_of_the_wrong_shape_never_reaches_the_card(recorder, kind, pin):
    client = JpkiClient.connect(recorder)
    with pytest.raises(InvalidPinFormat):
        client.verify_pin(kind, pin)
    assert not recorder.verifies()


def test_the_pin_never_appears_in_errors_or_logs(recorder, caplog):
    caplog.set_level("DEBUG")
    client = JpkiClient.connect(recorder)
    messages = []
    for pin in ("0000", "9876"):
        try:
            client.sign(AUTH, b"m", pin)
        except CardError as exc:
            messages += [str(exc), repr(exc), exc.message]
    joined = " ".join(messages) + caplog.text
    assert "0000" not in joined and "9876" not in joined


def test_smartphone_needs_the_pin_before_its_auth_certificate(make_card):
    client = JpkiClient.connect(VirtualTransport.open(make_card(smartphone=True)))
    assert client.is_smartphone and client.needs_pin_to_read(AUTH)
    with pytest.raises(SecurityStatusNotSatisfied):
        client.read_certificate(AUTH)
    client.verify_pin(AUTH, AUTH_PIN)
    assert parse_certificate(client.read_certificate(AUTH)).kind is AUTH


def test_no_flow_ever_selects_the_text_or_visual_ap(recorder):
    client = JpkiClient.connect(recorder)
    client.read_certificate(AUTH)
    client.pin_tries_left(SIGNING)
    client.sign(AUTH, b"m", AUTH_PIN)
    client.verify_pin(SIGNING, SIGN_PIN)
    client.read_certificate(SIGNING)
    client.sign(SIGNING, b"m", SIGN_PIN)
    selected = [c.data for c in recorder.commands if c.ins == 0xA4 and c.p1 == 0x04]
    assert selected == [JPKI_AP_AID]
    sent = b"".join(c.to_bytes() for c in recorder.commands)
    assert TEXT_AP_AID not in sent and VISUAL_AP_AID not in sent


def _edit_card(card_file, token=None, auth_cert=None):
    state = json.loads(card_file.read_text())
    if token is not None:
        state["files"]["0006"] = token.ljust(32, b" ").hex()
    if auth_cert is not None:
        state["files"][f"{EF_AUTH_CERT:04X}"] = auth_cert.hex()
    card_file.write_text(json.dumps(state))
    return card_file


def test_a_juki_card_is_refused(card_file):
    _edit_card(card_file, token=b"JPKIAPICCTOKEN")
    with pytest.raises(JukiCardRefused) as info:
        JpkiClient.connect(VirtualTransport.open(card_file))
    assert info.value.code == "juki_card_refused"


def test_an_unknown_token_is_refused(card_file):
    _edit_card(card_file, token=b"SOMETHINGELSE")
    with pytest.raises(UnsupportedCard):
        JpkiClient.connect(VirtualTransport.open(card_file))


class NoJpkiCard(BaseTransport):
    def transmit(self, command: bytes) -> bytes:
        return b"\x6a\x82"


def test_a_card_without_the_jpki_ap_is_unsupported():
    with pytest.raises(UnsupportedCard) as info:
        JpkiClient.connect(NoJpkiCard())
    assert "not a My Number Card" in info.value.message


@pytest.mark.parametrize("forge", [
    lambda der: der[:4] + der[4:-100],                      # header claims more than the file holds
    lambda der: b"\x30\x82\xff\xff" + der[4:],               # length far beyond any certificate
    lambda der: b"\x31" + der[1:],                           # not a SEQUENCE
    lambda der: b"\x30\x84" + der[2:],                       # a length form certificates do not use
    lambda der: b"\x30\x82\x00\x00" + der[4:],               # shorter than its own header
])
def test_a_certificate_file_with_a_lying_length_is_a_clear_error(card_file, forge):
    der = VirtualCard.load(card_file).certificate(AUTH)
    _edit_card(card_file, auth_cert=forge(der))
    client = JpkiClient.connect(VirtualTransport.open(card_file))
    with pytest.raises(MalformedResponse):
        client.read_certificate(AUTH)


class Scripted(BaseTransport):
    """A card that answers the connect sequence, then whatever the test scripts."""

    def __init__(self, card_file, answer):
        self.card = VirtualCard.load(card_file)
        self.answer = answer
        self.count = 0

    def transmit(self, command: bytes) -> bytes:
        self.count += 1
        if self.count <= 3:  # select AP, select token, read token
            return self.card.transmit(command)
        return self.answer(command)


@pytest.mark.parametrize(("answer", "error"), [
    (lambda c: b"", MalformedResponse),
    (lambda c: b"\x90", MalformedResponse),
    (lambda c: b"\x12\x34", CardError),
])
def test_garbled_answers_become_typed_errors(card_file, answer, error):
    client = JpkiClient.connect(Scripted(card_file, answer))
    with pytest.raises(error):
        client.read_certificate(AUTH)


def test_a_short_chunk_is_refused(card_file):
    inner = VirtualCard.load(card_file)

    def short_reads(command):
        response = inner.transmit(command)
        return response[:-3] + response[-2:] if command[1] == 0xB0 and len(response) > 10 else response

    client = JpkiClient.connect(Scripted(card_file, short_reads))
    inner.transmit(CommandAPDU(0, 0xA4, 4, 0x0C, JPKI_AP_AID).to_bytes())
    with pytest.raises(MalformedResponse):
        client.read_certificate(AUTH)


def test_a_card_that_stops_answering_raises_and_does_not_hang(card_file):
    def silent(command):
        raise CardNotResponding("The card stopped answering.")

    client = JpkiClient.connect(Scripted(card_file, silent))
    with pytest.raises(CardNotResponding):
        client.sign(AUTH, b"m", AUTH_PIN)


def test_a_signature_of_the_wrong_length_is_refused(card_file):
    inner = VirtualCard.load(card_file)

    def truncated_signature(command):
        response = inner.transmit(command)
        return response[:100] + response[-2:] if command[1] == 0x2A else response

    transport = Scripted(card_file, truncated_signature)
    transport.card = inner
    client = JpkiClient.connect(transport)
    with pytest.raises(MalformedResponse):
        client.sign(AUTH, b"m", AUTH_PIN)


def test_a_removed_virtual_card_raises_card_removed(card_file):
    transport = VirtualTransport.open(card_file)
    client = JpkiClient.connect(transport)
    transport.card.present = False
    with pytest.raises(CardError) as info:
        client.read_certificate(AUTH)
    assert info.value.code == "card_removed"
