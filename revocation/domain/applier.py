"""Apply resident-register events: holder record first, then each certificate, both idempotent.

Phase 1 (the holder's slot): compare-and-set the holder record and store the event's record — the certificate
actions it implies — under its `event_id`. A second delivery of the same event finds that record and gets the
same actions back. Phase 2 (each certificate's slot): apply those actions through the status store, where every
change is a compare-and-set that respects per-holder order (store.hold/release/revoke). A crash between the
phases loses nothing: the stream redelivers the unacknowledged event, phase 1 answers from the record, phase 2
completes.

Events are applied in batches (`apply_batch`; `apply` is a batch of one), each phase in a few round trips for the
whole batch rather than a few per event: phase 1 reads every holder record of the batch in one pipeline, plans each
holder's events in stream order against the state the previous one left (pure Python), and writes each holder's new
state with its events' records in one compare-and-set per holder (one script call for all holders on one server, one
per slot on a cluster; a holder whose record moved meanwhile — another worker — or with an event already recorded —
a redelivery — is read again, with its events' records, and planned again). Phase 2 hands every certificate's
actions, in stream order, to `StatusStore.apply_steps`. The result is the one that applying the same events one at a
time gives: same records, same histories, same CRL index, same outcomes.

What fails for one event stays that event's: a refusal, a planning defect or a listener raising is returned in
that event's place, and the events after it go on. Only Redis itself failing raises for the batch.

Order (docs/operators.md "Events"; finality from docs/jpki-profile.md §4): events apply by `occurred_at`, not by
arrival. Revocation is final whatever the order; a hold or release older than the certificate's last change does
nothing; an event that happened after the holder's death revokes nothing new and restores nothing.

One event is refused here rather than applied: a renewal whose old certificate was never registered
(`unknown_old_serial`, docs/operators.md "Events"). Accepting it would revoke nothing, and should the old
certificate's issuance arrive afterwards it would be registered good although superseded. The refusal comes
before phase 1 and records nothing, not even the event id, so the same event can be sent again once the old
certificate is known.

Nothing here signs: the store's compare-and-set drops a changed certificate's cached OCSP response, and the
responder signs a fresh one on the next request for it. Listeners (none in production) hear each change.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from jpki.profile import CRL_ISSUER_SLUG, CertificateKind, crl_shard
from revocation.domain.events import EventRefused, RevocationEvent
from revocation.domain.policy import Effect, Rule, Scope, policy_table
from revocation.storage.store import (
    REASON_CODES,
    REASONS_BY_CODE,
    StatusRecord,
    StatusStore,
    Step,
    hold,
    release,
    revoke,
    run_packed,
)

EVENT_RECORD_TTL = 400 * 24 * 3600  # idempotency window for event ids

# Phase 1: the compare-and-set of each holder's events of a batch, for many holders in one call (one server, or one
# slot of a cluster); one answer per holder. KEYS per holder: holder bucket, then each new event's record key.
# ARGV per holder: n (its new events), holder, expected state ('' = absent), new state, ttl, then the n records.
# 0 for a holder whose state or any of whose event ids moved since they were read (plan again), else 1.
_CAS_HOLDERS = """
local answers, k, a = {}, 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local holder, expected, new, ttl = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local ok = (redis.call('HGET', KEYS[k], holder) or '') == expected
  for i = 1, n do
    if ok and redis.call('EXISTS', KEYS[k + i]) == 1 then ok = false end
  end
  if ok then
    if new ~= expected then redis.call('HSET', KEYS[k], holder, new) end
    for i = 1, n do redis.call('SET', KEYS[k + i], ARGV[a + 4 + i], 'EX', ttl) end
    answers[#answers + 1] = 1
  else
    answers[#answers + 1] = 0
  end
  k, a = k + 1 + n, a + 5 + n
end
return answers
"""
_EFFECT_NAMES = {"register": "registered", "revoke": "revoked", "hold": "held", "release": "released"}

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
        self._cas_holders = store.redis.register_script(_CAS_HOLDERS)

    def apply(self, event: RevocationEvent) -> Outcome:
        """Apply one event (a batch of one); raises what refused or failed it."""
        [result] = self.apply_batch([event])
        if isinstance(result, Exception):
            raise result
        return result

    def apply_batch(self, events: list[RevocationEvent]) -> list[Outcome | Exception]:
        """Apply `events` in order; each one's Outcome, or the exception that refused (EventRefused) or failed it,
        in its place. Raises only when Redis fails: then some of the batch may be applied, and applying the
        whole batch again is safe (phase 1 answers from its records, phase 2's steps are compare-and-sets)."""
        results: list[Outcome | Exception | None] = [None] * len(events)
        registered: set[tuple[str, int]] = set()
        for index, event in enumerate(events):
            try:
                self.refuse_unknown_old_serials(event, frozenset(registered))
            except EventRefused as refusal:
                results[index] = refusal
                continue
            registered |= {(_issuer(cert.kind), cert.serial) for cert in event.certificates}
        planned = self._phase_one(events, skip={i for i, result in enumerate(results) if result is not None})
        for index, plan in planned.items():
            if isinstance(plan, Exception):
                results[index] = plan
            else:
                duplicate, record = plan
                results[index] = Outcome(events[index].event_id, events[index].type, duplicate=duplicate,
                                         note=record.get("note"))
        self._phase_two(events, planned, results)
        return results  # type: ignore[return-value]  # every place is filled by now

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

    def _phase_one(self, events: list[RevocationEvent], skip: set[int] = frozenset(),
                   attempts: int = 16) -> dict[int, tuple[bool, dict] | Exception]:
        """Record the events (but those in `skip`): per event index, (duplicate, its record) or what failed it."""
        by_holder: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            if index not in skip:
                by_holder.setdefault(event.holder, []).append(index)
        planned: dict[int, tuple[bool, dict] | Exception] = {}
        todo = list(by_holder)
        for attempt in range(attempts):
            # First without the event records: new events are the rule, and the compare-and-set refuses a holder
            # with an id already recorded; that holder is read again with its events' records.
            with_records = attempt > 0
            pipe = self.store.redis.pipeline(transaction=False)
            for holder in todo:
                pipe.hget(self.keys.holders(holder), holder)
                for index in by_holder[holder] if with_records else ():
                    pipe.get(self.keys.event(holder, events[index].event_id))
            answers = iter(pipe.execute())
            calls, plans = [], []
            for holder in todo:
                raw = next(answers) or b""
                seen = {index: next(answers) if with_records else None for index in by_holder[holder]}
                plan, call = self._plan_holder(holder, raw, [(events[i], i, seen[i]) for i in by_holder[holder]])
                if call is None:
                    planned.update(plan)
                else:
                    calls.append(call)
                    plans.append((holder, plan))
            written = run_packed(self.store.redis, self._cas_holders, calls)
            todo = []
            for (holder, plan), ok in zip(plans, written, strict=True):
                if ok:
                    planned.update(plan)
                else:
                    todo.append(holder)
            if not todo:
                return planned
        raise RuntimeError("holder records kept changing under concurrent appliers")

    def _plan_holder(self, holder: str, raw: bytes, queue: list[tuple[RevocationEvent, int, bytes | None]],
                     ) -> tuple[dict[int, tuple[bool, dict] | Exception], tuple[list, list] | None]:
        """Plan one holder's events in order from its stored state `raw`; `queue` holds (event, index, its stored
        record if already applied). Returns each event's plan and the compare-and-set call (None: nothing new)."""
        state = json.loads(raw) if raw else {"cards": {}, "died": None}
        encoded = raw
        plan: dict[int, tuple[bool, dict] | Exception] = {}
        recorded: dict[str, bytes] = {}  # event key → record, for an event id repeated within the batch
        keys, records = [], []
        for event, index, stored in queue:
            event_key = self.keys.event(holder, event.event_id)
            stored = stored or recorded.get(event_key)
            if stored is not None:
                plan[index] = (True, json.loads(stored))
                continue
            try:
                new_state, record = self._plan(event, state)
            except Exception as exc:  # a defect behind this one event: it fails alone, recording nothing
                plan[index] = exc
                continue
            if new_state is not None:
                state = new_state
                encoded = json.dumps(new_state, separators=(",", ":"), sort_keys=True).encode()
            recorded[event_key] = json.dumps(record, separators=(",", ":")).encode()
            keys.append(event_key)
            records.append(recorded[event_key])
            plan[index] = (False, record)
        if not keys:
            return plan, None
        return plan, ([self.keys.holders(holder), *keys],
                      [len(keys), holder, raw, encoded, EVENT_RECORD_TTL, *records])

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

    def _phase_two(self, events: list[RevocationEvent], planned: dict[int, tuple[bool, dict] | Exception],
                   results: list) -> None:
        """Every recorded event's actions (a duplicate's too: they complete what a crash interrupted), in stream
        order per certificate, through the store; counts each change on its event's outcome."""
        steps: dict[tuple[str, int], list[Step]] = {}
        owners: list[tuple[int, tuple[str, int], int, str]] = []  # event index, certificate, step position, effect
        links: list[tuple[str, int, int]] = []
        for index in sorted(planned):
            plan = planned[index]
            if isinstance(plan, Exception):
                continue
            for action in plan[1]["actions"]:
                if action["do"] == "link":
                    links.append((action["issuer"], int(action["old"], 16), int(action["new"], 16)))
                    continue
                certificate = (action["issuer"], int(action["serial"], 16))
                queue = steps.setdefault(certificate, [])
                owners.append((index, certificate, len(queue), action["do"]))
                queue.append(self._step(events[index], action, redelivered=plan[0]))
        done = self.store.apply_steps(steps, links)
        for index, certificate, position, do in owners:
            record, changed = done[certificate][position]
            outcome = results[index]
            if not changed or not isinstance(outcome, Outcome):
                continue
            if not outcome.duplicate:
                name = _EFFECT_NAMES[do]
                outcome.changes[name] = outcome.changes.get(name, 0) + 1
            if do != "register":
                try:
                    self.notify(*certificate, record)
                except Exception as exc:  # the listener's failure is this event's, not the batch's
                    results[index] = exc

    @staticmethod
    def _step(event: RevocationEvent, action: dict, redelivered: bool) -> Step:
        if action["do"] == "register":
            return Step(register=StatusRecord.issued(
                action["shard"], dt.datetime.fromtimestamp(action["not_after"], dt.UTC),
                int(action["auth"], 16) if action["auth"] else None), redelivered=redelivered)
        at = dt.datetime.fromtimestamp(action["at"], dt.UTC)
        reason = REASONS_BY_CODE[action["reason"]]
        change = {Effect.REVOKE.value: lambda: revoke(reason, at), Effect.HOLD.value: lambda: hold(at),
                  Effect.RELEASE.value: lambda: release(at)}[action["do"]]()
        history = {"at": at.isoformat(), "do": action["do"], "reason": reason.value,
                   "event_id": event.event_id, "event_type": event.type, "source": event.source}
        return Step(change=change, history=history, redelivered=redelivered,
                    releases_at=at if action["do"] == Effect.RELEASE.value else None)
