"""The OCSP and propagation benchmarks again, on a 3-master Redis Cluster on loopback.

Three redis-server processes with `--cluster-enabled yes` on free loopback ports, joined by `redis-cli --cluster
create … --cluster-replicas 0 --cluster-yes` (devstack/redis_cluster.py, as in tests/test_cluster.py), every node
at `cluster_state:ok`. The services get `REDIS_URL` of the first node and `REDIS_CLUSTER=1` (redis-py's
RedisCluster finds the others). Then bench/ocsp.py's `measure_ours` (our responder only: the openssl comparison
does not depend on our Redis) and bench/propagation.py's `measure_propagation` run unchanged, with the same
settings as there.
"""

from __future__ import annotations

from pathlib import Path

from bench import ocsp, propagation
from bench.harness import Result
from devstack.redis_cluster import LocalRedisCluster
from jpki.devca import DevCA

NODES = 3


def run(workdir: Path) -> list[Result]:
    population = ocsp.make_population(DevCA.generate())
    results = []
    with LocalRedisCluster(workdir / "cluster-ocsp", masters=NODES) as cluster:
        url = cluster.url
        loading = ocsp.load_store(ocsp.connect(url, cluster=True), population)
        figures = ocsp.measure_ours(workdir / "ocsp", url, population, cluster=True)
        results += [ocsp.result("cluster.ocsp", case, figures[case], None, loading) for case in ("nonce_less", "nonce")]
    with LocalRedisCluster(workdir / "cluster-propagation", masters=NODES) as cluster:
        url = cluster.url
        figures = propagation.measure_propagation(workdir / "propagation", url, cluster=True)
        results.append(propagation.result("cluster.propagation", figures, f"{NODES}-master Redis Cluster"))
    return results
