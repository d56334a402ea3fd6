"""The resident-register event schema: strict, typed refusals, and no My Number ever accepted."""

import datetime as dt
import json

import pytest

from jpki.profile import CertificateKind
from revocation.domain.events import (
    EVENT_SCHEMA,
    CertificateRef,
    EventRefused,
    certificate_issued,
    parse_event,
    parse_event_json,
)

BASE = {"event_id": "ev-1", "holder": "h-001", "occurred_at": "2026-02-01T09:00:00+09:00", "source": "jlis-feed"}


def event(**fields):
    return {**BASE, **fields}


ISSUED = event(type="certificate_issued", card_id="card-1", certificates=[
    {"serial": "1A2B", "kind": "auth", "not_after": "2031-01-02T14:59:59Z"},
    {"serial": "3C4D", "kind": "signing", "not_after": "2031-01-02T14:59:59Z"},
])


def refused(document) -> EventRefused:
    with pytest.raises(EventRefused) as info:
        parse_event(document)
    return info.value


def test_a_valid_issuance_parses_into_typed_values():
    parsed = parse_event(ISSUED)
    assert parsed.type == "certificate_issued" and parsed.card_id == "card-1"
    assert [(c.kind, c.serial) for c in parsed.certificates] == [(CertificateKind.AUTH, 0x1A2B),
                                                                 (CertificateKind.SIGNING, 0x3C4D)]
    assert parsed.occurred_at.utcoffset().total_seconds() == 0
    assert parsed.occurred_at.hour == 0  # 09:00 JST


@pytest.mark.parametrize("document", [
    event(type="certificate_renewed", card_id="card-2",
          renewals=[{"kind": "auth", "old_serial": "1A2B", "new_serial": "1A2C", "not_after": "2036-01-01T00:00:00Z"}]),
    event(type="four_facts_changed", changed=["address"]),
    event(type="moved_abroad"),
    event(type="died"),
    *[event(type=t, card_id="card-1") for t in ("card_lost", "card_found", "card_returned", "revocation_requested",
                                               "key_compromised", "record_error")],
    event(type="revocation_requested", card_id="card-1", kinds=["signing"]),
])
def test_every_event_type_parses_and_round_trips(document):
    parsed = parse_event(document)
    assert parse_event(parsed.to_json()) == parsed


def test_unknown_fields_are_refused():
    assert refused({**ISSUED, "note": "x"}).code == "invalid_event"
    assert refused(event(type="died", card_id="card-1")).code == "invalid_event"  # died takes no card
    bad_cert = json.loads(json.dumps(ISSUED))
    bad_cert["certificates"][0]["extra"] = 1
    assert refused(bad_cert).code == "invalid_event"


def test_unknown_event_type_has_its_own_code():
    assert refused(event(type="married")).code == "unknown_event_type"


@pytest.mark.parametrize("missing", ["event_id", "type", "holder", "occurred_at", "source"])
def test_missing_common_fields_are_refused_by_name(missing):
    document = dict(ISSUED)
    del document[missing]
    error = refused(document)
    assert error.code in ("invalid_event",) and missing in error.message


@pytest.mark.parametrize(("field", "value"), [
    ("holder", "123456789012"), ("holder", "h-1234-5678-9012"), ("source", "1234 5678 9012"),
    ("card_id", "card123456789012"), ("event_id", "ev123456789012x"),
])
def test_a_my_number_like_value_is_refused_and_not_echoed(field, value):
    document = {**event(type="card_lost", card_id="card-1"), field: value}
    error = refused(document)
    assert error.code == "my_number_refused"
    assert value not in error.message and value.replace(" ", "") not in error.message


def test_a_twelve_digit_json_number_anywhere_is_refused():
    assert refused({**event(type="died"), "holder": 123456789012}).code == "my_number_refused"


def test_serials_are_not_mistaken_for_my_numbers():
    document = json.loads(json.dumps(ISSUED))
    document["certificates"][0]["serial"] = "123456789012"  # hex serial that happens to be all digits
    assert parse_event(document).certificates[0].serial == 0x123456789012


@pytest.mark.parametrize("document", [
    event(type="card_lost", card_id="card-1", occurred_at="yesterday"),
    event(type="card_lost", card_id="card-1", occurred_at="2026-02-01T09:00:00"),  # no offset
    {**ISSUED, "certificates": [{"serial": "zz", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}]},
    {**ISSUED, "certificates": [{"serial": "1a2b", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}]},
    {**ISSUED, "certificates": [{"serial": "1A", "kind": "both", "not_after": "2031-01-01T00:00:00Z"}]},
    {**ISSUED, "certificates": []},
    {**ISSUED, "certificates": [ISSUED["certificates"][0], ISSUED["certificates"][0]]},
    event(type="four_facts_changed", changed=["height"]),
    event(type="four_facts_changed", changed=[]),
    event(type="card_lost", card_id=""),
    event(type="card_lost", card_id="x" * 200),
    event(type="card_lost", card_id="card 1"),
    [BASE], "event", None, 42,
])
def test_shape_errors_are_refused_with_a_sentence(document):
    error = refused(document)
    assert error.code in ("invalid_event", "unknown_event_type")
    assert error.message.endswith(".")


def test_json_text_errors():
    with pytest.raises(EventRefused) as info:
        parse_event_json(b"{not json")
    assert info.value.code == "malformed_json"
    with pytest.raises(EventRefused) as info:
        parse_event_json(b" " * 20_000)
    assert info.value.code == "event_too_large"


def test_schema_is_published_in_docs_and_matches_the_code():
    from pathlib import Path

    published = json.loads((Path(__file__).resolve().parents[1] / "docs" / "event-schema.json").read_text())
    assert published == json.loads(json.dumps(EVENT_SCHEMA))


def test_repr_keeps_holder_out_of_logs():
    parsed = parse_event(ISSUED)
    assert "h-001" not in repr(parsed) and "1A2B" not in repr(parsed)


def test_deeply_nested_json_is_refused_as_malformed_not_a_crash():
    for text in ("[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, '{"x": NaN}'):
        with pytest.raises(EventRefused) as info:
            parse_event_json(text.encode())
        assert info.value.code == "malformed_json" and info.value.message.endswith(".")
    with pytest.raises(EventRefused) as info:
        parse_event_json(b"[" * 1000 + b"]" * 1000)
    assert "deeper" in info.value.message


@pytest.mark.parametrize("moment", [
    "0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00",  # overflow when moved to UTC
    "1960-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2106-02-07T06:28:16Z", "2200-01-01T00:00:00Z",
])
def test_times_outside_what_the_store_records_are_refused(moment):
    assert refused(event(type="card_lost", card_id="card-1", occurred_at=moment)).code == "invalid_event"
    late = json.loads(json.dumps(ISSUED))
    late["certificates"][0]["not_after"] = moment
    assert refused(late).code == "invalid_event"


def test_the_edges_of_the_recorded_range_are_accepted():
    for moment in ("1970-01-01T00:00:01Z", "2106-02-07T06:28:15Z"):
        assert parse_event(event(type="card_lost", card_id="card-1", occurred_at=moment))


def test_a_renewal_to_the_same_serial_is_refused():
    same = event(type="certificate_renewed", card_id="card-2", renewals=[
        {"kind": "auth", "old_serial": "1A2B", "new_serial": "1A2B", "not_after": "2036-01-01T00:00:00Z"}])
    assert refused(same).code == "invalid_event"


def test_the_certificate_issued_builder_makes_the_event_the_schema_describes():
    not_after = dt.datetime(2031, 1, 2, 14, 59, 59, tzinfo=dt.UTC)
    built = certificate_issued(
        "ev-1", "h-001", "card-1",
        [CertificateRef(CertificateKind.AUTH, 0x1A2B, not_after),
         CertificateRef(CertificateKind.SIGNING, 0x3C4D, not_after)],
        occurred_at=dt.datetime(2026, 2, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=9))), source="jlis-feed")
    assert built == parse_event(ISSUED)
    assert built.to_json() == parse_event(ISSUED).to_json()


def test_the_certificate_issued_builder_refuses_what_the_schema_refuses():
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    twice = [CertificateRef(CertificateKind.AUTH, 1, at.replace(year=2031)),
             CertificateRef(CertificateKind.AUTH, 2, at.replace(year=2031))]
    with pytest.raises(EventRefused) as repeated:
        certificate_issued("ev-2", "h-001", "card-1", twice, occurred_at=at, source="test")
    assert repeated.value.code == "invalid_event"
    with pytest.raises(EventRefused) as no_expiry:
        certificate_issued("ev-3", "h-001", "card-1", [CertificateRef(CertificateKind.AUTH, 1)], occurred_at=at,
                           source="test")
    assert no_expiry.value.code == "invalid_event"
    with pytest.raises(EventRefused) as my_number:
        certificate_issued("ev-4", "123456789012", "card-1", twice[:1], occurred_at=at, source="test")
    assert my_number.value.code == "my_number_refused"
