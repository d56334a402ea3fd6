"""Random bytes at every parser that takes card or network input: typed errors only, never a crash or a hang."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki.certificate import CertificateError, decode_der_string, parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.apdu import CardError, CommandAPDU, ResponseAPDU
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports import BaseTransport
from nfc_bridge.virtual_card import VirtualCard

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=300))
def test_response_parser_takes_any_bytes(raw):
    try:
        response = ResponseAPDU.from_bytes(raw)
    except CardError:
        assert len(raw) < 2
        return
    assert response.to_bytes() == raw


@FUZZ
@given(st.binary(max_size=4000))
def test_certificate_parser_takes_any_bytes(raw):
    try:
        parse_certificate(raw)
    except CertificateError:
        pass


@FUZZ
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # mutated serials
@given(st.data())
def test_certificate_parser_takes_a_mutated_real_certificate(card_file, data):
    der = bytearray(VirtualCard.load(card_file).certificate(CertificateKind.SIGNING))
    for _ in range(data.draw(st.integers(1, 8))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    try:
        parse_certificate(bytes(der))
    except CertificateError:
        pass


@FUZZ
@given(st.binary(max_size=64))
def test_der_string_decoder_takes_any_bytes(raw):
    try:
        decode_der_string(raw)
    except CertificateError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_command_parser_refuses_cleanly(raw):
    try:
        CommandAPDU.from_bytes(raw)
    except ValueError:
        pass


class RandomCard(BaseTransport):
    """Answers every command with bytes drawn by hypothesis."""

    def __init__(self, answers):
        self.answers = answers

    def transmit(self, command: bytes) -> bytes:
        return self.answers.draw(st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(lambda b: b + b"\x90\x00"),
            st.sampled_from([b"\x90\x00", b"\x63\xc1", b"\x62\x82", b"\x6b\x00"]),
        ))


@FUZZ
@given(st.data())
def test_client_meets_random_answers_with_card_errors_only(data):
    transport = RandomCard(data)
    try:
        client = JpkiClient.connect(transport)
        client.read_certificate(CertificateKind.AUTH)
        client.sign(CertificateKind.AUTH, b"m", "1234", confirm_last_try=lambda: False)
    except CardError:
        pass
