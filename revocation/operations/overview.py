"""What the console's status page shows above its tables: the state (revocation/operations/state.py) and four
charts, from what the service already counts.

- events applied per minute, with those refused stacked on top: `mykey_events_applied_total`'s per-minute history;
- the stream's lag, one sample a minute: the `mykey_event_stream_lag` samples the workers (and this page) record;
- OCSP answers in the last hour by status: `mykey_ocsp_responses_total`'s history, summed;
- each CRL shard's age as a share of its validity (thisUpdate → nextUpdate), the shard table's numbers.

The histories are per-minute buckets in Redis that expire on their own (observability/metrics.py, "History"). Like a
scrape of /metrics, the page first asks every process to flush its counts (at most a second's wait), then reads
three metrics' last hour in three pipelines, one round trip each, besides what the tables read anyway.
"""

from __future__ import annotations

import datetime as dt

from observability.metrics import flush_everywhere
from operator_console.charts import Bar, Chart, Series, bars, columns, minute_labels
from revocation.crl.publisher import ShardStatus
from revocation.operations.state import DEAD_LETTER_WINDOW_MINUTES, State, Thresholds, assess
from revocation.services import Services

MINUTES = 60
# Certificate statuses first, in this order, always shown (a zero says something too); error codes after, if any.
OCSP_STATUSES = ("good", "revoked", "on_hold", "not_issued")


def overview(services: Services, stream: dict, shards: list[ShardStatus], now: dt.datetime) -> tuple[State, list]:
    """The state and the charts for the status page (drawn by operator/chart.html)."""
    flush_everywhere(services.redis)  # as a scrape does: the counts every process made so far are in the history
    now_s = now.timestamp()
    events = services.events_applied.history(MINUTES, now_s)
    refused_recently = sum(counts.get(("refused",), 0) for _, counts in events[-DEAD_LETTER_WINDOW_MINUTES:])
    state = assess(stream, shards, refused_recently,
                   Thresholds(services.config.console_lag_amber, services.config.console_crl_amber), now)
    charts = [events_chart(events), lag_chart(services.stream_lag.history(MINUTES, now_s)),
              ocsp_chart(services.ocsp_responses.history(MINUTES, now_s)),
              shards_chart(shards, now, services.config.console_crl_amber)]
    return state, charts


def events_chart(history: list[tuple[int, dict]]) -> Chart:
    applied = [counts.get(("applied",), 0) for _, counts in history]
    refused = [counts.get(("refused",), 0) for _, counts in history]
    description = (f"Events handled per minute over the last hour: {sum(applied)} applied, at most {max(applied)} in "
                   f"a minute, {applied[-1]} in the current minute; {sum(refused)} refused.")
    return columns("chart-events", "Events applied per minute (last hour)", description,
                   minute_labels([start for start, _ in history]),
                   [Series("applied", applied, "blue"), Series("refused", refused, "red")], "events")


def lag_chart(history: list[tuple[int, float | None]]) -> Chart:
    samples = [value for _, value in history]
    known = [value for value in samples if value is not None]
    if known:
        latest = next(value for value in reversed(samples) if value is not None)
        description = (f"Events waiting to be delivered, sampled once a minute: {len(known)} of {len(samples)} "
                       f"minutes sampled, latest {latest:.0f}, at most {max(known):.0f}.")
    else:
        description = "Events waiting to be delivered: no sample in the last hour (no worker ran)."
    return columns("chart-lag", "Event stream lag (last hour)", description,
                   minute_labels([start for start, _ in history]), [Series("lag", samples, "amber")], "events")


def ocsp_chart(history: list[tuple[int, dict]]) -> Chart:
    totals: dict[str, int] = dict.fromkeys(OCSP_STATUSES, 0)
    for _, counts in history:
        for (status,), count in counts.items():
            totals[status] = totals.get(status, 0) + count
    peak = max(totals.values()) or 1
    colours = {"good": "green", "revoked": "red", "on_hold": "amber", "not_issued": "grey"}
    rows = [Bar(status, count / peak, f"{count:,}", colours.get(status, "red")) for status, count in totals.items()]
    description = "OCSP answers in the last hour by status: " + ", ".join(
        f"{status} {count}" for status, count in totals.items()) + "."
    return bars("chart-ocsp", "OCSP answers by status (last hour)", description, rows, "answers")


def shards_chart(shards: list[ShardStatus], now: dt.datetime, amber: dt.timedelta) -> Chart:
    rows = []
    for shard in shards:
        label = f"{shard.issuer} {shard.shard}"
        if shard.this_update is None or shard.next_update is None:
            rows.append(Bar(label, None, "never published", "red"))
            continue
        validity = (shard.next_update - shard.this_update).total_seconds() or 1
        age = (now - shard.this_update).total_seconds()
        left = shard.next_update - now
        if left <= dt.timedelta(0):
            colour, text = "red", f"{duration(age)}, overdue"
        else:
            colour = "amber" if left <= amber else "green"
            text = f"{duration(age)} of {duration(validity)}"
        rows.append(Bar(label, age / validity, text, colour))
    overdue = sum(1 for row in rows if row.colour == "red")
    soon = sum(1 for row in rows if row.colour == "amber")
    description = (f"Age of each of the {len(rows)} CRL shards as a share of its validity, nextUpdate at the mark: "
                   f"{overdue} unpublished or past nextUpdate, {soon} close to it, "
                   f"{len(rows) - overdue - soon} current.")
    return bars("chart-crl", "CRL shard age against validity", description, rows, "age of validity",
                limit_label="nextUpdate")


def duration(seconds: float) -> str:
    """A span as a person reads it: 45 s, 12 min, 3 h 10 min, 2 d 3 h."""
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
