"""Prometheus metrics as collectors: each component reports its own figures when scraped, and
the app registers them when it is assembled. Nothing is counted per request but the request
itself, in plain integers (prometheus_client's own counters take a lock on every `inc`)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RouteStats:
    __slots__ = ("buckets", "statuses", "total")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class RequestMetrics:
    """Counts and latencies per route and status, observed by the app's dispatcher."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.total += seconds

    def collect(self) -> Iterator[Metric]:
        routes = sorted(self.routes.items())
        requests = CounterMetricFamily(
            "edge_http_requests", "HTTP requests by route and status", labels=["route", "status"]
        )
        latency = HistogramMetricFamily(
            "edge_http_request_duration_seconds", "HTTP request latency by route", labels=["route"]
        )
        for route, s in routes:
            for status, n in sorted(s.statuses.items()):
                requests.add_metric([route, str(status)], n)
            cumulative, buckets = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), s.buckets, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([route], buckets, s.total)
        yield requests
        yield latency


class CountsRedisErrors(Protocol):
    redis_errors: int


class RedisErrors:
    """Failed Redis calls, one family for every component that makes them."""

    def __init__(self, components: Mapping[str, CountsRedisErrors]) -> None:
        self.components = components

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "edge_redis_errors", "Failed Redis calls by component", labels=["component"]
        )
        for name, component in self.components.items():
            family.add_metric([name], component.redis_errors)
        yield family


def registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    """The worker's registry: the process and the interpreter (CPU, memory, file descriptors,
    garbage collections), then the service's own collectors."""
    reg = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, *collectors):
        reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
