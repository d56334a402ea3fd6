"""Batches on a Redis Cluster: the packed compare-and-set calls are split by slot, and the result is the one the
same events give applied one at a time on a single server. Small bucket counts put many holders and certificates
in each slot, so calls carry several items per slot as well as spreading over the three masters."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from devstack.redis_cluster import LocalRedisCluster
from revocation.domain.applier import Applier
from revocation.domain.events import parse_event
from revocation.storage.keys import CRL_DIRTY, KeySpace
from revocation.storage.store import StatusStore
from tests.test_batch_apply import interleaved, snapshot

CROWDED = KeySpace(4, 4)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    with LocalRedisCluster(tmp_path_factory.mktemp("cluster"), masters=3) as cluster:
        yield cluster


@pytest.fixture
def cluster_client(redis_cluster):
    client = RedisCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def reference(redis_server):
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/2")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_a_batch_on_a_cluster_ends_where_one_at_a_time_on_one_server_does(cluster_client, reference):
    documents = interleaved(holders=24, seed=17)
    one_by_one = Applier(StatusStore(reference, CROWDED))
    expected = [one_by_one.apply(parse_event(doc)).as_dict() for doc in documents]
    batched = Applier(StatusStore(cluster_client, CROWDED))
    outcomes = batched.apply_batch([parse_event(doc) for doc in documents])
    assert [o.as_dict() for o in outcomes] == expected
    again = batched.apply_batch([parse_event(doc) for doc in documents])  # a redelivery of the whole batch
    assert all(o.duplicate and not o.changes for o in again)
    state, expected_state = snapshot(cluster_client), snapshot(reference)
    assert state.pop(CRL_DIRTY) >= expected_state.pop(CRL_DIRTY)
    assert state == expected_state
