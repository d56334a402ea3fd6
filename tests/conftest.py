"""Shared fixtures: a real redis-server, the dev CA, and virtual cards issued by it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis

from devstack.redis_server import RedisServer
from jpki.devca import DevCA
from nfc_bridge.virtual_card import Holder, new_card_state, write_card_file

AUTH_PIN = "1234"
SIGN_PIN = "ABC123"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    """One real redis-server per test session, on a free loopback port."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory) -> DevCA:
    return DevCA.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_card(dev_ca, tmp_path):
    """Factory: a fresh virtual card file (auth PIN 1234, signing PIN ABC123 unless given)."""
    counter = 0

    def make(holder: Holder | None = None, smartphone: bool = False, pin: str = AUTH_PIN,
             sign_pin: str = SIGN_PIN, issued_at: dt.datetime | None = None) -> Path:
        nonlocal counter
        counter += 1
        path = tmp_path / f"card-{counter}.json"
        write_card_file(path, new_card_state(dev_ca, pin, sign_pin, holder or Holder(), smartphone, issued_at))
        return path

    return make


@pytest.fixture
def card_file(make_card) -> Path:
    return make_card()
