"""The event stream: at-least-once delivery through a consumer group, applied once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from revocation.domain.applier import Applier
from revocation.domain.events import parse_event
from revocation.storage.keys import KeySpace
from revocation.storage.store import CertificateStatus, StatusStore
from revocation.storage.stream import DEAD_LETTERS, EventStream

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(redis_client):
    return StatusStore(redis_client, KeySpace(1024, 1024))


@pytest.fixture
def applier(store):
    return Applier(store)


@pytest.fixture
def stream(redis_client):
    return EventStream(redis_client)


def event(event_id, type_, at, **fields):
    return parse_event({"event_id": event_id, "type": type_, "holder": "h1", "occurred_at": at, "source": "test",
                        **fields})


ISSUE = event("issue", "certificate_issued", "2026-01-01T00:00:00Z", card_id="c1", certificates=[
    {"serial": "A1", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"},
    {"serial": "51", "kind": "signing", "not_after": "2031-01-01T00:00:00Z"}])
LOST = event("lost", "card_lost", "2026-02-01T00:00:00Z", card_id="c1")


def test_submitted_events_are_applied_and_acknowledged(stream, applier, store):
    stream.submit(ISSUE)
    stream.submit(LOST)
    deliveries = stream.drain("c1", applier)
    assert [d.outcome.changes for d in deliveries] == [{"registered": 2}, {"held": 2}]
    assert store.get("auth", 0xA1).status is CertificateStatus.ON_HOLD
    health = stream.health()
    assert health["pending"] == 0 and health["lag"] == 0 and health["length"] == 2


def test_a_consumer_that_dies_between_read_and_ack_loses_nothing(stream, applier, store, redis_server):
    stream.submit(ISSUE)
    stream.submit(LOST)
    # A real process reads both entries as consumer "doomed" and dies before acknowledging them.
    code = ("import redis, os; r = redis.Redis.from_url(os.environ['URL']); "
            "r.xreadgroup('appliers', 'doomed', {'rv:events': '>'}, count=10); os._exit(9)")
    stream.ensure_group()
    died = subprocess.run([sys.executable, "-c", code], env={**os.environ, "URL": redis_server.url}, timeout=30)
    assert died.returncode == 9
    assert stream.health()["pending"] == 2
    assert stream.consume("survivor", applier, reclaim_idle_ms=60_000) == []  # not idle long enough yet
    deliveries = stream.consume("survivor", applier, reclaim_idle_ms=0)
    assert [d.outcome.changes for d in deliveries] == [{"registered": 2}, {"held": 2}]
    assert stream.health()["pending"] == 0
    assert store.get("signing", 0x51).status is CertificateStatus.ON_HOLD


def test_a_crash_between_the_holder_step_and_the_certificates_is_completed_on_redelivery(stream, applier, store):
    stream.submit(ISSUE)
    stream.drain("c1", applier)
    stream.submit(LOST)
    stream.redis.xreadgroup("appliers", "crashing", {"rv:events": ">"}, count=1)
    applier._phase_one([LOST])  # the holder record and the event record are written, then the process "dies"
    assert store.get("auth", 0xA1).status is CertificateStatus.GOOD
    deliveries = stream.consume("survivor", applier, reclaim_idle_ms=0)
    assert len(deliveries) == 1 and deliveries[0].outcome.duplicate
    assert store.get("auth", 0xA1).status is CertificateStatus.ON_HOLD
    assert len(store.history("auth", 0xA1)) == 1


def test_the_same_event_delivered_twice_applies_once(stream, applier, store):
    stream.submit(ISSUE)
    stream.submit(LOST)
    stream.submit(LOST)
    deliveries = stream.drain("c1", applier)
    assert [d.outcome.duplicate for d in deliveries] == [False, False, True]
    assert len(store.history("auth", 0xA1)) == 1


def test_an_unreadable_entry_goes_to_dead_letters_and_is_acknowledged(stream, applier, redis_client):
    stream.ensure_group()
    redis_client.xadd("rv:events", {"event": b'{"type": "nonsense"}'})
    deliveries = stream.drain("c1", applier)
    assert deliveries[0].refused is not None and deliveries[0].outcome is None
    assert redis_client.xlen(DEAD_LETTERS) == 1 and stream.health()["pending"] == 0


def test_health_names_consumers_and_their_pending_entries(stream, applier):
    stream.submit(ISSUE)
    stream.ensure_group()
    stream.redis.xreadgroup("appliers", "slow", {"rv:events": ">"}, count=1)
    health = stream.health()
    assert {"name": "slow", "pending": 1} == {k: v for k, v in health["consumers"][0].items() if k != "idle_ms"}
    assert health["pending"] == 1
