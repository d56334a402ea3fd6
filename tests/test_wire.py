"""The shared shapes at the edge (wire/): coded errors, the Redis connection, the bounded fetcher."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
import redis
from redis.exceptions import RedisClusterException

from wire.redis_connect import CONNECT_TIMEOUT_SECONDS, connect_redis

# --- connecting to Redis ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def silent_listener():
    """A loopback address that never answers a connect: its accept queue is full, so the kernel drops each SYN."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    try:
        for _ in range(3):  # fill the backlog; these connections are never accepted
            pending = socket.socket()
            pending.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                pending.connect(("127.0.0.1", port))
            queued.append(pending)
        time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for pending in queued:
            pending.close()
        server.close()


@pytest.mark.parametrize("cluster", [False, True])
def test_a_redis_address_that_never_answers_is_an_error_within_the_connect_timeout(cluster):
    with silent_listener() as url:
        started = time.monotonic()
        with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError, RedisClusterException)):
            connect_redis(url, cluster).ping()
        elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT_SECONDS - 0.5 < elapsed < CONNECT_TIMEOUT_SECONDS + 3
