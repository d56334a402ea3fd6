"""Poison entries on the event stream: each is dead-lettered with its code at its first failure, and no valid event
waits behind one. Against a running worker (`run_worker` in a thread) on the real Redis of the test session."""

import json
import threading
import time

import pytest

from revocation.domain.applier import Applier
from revocation.storage.keys import CONSUMER_GROUP, STREAM
from revocation.storage.store import CertificateStatus, StatusStore
from revocation.storage.stream import DEAD_LETTERS, EventStream
from revocation.worker import run_worker
from tests.log_registry import register_sensitive

AT = "2026-03-01T00:00:00Z"


def event_json(event_id, type_, holder, **fields) -> str:
    return json.dumps({"event_id": event_id, "type": type_, "holder": holder, "occurred_at": AT, "source": "feed",
                       **fields})


def issuance(event_id, holder, card_id, auth, signing) -> str:
    return event_json(event_id, "certificate_issued", holder, card_id=card_id, certificates=[
        {"serial": f"{auth:X}", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"},
        {"serial": f"{signing:X}", "kind": "signing", "not_after": "2031-01-01T00:00:00Z"}])


# What a feed writing to the stream directly could put there, and the code each must be dead-lettered with.
POISON = [
    ({"event": "[" * 3000 + "]" * 3000}, "malformed_json"),  # 6 KB, deeper than any decoder should recurse
    ({"event": '{"event_id": "x", "type": '}, "malformed_json"),  # cut short: not JSON
    ({"event": b"\xff\xfe\x00\x9c binary \x00\x01"}, "malformed_json"),  # not even UTF-8
    ({"payload": event_json("wrong-field", "died", "h-x")}, "malformed_entry"),  # no `event` field
    ({"event": json.dumps({"event_id": "no-holder", "type": "died", "occurred_at": AT, "source": "feed"})},
     "invalid_event"),  # a required field is missing
    ({"event": event_json("extra-field", "died", "h-x", note="free text")}, "invalid_event"),  # schema-invalid
    ({"event": event_json("before-1970", "died", "h-x").replace(AT, "1960-01-01T00:00:00Z")}, "invalid_event"),
    ({"event": event_json("married", "married", "h-x")}, "unknown_event_type"),
    ({"event": event_json("mn", "died", "1234-5678-9012")}, "my_number_refused"),
    ({"event": event_json("renew-ghost", "certificate_renewed", "h-ghost", card_id="card-g", renewals=[
        {"kind": "auth", "old_serial": "7E57000001", "new_serial": "7E57000002",
         "not_after": "2036-01-01T00:00:00Z"}])},
     "unknown_old_serial"),  # renews a certificate that was never issued
]


@pytest.fixture
def worker(revocation_services):
    """A running events worker (the code `python -m revocation worker --only events` runs), stopped afterwards."""
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(revocation_services, stop),
                              kwargs={"roles": ("events",), "block_ms": 50, "batch": 100}, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def wait_until(condition, timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s: {what}"
        time.sleep(0.05)


def dead_letters(redis_client) -> list[dict]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in redis_client.xrange(DEAD_LETTERS)]


def test_poison_entries_between_valid_ones_are_dead_lettered_and_every_valid_one_is_applied(
        revocation_services, redis_client, worker):
    store = revocation_services.store
    holders = [(f"h-poison-{n}", f"card-p{n}", 0xA7000000 + n, 0x57000000 + n) for n in range(len(POISON) + 1)]
    register_sensitive(*(serial for *_, auth, signing in holders for serial in (auth, signing)))
    expected_entries = {}
    # Two valid entries (an issuance and a hold on it) around each poison entry, all written as a feed would.
    for n, (holder, card, auth, signing) in enumerate(holders):
        redis_client.xadd(STREAM, {"event": issuance(f"issue-p{n}", holder, card, auth, signing)})
        if n < len(POISON):
            fields, code = POISON[n]
            expected_entries[redis_client.xadd(STREAM, fields).decode()] = code
        redis_client.xadd(STREAM, {"event": event_json(f"lost-p{n}", "card_lost", holder, card_id=card)})

    def all_held():
        return all((record := store.get("signing", signing)) is not None and record.status is CertificateStatus.ON_HOLD
                   for *_, signing in holders)

    wait_until(all_held, what="every valid event applied")
    wait_until(lambda: redis_client.xlen(DEAD_LETTERS) == len(POISON), what="every poison entry dead-lettered")
    letters = dead_letters(redis_client)
    assert {letter["entry"]: letter["code"] for letter in letters} == expected_entries
    assert all(letter["message"].endswith(".") for letter in letters)
    # Applied entries are acknowledged at the end of their batch, a moment after their effect is visible.
    wait_until(lambda: revocation_services.stream.health()["pending"] == 0, what="nothing left pending")
    health = revocation_services.stream.health()
    assert health["lag"] == 0 and health["refused"] == len(POISON)
    for _, _, auth, _ in holders:
        assert store.get("auth", auth).status is CertificateStatus.ON_HOLD
    text = json.dumps(letters)
    assert "1234-5678-9012" not in text and "free text" not in text and "h-x" not in text


def test_the_entry_holding_a_my_number_is_deleted_from_the_stream(revocation_services, redis_client):
    stream = revocation_services.stream
    stream.ensure_group()
    entry = redis_client.xadd(STREAM, {"event": event_json("mn-1", "died", "1234 5678 9012")}).decode()
    [delivery] = stream.drain("c1", revocation_services.applier)
    assert delivery.refused.code == "my_number_refused"
    assert redis_client.xrange(STREAM, entry, entry) == []  # the platform must never keep one
    assert dead_letters(redis_client)[0]["entry"] == entry


def test_an_applier_failure_dead_letters_that_event_and_the_batch_goes_on(revocation_services, redis_client,
                                                                          caplog):
    """The applier raising for one event (here its OCSP listener, as when a responder key cannot be read) costs that
    event only: it is dead-lettered as apply_failed with the exception's type, the next ones are applied."""
    failing = 0xA7F00001

    def listener(issuer, serial, record):
        if serial == failing:
            raise KeyError(f"responder key for {serial:X} unreadable")

    applier = Applier(revocation_services.store, listeners=(listener,))
    stream = EventStream(redis_client)
    stream.ensure_group()
    register_sensitive(failing, 0x57F00001, 0xA7F00002, 0x57F00002)
    for n, (auth, signing) in enumerate(((failing, 0x57F00001), (0xA7F00002, 0x57F00002))):
        redis_client.xadd(STREAM, {"event": issuance(f"issue-f{n}", f"h-fail-{n}", f"card-f{n}", auth, signing)})
        redis_client.xadd(STREAM, {"event": event_json(f"lost-f{n}", "card_lost", f"h-fail-{n}", card_id=f"card-f{n}")})
    caplog.set_level("INFO")
    deliveries = stream.consume("c1", applier, count=10)
    assert [d.refused.code if d.refused else "applied" for d in deliveries] == [
        "applied", "apply_failed", "applied", "applied"]
    [letter] = dead_letters(redis_client)
    assert letter["code"] == "apply_failed" and letter["exception"] == "KeyError"
    assert letter["event_id"] == "lost-f0" and letter["type"] == "card_lost"
    assert stream.health()["pending"] == 0
    assert revocation_services.store.get("auth", 0xA7F00002).status is CertificateStatus.ON_HOLD
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "KeyError" in logged and "unreadable" not in logged and f"{failing:X}" not in logged


def test_redis_unreachable_leaves_the_entry_pending_instead_of_dead_lettering_it(revocation_services, redis_client,
                                                                                 redis_server):
    """An outage is not the entry's fault: nothing is dead-lettered, the entry stays pending and is applied later."""
    import redis

    stream = EventStream(redis_client)
    stream.ensure_group()
    redis_client.xadd(STREAM, {"event": issuance("issue-o", "h-outage", "card-o", 0xA7E00001, 0x57E00001)})
    register_sensitive(0xA7E00001, 0x57E00001)
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
    broken = StatusStore(unreachable, revocation_services.store.keys)
    with pytest.raises(redis.ConnectionError):
        stream.consume("c1", Applier(broken), count=10)
    assert redis_client.xlen(DEAD_LETTERS) == 0
    assert redis_client.xpending(STREAM, CONSUMER_GROUP)["pending"] == 1
    [delivery] = stream.consume("c2", revocation_services.applier, reclaim_idle_ms=0)
    assert delivery.outcome.changes == {"registered": 2} and stream.health()["pending"] == 0


def test_the_dead_letter_stream_shares_the_event_streams_hash_slot():
    """So that the dead-letter record and the acknowledgement are one script on a Redis Cluster as well."""
    from redis.crc import key_slot

    assert key_slot(DEAD_LETTERS.encode()) == key_slot(STREAM.encode())
