"""Prometheus metrics: request counts and latencies observed per route, everything else read
from the components' own counters when scraped (nothing extra on the hot path)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.app import Runtime

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RouteStats:
    __slots__ = ("buckets", "statuses", "total")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class Metrics:
    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {}
        self.redis_errors = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.total += seconds

    def render(self, rt: Runtime) -> bytes:
        out: list[str] = []
        metric = _Writer(out)
        metric.head("edge_http_requests_total", "counter", "HTTP requests by route and status")
        for route, s in sorted(self.routes.items()):
            for status, n in sorted(s.statuses.items()):
                metric.sample("edge_http_requests_total", n, route=route, status=str(status))
        name = "edge_http_request_duration_seconds"
        metric.head(name, "histogram", "HTTP request latency by route")
        for route, s in sorted(self.routes.items()):
            cumulative = 0
            for bound, n in zip((*BUCKETS, float("inf")), s.buckets, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                metric.sample(name + "_bucket", cumulative, route=route, le=le)
            metric.sample(name + "_sum", s.total, route=route)
            metric.sample(name + "_count", cumulative, route=route)

        ex, conv, spool, sync = rt.exposures, rt.conversions, rt.spool, rt.sync
        metric.family(
            "edge_exposures_total", "counter", "Exposures by outcome",
            [({"result": "written"}, ex.written), ({"result": "spooled"}, ex.spooled),
             ({"result": "dropped"}, ex.dropped)],
        )  # fmt: skip
        metric.family(
            "edge_conversions_total", "counter", "Conversions by outcome",
            [({"result": "accepted"}, conv.accepted), ({"result": "duplicate"}, conv.duplicates),
             ({"result": "spooled"}, conv.spooled)],
        )  # fmt: skip
        metric.family(
            "edge_spool_events_total", "counter", "Spooled events by operation",
            [({"op": "appended"}, spool.appended), ({"op": "replayed"}, spool.replayed),
             ({"op": "rejected"}, spool.rejected)],
        )  # fmt: skip
        metric.single("edge_spool_bytes", "gauge", "Size of the durable spool", spool.size())
        metric.single(
            "edge_exposure_queue_depth", "gauge", "Exposures waiting for a batch", len(ex.pending)
        )
        metric.single(
            "edge_conversion_queue_depth", "gauge", "Conversions waiting for Redis", len(conv.queue)
        )
        metric.single(
            "edge_sync_reconnects_total", "counter", "Pub/sub reconnections", sync.reconnects
        )
        redis_errors = self.redis_errors + sync.redis_errors + conv.redis_errors + ex.redis_errors
        metric.single("edge_redis_errors_total", "counter", "Failed Redis calls", redis_errors)
        now = time.monotonic()
        metric.single(
            "edge_snapshot_confirmed_age_seconds", "gauge",
            "Seconds since the snapshot was last confirmed current against Redis",
            now - sync.confirmed_at if sync.loaded else -1,
        )  # fmt: skip
        projects = sorted(sync.snapshot.projects.items())
        metric.family(
            "edge_snapshot_version", "gauge", "Configuration version held, per project",
            [({"project": pid}, p.version) for pid, p in projects],
        )  # fmt: skip
        metric.family(
            "edge_snapshot_age_seconds", "gauge", "Seconds since the project was last reloaded",
            [({"project": pid}, now - sync.loaded_at.get(pid, now)) for pid, _ in projects],
        )  # fmt: skip
        return ("\n".join(out) + "\n").encode()


class _Writer:
    def __init__(self, out: list[str]) -> None:
        self.out = out

    def head(self, name: str, kind: str, help: str) -> None:
        self.out += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.out.append(f"{name}{{{text}}} {value}")
        else:
            self.out.append(f"{name} {value}")

    def single(self, name: str, kind: str, help: str, value: float) -> None:
        self.head(name, kind, help)
        self.sample(name, value)

    def family(
        self, name: str, kind: str, help: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        self.head(name, kind, help)
        for labels, value in samples:
            self.sample(name, value, **labels)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
