"""The worker's HTTP protocol: uvicorn's httptools protocol with read deadlines, and evaluate
answered inside the protocol when that changes nothing but the cost.

Tested on uvicorn 0.54 (pyproject pins the range). What this relies on of uvicorn's
`HttpToolsProtocol`: the parser callbacks (`on_message_begin`, `on_headers_complete`,
`on_body`, `on_message_complete`) and the state they keep (`self.url`, `self.headers`,
`self.scope`, `self.expect_100_continue`, `self.cycle`, `self.pipeline`, `self.flow`,
`self.parser`, `self.connections`, `self.server_state`, `STATUS_LINE`, `_start_asgi_task`),
and what `on_response_complete` does, which this module replaces (it is the same but for the
keep-alive timer).

Deadlines (slowloris): a connection that sends nothing is closed after the keep-alive timeout;
a request must have all its headers within `EDGE_HEADER_TIMEOUT` seconds of its first byte,
and its whole body within `EDGE_BODY_TIMEOUT` seconds of its headers; past either it is closed.
A deadline is a number on the connection, checked by one sweep of all connections every
SWEEP seconds, not a timer per request (uvicorn's keep-alive timer cost a timer handle per
response): deadlines are kept to within SWEEP.

The fast path (`EDGE_FAST_PATH`, on by default): `POST /api/v1/flags/evaluate`, with no query
string, no `Expect: 100-continue`, no CORS request (an `Origin` while CORS is configured), no
other request in flight on the connection and writing not paused, is buffered here instead of
starting an ASGI task; when the whole request is in, evaluate's synchronous `respond` gives
the answer, and status line, headers and body go out in one write. Any other case, including a
body that outgrows the limit, is handed to uvicorn's own path with what was buffered: the ASGI
app then answers exactly as it would have.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping, MutableSet
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from proxy import http

log = logging.getLogger("proxy.protocol")

EVALUATE = b"/api/v1/flags/evaluate"
SWEEP = 0.5  # seconds between two checks of every connection's deadline
Headers = list[tuple[bytes, bytes]]


class Hooks(Protocol):
    """What the app (proxy.app.EdgeApp) offers the protocol."""

    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    cors: bool

    # None when the fast path is off; else (headers, body) -> (status, body, headers).
    fast_evaluate: Callable[[Mapping[bytes, bytes], bytes], tuple[int, bytes, Headers]] | None

    def observe(self, route: str, status: int, seconds: float) -> None: ...

    def crashed_answer(self, headers: Mapping[bytes, bytes]) -> tuple[int, bytes, Headers]: ...


def _hooks(app: Any) -> Hooks:
    """The EdgeApp under uvicorn's wrappers (ProxyHeadersMiddleware, ...)."""
    for _ in range(8):
        if hasattr(app, "fast_evaluate"):
            hooks: Hooks = app
            return hooks
        app = getattr(app, "app", None)
    raise RuntimeError("proxy.protocol needs the proxy's app (proxy.app:create_app)")


class EdgeProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hooks = _hooks(self.app)
        self.deadline_at = math.inf  # loop time past which the connection is closed
        self.fast = False  # this request is being buffered for the fast path
        self.fast_body = bytearray()
        self.fast_keep_alive = True
        self.header_size = 0
        self._default_headers: Headers | None = None  # what _default_block was made of
        self._default_block = b""

    # Deadlines --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response: a connection that never
        # sends a byte would stay open for ever.
        self._arm(self.timeout_keep_alive)
        _sweep_on(self.loop, self.connections)

    def _arm(self, seconds: float) -> None:
        self.deadline_at = self.loop.time() + seconds

    def on_response_complete(self) -> None:
        """uvicorn's, with a deadline in place of its keep-alive timer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._arm(self.timeout_keep_alive)

    # Parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_size = 0
        self._arm(self.hooks.header_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.header_size += len(name) + len(value)

    def on_headers_complete(self) -> None:
        self._arm(self.hooks.body_timeout)
        if self._fast_eligible():
            self.fast = True
            self.fast_body = bytearray()
            self.fast_keep_alive = (
                self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            )
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.fast:
            super().on_body(body)
            return
        self.fast_body += body
        if len(self.fast_body) > self.hooks.max_body_bytes:
            self._fall_back()

    def on_message_complete(self) -> None:
        self.deadline_at = math.inf  # the request is in: the app has it, no deadline now
        if not self.fast:
            super().on_message_complete()
            return
        self.fast = False
        self._answer(bytes(self.fast_body))

    # The fast path ----------------------------------------------------------------------------

    def _fast_eligible(self) -> bool:
        hooks = self.hooks
        if hooks.fast_evaluate is None or self.url != EVALUATE or self.expect_100_continue:
            return False
        if self.parser.get_method() != b"POST" or self.parser.should_upgrade():
            return False
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            return False  # answers go out in request order: behind the one in flight
        if self.flow.write_paused or self.header_size > hooks.max_header_bytes:
            return False
        if hooks.cors and any(name == b"origin" for name, _ in self.headers):
            return False
        for name, value in self.headers:
            if name == b"content-length":
                return value.isdigit() and int(value) <= hooks.max_body_bytes
        return True

    def _fall_back(self) -> None:
        """Hand the request to uvicorn's own path, as if it had never been buffered."""
        self.fast = False
        body, self.fast_body = bytes(self.fast_body), bytearray()
        HttpToolsProtocol.on_headers_complete(self)
        if body:
            HttpToolsProtocol.on_body(self, body)

    def _answer(self, body: bytes) -> None:
        hooks = self.hooks
        headers = dict(self.headers)
        started = time.perf_counter()
        assert hooks.fast_evaluate is not None
        try:
            status, out, extra = hooks.fast_evaluate(headers, body)
        except Exception:
            status, out, extra = hooks.crashed_answer(headers)
        content = [STATUS_LINE[status], self._defaults(), *_lines(extra)]
        content.append(b"content-length: %d\r\n" % len(out))
        if hooks.cors:  # what Starlette's CORSMiddleware adds to an answer without an Origin
            content.append(b"vary: Origin\r\n")
        if not self.fast_keep_alive:
            content.append(b"connection: close\r\n")
        content += [b"\r\n", out]
        self.transport.write(b"".join(content))
        hooks.observe("POST /api/v1/flags/evaluate", status, time.perf_counter() - started)
        if not self.fast_keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _defaults(self) -> bytes:
        """uvicorn's default headers (date, server) as bytes, re-joined once a second."""
        defaults = self.server_state.default_headers
        if defaults is not self._default_headers:
            self._default_headers = defaults
            self._default_block = b"".join(n + b": " + v + b"\r\n" for n, v in defaults)
        return self._default_block


# Every 200 carries these: joined once.
_PRIVATE = [n + b": " + v + b"\r\n" for n, v in http.PRIVATE_HEADERS]


def _lines(headers: Headers) -> list[bytes]:
    if headers is http.PRIVATE_HEADERS:
        return _PRIVATE
    return [n + b": " + v + b"\r\n" for n, v in headers]


_SWEEPING: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _sweep_on(loop: asyncio.AbstractEventLoop, connections: MutableSet[Any]) -> None:
    """Start the loop's sweep of the connections' deadlines, once per loop."""
    if loop not in _SWEEPING:
        _SWEEPING.add(loop)
        loop.call_later(SWEEP, _sweep, loop, connections)


def _sweep(loop: asyncio.AbstractEventLoop, connections: MutableSet[Any]) -> None:
    now = loop.time()
    for connection in list(connections):
        if isinstance(connection, EdgeProtocol) and connection.deadline_at < now:
            connection.deadline_at = math.inf
            if not connection.transport.is_closing():
                connection.transport.close()
    loop.call_later(SWEEP, _sweep, loop, connections)
