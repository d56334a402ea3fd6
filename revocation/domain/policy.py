"""Which resident-register event does what to which certificate: docs/jpki-profile.md §4 as data, in one place.

The applier reads this table; nothing else decides policy. Issuance and renewal are not rows of the table
(they register certificates and link them) apart from renewal's revocation of the old certificate, which is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.x509 import ReasonFlags

from jpki.profile import CertificateKind

AUTH, SIGNING = CertificateKind.AUTH, CertificateKind.SIGNING


class Effect(enum.Enum):
    REVOKE = "revoke"
    HOLD = "hold"
    RELEASE = "release"


class Scope(enum.Enum):
    HOLDER = "holder"  # every current certificate of the holder, of the listed kinds
    CARD = "card"  # the certificates on the event's card, of the listed kinds (and of the event's `kinds`)


@dataclass(frozen=True)
class Rule:
    effect: Effect
    reason: ReasonFlags | None
    kinds: frozenset[CertificateKind]
    scope: Scope


def _rule(effect, reason, kinds, scope=Scope.CARD) -> Rule:
    return Rule(effect, reason, frozenset(kinds), scope)


# RFC 5280 §5.3.1 reasons. Signing certificates carry the four facts, so a change of facts revokes only them.
POLICY: dict[str, Rule] = {
    "four_facts_changed": _rule(Effect.REVOKE, ReasonFlags.affiliation_changed, [SIGNING], Scope.HOLDER),
    "moved_abroad": _rule(Effect.REVOKE, ReasonFlags.affiliation_changed, [SIGNING], Scope.HOLDER),
    "died": _rule(Effect.REVOKE, ReasonFlags.cessation_of_operation, [AUTH, SIGNING], Scope.HOLDER),
    "certificate_renewed": _rule(Effect.REVOKE, ReasonFlags.superseded, [AUTH, SIGNING]),  # the old ones
    "card_returned": _rule(Effect.REVOKE, ReasonFlags.cessation_of_operation, [AUTH, SIGNING]),
    "revocation_requested": _rule(Effect.REVOKE, ReasonFlags.cessation_of_operation, [AUTH, SIGNING]),
    "key_compromised": _rule(Effect.REVOKE, ReasonFlags.key_compromise, [AUTH, SIGNING]),
    "record_error": _rule(Effect.REVOKE, ReasonFlags.unspecified, [AUTH, SIGNING]),
    "card_lost": _rule(Effect.HOLD, ReasonFlags.certificate_hold, [AUTH, SIGNING]),
    "card_found": _rule(Effect.RELEASE, ReasonFlags.remove_from_crl, [AUTH, SIGNING]),
}


def policy_table(moved_abroad_revokes_auth: bool = False) -> dict[str, Rule]:
    """The table in force. Since 2024 the auth certificate survives a move abroad; the setting can change that."""
    table = dict(POLICY)
    if moved_abroad_revokes_auth:
        table["moved_abroad"] = _rule(Effect.REVOKE, ReasonFlags.affiliation_changed, [AUTH, SIGNING], Scope.HOLDER)
    return table
