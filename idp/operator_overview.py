"""The IdP's state and charts for the top of its console page: how card logins went over the last hour.

The IdP's own count is `mykey_logins_total{result,token_type}` (idp/login/bridge_api.py): every verified or refused
proof, by the refusal's code. Its per-minute history (observability/metrics.py, "History") gives the chart of
logins per minute, answered and refused, and the last hour's logins by result; the state is judged from the last
WINDOW_MINUTES of it with the named rules below (what a finding is and the levels mean: operator_console/state.py).

Red:
1. `logins_failing`        — at least MIN_LOGINS logins were answered in the window and none was verified
Amber:
2. `revocation_unknown`    — logins were refused because the certificate's status could not be established (the
                             revocation service unreachable or not answering in time, or a certificate it does not
                             know): the check fails closed, so holders are turned away
3. `logins_mostly_refused` — at least MIN_LOGINS logins in the window and more than half of them refused

The page asks every process to flush its counts first (as a scrape of /metrics does) and reads the hour in one
pipeline: no round trip on any login's path.
"""

from __future__ import annotations

import datetime as dt

from observability.metrics import Counter, flush_everywhere
from operator_console.charts import Bar, Chart, Series, bars, columns, minute_labels
from operator_console.state import AMBER, RED, Finding, State, judge

MINUTES = 60
WINDOW_MINUTES = 15
MIN_LOGINS = 5  # fewer logins than this in the window say too little to call a share of them a trend
OK = "ok"
ALL_CLEAR = "All clear: card logins are verified as they come, and none failed for want of a revocation answer."


def overview(logins_total: Counter, now: dt.datetime) -> tuple[State, list[Chart]]:
    flush_everywhere(logins_total.redis)
    history = [(start, _by_result(counts)) for start, counts in logins_total.history(MINUTES, now.timestamp())]
    window: dict[str, int] = {}
    for _, results in history[-WINDOW_MINUTES:]:
        for result, count in results.items():
            window[result] = window.get(result, 0) + count
    state = judge((rule(window) for rule in RULES), ALL_CLEAR)
    return state, [logins_chart(history), results_chart(history)]


def _by_result(counts: dict[tuple[str, ...], int]) -> dict[str, int]:
    results: dict[str, int] = {}
    for (result, _token_type), count in counts.items():
        results[result] = results.get(result, 0) + count
    return results


def logins_failing(window: dict[str, int]) -> Finding | None:
    answered = sum(window.values())
    if answered < MIN_LOGINS or window.get(OK):
        return None
    return Finding(RED, "logins_failing", f"None of the last {answered} card logins ({WINDOW_MINUTES} minutes) was "
                   "verified.", "See their results in the chart below: revocation_unknown points at the revocation "
                   "service (open its console), untrusted_issuer or signature_invalid at the trust anchors or the "
                   "bridge in use.")


def revocation_unknown(window: dict[str, int]) -> Finding | None:
    count = window.get("revocation_unknown", 0)
    if not count:
        return None
    return Finding(AMBER, "revocation_unknown", f"{count} card login(s) in the last {WINDOW_MINUTES} minutes were "
                   "refused because the certificate's status could not be established.",
                   "Check the revocation service (its console, its /healthz) and REVOCATION_URL; a certificate it "
                   "does not know gives the same code.")


def logins_mostly_refused(window: dict[str, int]) -> Finding | None:
    answered = sum(window.values())
    refused = answered - window.get(OK, 0)
    if answered < MIN_LOGINS or not window.get(OK) or refused * 2 <= answered:
        return None
    return Finding(AMBER, "logins_mostly_refused", f"{refused} of the last {answered} card logins "
                   f"({WINDOW_MINUTES} minutes) were refused.",
                   "See which results in the chart below; many of one kind usually has one cause.")


RULES = (logins_failing, revocation_unknown, logins_mostly_refused)


def logins_chart(history: list[tuple[int, dict[str, int]]]) -> Chart:
    verified = [results.get(OK, 0) for _, results in history]
    refused = [sum(results.values()) - results.get(OK, 0) for _, results in history]
    description = (f"Card logins per minute over the last hour: {sum(verified)} verified, {sum(refused)} refused, "
                   f"at most {max(v + r for v, r in zip(verified, refused, strict=True))} in a minute.")
    return columns("chart-logins", "Card logins per minute (last hour)", description,
                   minute_labels([start for start, _ in history]),
                   [Series("verified", verified, "green"), Series("refused", refused, "red")], "logins")


def results_chart(history: list[tuple[int, dict[str, int]]]) -> Chart:
    totals: dict[str, int] = {OK: 0}
    for _, results in history:
        for result, count in results.items():
            totals[result] = totals.get(result, 0) + count
    ordered = [OK, *sorted((r for r in totals if r != OK), key=lambda r: -totals[r])]
    peak = max(totals.values()) or 1
    rows = [Bar(result, totals[result] / peak, f"{totals[result]:,}", "green" if result == OK else "red")
            for result in ordered]
    description = "Card logins in the last hour by result: " + ", ".join(
        f"{result} {totals[result]}" for result in ordered) + "."
    return bars("chart-results", "Card logins by result (last hour)", description, rows, "logins")
