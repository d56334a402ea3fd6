"""The operator console's charts and red/amber/green state, against the real Redis of the test session, the real
revocation app over HTTP, the real worker (`run_worker` in a thread) and Chromium for what an operator sees.

- the per-minute history the metrics flusher writes next to each total (observability/metrics.py, "History"):
  written in the current minute's bucket, in the total's hash slot, and gone once its time to live has passed;
- the stream lag's samples, at most one per minute and process;
- the charts show the events a real worker applied and refused, and the OCSP answers by status;
- each state rule (revocation/operations/state.py) fires from the real state it names; the thresholds that are a
  minute long are shortened for the test, the state they judge is real;
- screenshots of the console at desktop and phone size in test-artifacts/console/ (and, with
  MYKEY_DOCS_SCREENSHOT=1, the operator guide's picture docs/images/operator-console.png).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from devstack.http import LiveServer
from observability import metrics
from observability.metrics import Counter, SampledGauge, flush_everywhere
from revocation.operations import state
from revocation.storage.keys import CONSUMER_GROUP, STREAM
from revocation.worker import run_worker
from tests.test_accessibility import axe_script, axe_violations, describe  # noqa: F401 - the fixture
from tests.test_browser import chromium  # noqa: F401 - the fixture
from tests.test_operator_console import log_in

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "console"
DOCS_PICTURE = ROOT / "docs" / "images" / "operator-console.png"
AT = "2026-03-01T00:00:00Z"


def wait_until(condition, timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s: {what}"
        time.sleep(0.05)


def feed_entry(event_id: str) -> dict:
    """A valid `died` event for a holder the platform does not know, as a feed writes it: applied, changes nothing."""
    return {"event": json.dumps({"event_id": event_id, "type": "died", "holder": f"h-{event_id}", "occurred_at": AT,
                                 "source": "feed"})}


def console_for(revocation_config, revocation_services, **settings):
    from revocation.app import create_app

    config = dataclasses.replace(revocation_config, console_insecure_dev_cookies=True, **settings)
    services = dataclasses.replace(revocation_services, config=config)
    live = LiveServer(create_app(config, services))
    live.services = services
    live.token = services.operators.add("olivia")
    return live


@pytest.fixture
def charts_console(revocation_config, revocation_services):
    """The revocation service with its console (plain-http development cookie) and an operator's token."""
    with console_for(revocation_config, revocation_services) as live:
        yield live


class Worker:
    """The worker `python -m revocation worker` runs, in a thread, started and stopped by the test."""

    def __init__(self, services):
        self.services, self.stop, self.thread = services, threading.Event(), None

    def start(self) -> Worker:
        self.stop.clear()
        self.thread = threading.Thread(target=run_worker, args=(self.services, self.stop),
                                       kwargs={"block_ms": 50, "batch": 100}, daemon=True)
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def worker_thread(revocation_services):
    worker = Worker(revocation_services)
    yield worker
    if worker.thread is not None and worker.thread.is_alive():
        worker.halt()


def caught_up(redis_client) -> bool:
    """The worker read every entry and acknowledged it (it is a consumer of the group from its first delivery)."""
    try:
        return (bool(redis_client.xinfo_consumers(STREAM, CONSUMER_GROUP))
                and redis_client.xinfo_groups(STREAM)[0]["lag"] == 0
                and not redis_client.xpending(STREAM, CONSUMER_GROUP)["pending"])
    except redis.ResponseError:  # NOGROUP: the worker has not made the group yet
        return False


def dashboard(console) -> str:
    _, page = log_in(console.url, console.token)
    assert page.status_code == 200
    return page.text


def state_of(page: str) -> tuple[str, list[str]]:
    level = re.search(r'class="state state-(red|amber|green)"', page).group(1)
    return level, re.findall(r'data-code="([a-z_]+)"', page)


def chart_table(page: str, chart_id: str) -> list[list[str]]:
    """The rows of a chart's number table (the text a screen reader or a phone user reads)."""
    figure = re.search(rf'<figure class="chart" id="{chart_id}">(.*?)</figure>', page, re.S).group(1)
    return [[html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", figure, re.S) if "<td" in row]


# --- the history in Redis ------------------------------------------------------------------------------------


def test_a_flush_adds_each_count_to_the_current_minutes_bucket_which_expires(redis_client, monkeypatch):
    counter = Counter(redis_client, "test_history_total", "counted with a past", ("result",))
    for _ in range(3):
        counter.inc(result="ok")
    counter.inc(2, result="refused")
    flush_everywhere(redis_client)
    minute = int(time.time() // 60)
    bucket = metrics.minute_key(counter.key, minute)
    if not redis_client.exists(bucket):  # the flush fell into the next minute
        bucket = metrics.minute_key(counter.key, minute + 1)
    assert redis_client.hgetall(bucket) == {b'["ok"]': b"3", b'["refused"]': b"2"}
    assert redis_client.hgetall(counter.key) == {b'["ok"]': b"3", b'["refused"]': b"2"}  # the total as before
    assert 0 < redis_client.ttl(bucket) <= metrics.HISTORY_SECONDS
    assert key_slot(bucket.encode()) == key_slot(counter.key.encode())  # one slot: one server reads the hour
    history = counter.history(60)
    assert len(history) == 60 and history[-1][0] % 60 == 0
    assert sum(counts.get(("ok",), 0) for _, counts in history) == 3

    monkeypatch.setattr(metrics, "HISTORY_SECONDS", 1)  # a bucket's life, shortened: it goes on its own
    counter.inc(result="ok")
    flush_everywhere(redis_client)
    wait_until(lambda: not redis_client.exists(bucket) and not any(
        redis_client.exists(metrics.minute_key(counter.key, minute + n)) for n in (0, 1, 2)), 10, "buckets expire")
    assert redis_client.hgetall(counter.key) == {b'["ok"]': b"4", b'["refused"]': b"2"}  # totals never expire
    assert sum(sum(counts.values()) for _, counts in counter.history(60)) == 0


def test_a_sampled_gauge_writes_at_most_once_a_minute_and_an_unknown_value_not_at_all(redis_client):
    gauge = SampledGauge(redis_client, "test_sampled")
    reads = []

    def read(value):
        return lambda: reads.append(value) or value

    now = (time.time() // 60) * 60 + 5  # five seconds into a minute
    assert gauge.sample(read(None), now) is False  # unknown: nothing written, tried again next time
    assert gauge.sample(read(7), now) is True
    assert gauge.sample(read(9), now + 30) is False  # the same minute: not even read
    assert reads == [None, 7]
    assert gauge.sample(read(4), now + 60) is True  # the next minute
    history = gauge.history(3, now + 60)
    assert [value for _, value in history] == [None, 7.0, 4.0]
    bucket = metrics.minute_key(gauge.key, int(now // 60))
    assert 0 < redis_client.ttl(bucket) <= metrics.HISTORY_SECONDS
    assert key_slot(bucket.encode()) == key_slot(gauge.key.encode())


# --- the charts ---------------------------------------------------------------------------------------------


def test_the_charts_show_the_events_a_real_worker_applied_and_refused_and_ocsp_answers(
        charts_console, worker_thread, redis_client, issue_card, dev_ca):
    from tests.test_operator_console import ocsp_status

    charts_console.services.crl.rebuild_all()
    worker_thread.start()
    for n in range(7):
        redis_client.xadd(STREAM, feed_entry(f"chart-{n}"))
    redis_client.xadd(STREAM, {"event": '{"event_id": "cut short'})  # refused: dead-lettered by the worker
    wait_until(lambda: caught_up(redis_client), what="the worker handled every entry")
    card = issue_card()
    ocsp_status(charts_console, card, dev_ca)
    ocsp_status(charts_console, card, dev_ca)

    page = dashboard(charts_console)  # the flush before the page read: the page's history holds every count
    events = chart_table(page, "chart-events")
    assert len(events) == 60
    assert sum(int(row[1]) for row in events) == 7 and sum(int(row[2]) for row in events) == 1
    assert "7 applied" in page and "1 refused" in page  # the chart's description says it too
    ocsp = dict(chart_table(page, "chart-ocsp"))
    assert ocsp["good"] == "2" and ocsp["revoked"] == "0"
    lag = chart_table(page, "chart-lag")
    assert lag[-1][1] != "—"  # sampled this minute, by the worker or by the page
    crl = chart_table(page, "chart-crl")
    assert len(crl) == 2 * charts_console.services.config.crl_shards
    assert all(re.fullmatch(r"\d+ s of 1 d", text) for _, text in crl)
    assert 'role="img"' in page and 'aria-labelledby="chart-events-title chart-events-desc"' in page
    assert "<script" not in page  # drawn on the server: the console's CSP forbids scripts and stays so


# --- the state at the top -----------------------------------------------------------------------------------


def test_nothing_published_and_no_worker_is_red_and_says_what_to_do(charts_console, redis_client):
    redis_client.xadd(STREAM, feed_entry("nobody-reads"))
    level, codes = state_of(page := dashboard(charts_console))
    assert level == "red" and codes[:2] == ["crl_overdue", "no_worker"]
    assert "32 never published" in page and "python -m revocation worker" in page


def test_a_shard_past_its_next_update_is_red_and_drawn_past_the_mark(revocation_config, revocation_services):
    # CRLs valid for two seconds and no worker to republish them: they go stale while the test watches.
    config = dataclasses.replace(revocation_config, crl_validity=dt.timedelta(seconds=2))
    from revocation.crl.publisher import CrlPublisher

    CrlPublisher(revocation_services.store, revocation_services.issuers, config).rebuild_all()
    with console_for(revocation_config, revocation_services) as console:
        wait_until(lambda: all(shard.next_update < dt.datetime.now(dt.UTC)
                               for shard in console.services.crl.status()), 10, "the CRLs went stale")
        page = dashboard(console)
        assert state_of(page)[1][0] == "crl_overdue" and "32 past their nextUpdate" in page
        assert all(text.endswith(", overdue") for _, text in chart_table(page, "chart-crl"))


def test_a_published_crl_and_a_worker_that_keeps_up_are_green(charts_console, worker_thread, redis_client):
    charts_console.services.crl.rebuild_all()
    worker_thread.start()
    redis_client.xadd(STREAM, feed_entry("green-1"))
    wait_until(lambda: caught_up(redis_client), what="applied")
    page = dashboard(charts_console)
    assert state_of(page) == ("green", []) and "All clear" in page


def test_dead_letters_in_the_last_minutes_are_red(charts_console, worker_thread, redis_client):
    charts_console.services.crl.rebuild_all()
    worker_thread.start()
    redis_client.xadd(STREAM, {"payload": "not the one field"})
    wait_until(lambda: caught_up(redis_client), what="dead-lettered")
    page = dashboard(charts_console)
    assert state_of(page) == ("red", ["dead_letters_rising"])
    assert "1 event(s) were refused in the last 15 minutes" in page and "XREVRANGE" in page


def test_events_waiting_beyond_the_threshold_are_amber_and_unread_ones_red(
        revocation_config, revocation_services, worker_thread, redis_client, monkeypatch):
    with console_for(revocation_config, revocation_services, console_lag_amber=3) as console:
        console.services.crl.rebuild_all()
        worker_thread.start()
        redis_client.xadd(STREAM, feed_entry("lag-first"))
        wait_until(lambda: caught_up(redis_client), what="the worker applied the first event")
        worker_thread.halt()
        for n in range(4):
            redis_client.xadd(STREAM, feed_entry(f"lag-{n}"))
        assert state_of(dashboard(console)) == ("amber", ["lag_high"])
        assert "4 event(s) wait to be applied (amber from 3)" in dashboard(console)

        monkeypatch.setattr(state, "STALLED_MS", 300)  # a minute, shortened: no worker has read for that long
        time.sleep(0.4)
        level, codes = state_of(dashboard(console))
        assert level == "red" and codes == ["events_not_read", "lag_high"]

        worker_thread.start()  # a worker again: the lag is worked off and the state turns green by itself
        wait_until(lambda: caught_up(redis_client), what="worked off")
        assert state_of(dashboard(console)) == ("green", [])


def test_a_consumer_holding_entries_is_amber_then_red(charts_console, worker_thread, redis_client, monkeypatch):
    charts_console.services.crl.rebuild_all()
    worker_thread.start()
    redis_client.xadd(STREAM, feed_entry("held-0"))
    wait_until(lambda: caught_up(redis_client), what="the worker is caught up")
    worker_thread.halt()
    redis_client.xadd(STREAM, feed_entry("held-1"))
    # A worker that read an entry and died before acknowledging it: the entry is pending on it.
    assert redis_client.xreadgroup(CONSUMER_GROUP, "worker-gone-1", {STREAM: ">"}, count=1)
    monkeypatch.setattr(state, "PENDING_AMBER_MS", 200)
    time.sleep(0.3)
    assert state_of(dashboard(charts_console)) == ("amber", ["entries_waiting"])
    monkeypatch.setattr(state, "STALLED_MS", 250)
    time.sleep(0.3)
    level, codes = state_of(page := dashboard(charts_console))
    assert level == "red" and "consumer_stalled" in codes
    assert "1 worker(s) hold 1 delivered event(s)" in page


def test_a_crl_shard_close_to_its_next_update_is_amber(revocation_config, revocation_services, worker_thread,
                                                        redis_client):
    # Amber from two days before nextUpdate, with a one-day validity: every freshly published shard is "close".
    with console_for(revocation_config, revocation_services, console_crl_amber=dt.timedelta(days=2)) as console:
        console.services.crl.rebuild_all()
        worker_thread.start()
        redis_client.xadd(STREAM, feed_entry("crl-first"))
        wait_until(lambda: caught_up(redis_client), what="the worker applied the first event")
        page = dashboard(console)
        assert state_of(page) == ("amber", ["crl_due_soon"])
        assert "32 CRL shard(s) reach their nextUpdate within 2880 minutes" in page


# --- what an operator sees ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_console_with_its_charts_in_chromium(chromium, axe_script, charts_console,  # noqa: F811
                                                 worker_thread, redis_client, issue_card, dev_ca, size):
    from tests.test_operator_console import ocsp_status

    charts_console.services.crl.rebuild_all()
    worker_thread.start()
    for n in range(25):
        redis_client.xadd(STREAM, feed_entry(f"shot-{n}"))
    redis_client.xadd(STREAM, {"event": "not json"})
    wait_until(lambda: caught_up(redis_client), what="handled")
    card = issue_card()
    for _ in range(3):
        ocsp_status(charts_console, card, dev_ca)
    viewport = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}[size]
    context = chromium.new_context(locale="en-US", viewport=viewport, is_mobile=size == "phone",
                                   has_touch=size == "phone", bypass_csp=True)  # axe runs inside the page
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{charts_console.url}/operator/login")
        page.fill("#token", charts_console.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{charts_console.url}/operator/")
        assert page.locator("#state").is_visible()
        for chart in ("chart-events", "chart-lag", "chart-ocsp", "chart-crl"):
            svg = page.locator(f"#{chart} svg")
            assert svg.get_attribute("role") == "img"
            box = svg.bounding_box()
            assert box["width"] <= viewport["width"] and box["height"] > 40
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{size}.png"), full_page=True)
        page.locator("#overview").screenshot(path=str(ARTIFACTS / f"dashboard-{size}-overview.png"))
        if size == "desktop" and os.environ.get("MYKEY_DOCS_SCREENSHOT") == "1":
            DOCS_PICTURE.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#overview").screenshot(path=str(DOCS_PICTURE))
        page.click("#chart-events summary")  # the numbers open under the chart
        assert page.locator("#chart-events details table").is_visible()
        violations = axe_violations(page, axe_script)
        assert not violations, describe(violations)
    finally:
        context.close()
