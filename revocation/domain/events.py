"""Resident-register events: one strict JSON schema, parsed into `RevocationEvent` values.

Unknown fields and unknown types are refused, and so is any value that looks like a 12-digit My Number: the
platform must never receive one (My Number Act). Refusals carry a stable `code` and a sentence that names the
field but never echoes its value.

Checks that JSON Schema cannot say are made here too, so that whatever parses can be stored: times fall in the
range the status store records (whole seconds from 1970 in 32 bits), and a renewal's new serial differs from its
old one. Whether a renewal's old serial was ever issued depends on the status store, so the applier checks that
(`unknown_old_serial`, revocation/domain/applier.py).

Validation runs once per event on the worker's hot path, so the schema is compiled once by jsonschema-rs (a
compiled validator in Rust, ~3 µs an event against ~300 µs for the interpreted one). Only an event it refuses is
validated a second time, by the Python `jsonschema` validator, whose error tree gives the sentence naming the field
and rule (`_describe`): refusals are rare, and their wording stays what it always was.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

import jsonschema
import jsonschema_rs

from jpki.profile import CertificateKind
from wire.errors import CodedError
from wire.json_input import JSONInputError, loads

MAX_EVENT_BYTES = 16 * 1024
MAX_BATCH = 1000
# The status store keeps times as seconds since 1970 in 32 bits, and 0 means "none" (revocation/storage/store.py).
EARLIEST_TIME = dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime.fromtimestamp(2**32 - 1, dt.UTC)

EVENT_TYPES = (
    "certificate_issued", "certificate_renewed", "four_facts_changed", "moved_abroad", "died",
    "card_lost", "card_found", "card_returned", "revocation_requested", "key_compromised", "record_error",
)
CARD_EVENTS = ("card_lost", "card_found", "card_returned", "revocation_requested", "key_compromised", "record_error")

_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"}
_SERIAL = {"type": "string", "minLength": 1, "maxLength": 40, "pattern": "^[0-9A-F]+$",
           "description": "certificate serial number, upper-case hexadecimal without separators"}
_KIND = {"type": "string", "enum": [k.value for k in CertificateKind]}
_TIME = {"type": "string", "format": "date-time", "maxLength": 40,
         "description": "RFC 3339 with an offset, from 1970-01-01T00:00:01Z to 2106-02-07T06:28:15Z"}
_KINDS = {"type": "array", "items": _KIND, "minItems": 1, "maxItems": 2, "uniqueItems": True,
          "description": "which certificates of the card; both when absent"}

_COMMON = {
    "event_id": {**_ID, "description": "idempotency key: the same id is applied once"},
    "type": {"type": "string", "enum": list(EVENT_TYPES)},
    "holder": {**_ID, "maxLength": 64, "description": "opaque holder handle from upstream; never a My Number"},
    "occurred_at": {**_TIME, "description": "when it happened upstream (RFC 3339 with an offset, from "
                                          "1970-01-01T00:00:01Z to 2106-02-07T06:28:15Z)"},
    "source": {**_ID, "maxLength": 64, "description": "where the event came from (feed, operator, batch file)"},
}


def _variant(event_type: str, extra: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "if": {"properties": {"type": {"const": event_type}}, "required": ["type"]},
        "then": {
            "properties": {**_COMMON, **extra},
            "required": [*_COMMON, *required],
            "additionalProperties": False,
        },
    }


EVENT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://mykey.example/schemas/resident-register-event.json",
    "title": "Resident-register event",
    "type": "object",
    "properties": _COMMON,
    "required": list(_COMMON),
    "allOf": [
        _variant("certificate_issued", {
            "card_id": _ID,
            "certificates": {
                "type": "array", "minItems": 1, "maxItems": 2,
                "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["serial", "kind", "not_after"],
                    "properties": {"serial": _SERIAL, "kind": _KIND, "not_after": _TIME},
                },
            },
        }, ("card_id", "certificates")),
        _variant("certificate_renewed", {
            "card_id": {**_ID, "description": "the card now holding the new certificates"},
            "renewals": {
                "type": "array", "minItems": 1, "maxItems": 2,
                "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["kind", "old_serial", "new_serial", "not_after"],
                    "properties": {
                        "kind": _KIND,
                        "old_serial": {**_SERIAL, "description": (
                            "the certificate this one replaces: it must be registered already (by its "
                            "certificate_issued or an earlier renewal), else the event is refused "
                            "(unknown_old_serial); it must differ from new_serial")},
                        "new_serial": _SERIAL,
                        "not_after": _TIME,
                    },
                },
            },
        }, ("card_id", "renewals")),
        _variant("four_facts_changed", {
            "changed": {"type": "array", "minItems": 1, "maxItems": 4, "uniqueItems": True,
                        "items": {"enum": ["name", "address", "birthdate", "sex"]}},
        }, ("changed",)),
        _variant("moved_abroad", {}),
        _variant("died", {}),
        *(_variant(t, {"card_id": _ID, "kinds": _KINDS}, ("card_id",)) for t in CARD_EVENTS),
    ],
}

_COMPILED = jsonschema_rs.validator_for(EVENT_SCHEMA, validate_formats=True)  # the fast yes/no
_VALIDATOR = jsonschema.Draft202012Validator(EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())  # the why

# Twelve digits in a row, alone or grouped 4-4-4 with spaces or hyphens, not part of a longer number.
_MY_NUMBER_LIKE = re.compile(r"(?<![0-9])[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}(?![0-9])")
_SERIAL_FIELDS = frozenset({"serial", "old_serial", "new_serial"})


class EventRefused(CodedError, ValueError):
    """An event that will not be applied. `code` is stable; `message` never contains a submitted value."""


@dataclass(frozen=True)
class CertificateRef:
    kind: CertificateKind
    serial: int
    not_after: dt.datetime | None = None
    old_serial: int | None = None  # set for a renewal


@dataclass(frozen=True)
class RevocationEvent:
    event_id: str
    type: str
    holder: str
    occurred_at: dt.datetime
    source: str
    card_id: str | None = None
    certificates: tuple[CertificateRef, ...] = ()
    kinds: frozenset[CertificateKind] = frozenset(CertificateKind)
    changed: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # holder handles and serials stay out of logs
        return f"RevocationEvent({self.type}, id={self.event_id})"

    def to_json(self) -> dict:
        """The event as it travels on the stream (the schema's shape)."""
        out = {"event_id": self.event_id, "type": self.type, "holder": self.holder,
               "occurred_at": self.occurred_at.isoformat(), "source": self.source}
        if self.card_id is not None:
            out["card_id"] = self.card_id
        if self.type == "certificate_issued":
            out["certificates"] = [{"serial": f"{c.serial:X}", "kind": c.kind.value,
                                    "not_after": c.not_after.isoformat()} for c in self.certificates]
        elif self.type == "certificate_renewed":
            out["renewals"] = [{"kind": c.kind.value, "old_serial": f"{c.old_serial:X}",
                                "new_serial": f"{c.serial:X}", "not_after": c.not_after.isoformat()}
                               for c in self.certificates]
        elif self.type == "four_facts_changed":
            out["changed"] = sorted(self.changed)
        elif self.type in CARD_EVENTS and self.kinds != frozenset(CertificateKind):
            out["kinds"] = sorted(k.value for k in self.kinds)
        return out


def certificate_issued(event_id: str, holder: str, card_id: str, certificates: Iterable[CertificateRef],
                       occurred_at: dt.datetime, source: str) -> RevocationEvent:
    """The `certificate_issued` event recording a card's certificates (each with its `not_after`), built as the
    schema describes it and checked like any event that arrives (EventRefused for what the schema refuses)."""
    return parse_event({
        "event_id": event_id, "type": "certificate_issued", "holder": holder, "card_id": card_id,
        "occurred_at": occurred_at.isoformat(), "source": source,
        "certificates": [{"serial": f"{c.serial:X}", "kind": c.kind.value,
                          "not_after": c.not_after.isoformat() if c.not_after else None} for c in certificates]})


def parse_event_json(raw: bytes | str) -> RevocationEvent:
    """Parse one event from its JSON text (bounded: wire/json_input.py refuses deep nesting before decoding)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventRefused("event_too_large", f"An event may be at most {MAX_EVENT_BYTES} bytes.")
    try:
        document = loads(raw, max_bytes=MAX_EVENT_BYTES)
    except JSONInputError as exc:  # syntax, encoding, depth or NaN: the sentence says which, never the text
        raise EventRefused("malformed_json", f"The event is not valid JSON: {exc}") from None
    return parse_event(document)


def parse_event(document: object) -> RevocationEvent:
    """Validate a decoded JSON document against the schema and build the event."""
    refuse_my_number_like(document, "")
    if isinstance(document, dict) and "type" in document and document["type"] not in EVENT_TYPES:
        raise EventRefused("unknown_event_type", "The event's type is not one this service knows.")
    if not _COMPILED.is_valid(document):
        raise EventRefused("invalid_event", _why_invalid(document))
    return _build(document)


def _why_invalid(document: object) -> str:
    """The sentence for a document the compiled validator refused. The two validators agree but for formats, which
    jsonschema-rs checks and `jsonschema` (without its optional format packages) does not: then the compiled
    validator's first error names the field."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(document))
    if error is not None:
        return _describe(error)
    first = next(_COMPILED.iter_errors(document), None)
    where = "/".join(str(p) for p in first.instance_path) if first is not None else ""
    return f"{where or 'the event'}: is not in the required format."


def refuse_my_number_like(value: object, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _MY_NUMBER_LIKE.search(key):
                raise EventRefused("my_number_refused", "A field name looks like a My Number; refused.")
            refuse_my_number_like(item, key if isinstance(key, str) else path)
    elif isinstance(value, list):
        for item in value:
            refuse_my_number_like(item, path)
    elif isinstance(value, str) and path not in _SERIAL_FIELDS and path not in ("occurred_at", "not_after"):
        if _MY_NUMBER_LIKE.search(value):
            raise EventRefused(
                "my_number_refused",
                f"The field '{path or 'event'}' holds something that looks like a My Number. This service "
                "must never receive one; the event was refused and not stored.")
    elif isinstance(value, int) and not isinstance(value, bool) and 10**11 <= abs(value) < 10**12:
        raise EventRefused("my_number_refused", f"The field '{path}' holds a 12-digit number; refused.")


def _describe(error: jsonschema.ValidationError) -> str:
    """A sentence naming the field and the rule, without the submitted value."""
    where = "/".join(str(p) for p in error.absolute_path) or "the event"
    rule = error.validator
    if rule == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        return f"{where}: the field '{missing[0] if missing else '?'}' is required."
    if rule == "additionalProperties":
        return f"{where}: has a field this event type does not allow."
    if rule == "enum" or rule == "const":
        return f"{where}: is not one of the allowed values."
    if rule in ("type",):
        return f"{where}: must be of type {error.validator_value}."
    if rule in ("pattern", "format"):
        return f"{where}: is not in the required format."
    if rule in ("minLength", "maxLength", "minItems", "maxItems", "uniqueItems"):
        return f"{where}: has the wrong length or repeats an item ({rule})."
    return f"{where}: does not match the event schema ({rule})."


def _time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EventRefused("invalid_event", "A time is not an RFC 3339 date-time.") from exc
    if value.tzinfo is None:
        raise EventRefused("invalid_event", "Times must carry a UTC offset.")
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:  # year 1 or 9999 moved across midnight by its offset
        value = None
    if value is None or not EARLIEST_TIME <= value <= LATEST_TIME:
        raise EventRefused("invalid_event", f"Times must fall between {EARLIEST_TIME:%Y-%m-%d} and "
                                            f"{LATEST_TIME:%Y-%m-%d} (UTC), the range the service records.")
    return value


def _build(doc: dict) -> RevocationEvent:
    kind_of = CertificateKind
    certificates: tuple[CertificateRef, ...] = ()
    if doc["type"] == "certificate_issued":
        certificates = tuple(CertificateRef(kind_of(c["kind"]), int(c["serial"], 16), _time(c["not_after"]))
                             for c in doc["certificates"])
    elif doc["type"] == "certificate_renewed":
        certificates = tuple(CertificateRef(kind_of(r["kind"]), int(r["new_serial"], 16), _time(r["not_after"]),
                                            int(r["old_serial"], 16)) for r in doc["renewals"])
    kinds = [c.kind for c in certificates]
    if len(kinds) != len(set(kinds)):
        raise EventRefused("invalid_event", "A card holds one certificate of each kind; a kind is repeated.")
    if any(c.old_serial == c.serial for c in certificates):
        raise EventRefused("invalid_event", "A renewal's new_serial must differ from its old_serial.")
    return RevocationEvent(
        event_id=doc["event_id"],
        type=doc["type"],
        holder=doc["holder"],
        occurred_at=_time(doc["occurred_at"]),
        source=doc["source"],
        card_id=doc.get("card_id"),
        certificates=certificates,
        kinds=frozenset(kind_of(k) for k in doc.get("kinds", [k.value for k in CertificateKind])),
        changed=frozenset(doc.get("changed", ())),
    )
