"""The storage layout (STATUS_BUCKETS, HOLDER_BUCKETS) is recorded in Redis by the first revocation process to
start; a later start with other counts is refused, and a reader builds its store from the recorded layout."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from devstack.http import LiveServer
from devstack.processes import free_port
from devstack.redis_server import RedisServer
from revocation.app import create_app
from revocation.services import build_services
from revocation.storage.keys import LAYOUT, KeySpace
from revocation.storage.store import CertificateStatus, StatusStore, StorageLayoutError

ROOT = Path(__file__).resolve().parents[1]


def test_the_first_start_records_the_bucket_counts_and_a_reader_finds_certificates_with_them(
        revocation_config, redis_client, issue_card):
    # issue_card builds the service (1024 status and holder buckets) and registers a card through it.
    card = issue_card()
    reader = StatusStore.from_layout(redis_client)
    assert reader.keys == KeySpace(status_buckets=1024, holder_buckets=1024)
    record = reader.get("auth", card["auth"].serial_number)
    assert record is not None and record.status is CertificateStatus.GOOD


def test_another_process_with_the_same_counts_starts(revocation_config, revocation_services, redis_client):
    again = build_services(revocation_config, redis_client)  # a second worker, the CLI, another app process
    assert again.store.keys == revocation_services.store.keys


@pytest.mark.parametrize("changed", [{"status_buckets": 2048}, {"holder_buckets": 512}])
def test_a_start_with_other_bucket_counts_is_refused_and_says_why(revocation_config, revocation_services,
                                                                   redis_client, changed):
    recorded = redis_client.get(LAYOUT)
    other = dataclasses.replace(revocation_config, **changed)
    with pytest.raises(StorageLayoutError) as refused:
        build_services(other, redis_client)
    assert refused.value.code == "storage_layout_mismatch"
    assert "STATUS_BUCKETS" in refused.value.message and "HOLDER_BUCKETS" in refused.value.message
    with pytest.raises(StorageLayoutError):
        create_app(other)
    assert redis_client.get(LAYOUT) == recorded  # the refused start changed nothing


def test_a_service_started_before_redis_checks_the_layout_before_its_first_request(tmp_path, revocation_config):
    port = free_port()
    config = dataclasses.replace(revocation_config, redis_url=f"redis://127.0.0.1:{port}/0", status_buckets=2048)
    client = redis.Redis.from_url(config.redis_url, socket_connect_timeout=2, socket_timeout=2)
    app = create_app(config, build_services(config, client))  # Redis is not there yet: the check waits
    with RedisServer(tmp_path / "redis", port=port) as server, LiveServer(app) as live:
        redis.Redis.from_url(server.url).set(LAYOUT, KeySpace(1024, 1024).layout())
        answer = requests.get(f"{live.url}/crl/auth/0.crl", timeout=10)
        assert answer.status_code == 503 and answer.json()["error"] == "storage_layout_mismatch"
        redis.Redis.from_url(server.url).set(LAYOUT, KeySpace(2048, 1024).layout())
        assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200  # checked once it agrees


def test_the_command_line_refuses_other_bucket_counts_in_one_sentence(revocation_config, revocation_services):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": revocation_config.redis_url,
           "MYKEY_VAR": str(revocation_config.var_dir), "REVOCATION_URL": revocation_config.base_url,
           "STATUS_BUCKETS": "4096", "HOLDER_BUCKETS": str(revocation_config.holder_buckets)}
    result = subprocess.run([sys.executable, "-m", "revocation", "stream"], env=env, capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.startswith("error (storage_layout_mismatch): ")
    assert "Traceback" not in result.stderr


def test_a_reader_before_any_revocation_start_is_told_to_start_it_first(redis_client):
    with pytest.raises(StorageLayoutError) as unknown:
        StatusStore.from_layout(redis_client)
    assert unknown.value.code == "storage_layout_unknown"


def test_an_unreadable_recorded_layout_is_refused_not_guessed(redis_client):
    redis_client.set(LAYOUT, b"status_buckets=ten")
    with pytest.raises(StorageLayoutError) as unreadable:
        StatusStore.from_layout(redis_client)
    assert unreadable.value.code == "storage_layout_unreadable"
