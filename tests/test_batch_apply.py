"""Events applied in batches end exactly where the same events applied one at a time end: same status records,
histories, CRL index, links, holder and event records, same outcomes — with several events of one holder in a
batch, an event id repeated inside a batch, and a worker process that dies in the middle of a batch.

The reference is the same events applied one at a time (`Applier.apply`) in another database of the same real
redis-server; the batched side reads them from the stream as the worker does."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from revocation.domain.applier import Applier
from revocation.domain.events import parse_event
from revocation.storage.keys import AUDIT_STREAM, CONSUMER_GROUP, CRL_DIRTY, DEAD_LETTERS, LAYOUT, STREAM, KeySpace
from revocation.storage.store import CertificateStatus, StatusStore
from revocation.storage.stream import EventStream
from tests.log_registry import register_sensitive

ROOT = Path(__file__).resolve().parents[1]
KEYS = KeySpace(1024, 1024)
NOT_AFTER = "2031-01-01T00:00:00Z"


def document(event_id: str, type_: str, holder: str, at: str, **fields) -> dict:
    return {"event_id": event_id, "type": type_, "holder": holder, "occurred_at": at, "source": "test", **fields}


def holder_story(n: int, rng: random.Random) -> list[dict]:
    """One holder's events in the order the feed sends them: issuance, then a shuffled mix of holds, releases,
    a renewal, revocations and a death, with occurred_at times that do not follow the sending order, and one
    event sent twice."""
    holder, card, auth, signing = f"h-batch-{n}", f"card-b{n}", 0xA6000000 + n, 0x56000000 + n
    register_sensitive(auth, signing, auth + 0x100000)
    story = [document(f"issue-{n}", "certificate_issued", holder, "2026-01-01T00:00:00Z", card_id=card,
                      certificates=[{"serial": f"{auth:X}", "kind": "auth", "not_after": NOT_AFTER},
                                    {"serial": f"{signing:X}", "kind": "signing", "not_after": NOT_AFTER}])]
    day = lambda d: f"2026-02-{d:02d}T00:00:00Z"  # noqa: E731
    later = [
        document(f"lost-{n}", "card_lost", holder, day(rng.randint(2, 20)), card_id=card),
        document(f"found-{n}", "card_found", holder, day(rng.randint(2, 20)), card_id=card),
        document(f"lost2-{n}", "card_lost", holder, day(rng.randint(2, 20)), card_id=card, kinds=["signing"]),
    ]
    if n % 3 == 0:
        later.append(document(f"renew-{n}", "certificate_renewed", holder, day(rng.randint(2, 20)), card_id=card,
                              renewals=[{"kind": "auth", "old_serial": f"{auth:X}",
                                         "new_serial": f"{auth + 0x100000:X}", "not_after": "2036-01-01T00:00:00Z"}]))
    if n % 4 == 1:
        later.append(document(f"facts-{n}", "four_facts_changed", holder, day(rng.randint(2, 20)),
                              changed=["address"]))
    if n % 5 == 2:
        later.append(document(f"died-{n}", "died", holder, day(rng.randint(2, 20))))
    if n % 7 == 3:
        later.append(document(f"revoke-{n}", "revocation_requested", holder, day(rng.randint(2, 20)), card_id=card))
    rng.shuffle(later)
    story += later
    story.insert(rng.randint(1, len(story)), rng.choice(story[:]))  # the feed repeats one event (same id)
    return story


def interleaved(holders: int, seed: int) -> list[dict]:
    """Every holder's story, merged in a random order that keeps each holder's own order."""
    rng = random.Random(seed)
    stories = [holder_story(n, rng) for n in range(holders)]
    merged = []
    while any(stories):
        story = rng.choice([s for s in stories if s])
        merged.append(story.pop(0))
    return merged


def snapshot(client: redis.Redis) -> dict:
    """Everything the appliers write, comparable across databases: the CRL change logs as the set of serials they
    name (one entry per write one at a time, one per certificate and batch in a batch: both are "what changed")."""
    state = {}
    for key in sorted(client.scan_iter(count=1000)):
        name = key.decode()
        if name.startswith((STREAM, f"{{{STREAM}}}", AUDIT_STREAM, LAYOUT, "mykey")):
            continue
        kind = client.type(key).decode()
        if kind == "hash":
            state[name] = client.hgetall(key)
        elif kind == "list":
            state[name] = client.lrange(key, 0, -1)
        elif kind == "set":
            state[name] = client.smembers(key)
        elif kind == "string":
            state[name] = client.get(key)
        elif kind == "stream":
            state[name] = {fields[b"s"] for _, fields in client.xrange(key)}
    return state


@pytest.fixture
def reference(redis_server):
    """A second database of the same redis-server, for the one-at-a-time application."""
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/1")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def one_at_a_time(client: redis.Redis, documents: list[dict]) -> list[dict]:
    applier = Applier(StatusStore(client, KEYS))
    return [applier.apply(parse_event(doc)).as_dict() for doc in documents]


def submit(client: redis.Redis, documents: list[dict]) -> None:
    for doc in documents:
        client.xadd(STREAM, {"event": json.dumps(doc)})


def test_a_batch_with_many_events_per_holder_ends_where_one_at_a_time_does(redis_client, reference):
    documents = interleaved(holders=12, seed=5)
    expected = one_at_a_time(reference, documents)
    stream = EventStream(redis_client)
    stream.ensure_group()
    submit(redis_client, documents)
    deliveries = stream.consume("batcher", Applier(StatusStore(redis_client, KEYS)), count=len(documents))
    assert len(deliveries) == len(documents)  # one batch
    assert [d.outcome.as_dict() for d in deliveries] == expected
    assert snapshot(redis_client) == snapshot(reference)
    assert stream.health()["pending"] == 0 and redis_client.xlen(DEAD_LETTERS) == 0


def test_an_event_repeated_inside_a_batch_is_applied_once(redis_client, reference):
    issue = document("issue-d", "certificate_issued", "h-dup", "2026-01-01T00:00:00Z", card_id="card-d",
                     certificates=[{"serial": "A6F00001", "kind": "auth", "not_after": NOT_AFTER}])
    lost = document("lost-d", "card_lost", "h-dup", "2026-02-01T00:00:00Z", card_id="card-d")
    found = document("found-d", "card_found", "h-dup", "2026-02-02T00:00:00Z", card_id="card-d")
    register_sensitive(0xA6F00001)
    documents = [issue, lost, issue, lost, found, lost]
    expected = one_at_a_time(reference, documents)
    applier = Applier(StatusStore(redis_client, KEYS))
    outcomes = applier.apply_batch([parse_event(doc) for doc in documents])
    assert [o.as_dict() for o in outcomes] == expected
    assert [o.duplicate for o in outcomes] == [False, False, True, True, False, True]
    assert [o.changes for o in outcomes] == [{"registered": 1}, {"held": 1}, {}, {}, {"released": 1}, {}]
    store = applier.store
    assert [h["do"] for h in store.history("auth", 0xA6F00001)] == ["hold", "release"]
    assert store.get("auth", 0xA6F00001).status is CertificateStatus.GOOD
    assert snapshot(redis_client) == snapshot(reference)


def test_a_refused_event_in_a_batch_costs_only_itself(redis_client, reference):
    ghost = document("renew-ghost-b", "certificate_renewed", "h-ghost-b", "2026-03-01T00:00:00Z", card_id="c-g",
                     renewals=[{"kind": "auth", "old_serial": "7E570001", "new_serial": "7E570002",
                                "not_after": "2036-01-01T00:00:00Z"}])
    documents = interleaved(holders=3, seed=9)
    documents.insert(4, ghost)
    stream = EventStream(redis_client)
    stream.ensure_group()
    submit(redis_client, documents)
    deliveries = stream.consume("batcher", Applier(StatusStore(redis_client, KEYS)), count=len(documents))
    assert [d.refused.code for d in deliveries if d.refused] == ["unknown_old_serial"]
    documents.remove(ghost)
    one_at_a_time(reference, documents)
    assert snapshot(redis_client) == snapshot(reference)


def _worker_env(revocation_config) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": revocation_config.redis_url,
            "MYKEY_VAR": str(revocation_config.var_dir), "REVOCATION_URL": revocation_config.base_url,
            "STATUS_BUCKETS": "1024", "HOLDER_BUCKETS": "1024", "MYKEY_DEV": "1"}


# Runs in a real process: applies one batch and dies (os._exit) right after the certificates' compare-and-sets,
# before their CRL index is synced and before anything is acknowledged.
_DIE_MID_BATCH = """
import os
from revocation.config import RevocationConfig
from revocation.services import build_services
from revocation.storage.store import StatusStore

def die(*args, **kwargs):
    os._exit(9)

StatusStore._sync_many = die
services = build_services(RevocationConfig.from_env())
services.stream.consume("doomed", services.applier, count=1000)
os._exit(0)
"""


def test_a_worker_dying_between_the_status_writes_and_the_crl_index_is_completed_on_redelivery(
        revocation_config, revocation_services, redis_client, reference):
    documents = interleaved(holders=10, seed=11)
    expected = one_at_a_time(reference, documents)
    stream = revocation_services.stream
    stream.ensure_group()
    submit(redis_client, documents)
    died = subprocess.run([sys.executable, "-c", _DIE_MID_BATCH], env=_worker_env(revocation_config), timeout=60)
    assert died.returncode == 9
    assert redis_client.xpending(STREAM, CONSUMER_GROUP)["pending"] == len(documents)  # nothing acknowledged
    assert snapshot(redis_client) != snapshot(reference)  # records written, CRL index not yet
    deliveries = stream.consume("survivor", revocation_services.applier, count=len(documents), reclaim_idle_ms=0)
    assert all(d.outcome.duplicate for d in deliveries)  # phase 1 answered from its records
    assert [d.outcome.event_id for d in deliveries] == [e["event_id"] for e in expected]
    assert stream.health()["pending"] == 0
    recovered, expected_state = snapshot(redis_client), snapshot(reference)
    # The redelivery marks every shard its events reached (a crash may have cut the marking off): a superset.
    assert recovered.pop(CRL_DIRTY) >= expected_state.pop(CRL_DIRTY)
    assert recovered == expected_state


def test_a_worker_process_killed_mid_stream_loses_nothing_and_applies_each_event_once(
        revocation_config, revocation_services, redis_client, reference):
    documents = interleaved(holders=150, seed=13)
    one_at_a_time(reference, documents)
    stream = revocation_services.stream
    stream.ensure_group()
    submit(redis_client, documents)
    worker = subprocess.Popen([sys.executable, "-m", "revocation", "worker", "--only", "events"],
                              env=_worker_env(revocation_config), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (redis_client.xinfo_groups(STREAM)[0]["entries-read"] or 0) < len(documents) // 3:
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never got going"
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    # The survivor takes the dead worker's pending entries over first, as a worker does once they are idle enough.
    while stream.consume("survivor", revocation_services.applier, count=200, reclaim_idle_ms=0):
        pass
    health = stream.health()
    assert health["pending"] == 0 and health["lag"] == 0, health
    assert redis_client.xrange(DEAD_LETTERS) == []
    recovered, expected_state = snapshot(redis_client), snapshot(reference)
    assert recovered.pop(CRL_DIRTY) >= expected_state.pop(CRL_DIRTY)
    assert recovered == expected_state
