"""The one way a service process connects to its Redis: a server, or a Redis Cluster through any of its nodes.

A Redis address that never answers is an error within `CONNECT_TIMEOUT_SECONDS`, not after the kernel's TCP
connect timeout (about two minutes on Linux), so a service started against the wrong address says so at once and
a worker's next attempt is not held up. The timeout is set here rather than left to redis-py's default (5 s since
redis-py 8, none before), so it does not change with the library. Command timeouts stay the library's.
"""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster

CONNECT_TIMEOUT_SECONDS = 5


def connect_redis(url: str, cluster: bool = False) -> redis.Redis:
    """A client for `url` (`redis://`, `rediss://`, `unix://`); `cluster` when it names a Redis Cluster node."""
    if cluster:
        return RedisCluster.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS)
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS)
