"""A private Redis Cluster on loopback (masters only), for the tests and benchmarks that prove the same code runs
on a cluster. Production points `REDIS_URL` at one node of its own cluster and sets `REDIS_CLUSTER=1`.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from devstack.redis_server import RedisServer


def _port_with_free_bus(attempts: int = 200) -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free too: redis refuses higher ports."""
    for _ in range(attempts):
        port = random.randint(20_000, 55_535)  # noqa: S311 - a port number, not a secret
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalRedisCluster:
    """`with LocalRedisCluster(data_dir, masters=3) as cluster: cluster.url` — every slot served, or an error."""

    def __init__(self, data_dir: Path, masters: int = 3):
        self.nodes = [RedisServer(Path(data_dir) / f"node-{i}", port=_port_with_free_bus(), extra_args=[
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"])
            for i in range(masters)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.start()
            binary = shutil.which("redis-cli") or "/usr/bin/redis-cli"
            subprocess.run([binary, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, timeout=timeout)
            self._wait_until_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with contextlib.closing(redis.Redis(port=node.port)) as client:
                while client.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok in time")
                    time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
