"""Bulk registration (StatusStore.register_many): the same records as registering one by one, in fewer trips."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from cryptography.x509 import ReasonFlags

from jpki.profile import crl_shard
from revocation.storage.keys import KeySpace
from revocation.storage.store import StatusRecord, StatusStore, revoke

NOT_AFTER = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def store(redis_client):
    return StatusStore(redis_client, KeySpace(64, 64))


def issued_rows(count: int, seed: int) -> list[tuple[int, StatusRecord]]:
    serials = random.Random(seed).sample(range(1, 1 << 63), count)
    return [(serial, StatusRecord.issued(crl_shard(serial), NOT_AFTER, serial + 1 if serial % 3 == 0 else None))
            for serial in serials]


def snapshot(redis_client) -> dict[bytes, dict[bytes, bytes]]:
    """Every key of the database with its content (all status buckets are hashes)."""
    return {key: redis_client.hgetall(key) for key in redis_client.scan_iter(count=1000)}


def test_bulk_registered_records_equal_individually_registered_ones(store, redis_client):
    rows = issued_rows(3_000, seed=1)
    for serial, record in rows:
        store.register("auth", serial, record)
    one_by_one = snapshot(redis_client)
    redis_client.flushdb()

    assert store.register_many("auth", rows) == len(rows)
    assert snapshot(redis_client) == one_by_one
    assert all(store.get("auth", serial) == record for serial, record in rows[:100])


def test_bulk_registration_leaves_known_certificates_alone(store):
    rows = issued_rows(200, seed=2)
    serial, record = rows[0]
    store.register("auth", serial, record)
    store.transition("auth", serial, revoke(ReasonFlags.key_compromise, NOT_AFTER - dt.timedelta(days=1)))
    revoked = store.get("auth", serial)

    assert store.register_many("auth", rows) == len(rows) - 1
    assert store.get("auth", serial) == revoked
    assert store.register_many("auth", rows) == 0  # idempotent


def test_bulk_registration_drops_a_stale_cached_ocsp_response_like_register(store, redis_client):
    serial, record = issued_rows(1, seed=3)[0]
    redis_client.hset(store.keys.ocsp_cache("auth", serial), "sha1", b"stale")

    assert store.register_many("auth", [(serial, record)]) == 1
    assert not redis_client.exists(store.keys.ocsp_cache("auth", serial))
