"""Random bytes at every parser that takes card or network input: typed errors only, never a crash or a hang."""

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki.certificate import CertificateError, decode_der_string, parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.apdu import CardError, CommandAPDU, ResponseAPDU
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports import BaseTransport
from nfc_bridge.virtual_card import VirtualCard
from wire.json_input import JSONInputError, loads

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


# --- wire.json_input: every text from outside is JSON the platform accepts, or JSONInputError ---------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
JSON_PIECES = st.sampled_from(['[', ']', '{', '}', '"', '\\', '\\"', ',', ':', '1e999', '-1e999', 'NaN', 'Infinity',
                               '1' * 5000, 'true', 'null', '"a"', '\\u0000', '\\ud800', '\u2028', '\ufeff', ' '])


def _loads_or_refuses(data):
    try:
        return loads(data)
    except JSONInputError as refused:
        assert refused.reason in ("syntax", "depth", "size", "number")
        return refused


@FUZZ
@given(st.binary(max_size=2000))
def test_json_input_takes_any_bytes(raw):
    _loads_or_refuses(raw)


@FUZZ
@given(st.lists(JSON_PIECES | st.text(max_size=20), max_size=200).map("".join))
def test_json_input_takes_any_text_made_of_json_pieces(text):
    value = _loads_or_refuses(text)
    if not isinstance(value, JSONInputError):
        assert json.loads(json.dumps(value)) == value  # what is accepted is plain, finite JSON


@FUZZ
@given(JSON_VALUES)
def test_json_input_reads_back_every_document_it_should_accept(value):
    assert loads(json.dumps(value)) == value


@FUZZ
@given(st.integers(33, 100_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]), st.booleans())
def test_json_input_refuses_deep_nesting_as_depth(depth, opener, closed):
    text = opener * depth
    if closed:
        text += "".join({"[": "]", "{": "}"}[c] for c in reversed(opener) if c in "[{") * depth
    with pytest.raises(JSONInputError) as refused:
        loads(text)
    assert refused.value.reason in ("depth", "size")


def test_json_input_depth_check_is_linear_in_an_unclosed_string():
    # Every escaped quote of an unclosed string used to start a new scan to the end: 50 s for 100 KB.
    text = '"' + 'a\\"' * 30_000 + "[" * 40
    started = time.perf_counter()
    with pytest.raises(JSONInputError):
        loads(text)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("number", ["1e999", "-1e999", "[1.5e400]", '{"a": 2e308}'])
def test_json_input_refuses_numbers_beyond_a_double(number):
    with pytest.raises(JSONInputError) as refused:
        loads(number)
    assert refused.value.reason == "number"


def test_json_input_counts_size_in_utf8_bytes():
    with pytest.raises(JSONInputError) as refused:
        loads('"' + "あ" * 400 + '"', max_bytes=1000)  # 400 characters, 1,202 bytes
    assert refused.value.reason == "size"
