import pytest

from nfc_bridge.apdu import (
    CardError,
    CommandAPDU,
    FileNotFound,
    InstructionNotSupported,
    MalformedResponse,
    OffsetOutOfRange,
    PinLocked,
    ResponseAPDU,
    SecurityStatusNotSatisfied,
    StatusWordError,
    WrongLength,
    WrongParameters,
    WrongPin,
    status_error,
)


@pytest.mark.parametrize(("sw", "kind", "code"), [
    (0x63C2, WrongPin, "wrong_pin"),
    (0x63C1, WrongPin, "wrong_pin"),
    (0x63C0, PinLocked, "pin_locked"),
    (0x6983, PinLocked, "pin_locked"),
    (0x6984, PinLocked, "pin_locked"),
    (0x6982, SecurityStatusNotSatisfied, "security_status_not_satisfied"),
    (0x6A82, FileNotFound, "file_not_found"),
    (0x6700, WrongLength, "wrong_length"),
    (0x6B00, OffsetOutOfRange, "offset_out_of_range"),
    (0x6A86, WrongParameters, "wrong_parameters"),
    (0x6A80, WrongParameters, "wrong_parameters"),
    (0x6D00, InstructionNotSupported, "instruction_not_supported"),
    (0x6E00, InstructionNotSupported, "instruction_not_supported"),
    (0x6F00, StatusWordError, "unexpected_status"),
    (0x6282, StatusWordError, "unexpected_status"),
])
def test_every_status_word_maps_to_one_typed_error(sw, kind, code):
    error = status_error(sw)
    assert type(error) is kind
    assert isinstance(error, CardError)
    assert error.code == code and error.sw == sw
    assert error.message.endswith(".")
    with pytest.raises(kind):
        ResponseAPDU(b"", sw).check()


def test_wrong_pin_says_how_many_tries_are_left():
    assert status_error(0x63C2).tries_left == 2
    assert "1 try left" in status_error(0x63C1).message


def test_ok_response_checks_clean():
    response = ResponseAPDU.from_bytes(b"\x01\x02\x90\x00")
    assert response.check().data == b"\x01\x02" and response.ok


@pytest.mark.parametrize("raw", [b"", b"\x90", None, "9000"])
def test_a_response_too_short_for_a_status_word_is_malformed(raw):
    with pytest.raises(MalformedResponse):
        ResponseAPDU.from_bytes(raw)


def test_short_apdu_encoding_cases():
    assert CommandAPDU(0x00, 0xA4, 0x02, 0x0C, b"\x00\x0a").to_bytes().hex() == "00a4020c02000a"
    assert CommandAPDU(0x00, 0xB0, 0x01, 0x00, le=0xFF).to_bytes().hex() == "00b00100ff"
    assert CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=256).to_bytes().hex() == "00b0000000"
    assert CommandAPDU(0x00, 0x20, 0x00, 0x80).to_bytes().hex() == "00200080"
    sign = CommandAPDU(0x80, 0x2A, 0x00, 0x80, b"\x30" * 51, le=256).to_bytes()
    assert sign[:5].hex() == "802a008033" and sign[-1] == 0


@pytest.mark.parametrize("apdu", [
    CommandAPDU(0, 0xA4, 4, 0x0C, b"\xd3\x92"),
    CommandAPDU(0, 0xB0, 0, 4, le=4),
    CommandAPDU(0, 0x20, 0, 0x80),
    CommandAPDU(0x80, 0x2A, 0, 0x80, b"x" * 255, le=256),
])
def test_command_apdus_round_trip(apdu):
    assert CommandAPDU.from_bytes(apdu.to_bytes()) == apdu


@pytest.mark.parametrize("raw", [b"", b"\x00\xa4\x04", b"\x00\xa4\x04\x0c\x05\x01", b"\x00\xa4\x04\x0c\x00\x00\x01"])
def test_bad_command_bytes_are_refused(raw):
    with pytest.raises(ValueError):
        CommandAPDU.from_bytes(raw)


def test_extended_length_is_refused_when_building():
    with pytest.raises(ValueError):
        CommandAPDU(0, 0x2A, 0, 0, b"x" * 256)
    with pytest.raises(ValueError):
        CommandAPDU(0, 0xB0, 0, 0, le=257)


def test_repr_never_shows_command_data_such_as_a_pin():
    verify = CommandAPDU(0x00, 0x20, 0x00, 0x80, b"1234")
    assert "1234" not in repr(verify) and "31323334" not in repr(verify)
    assert "deadbeef" not in repr(ResponseAPDU(bytes.fromhex("deadbeef"), 0x9000))
