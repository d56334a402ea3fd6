"""The same code on a Redis Cluster: a private 3-master cluster on loopback, and a selection of the suite's own
tests run against it unchanged — the fixtures below put the revocation service, its stream and the IdP on the
cluster (REDIS_CLUSTER=1 in production). Multi-key operations (Lua scripts, transactions) only ever touch keys
of one hash tag, so a cluster that refused a cross-slot command would fail these tests.
"""

from __future__ import annotations

import dataclasses

import pytest
from redis.cluster import RedisCluster

from devstack.redis_cluster import LocalRedisCluster
from tests.test_access_record import (  # noqa: F401 - tests and fixtures re-run on the cluster
    test_after_a_renewal_the_holder_is_told_how_many_entries_can_no_longer_be_opened,
    test_the_holder_opens_the_record_with_the_card_once_per_view,
)
from tests.test_console_charts import (  # noqa: F401 - tests and fixtures re-run on the cluster
    charts_console,
    test_a_flush_adds_each_count_to_the_current_minutes_bucket_which_expires,
    test_a_sampled_gauge_writes_at_most_once_a_minute_and_an_unknown_value_not_at_all,
    test_the_charts_show_the_events_a_real_worker_applied_and_refused_and_ocsp_answers,
    worker_thread,
)
from tests.test_crl import (  # noqa: F401 - tests and fixtures re-run on the cluster
    new_card,
    test_lifting_a_hold_removes_the_entry_and_the_delta_says_remove_from_crl,
    test_openssl_refuses_a_revoked_certificate_and_accepts_a_good_one,
)
from tests.test_idp_e2e import (  # noqa: F401
    card,
    jwt_client,
    test_authlib_client_completes_the_code_flow_with_the_virtual_card,
)
from tests.test_ocsp import (  # noqa: F401
    test_lost_card_is_revoked_with_certificate_hold,
    test_nonce_is_echoed_in_a_live_response,
    test_nonceless_answers_come_from_the_cache_which_follows_every_status_change,
)
from tests.test_operator_console import (  # noqa: F401
    console,
    test_hold_release_and_revoke_from_the_certificate_page,
    test_logout_and_disabling_the_token_end_the_session,
)
from tests.test_ops_api import (  # noqa: F401
    ops,
    test_a_batch_is_applied_whole_or_not_at_all,
    test_manual_hold_release_revoke_with_comment_and_audit,
    test_stream_crl_and_audit_views,
)
from tests.test_stream_poison import (  # noqa: F401
    test_an_applier_failure_dead_letters_that_event_and_the_batch_goes_on,
    test_poison_entries_between_valid_ones_are_dead_lettered_and_every_valid_one_is_applied,
    worker,
)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    with LocalRedisCluster(tmp_path_factory.mktemp("cluster"), masters=3) as cluster:
        yield cluster


@pytest.fixture
def redis_client(redis_cluster):
    client = RedisCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def revocation_config(revocation_config, redis_cluster):
    return dataclasses.replace(revocation_config, redis_url=redis_cluster.url, redis_cluster=True)


def test_the_fixtures_really_spread_keys_over_three_masters(redis_client, issue_card):
    for _ in range(8):
        issue_card()
    holding = [node for node in redis_client.get_primaries() if redis_client.dbsize(target_nodes=node)]
    assert len(redis_client.get_primaries()) == 3 and len(holding) == 3
