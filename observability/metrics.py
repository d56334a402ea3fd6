"""Prometheus metrics for both services, counted in Redis so that every process and machine adds to one total.

A service registers counters and gauges; `/metrics` renders them in the Prometheus text format with
prometheus_client (a custom collector reads the Redis totals at scrape time). Label values are codes and names
only — never serials, tokens or personal data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import redis
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "metrics"


class Counter:
    """A labelled counter whose total lives in one Redis hash (field = the labels as JSON)."""

    def __init__(self, client: redis.Redis, name: str, documentation: str, labels: tuple[str, ...]):
        self.redis = client
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.key = f"{PREFIX}:{{{name}}}"

    def inc(self, **labels: str) -> None:
        try:
            self.redis.hincrby(self.key, json.dumps([labels[name] for name in self.labels]), 1)
        except redis.RedisError:
            pass  # a metric must never fail the request it counts

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for field, value in self.redis.hgetall(self.key).items():
            family.add_metric(json.loads(field), int(value))
        return family


Gauges = Callable[[], Iterable[GaugeMetricFamily]]


class _Collector:
    def __init__(self, counters: Iterable[Counter], gauges: Iterable[Gauges]):
        self.counters = list(counters)
        self.gauges = list(gauges)

    def collect(self):
        for counter in self.counters:
            yield counter.family()
        for gauges in self.gauges:
            yield from gauges()


def metrics_response(counters: Iterable[Counter], gauges: Iterable[Gauges] = ()) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(counters, gauges))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def gauge(name: str, documentation: str, labels: list[str], samples: Iterable[tuple[list[str], float]]):
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in samples:
        family.add_metric(label_values, value)
    return family
