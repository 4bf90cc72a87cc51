"""Operations routes: liveness, readiness, metrics."""

from __future__ import annotations

import time

import orjson
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import metrics as prometheus
from proxy.runtime import runtime_of


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


def not_ready_reason(request: Request) -> str | None:
    rt = runtime_of(request)
    sync = rt.sync
    if not sync.loaded:
        return "no configuration snapshot loaded yet"
    if sync.from_lkg:
        return "serving the last-known-good snapshot; Redis has not been reached"
    age = time.monotonic() - sync.confirmed_at
    if age > rt.settings.stale_after:
        return f"snapshot not confirmed current against Redis for {age:.0f}s"
    return None


async def readyz(request: Request) -> Response:
    reason = not_ready_reason(request)
    if reason is not None:
        return _json({"error": "Not ready", "reason": reason}, 503)
    return _json({"status": "ready"})


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(prometheus.render(registry), media_type=prometheus.CONTENT_TYPE)


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
