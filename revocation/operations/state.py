"""The revocation service's state at a glance — red, amber or green — for the top of its operator console.

The state is the worst of a set of named rules (operator_console/state.py says what a finding holds and what the
levels mean), each a function of what the status page already read: the stream's health, the CRL shards' status,
the last minutes of `mykey_events_applied_total`.

Red, in this order:
1. `crl_overdue`         — a CRL shard was never published or is past its nextUpdate: a relying party that checks
                           CRLs holds an expired list, and most fail closed
2. `no_worker`           — entries wait and the consumer group has no consumer: nothing applies them (Redis 7.0
                           records a consumer only at its first delivery: an idle worker on an empty stream is not
                           seen, hence "entries wait")
3. `events_not_read`     — entries wait (lag > 0) and no consumer has read the stream for STALLED_MS
4. `consumer_stalled`    — a consumer holds delivered entries without reading for STALLED_MS
5. `dead_letters_rising` — entries were dead-lettered in the last DEAD_LETTER_WINDOW_MINUTES

Amber, in this order:
6. `lag_high`            — at least CONSOLE_LAG_AMBER entries not yet delivered
7. `entries_waiting`     — a consumer holds delivered entries without reading for PENDING_AMBER_MS
8. `crl_due_soon`        — a shard's nextUpdate is within CONSOLE_CRL_AMBER_SECONDS (the worker republishes a
                           quarter of CRL_VALIDITY_SECONDS ahead, so a shard this close has missed attempts)

Every rule reads values already fetched for the page: judging the state costs no Redis round trip of its own. An
unknown lag (Redis cannot count it after entries were deleted) fires no lag rule; the others still judge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from operator_console.state import AMBER, RED, Finding, State, judge
from revocation.crl.publisher import ShardStatus

STALLED_MS = 60_000  # a consumer holding entries this long without reading is stalled
PENDING_AMBER_MS = 10_000  # … and this long, waiting (a round normally acknowledges within a second)
DEAD_LETTER_WINDOW_MINUTES = 15
ALL_CLEAR = "All clear: events are applied as they arrive and every CRL shard is current."


@dataclass(frozen=True)
class Thresholds:
    lag_amber: int
    crl_amber: dt.timedelta


def assess(stream: dict, shards: list[ShardStatus], refused_recently: int, thresholds: Thresholds,
           now: dt.datetime) -> State:
    """Run every rule in order; the state is red if any red rule fired, else amber if any amber one did."""
    return judge((rule(stream, shards, refused_recently, thresholds, now) for rule in RULES), ALL_CLEAR)


def crl_overdue(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    never = sum(1 for s in shards if s.next_update is None)
    late = sum(1 for s in shards if s.next_update is not None and s.next_update <= now)
    if not never and not late:
        return None
    parts = [f"{never} never published" if never else "", f"{late} past their nextUpdate" if late else ""]
    return Finding(RED, "crl_overdue", f"CRL shards out of date: {' and '.join(p for p in parts if p)}; relying "
                   "parties that check CRLs cannot trust them.",
                   "Check that a worker with the crl role runs (python -m revocation worker) and that its log shows "
                   "no failure; python -m revocation crl rebuild republishes every shard.")


def no_worker(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    if stream["consumers"] or not (stream["lag"] or stream["length"]):
        return None
    return Finding(RED, "no_worker", "Events wait and no worker has ever read the event stream, so none is applied.",
                   "Start one: python -m revocation worker (two or more in production).")


def events_not_read(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    consumers = stream["consumers"]
    if not consumers or not stream["lag"] or min(c["idle_ms"] for c in consumers) <= STALLED_MS:
        return None
    return Finding(RED, "events_not_read", f"{stream['lag']} event(s) wait and no worker has read the stream for "
                   f"{min(c['idle_ms'] for c in consumers) // 1000} s.",
                   "Check that the workers run and reach Redis (their log says why a round failed); restart them.")


def consumer_stalled(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    stalled = [c for c in stream["consumers"] if c["pending"] and c["idle_ms"] > STALLED_MS]  # as the table marks
    if not stalled:
        return None
    return Finding(RED, "consumer_stalled", f"{len(stalled)} worker(s) hold {sum(c['pending'] for c in stalled)} "
                   "delivered event(s) without reading for over a minute.",
                   "A running worker takes them over after 30 s: make sure one runs. Remove a consumer that is gone "
                   "for good with XGROUP DELCONSUMER rv:events appliers NAME once it holds nothing.")


def dead_letters_rising(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    if not refused_recently:
        return None
    return Finding(RED, "dead_letters_rising", f"{refused_recently} event(s) were refused in the last "
                   f"{DEAD_LETTER_WINDOW_MINUTES} minutes and moved to the dead letters; they changed nothing.",
                   "Read the newest records (redis-cli XREVRANGE '{rv:events}:refused' + - COUNT 10): each names "
                   "its code and says what was wrong. Fix the sender, then send the events again, same event_id.")


def lag_high(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    if stream["lag"] is None or stream["lag"] < thresholds.lag_amber:
        return None
    return Finding(AMBER, "lag_high", f"{stream['lag']} event(s) wait to be applied "
                   f"(amber from {thresholds.lag_amber}).",
                   "The workers are behind: watch the chart below; if the lag keeps growing, start more workers.")


def entries_waiting(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    waiting = [c for c in stream["consumers"] if c["pending"] and PENDING_AMBER_MS < c["idle_ms"] <= STALLED_MS]
    if not waiting:
        return None
    return Finding(AMBER, "entries_waiting", f"{sum(c['pending'] for c in waiting)} delivered event(s) not yet "
                   "acknowledged for over 10 seconds.",
                   "Usually a worker busy with a large batch or a slow Redis; red if it lasts a minute.")


def crl_due_soon(stream, shards, refused_recently, thresholds, now) -> Finding | None:
    soon = [s for s in shards if s.next_update is not None and now < s.next_update <= now + thresholds.crl_amber]
    if not soon:
        return None
    return Finding(AMBER, "crl_due_soon", f"{len(soon)} CRL shard(s) reach their nextUpdate within "
                   f"{int(thresholds.crl_amber.total_seconds() // 60)} minutes and were not republished yet.",
                   "Check that a worker with the crl role runs and its log shows no failure; python -m revocation "
                   "crl rebuild republishes every shard.")


RULES = (crl_overdue, no_worker, events_not_read, consumer_stalled, dead_letters_rising,
         lag_high, entries_waiting, crl_due_soon)
