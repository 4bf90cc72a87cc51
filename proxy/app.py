"""Assemble the service: the runtime, the hot routes as a pure-ASGI dispatcher (exact paths, a
dict lookup), Starlette for everything else, the metrics collectors, and the error answers."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from proxy import console, http, metrics, ofrep, openapi, ops
from proxy.control import (
    audit,
    experiments,
    flags,
    keys,
    projects,
    results,
    rules,
    segments,
    webhooks,
)
from proxy.control.delivery import Delivery
from proxy.domain.model import DomainError
from proxy.edge import streams
from proxy.edge.evaluate import Evaluate
from proxy.edge.track import Track
from proxy.errors import ApiError, conflict, from_domain, unavailable
from proxy.ofrep import Ofrep
from proxy.runtime import Runtime, runtime_of
from proxy.settings import Settings
from proxy.store.config import ConcurrentWrite

log = logging.getLogger("proxy")

EVALUATE, TRACK = "/api/v1/flags/evaluate", "/api/v1/flags/track"
OFREP_SINGLE = ofrep.PREFIX + "/"


class Guard:
    """The last line: an unexpected error is logged once, with a request id that the 500 body
    carries instead of any detail, and the connection stays open for the next request (an
    exception that reached uvicorn would close it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: http.Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            await crashed(scope, send, started)


def crash_answer(
    method: str, path: str, headers: Mapping[bytes, bytes]
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Log the exception being handled, once, and the 500 that names it by a request id."""
    request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
    log.exception(
        "unhandled error", extra={"request_id": request_id, "method": method, "path": path}
    )
    error = ApiError(500, "Internal server error", request_id=request_id)
    return 500, error.body(), [*http.JSON_HEADERS, (b"x-request-id", request_id.encode())]


async def crashed(scope: http.Scope, send: http.Send, started: bool) -> int:
    status, body, headers = crash_answer(scope["method"], scope["path"], http.headers_of(scope))
    if not started:
        await http.reply(send, status, body, headers)
    return status


class EdgeApp:
    """The hot routes without a router (evaluate, track, OFREP: exact paths, then the handler,
    with CORS when origins are configured); everything else goes to Starlette. It also offers
    the HTTP protocol (proxy.protocol) its deadlines, evaluate's synchronous answer and track's
    synchronous submission."""

    def __init__(self, runtime: Runtime, app: Starlette, requests: metrics.RequestMetrics) -> None:
        self.runtime = runtime
        self.app = app
        settings = runtime.settings
        self.metrics = requests if settings.metrics else None
        limit = settings.max_body_bytes
        self.max_header_bytes = settings.max_header_bytes
        self.max_body_bytes = limit
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.cors = bool(settings.cors_origins)
        evaluate = Evaluate(runtime.auth, limit)
        track = Track(runtime.auth, runtime.conversions, limit)
        self.fast_evaluate = evaluate.respond if settings.fast_path else None
        self.fast_track = track.submit if settings.fast_path else None
        self.track_answer = track.answer
        self.hot: dict[str, Evaluate | Track | Ofrep] = {EVALUATE: evaluate, TRACK: track}
        self.ofrep = Ofrep(runtime.auth, limit, runtime.streams)
        self.hot[ofrep.PREFIX] = self.ofrep
        # Event streams are served by the HTTP protocol (proxy.protocol); what reaches the app
        # on their path (a preflight, another method, a stray request) gets the ASGI route.
        self.streams = runtime.streams
        self.edge: ASGIApp = self.dispatch_hot
        self.stream_route: ASGIApp = self.dispatch_stream
        if settings.cors_origins:
            self.edge = CORSMiddleware(
                self.dispatch_hot,
                allow_origins=settings.cors_origins,
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type", "x-api-key", "if-none-match"],
                expose_headers=["etag"],
                max_age=600,
            )
            # An EventSource's reconnection sends Last-Event-ID: a preflight asks for it.
            self.stream_route = CORSMiddleware(
                self.dispatch_stream,
                allow_origins=settings.cors_origins,
                allow_methods=["GET"],
                allow_headers=["last-event-id", "cache-control"],
                max_age=600,
            )

    def observe(self, route: str, status: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(route, status, seconds)

    def crashed_answer(
        self, headers: Mapping[bytes, bytes], method: str = "POST", path: str = EVALUATE
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return crash_answer(method, path, headers)

    def handler_of(self, path: str) -> Evaluate | Track | Ofrep | None:
        handler = self.hot.get(path)
        if handler is None and path.startswith(OFREP_SINGLE) and len(path) > len(OFREP_SINGLE):
            return self.ofrep  # /ofrep/v1/evaluate/flags/{key}
        return handler

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] == "http" and http.header_bytes(scope) > self.max_header_bytes:
            await http.reply_error(send, ApiError(431, "Request headers too large"))
            return
        if (
            scope["type"] == "http"
            and scope["method"] in ("POST", "OPTIONS")
            and self.handler_of(scope["path"]) is not None
        ):
            await self.edge(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == streams.PATH:
            await self.stream_route(scope, receive, send)
            return
        if self.metrics is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def observed_send(message: http.Message) -> None:
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

    async def dispatch_hot(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        path = scope["path"]
        if scope["method"] != "POST":  # an OPTIONS that is not a CORS preflight
            await http.reply_error(send, ApiError(405, "Method not allowed"))
            return
        handler = self.handler_of(path)
        assert handler is not None
        start = time.perf_counter()
        try:
            status = await handler(scope, receive, send)
        except Exception:  # hot handlers reply once, at the end: nothing was sent yet
            status = await crashed(scope, send, started=False)
        if self.metrics is not None:
            label = "POST " + (path if handler is not self.ofrep else ofrep.PREFIX + "/*")
            self.metrics.observe(label, status, time.perf_counter() - start)

    async def dispatch_stream(
        self, scope: http.Scope, receive: http.Receive, send: http.Send
    ) -> None:
        start = time.perf_counter()
        try:
            status = await self.streams(scope, receive, send)
        except Exception:
            status = await crashed(scope, send, started=False)
        if self.metrics is not None:
            label = f"{scope['method']} {streams.PATH}"
            self.metrics.observe(label, status, time.perf_counter() - start)


def _error(error: ApiError) -> Response:
    response = Response(error.body(), error.status, media_type="application/json")
    for name, value in error.headers:
        response.headers[name.decode()] = value.decode()
    return response


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return _error(from_domain(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found", 405: "Method not allowed"}
    return _error(ApiError(exc.status_code, messages.get(exc.status_code, exc.detail)))


async def store_error(request: Request, exc: Exception) -> Response:
    runtime_of(request).redis_errors += 1
    return _error(unavailable("configuration store unreachable"))


async def concurrent_write(request: Request, exc: Exception) -> Response:
    return _error(conflict("Concurrent modification; try again"))


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or Settings.from_env()
    runtime = Runtime(settings)
    delivery = Delivery(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        runtime.spawn(delivery.run())  # webhooks: in the background, never on a request's path
        try:
            yield
        finally:
            await runtime.stop()

    # Literal paths before `{flag_id}`: /flags/projects, /flags/segments, /flags/audit and
    # /flags/webhooks are not flags.
    routes = [
        *ops.routes,
        *openapi.routes,
        *keys.routes,
        *projects.routes,
        *segments.routes,
        *audit.routes,
        *webhooks.routes,
        *flags.routes,
        *rules.routes,
        *experiments.routes,
        *console.routes(settings.console),  # last: no API request ever tries its patterns
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard)],
        exception_handlers={
            ApiError: api_error,
            DomainError: domain_error,
            HTTPException: http_error,
            RedisError: store_error,
            ConnectionError: store_error,
            ConcurrentWrite: concurrent_write,
        },
    )
    # A redirect to the slash-less path would be built from the Host header, which the client
    # chooses: an open redirect. Such a path is simply not found.
    app.router.redirect_slashes = False
    requests = metrics.RequestMetrics()
    app.state.runtime = runtime
    app.state.metrics = metrics.registry(
        [
            requests,
            runtime.sync,
            runtime.exposures,
            runtime.conversions,
            runtime.spool,
            runtime.auth,
            delivery,
            results.CACHE_METRICS,
            runtime.streams,
            metrics.RedisErrors(
                {
                    "control": runtime,
                    "sync": runtime.sync,
                    "exposures": runtime.exposures,
                    "conversions": runtime.conversions,
                    "webhooks": delivery,
                }
            ),
        ]
    )
    return EdgeApp(runtime, app, requests)
