"""What operators do, shared by the JSON API (`/ops`) and the CLI: submit events, look a certificate up, and
hold, release or revoke one by hand. Every change is audited; nothing here bypasses the status store's rules."""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid

from cryptography.x509 import ReasonFlags

from jpki.profile import CRL_ISSUER_SLUG
from revocation.domain.events import (
    MAX_BATCH,
    EventRefused,
    RevocationEvent,
    parse_event,
    refuse_my_number_like,  # the one My Number check
)
from revocation.services import Services
from revocation.storage.store import CertificateStatus, hold, release, revoke
from revocation.storage.stream import Delivery
from wire.errors import CodedError

ISSUERS = ("auth", "signing")
SERIAL = re.compile(r"^[0-9A-Fa-f]{1,40}$")
MANUAL_REASONS = {
    "keyCompromise": ReasonFlags.key_compromise,
    "cessationOfOperation": ReasonFlags.cessation_of_operation,
    "affiliationChanged": ReasonFlags.affiliation_changed,
    "superseded": ReasonFlags.superseded,
    "unspecified": ReasonFlags.unspecified,
}
MAX_COMMENT = 500


class OperationError(CodedError):
    """An operator request refused; `detail` lists per-event refusals of a batch."""

    def __init__(self, code: str, message: str, status: int = 400, detail: list | None = None):
        super().__init__(code, message, status)
        self.detail = detail


def submit_events(services: Services, documents: list, actor: str, consumer: str | None = None) -> list[dict]:
    """Validate every event first (all or nothing), then submit them (`submit_parsed`)."""
    return submit_parsed(services, parse_batch(documents), actor, consumer)


def submit_parsed(services: Services, events: list[RevocationEvent], actor: str,
                  consumer: str | None = None) -> list[dict]:
    """Append validated events to the stream, apply what is waiting, audit the submission, and report each
    event's outcome. A renewal of a certificate that neither the store nor an event ahead of it in the batch
    registers refuses the whole batch here (422), before anything reaches the stream."""
    refuse_unknown_old_serials(services, events)
    # Audited first: should Redis fail half-way, the log shows an attempt rather than missing a change.
    services.audit.record(actor, "events_submitted",
                          {"events": [{"event_id": e.event_id, "type": e.type} for e in events]},
                          event_id=events[0].event_id if len(events) == 1 else None)
    return apply_events(services, events, consumer or f"api-{os.getpid()}")


def parse_batch(documents: list) -> list[RevocationEvent]:
    if not isinstance(documents, list) or not 1 <= len(documents) <= MAX_BATCH:
        raise OperationError("invalid_batch", f"Send one event or a batch of 1 to {MAX_BATCH} events.")
    events, refused = [], []
    for index, document in enumerate(documents):
        try:
            events.append(parse_event(document))
        except EventRefused as error:
            refused.append({"index": index, "error": error.code, "message": error.message})
    if refused:
        raise OperationError("events_refused", "Some events were refused; none was stored.", 422, refused)
    return events


def refuse_unknown_old_serials(services: Services, events: list[RevocationEvent]) -> None:
    """The applier's unknown_old_serial check, made for a whole batch before it is submitted."""
    registered: set[tuple[str, int]] = set()
    refused = []
    for index, event in enumerate(events):
        try:
            services.applier.refuse_unknown_old_serials(event, frozenset(registered))
        except EventRefused as error:
            refused.append({"index": index, "error": error.code, "message": error.message})
        registered |= {(CRL_ISSUER_SLUG[c.kind], c.serial) for c in event.certificates}
    if refused:
        raise OperationError("events_refused", "Some events were refused; none was stored.", 422, refused)


def apply_events(services: Services, events: list[RevocationEvent], consumer: str,
                 timeout_s: float = 5) -> list[dict]:
    """Append validated events to the stream and consume what is waiting as `consumer`. An event that another
    consumer (a worker) took first reports "queued": it will be applied there. One that was dead-lettered when
    applied (apply_failed, or a renewal refused by the applier) reports `refused` with its code and sentence."""
    entries = [services.stream.submit(event) for event in events]
    drained = services.stream.drain(consumer, services.applier, limit=len(events) + 100, timeout_s=timeout_s)
    services.count_handled(drained)
    deliveries = {d.entry_id: d for d in drained}
    return [_result(event, deliveries.get(entry)) for event, entry in zip(events, entries, strict=True)]


def _result(event: RevocationEvent, delivery: Delivery | None) -> dict:
    if delivery is not None and delivery.outcome is not None:
        return {**delivery.outcome.as_dict(), "queued": False, "refused": None}
    result = {"event_id": event.event_id, "type": event.type, "duplicate": False, "changes": {}, "note": None}
    if delivery is None:
        return {**result, "summary": "queued for a worker", "queued": True, "refused": None}
    refusal = delivery.refused
    return {**result, "summary": f"not applied ({refusal.code}): {refusal.message}", "queued": False,
            "refused": {"error": refusal.code, "message": refusal.message}}


def parse_certificate_ref(issuer: str, serial_hex: str) -> tuple[str, int]:
    if issuer not in ISSUERS:
        raise OperationError("unknown_issuer", "The issuer is 'auth' or 'signing'.")
    if not isinstance(serial_hex, str) or not SERIAL.match(serial_hex):
        raise OperationError("invalid_serial", "A serial is 1–40 hexadecimal digits.")
    return issuer, int(serial_hex, 16)


def lookup(services: Services, issuer: str, serial_hex: str) -> dict:
    issuer, serial = parse_certificate_ref(issuer, serial_hex)
    record = services.store.get(issuer, serial)
    if record is None:
        raise OperationError("unknown_certificate", "No certificate with that issuer and serial is known.", 404)
    previous, following = services.store.links(issuer, serial)
    return {
        "issuer": issuer,
        "serial": f"{serial:X}",
        "status": record.status.name.lower(),
        "reason": record.reason.value if record.reason else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "not_after": record.not_after.isoformat(),
        "crl_shard": record.shard,
        "renewal": {"previous": f"{previous:X}" if previous else None, "next": f"{following:X}" if following else None,
                    "latest": f"{services.store.latest(issuer, serial):X}"},
        "auth_certificate": f"{record.auth_serial:X}" if record.auth_serial else None,
        "history": services.store.history(issuer, serial),
        "audit": services.audit.for_certificate(issuer, serial),
    }


def manual_action(services: Services, actor: str, issuer: str, serial_hex: str, action: str, comment: str,
                  reason: str | None = None) -> dict:
    """Hold, release or revoke one certificate by hand, through the same rules as events."""
    issuer, serial = parse_certificate_ref(issuer, serial_hex)
    if action not in ("hold", "release", "revoke"):
        raise OperationError("unknown_action", "The action is hold, release or revoke.")
    if not isinstance(comment, str) or not comment.strip() or len(comment) > MAX_COMMENT:
        raise OperationError("comment_required", f"Say why, in a comment of 1–{MAX_COMMENT} characters.")
    try:  # the comment goes into the audit log, which must never hold a My Number either
        refuse_my_number_like(comment, "comment")
    except EventRefused as error:
        raise OperationError(error.code, "The comment holds something that looks like a My Number; nothing was "
                                         "changed. Leave it out.", 422) from None
    if (reason is not None and not isinstance(reason, str)) or (action == "revoke" and reason not in MANUAL_REASONS):
        raise OperationError("invalid_reason", "The reason is one of " + ", ".join(MANUAL_REASONS) + ".")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rfc_reason = {"hold": ReasonFlags.certificate_hold, "release": ReasonFlags.remove_from_crl}.get(
        action, MANUAL_REASONS.get(reason))
    change = {"hold": lambda: _decisive(hold, now), "release": lambda: _decisive(release, now),
              "revoke": lambda: revoke(rfc_reason, now)}[action]()
    event_id = f"ops-{uuid.uuid4()}"
    # Same shape as the applier's history entries, so a certificate's history reads as one list.
    history = {"at": now.isoformat(), "do": action, "reason": rfc_reason.value, "event_id": event_id,
               "event_type": "operator_action", "source": actor}
    record, changed = services.store.transition(issuer, serial, change, history)
    if record is None:
        raise OperationError("unknown_certificate", "No certificate with that issuer and serial is known.", 404)
    if changed:
        services.applier.notify(issuer, serial, record)
    services.audit.record(actor, f"certificate_{action}", {"certificate": f"{issuer}:{serial:X}",
                                                           "reason": rfc_reason.value, "comment": comment.strip(),
                                                           "changed": changed}, event_id=event_id)
    return {"changed": changed, "status": record.status.name.lower(), "event_id": event_id,
            "message": "Done." if changed else _unchanged(record.status, action)}


def _decisive(rule, now: dt.datetime):
    """An operator's hold or release is the newest word even within the same second as the last event."""
    def change(record):
        latest = max(now, record.changed_at + dt.timedelta(seconds=1)) if record.changed_at else now
        return rule(latest)(record)
    return change


def _unchanged(status: CertificateStatus, action: str) -> str:
    return {CertificateStatus.REVOKED: "The certificate is revoked; revocation is final, nothing changed."}.get(
        status, f"Nothing to {action}: the certificate is {status.name.lower()}.")
