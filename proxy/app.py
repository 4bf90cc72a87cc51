"""Assemble the service: the runtime (Redis, snapshot sync, writers), the two hot routes as a
pure-ASGI dispatcher, and Starlette for everything else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from proxy import console, ofrep, openapi, ops
from proxy.control import experiments, flags, keys, projects, rules, segments
from proxy.control.common import runtime
from proxy.edge import wire
from proxy.edge.auth import Auth
from proxy.edge.evaluate import Evaluate
from proxy.edge.exposures import ExposureBuffer
from proxy.edge.sync import Sync
from proxy.edge.track import ConversionWriter, Track
from proxy.errors import ApiError, unavailable
from proxy.metrics import Metrics
from proxy.ofrep import Ofrep
from proxy.settings import Settings
from proxy.store.config import ConfigStore, Conflict
from proxy.store.connection import connect, connect_pubsub, resolve_url
from proxy.store.events import EventStore
from proxy.store.spool import Spool

log = logging.getLogger("proxy")


class Runtime:
    """Everything one worker process holds: clients, snapshot, buffers, background tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = None if settings.redis_mode == "sentinel" else resolve_url(settings)
        self.redis = connect(settings, url)
        self.store = ConfigStore(self.redis)
        self.events = EventStore(
            self.redis, settings.redis_wait_replicas, int(settings.redis_timeout * 500)
        )
        self.spool = Spool(settings.data_dir / "spool", settings.spool_max_bytes)
        self.exposures = ExposureBuffer(
            self.events,
            self.spool,
            buffer_max=settings.exposure_buffer_max,
            seen_max=settings.exposure_seen_max,
        )
        self.sync = Sync(
            self.store,
            connect_pubsub(settings, url),
            self.exposures.record,
            poll_interval=settings.poll_interval,
            lkg_path=settings.data_dir / "snapshot.json",
        )
        self.conversions = ConversionWriter(self.events, self.spool)
        self.auth = Auth(self.sync, settings.rate_limit_per_second)
        self.metrics = Metrics()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # Bounded waits: the port must answer within seconds even when Redis does not.
        if self.settings.bootstrap_key and not await self._bootstrap():
            self._tasks.append(asyncio.create_task(self._bootstrap_until_done()))
        await self.sync.start(wait=3.0)
        interval = self.settings.exposure_flush_interval
        self._tasks.append(asyncio.create_task(self.exposures.run(interval)))
        self._tasks.append(asyncio.create_task(self.spool.run(self.events, 1.0)))

    async def _bootstrap(self) -> bool:
        assert self.settings.bootstrap_key
        try:
            await asyncio.wait_for(
                keys.ensure_bootstrap_key(self.store, self.settings.bootstrap_key), 2.0
            )
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("bootstrap key not written yet (%s)", type(e).__name__)
            return False
        return True

    async def _bootstrap_until_done(self) -> None:
        while not await self._bootstrap():
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.conversions.close()
        await self.exposures.flush()  # to Redis, or to the spool
        self.spool.close()
        await self.sync.stop()
        with contextlib.suppress(Exception):
            await self.redis.aclose()


class EdgeApp:
    """The hot routes without a router (evaluate, track, OFREP: a dict lookup, then the
    handler, with CORS when origins are configured); everything else goes to Starlette."""

    def __init__(self, runtime: Runtime, app: Starlette) -> None:
        self.runtime = runtime
        self.app = app
        self.metrics = runtime.metrics if runtime.settings.metrics else None
        limit = runtime.settings.max_body_bytes
        self.max_header_bytes = runtime.settings.max_header_bytes
        self.hot: dict[str, Evaluate | Track] = {
            "/api/v1/flags/evaluate": Evaluate(runtime.auth, limit),
            "/api/v1/flags/track": Track(runtime.auth, runtime.conversions, limit),
        }
        self.ofrep = Ofrep(runtime.auth, limit)
        self.edge: ASGIApp = self.dispatch_hot
        if runtime.settings.cors_origins:
            self.edge = CORSMiddleware(
                self.dispatch_hot,
                allow_origins=runtime.settings.cors_origins,
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type", "x-api-key", "if-none-match"],
                expose_headers=["etag"],
                max_age=600,
            )

    async def __call__(self, scope: wire.Scope, receive: wire.Receive, send: wire.Send) -> None:
        if scope["type"] == "http" and wire.header_bytes(scope) > self.max_header_bytes:
            await wire.reply_error(send, ApiError(431, "Request headers too large"))
            return
        if scope["type"] == "http" and scope["method"] in ("POST", "OPTIONS"):
            path = scope["path"]
            if path in self.hot or path.startswith(ofrep.PREFIX):
                await self.edge(scope, receive, send)
                return
        if self.metrics is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def observed_send(message: wire.Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = scope.get("route")
            label = f"{scope['method']} {route.path if route is not None else 'unmatched'}"
            self.metrics.observe(label, status, time.perf_counter() - start)

    async def dispatch_hot(self, scope: wire.Scope, receive: wire.Receive, send: wire.Send) -> None:
        path = scope["path"]
        if scope["method"] != "POST":  # an OPTIONS that is not a CORS preflight
            await wire.reply_error(send, ApiError(405, "Method not allowed"))
            return
        handler = self.hot.get(path) or self.ofrep
        if self.metrics is None:
            await handler(scope, receive, send)
            return
        start = time.perf_counter()
        status = await handler(scope, receive, send)
        label = "POST " + (path if handler is not self.ofrep else ofrep.PREFIX + "/*")
        self.metrics.observe(label, status, time.perf_counter() - start)


def _error(status: int, body: bytes) -> Response:
    return Response(body, status, media_type="application/json")


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = _error(exc.status, exc.body())
    for name, value in exc.headers:
        response.headers[name.decode()] = value.decode()
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found", 405: "Method not allowed"}
    return _error(
        exc.status_code, ApiError(exc.status_code, messages.get(exc.status_code, exc.detail)).body()
    )


async def store_error(request: Request, exc: Exception) -> Response:
    runtime(request).metrics.redis_errors += 1
    err = unavailable("configuration store unreachable")
    return _error(err.status, err.body())


async def conflict_error(request: Request, exc: Exception) -> Response:
    return _error(409, ApiError(409, "Concurrent modification; try again").body())


async def internal_error(request: Request, exc: Exception) -> Response:
    """Never a stack trace or a Redis message to the client: a request id to quote instead."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    log.exception(
        "unhandled error",
        extra={"request_id": request_id, "method": request.method, "path": request.url.path},
    )
    body = ApiError(500, "Internal server error", request_id=request_id).body()
    return Response(body, 500, {"x-request-id": request_id}, media_type="application/json")


def create_app(settings: Settings | None = None) -> EdgeApp:
    settings = settings or Settings.from_env()
    runtime = Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # Literal paths before `{flag_id}`: /flags/projects and /flags/segments are not flags.
    routes = [
        *ops.routes,
        *openapi.routes,
        *keys.routes,
        *projects.routes,
        *segments.routes,
        *flags.routes,
        *rules.routes,
        *experiments.routes,
        *console.routes(settings.console),  # last: no API request ever tries its patterns
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            RedisError: store_error,
            ConnectionError: store_error,
            Conflict: conflict_error,
            Exception: internal_error,
        },
    )
    app.state.runtime = runtime
    return EdgeApp(runtime, app)
