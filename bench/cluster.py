"""The OCSP and propagation benchmarks again, on a 3-master Redis Cluster on loopback.

Three redis-server processes with `--cluster-enabled yes` on free loopback ports, joined by
`redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`; the benchmark waits for `cluster_state:ok` on
every node. The services get `REDIS_URL` of the first node and `REDIS_CLUSTER=1` (redis-py's RedisCluster finds
the others). Then bench/ocsp.py's `measure_ours` (our responder only: the openssl comparison does not depend on
our Redis) and bench/propagation.py's `measure_propagation` run unchanged, with the same settings as there.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from bench import ocsp, propagation
from bench.harness import Result, concurrent_benchmarks, contention_note
from jpki.devca import DevCA

NODES = 3
BUS_OFFSET = 10_000  # Redis Cluster's bus listens on the node's port + 10000


def node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)


def cluster_port(attempts: int = 200) -> int:
    """A free loopback port whose cluster bus port (port + 10000) is a valid port and free as well."""
    for _ in range(attempts):
        port = random.randint(20_000, 45_000)  # noqa: S311 - not a secret
        try:
            for candidate in (port, port + BUS_OFFSET):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of loopback ports for a cluster node")


class LoopbackCluster:
    """`with LoopbackCluster(directory) as url:` — a 3-master Redis Cluster, every node stopped on exit."""

    def __init__(self, directory: Path, nodes: int = NODES):
        self.directory = Path(directory).resolve()
        self.ports = [cluster_port() for _ in range(nodes)]
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def __enter__(self) -> str:
        try:
            for port in self.ports:
                self.processes.append(self._start_node(port))
            for port in self.ports:
                self._wait(lambda p=port: node(p).ping(), f"node {port} did not answer")
            subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                            *(f"127.0.0.1:{port}" for port in self.ports), "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            for port in self.ports:
                self._wait(lambda p=port: node(p).cluster("info")["cluster_state"] == "ok",
                           f"node {port} never reached cluster_state:ok")
            return self.url
        except BaseException:
            self.__exit__()
            raise

    def _start_node(self, port: int) -> subprocess.Popen:
        data = self.directory / str(port)
        data.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(port),
             "--dir", str(data), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--appendonly", "no", "--save", "", "--protected-mode", "yes", "--logfile", str(data / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    @staticmethod
    def _wait(ready, failure: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(failure)

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


def run(workdir: Path) -> list[Result]:
    seen = concurrent_benchmarks()
    population = ocsp.make_population(DevCA.generate())
    results = []
    with LoopbackCluster(workdir / "cluster-ocsp") as url:
        loading = ocsp.load_store(ocsp.connect(url, cluster=True), population)
        figures = ocsp.measure_ours(workdir / "ocsp", url, population, cluster=True)
        results += [ocsp.result("cluster.ocsp", case, figures[case], None, loading) for case in ("nonce_less", "nonce")]
    seen += concurrent_benchmarks()
    with LoopbackCluster(workdir / "cluster-propagation") as url:
        figures = propagation.measure_propagation(workdir / "propagation", url, cluster=True)
        results.append(propagation.result("cluster.propagation", figures, f"{NODES}-master Redis Cluster"))
    seen += concurrent_benchmarks()
    for item in results:
        item.notes += contention_note(seen)
    return results
