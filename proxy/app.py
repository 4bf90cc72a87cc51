"""Assemble the service: the runtime (Redis, snapshot sync, writers), the two hot routes as a
pure-ASGI dispatcher, and Starlette for everything else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from proxy import ops
from proxy.control import experiments, flags, keys, projects, rules, segments
from proxy.edge import wire
from proxy.edge.evaluate import Evaluate
from proxy.edge.exposures import ExposureBuffer
from proxy.edge.sync import Sync
from proxy.edge.track import ConversionWriter, Track
from proxy.errors import ApiError, unavailable
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
        self.events = EventStore(self.redis)
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
    """The hot routes without a router: one dict lookup, then the handler; the rest goes to
    Starlette."""

    def __init__(self, runtime: Runtime, app: Starlette) -> None:
        self.runtime = runtime
        self.app = app
        limit = runtime.settings.max_body_bytes
        self.hot: dict[str, Evaluate | Track] = {
            "/api/v1/flags/evaluate": Evaluate(runtime.sync, limit),
            "/api/v1/flags/track": Track(runtime.sync, runtime.conversions, limit),
        }

    async def __call__(self, scope: wire.Scope, receive: wire.Receive, send: wire.Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.hot.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, body: bytes) -> Response:
    return Response(body, status, media_type="application/json")


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.body())


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found", 405: "Method not allowed"}
    return _error(
        exc.status_code, ApiError(exc.status_code, messages.get(exc.status_code, exc.detail)).body()
    )


async def store_error(request: Request, exc: Exception) -> Response:
    err = unavailable("configuration store unreachable")
    return _error(err.status, err.body())


async def conflict_error(request: Request, exc: Exception) -> Response:
    return _error(409, ApiError(409, "Concurrent modification; try again").body())


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, ApiError(500, "Internal server error").body())


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
        *keys.routes,
        *projects.routes,
        *segments.routes,
        *flags.routes,
        *rules.routes,
        *experiments.routes,
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
