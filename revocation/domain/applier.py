"""Apply a resident-register event: holder record first, then each certificate, both idempotent.

Phase 1 (the holder's slot): compare-and-set the holder record and store the event's record — the certificate
actions it implies — under its `event_id`. A second delivery of the same event finds that record and gets the
same actions back. Phase 2 (each certificate's slot): apply those actions through the status store, where every
change is a compare-and-set that respects per-holder order (store.hold/release/revoke). A crash between the
phases loses nothing: the stream redelivers the unacknowledged event, phase 1 answers from the record, phase 2
completes.

Order (docs/operators.md "Events"; finality from docs/jpki-profile.md §4): events apply by `occurred_at`, not by
arrival. Revocation is final whatever the order; a hold or release older than the certificate's last change does
nothing; an event that happened after the holder's death revokes nothing new and restores nothing.

One event is refused here rather than applied: a renewal whose old certificate was never registered
(`unknown_old_serial`, docs/operators.md "Events"). Accepting it would revoke nothing, and should the old
certificate's issuance arrive afterwards it would be registered good although superseded. The refusal comes
before phase 1 and records nothing, not even the event id, so the same event can be sent again once the old
certificate is known.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from jpki.profile import CRL_ISSUER_SLUG, CertificateKind, crl_shard
from revocation.domain.events import EventRefused, RevocationEvent
from revocation.domain.policy import Effect, Rule, Scope, policy_table
from revocation.storage.store import REASON_CODES, REASONS_BY_CODE, StatusRecord, StatusStore, hold, release, revoke

EVENT_RECORD_TTL = 400 * 24 * 3600  # idempotency window for event ids

# Phase 1: KEYS holder bucket, event record. ARGV holder, expected ('' = absent), new state, record, ttl.
_CAS_HOLDER = """
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return {2, ''} end
if ARGV[3] ~= ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
return {1, ARGV[4]}
"""

Listener = Callable[[str, int, StatusRecord], None]


@dataclass
class Outcome:
    """What an event did. Counts and kinds only: no serial or holder handle, so it can be shown and logged."""

    event_id: str
    type: str
    duplicate: bool = False
    changes: dict[str, int] = field(default_factory=dict)  # e.g. {"revoked": 2, "registered": 1}
    note: str | None = None

    def summary(self) -> str:
        if self.duplicate:
            return "duplicate: already applied"
        done = ", ".join(f"{n} {what}" for what, n in sorted(self.changes.items())) or "no certificate changed"
        return f"{done}{f' ({self.note})' if self.note else ''}"

    def as_dict(self) -> dict:
        return {"event_id": self.event_id, "type": self.type, "duplicate": self.duplicate,
                "changes": self.changes, "note": self.note, "summary": self.summary()}


def _issuer(kind: CertificateKind) -> str:
    return CRL_ISSUER_SLUG[kind]


class Applier:
    def __init__(self, store: StatusStore, moved_abroad_revokes_auth: bool = False,
                 listeners: tuple[Listener, ...] = ()):
        self.store = store
        self.keys = store.keys
        self.policy = policy_table(moved_abroad_revokes_auth)
        self.listeners = listeners
        self._cas_holder = store.redis.register_script(_CAS_HOLDER)

    def apply(self, event: RevocationEvent) -> Outcome:
        self.refuse_unknown_old_serials(event)
        duplicate, record = self._phase_one(event)
        outcome = Outcome(event.event_id, event.type, duplicate=duplicate, note=record.get("note"))
        for action in record["actions"]:
            effect = self._phase_two(event, action)
            if effect and not duplicate:
                outcome.changes[effect] = outcome.changes.get(effect, 0) + 1
        return outcome

    def refuse_unknown_old_serials(self, event: RevocationEvent,
                                   registered_before: frozenset[tuple[str, int]] = frozenset()) -> None:
        """Raise EventRefused (unknown_old_serial) if `event` renews a certificate that is not registered, nor in
        `registered_before` (certificates that events ahead of it in the same batch register)."""
        if event.type != "certificate_renewed":
            return
        for cert in event.certificates:
            issuer = _issuer(cert.kind)
            if (issuer, cert.old_serial) not in registered_before and self.store.get(issuer, cert.old_serial) is None:
                raise EventRefused("unknown_old_serial", f"The renewal's {cert.kind.value} old_serial is not a "
                                                         "certificate this service registered; nothing was changed. "
                                                         "Send its certificate_issued first, then this event again.")

    def notify(self, issuer: str, serial: int, record: StatusRecord) -> None:
        """Tell what derives from status (the OCSP cache) that a certificate changed."""
        for listener in self.listeners:
            listener(issuer, serial, record)

    # --- phase 1: the holder ------------------------------------------------------------------------------

    def _phase_one(self, event: RevocationEvent, attempts: int = 16) -> tuple[bool, dict]:
        bucket, event_key = self.keys.holders(event.holder), self.keys.event(event.holder, event.event_id)
        for _ in range(attempts):
            raw = self.store.redis.hget(bucket, event.holder) or b""
            state = json.loads(raw) if raw else {"cards": {}, "died": None}
            new_state, record = self._plan(event, state)
            encoded = json.dumps(new_state, separators=(",", ":"), sort_keys=True).encode() if new_state else raw
            answer, stored = self._cas_holder(
                keys=[bucket, event_key],
                args=[event.holder, raw, encoded, json.dumps(record, separators=(",", ":")), EVENT_RECORD_TTL])
            if answer in (0, 1):
                return answer == 0, json.loads(stored)
        raise RuntimeError("holder record kept changing under concurrent appliers")

    def _plan(self, event: RevocationEvent, state: dict) -> tuple[dict | None, dict]:
        """The holder's next state and the certificate actions of `event` (pure: no I/O)."""
        at = int(event.occurred_at.timestamp())
        died = state.get("died")
        if died is not None and at > died:
            return None, {"actions": [], "note": "happened after the holder's death: nothing changes"}
        cards: dict[str, dict[str, str]] = {card: dict(certs) for card, certs in state["cards"].items()}
        actions: list[dict] = []
        note = None
        if event.type == "certificate_issued":
            on_card = cards.setdefault(event.card_id, {})
            for cert in event.certificates:
                on_card[cert.kind.value] = f"{cert.serial:X}"
            for cert in event.certificates:
                actions.append(self._register(cert.kind, cert.serial, cert.not_after, on_card))
        elif event.type == "certificate_renewed":
            for cert in event.certificates:
                for certs in cards.values():
                    if certs.get(cert.kind.value) == f"{cert.old_serial:X}":
                        del certs[cert.kind.value]
                cards.setdefault(event.card_id, {})[cert.kind.value] = f"{cert.serial:X}"
            rule = self.policy["certificate_renewed"]
            for cert in event.certificates:
                issuer = _issuer(cert.kind)
                actions.append(self._register(cert.kind, cert.serial, cert.not_after, cards[event.card_id]))
                actions.append({"do": "link", "issuer": issuer, "old": f"{cert.old_serial:X}",
                                "new": f"{cert.serial:X}"})
                actions.append(self._effect(rule, issuer, cert.old_serial, at))
            cards = {card: certs for card, certs in cards.items() if certs}
        else:
            rule = self.policy[event.type]
            targets = self._targets(rule, event, cards)
            if targets is None:
                note = "unknown card for this holder: nothing changes"
                targets = []
            actions += [self._effect(rule, _issuer(kind), int(serial, 16), at) for kind, serial in targets]
            if event.type == "died":
                died = at if died is None else min(died, at)
        return {"cards": cards, "died": died}, {"actions": actions, "note": note}

    def _targets(self, rule: Rule, event: RevocationEvent, cards: dict) -> list[tuple[CertificateKind, str]] | None:
        if rule.scope is Scope.HOLDER:
            chosen = cards.values()
            kinds = rule.kinds
        else:
            if event.card_id not in cards:
                return None
            chosen = [cards[event.card_id]]
            kinds = rule.kinds & event.kinds
        return [(kind, certs[kind.value]) for certs in chosen for kind in CertificateKind
                if kind in kinds and kind.value in certs]

    @staticmethod
    def _register(kind: CertificateKind, serial: int, not_after: dt.datetime, on_card: dict) -> dict:
        partner = on_card.get(CertificateKind.AUTH.value) if kind is CertificateKind.SIGNING else None
        return {"do": "register", "issuer": _issuer(kind), "serial": f"{serial:X}",
                "not_after": int(not_after.timestamp()), "shard": crl_shard(serial), "auth": partner}

    @staticmethod
    def _effect(rule: Rule, issuer: str, serial: int, at: int) -> dict:
        return {"do": rule.effect.value, "issuer": issuer, "serial": f"{serial:X}",
                "reason": REASON_CODES[rule.reason], "at": at}

    # --- phase 2: each certificate ------------------------------------------------------------------------

    def _phase_two(self, event: RevocationEvent, action: dict) -> str | None:
        issuer = action["issuer"]
        if action["do"] == "link":
            self.store.link_renewal(issuer, int(action["old"], 16), int(action["new"], 16))
            return None
        serial = int(action["serial"], 16)
        if action["do"] == "register":
            record = StatusRecord.issued(action["shard"], dt.datetime.fromtimestamp(action["not_after"], dt.UTC),
                                         int(action["auth"], 16) if action["auth"] else None)
            return "registered" if self.store.register(issuer, serial, record) else None
        at = dt.datetime.fromtimestamp(action["at"], dt.UTC)
        reason = REASONS_BY_CODE[action["reason"]]
        change = {Effect.REVOKE.value: lambda: revoke(reason, at), Effect.HOLD.value: lambda: hold(at),
                  Effect.RELEASE.value: lambda: release(at)}[action["do"]]()
        history = {"at": at.isoformat(), "do": action["do"], "reason": reason.value,
                   "event_id": event.event_id, "event_type": event.type, "source": event.source}
        record, changed = self.store.transition(issuer, serial, change, history)
        if not changed or record is None:
            return None
        self.notify(issuer, serial, record)
        return {"revoke": "revoked", "hold": "held", "release": "released"}[action["do"]]

