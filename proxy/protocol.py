"""The worker's HTTP protocol: uvicorn's httptools protocol with read deadlines, and evaluate
answered inside the protocol when that changes nothing but the cost.

Tested on uvicorn 0.54 (pyproject pins the range). What this relies on of uvicorn's
`HttpToolsProtocol`: the parser callbacks (`on_message_begin`, `on_headers_complete`,
`on_body`, `on_message_complete`) and the state they keep (`self.url`, `self.headers`,
`self.scope`, `self.expect_100_continue`, `self.cycle`, `self.pipeline`, `self.flow`,
`self.parser`, `self.server_state.default_headers`, `STATUS_LINE`), `on_response_complete`
(request count, keep-alive timer, pipelined requests) and `timeout_keep_alive_task`.

Deadlines (slowloris): a connection that sends nothing is closed after the keep-alive timeout;
a request must have all its headers within `EDGE_HEADER_TIMEOUT` seconds of its first byte,
and its whole body within `EDGE_BODY_TIMEOUT` seconds of its headers; past either it is closed.

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
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from proxy import http

log = logging.getLogger("proxy.protocol")

EVALUATE = b"/api/v1/flags/evaluate"
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
        self.deadline: asyncio.TimerHandle | None = None
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
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.close()

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
        self._disarm()
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
