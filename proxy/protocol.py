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

The fast path (`EDGE_FAST_PATH`, on by default): `POST /api/v1/flags/evaluate` and
`POST /api/v1/flags/track`, with no query string, no `Expect: 100-continue`, no CORS request
(an `Origin` while CORS is configured), no other request in flight on the connection and
writing not paused, are buffered here instead of starting an ASGI task; when the whole request
is in, evaluate's synchronous `respond` gives the answer, and status line, headers and body go
out in one write. Track's `submit` gives a refusal at once, or the future of the conversion's
write: until it is done a stand-in for uvicorn's request cycle (`Written`) is the connection's
cycle, so uvicorn queues what is pipelined behind it and its `shutdown()` and
`connection_lost` mark it as they would mark its own; then the answer goes out the same way.
Any other case, including a body that outgrows the limit, is handed to uvicorn's own path with
what was buffered: the ASGI app then answers exactly as it would have.

Event streams (`GET /ofrep/v1/sse?channel=`, exact path, alone on its connection: whatever
EDGE_FAST_PATH says): once the request is in, the streams component (proxy.edge.streams) says
whether it may be a stream. A refusal is answered here like the fast path's answers; a stream
gets its head (chunked on HTTP/1.1, ended by the close on 1.0) and its transport is handed over.
From then on the connection has no keep-alive timer and no read deadline, and reads nothing:
any byte the client sends ends it. uvicorn's graceful shutdown (`shutdown()` on every
connection) closes streams at once, so SIGTERM does not wait for them. For streams it also
relies on `data_received`, `shutdown` and `send_400_response` (overridden here), and on
`connection_lost` being called once the transport is gone.
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
TRACK = b"/api/v1/flags/track"
SWEEP = 0.5  # seconds between two checks of every connection's deadline
STREAM = b"/ofrep/v1/sse"
Headers = http.Headers
Answer = http.Answer


class StreamTicket(Protocol):
    """The streams component's answer to a stream request (proxy.edge.streams.Ticket)."""

    status: int  # 200: write the head and `open`; anything else: answer this refusal
    body: bytes
    headers: Headers

    # Registers the stream on the transport; returns what to call once the connection ends.
    def open(self, transport: asyncio.Transport, chunked: bool) -> Callable[[], None]: ...


class Streams(Protocol):
    def admit(self, query: bytes, headers: Mapping[bytes, bytes]) -> StreamTicket: ...


class Hooks(Protocol):
    """What the app (proxy.app.EdgeApp) offers the protocol."""

    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    cors: bool

    # None when the fast path is off; else (headers, body) -> (status, body, headers).
    fast_evaluate: Callable[[Mapping[bytes, bytes], bytes], Answer] | None
    # None when the fast path is off; else (headers, body) -> a refusal, or the write's future
    # that `track_answer` turns into the answer once it is done.
    fast_track: Callable[[Mapping[bytes, bytes], bytes], Answer | asyncio.Future[bool]] | None

    def track_answer(self, written: asyncio.Future[bool]) -> Answer: ...

    streams: Streams | None  # the event streams' registry (proxy.edge.streams.Streams)

    def observe(self, route: str, status: int, seconds: float) -> None: ...

    def crashed_answer(
        self, headers: Mapping[bytes, bytes], method: str = ..., path: str = ...
    ) -> Answer: ...


class _Unwaited:
    def set(self) -> None:
        """An event that nobody waits on."""


class Written:
    """uvicorn's request cycle, as far as uvicorn looks at it, while a fast track's write is
    under way: not complete (what is pipelined behind it waits in `pipeline`); `shutdown()`
    clears `keep_alive`, `connection_lost` sets `disconnected` (and `message_event`)."""

    __slots__ = ("disconnected", "keep_alive", "response_complete")
    message_event = _Unwaited()

    def __init__(self, keep_alive: bool) -> None:
        self.response_complete = False
        self.keep_alive = keep_alive
        self.disconnected = False


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
        self.fast: bytes | None = None  # the fast path's route of the request it buffers
        self.fast_body = bytearray()
        self.fast_keep_alive = True
        self.header_size = 0
        self.stream_wanted = False  # this request asks to become an event stream
        self.stream_end: Callable[[], None] | None = None  # set while the connection is one
        self.streamed = False  # it has been one: it serves nothing else, ever
        self.stream_chunked = True
        self._default_headers: Headers | None = None  # what _default_block was made of
        self._default_block = b""

    # Deadlines --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response: a connection that never
        # sends a byte would stay open for ever.
        self._arm(self.timeout_keep_alive)
        _sweep_on(self.loop, self.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream_end is not None:
            self.stream_end()
            self.stream_end = None
        super().connection_lost(exc)

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

    def data_received(self, data: bytes) -> None:
        if self.streamed:  # a stream reads nothing: a client that sends more is done with it
            self._end_stream()
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self.streamed:  # pipelined behind the stream's request, in the same read
            self._end_stream()
            raise ConnectionAbortedError("a request after an event stream's")
        super().on_message_begin()
        self.header_size = 0
        self._arm(self.hooks.header_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.header_size += len(name) + len(value)

    def on_headers_complete(self) -> None:
        self._arm(self.hooks.body_timeout)
        if self._fast_eligible():
            self.fast = self.url
            self.fast_body = bytearray()
            self.fast_keep_alive = (
                self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            )
            return
        if self._stream_eligible():
            self.stream_wanted = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.stream_wanted:
            return  # a GET's body means nothing here (its deadline still holds)
        if self.fast is None:
            super().on_body(body)
            return
        self.fast_body += body
        if len(self.fast_body) > self.hooks.max_body_bytes:
            self._fall_back()

    def on_message_complete(self) -> None:
        self.deadline_at = math.inf  # the request is in: the app has it, no deadline now
        if self.stream_wanted:
            self.stream_wanted = False
            self._open_stream()
            return
        route, self.fast = self.fast, None
        if route is None:
            super().on_message_complete()
        elif route == EVALUATE:
            self._answer(bytes(self.fast_body))
        else:
            self._track(bytes(self.fast_body))

    # The fast path ----------------------------------------------------------------------------

    def _fast_eligible(self) -> bool:
        hooks = self.hooks
        if self.url == EVALUATE:
            if hooks.fast_evaluate is None:
                return False
        elif self.url != TRACK or hooks.fast_track is None:
            return False
        if self.expect_100_continue:
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

    def _stream_eligible(self) -> bool:
        hooks = self.hooks
        if hooks.streams is None or not self.url.startswith(STREAM):
            return False
        if self.url.partition(b"?")[0] != STREAM:
            return False
        if self.parser.get_method() != b"GET" or self.parser.should_upgrade():
            return False
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            return False  # the ASGI route answers it: a stream needs its connection alone
        return self.header_size <= hooks.max_header_bytes

    def _fall_back(self) -> None:
        """Hand the request to uvicorn's own path, as if it had never been buffered."""
        self.fast = None
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
        # What Starlette's CORSMiddleware adds to an answer without an Origin: `vary`.
        self._reply(status, out, extra, self.fast_keep_alive, vary=hooks.cors)
        hooks.observe("POST /api/v1/flags/evaluate", status, time.perf_counter() - started)

    def _track(self, body: bytes) -> None:
        hooks = self.hooks
        headers = dict(self.headers)
        started = time.perf_counter()
        try:
            assert hooks.fast_track is not None
            submitted = hooks.fast_track(headers, body)
        except Exception:
            submitted = hooks.crashed_answer(headers, path=TRACK.decode())
        if isinstance(submitted, tuple):
            self._reply(*submitted, self.fast_keep_alive, vary=hooks.cors)
            hooks.observe("POST /api/v1/flags/track", submitted[0], time.perf_counter() - started)
            return
        cycle = self.cycle = Written(self.fast_keep_alive)  # type: ignore[assignment]

        def written(future: asyncio.Future[bool]) -> None:
            try:
                status, out, extra = hooks.track_answer(future)
            except Exception:
                status, out, extra = hooks.crashed_answer(headers, path=TRACK.decode())
            cycle.response_complete = True
            if not cycle.disconnected:
                self._reply(status, out, extra, cycle.keep_alive, vary=hooks.cors)
            hooks.observe("POST /api/v1/flags/track", status, time.perf_counter() - started)

        submitted.add_done_callback(written)

    def _reply(self, status: int, out: bytes, extra: Headers, keep_alive: bool, vary: bool) -> None:
        """One whole answer in one write, then on to the next request (or the close)."""
        content = [STATUS_LINE[status], self._defaults(), *_lines(extra)]
        content.append(b"content-length: %d\r\n" % len(out))
        if vary:
            content.append(b"vary: Origin\r\n")
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content += [b"\r\n", out]
        self.transport.write(b"".join(content))
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    # Event streams ----------------------------------------------------------------------------

    def _open_stream(self) -> None:
        hooks = self.hooks
        assert hooks.streams is not None
        started = time.perf_counter()
        query, headers = self.url.partition(b"?")[2], dict(self.headers)
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        try:
            ticket = hooks.streams.admit(query, headers)
        except Exception:  # a bug: logged once, answered in the API's shape, never a stream
            status, out, extra = hooks.crashed_answer(headers, "GET", STREAM.decode())
            hooks.observe("GET /ofrep/v1/sse", status, time.perf_counter() - started)
            self._reply(status, out, extra, keep_alive, vary=False)
            return
        hooks.observe("GET /ofrep/v1/sse", ticket.status, time.perf_counter() - started)
        if ticket.status != 200:
            self._reply(ticket.status, ticket.body, ticket.headers, keep_alive, vary=False)
            return
        self.stream_chunked = self.parser.get_http_version() != "1.0"
        framing = b"transfer-encoding: chunked\r\n" if self.stream_chunked else b""
        head = [STATUS_LINE[200], self._defaults(), *_lines(ticket.headers), framing, b"\r\n"]
        self.transport.write(b"".join(head))
        self.streamed = True
        self.stream_end = ticket.open(self.transport, self.stream_chunked)
        self.headers = []  # nothing of the request is needed again
        self.scope = None  # type: ignore[assignment]

    def _end_stream(self) -> None:
        """Forget the stream and close its connection: after what was written if the socket
        took it all (with the chunked body's end), at once if not."""
        if self.stream_end is not None:
            self.stream_end()
            self.stream_end = None
        if self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size():
            self.transport.abort()
            return
        if self.stream_chunked:
            self.transport.write(b"0\r\n\r\n")
        self.transport.close()

    def shutdown(self) -> None:
        if self.streamed:
            self._end_stream()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        if not self.streamed:  # a stream's client that broke the rules is already cut off
            super().send_400_response(msg)

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
