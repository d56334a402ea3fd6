"""A console page's state at a glance — red, amber or green — as both services' status pages show it at the top.

A service judges its own state with named rules (revocation/operations/state.py, idp/operator_overview.py); each
rule that fires gives a `Finding`: a stable code (tests and docs/operators.md use it), one sentence saying what is
wrong with the numbers that show it, and one saying what to do. Red means people get wrong or no answers, or soon
will, unless someone acts; amber means something is behind or failing now and then and may become red; green means
no rule fired. The template operator/state.html shows a `State`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RED, AMBER, GREEN = "red", "amber", "green"


@dataclass(frozen=True)
class Finding:
    level: str  # RED or AMBER
    code: str
    why: str
    action: str


@dataclass(frozen=True)
class State:
    level: str  # RED, AMBER or GREEN: the worst finding's
    findings: list[Finding]  # red ones first, each group in its rules' order
    all_clear: str  # the sentence shown when no rule fired


def judge(findings: Iterable[Finding | None], all_clear: str) -> State:
    """The state of the rules' results (None: the rule did not fire)."""
    fired = [finding for finding in findings if finding is not None]
    level = RED if any(f.level == RED for f in fired) else AMBER if fired else GREEN
    return State(level, sorted(fired, key=lambda f: f.level != RED), all_clear)
