"""OFREP event streams (open-feature/protocol ADR-0008): channels, the registry of open streams,
and the push of every configuration change to them.

Where a stream lives. `GET /ofrep/v1/sse?channel=` is served below ASGI, by the HTTP protocol
(proxy/protocol.py): once the request is in, the protocol asks `admit`; on a 200 it writes the
head and hands its transport to `Ticket.open`, and from then on the connection is a `Stream`
here: the transport and one small object in two dicts. No task, no coroutine, no timer per
stream, so an idle stream costs its socket and about a few KB, and never wakes the loop. A task
per stream (an ASGI streaming response) would cost a coroutine frame, a queue and a wake-up per
event each: the bench (loadtests/streams_load.py) measures what this costs instead.

Fan-out. The sync calls `on_change` after every swap of the snapshot (proxy/edge/sync.py). For
each project with streams whose version moved, the event is rendered once (`id` and `etag` are
the project's configuration version, Redis's counter, so every proxy numbers a change alike)
and written with `transport.write` to every stream of each of the project's environments: no
await, no Redis call per stream, and no event at all for a project without streams.

Slow readers. A write never waits: what the socket does not take stays in the transport's
buffer, and a stream whose buffer passes EDGE_STREAM_BUFFER_BYTES is dropped (aborted). Its
client reconnects and re-fetches, which is what it would have had to do with the events missed;
meanwhile nobody else waited for it, and neither did evaluate. The same bound caps the socket's
kernel send buffer (SO_SNDBUF; the kernel doubles it), which Linux would otherwise grow to
megabytes for a client that stopped reading: a stream's memory is bounded on both sides, and a
slow reader is found after a bounded number of events, not after megabytes of them.

Channels (proxy/domain/channel.py) are signed with a secret the fleet shares through Redis
(proxy/store/secrets.py), so any proxy verifies what another issued, locally. A channel whose
key is no longer in the snapshot is refused (401), and when the keys change every open stream
of a key that is gone is closed at once: revocation reaches every proxy in milliseconds, so its
streams end well within the 5 s the contract allows.

Heartbeats: one timer for all streams writes a comment line to each every
EDGE_STREAM_HEARTBEAT seconds, so that no intermediary closes a quiet stream. Streams are dealt
round-robin into slots, and each tick (about HEARTBEAT_TICK seconds) beats one slot: the same
beats, spread out, so 10,000 streams cost evaluate a few milliseconds' pause twice a second
rather than a 0.2 s one every 15 s (a small write on loopback costs ~20 µs of kernel time here).

What a change costs: one write per stream, back to back, in the callback that swapped the
snapshot; ~20 µs each on loopback on the bench's machine, so 0.2 s of one worker's loop for
10,000 streams of one project. Splitting it across loop iterations would shorten evaluate's
pause during a change and lengthen the wait of the last stream; changes are rare, and the
last stream's wait is what the contract bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy import http
from proxy.domain import channel as channels
from proxy.domain.access import ApiKey
from proxy.edge.sync import Sync
from proxy.errors import ApiError, unauthorized, unavailable
from proxy.store.connection import Redis
from proxy.store.secrets import WeakSecret, stream_secret

log = logging.getLogger("proxy.streams")

PATH = "/ofrep/v1/sse"
INACTIVITY_SECONDS = 120  # what the bulk answer advises clients (inactivityDelaySec)
SECRET_CHECK_SECONDS = 30.0  # how often the secret in Redis is compared with the one held
ADVERTS_MAX = 10_000  # rendered eventStreams entries kept, per (key, project, environment)
HEARTBEAT_TICK = 0.5  # seconds between two slots' heartbeats (about)
Headers = list[tuple[bytes, bytes]]
HEAD: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx (and proxies that follow it): do not buffer
]


def invalid_channel() -> ApiError:
    return ApiError(401, "Invalid or expired event stream channel")


class Frame:
    """Bytes to write to every stream, rendered once: chunked (HTTP/1.1) and bare (HTTP/1.0,
    whose body ends with the connection)."""

    __slots__ = ("bare", "chunked")

    def __init__(self, data: bytes) -> None:
        self.bare = data
        self.chunked = b"%x\r\n%b\r\n" % (len(data), data)


HEARTBEAT = Frame(b": hb\n\n")


def event(version: int, last_modified: int) -> Frame:
    """ADR-0008's refetchEvaluation: the etag is the version as a quoted string."""
    data = b'{"type":"refetchEvaluation","etag":"\\"%d\\"","lastModified":%d}' % (
        version,
        last_modified,
    )
    return Frame(b"id: %d\nevent: message\ndata: %b\n\n" % (version, data))


class Stream:
    __slots__ = (
        "chunked",
        "environment",
        "key_id",
        "open",
        "project_id",
        "registry",
        "slot",
        "transport",
    )

    def __init__(
        self,
        registry: Streams,
        transport: asyncio.Transport,
        chunked: bool,
        channel: channels.Channel,
    ) -> None:
        self.registry = registry
        self.transport = transport
        self.chunked = chunked
        self.project_id = channel.project_id
        self.environment = channel.environment
        self.key_id = channel.key_id
        self.slot = 0  # which heartbeat slot it is in
        self.open = True

    def detach(self) -> None:
        """The connection is gone or going: forget the stream (idempotent)."""
        self.registry.detach(self)


class Group:
    """The streams of one project, by environment, and the version they last heard of."""

    __slots__ = ("environments", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self.environments: dict[str, set[Stream]] = {}


class Ticket:
    """`admit`'s answer: a refusal (status, body, headers), or a 200 whose head the protocol
    writes before it calls `open` with the connection's transport."""

    __slots__ = ("body", "channel", "headers", "registry", "replay", "status")

    def __init__(
        self,
        registry: Streams,
        status: int,
        headers: Headers,
        body: bytes = b"",
        channel: channels.Channel | None = None,
        replay: int | None = None,
    ) -> None:
        self.registry = registry
        self.status = status
        self.headers = headers
        self.body = body
        self.channel = channel
        self.replay = replay  # a version to announce at once (Last-Event-ID was older)

    def open(self, transport: asyncio.Transport, chunked: bool) -> Callable[[], None]:
        """Register the stream; returns what the protocol calls when the connection is lost."""
        assert self.channel is not None
        return self.registry.attach(self, transport, chunked).detach


class Streams:
    def __init__(
        self,
        sync: Sync,
        redis: Redis,
        *,
        max_streams: int,
        heartbeat: float,
        buffer_bytes: int,
        cors_origins: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sync = sync
        self.redis = redis
        self.max_streams = max_streams
        self.heartbeat = heartbeat
        self.buffer_bytes = buffer_bytes
        origins = tuple(cors_origins)
        self.cors = bool(origins)
        self.any_origin = "*" in origins
        self.origins = {o.encode() for o in origins}
        self.clock = clock
        self.secret: bytes | None = None
        self.groups: dict[str, Group] = {}  # project id -> its streams
        self.by_key: dict[str, set[Stream]] = {}  # key id -> its streams
        self.count = 0
        self.slots: list[set[Stream]] = [
            set() for _ in range(max(1, round(heartbeat / HEARTBEAT_TICK)))
        ]
        self._tick = 0
        self._keys: Mapping[str, ApiKey] | None = None  # the keys snapshot `_by_id` is of
        self._by_id: dict[str, ApiKey] = {}
        self._adverts: dict[tuple[str, str, str], tuple[int, list[Any]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.events = 0
        self.fanout_seconds = 0.0  # the last change's render and writes, for every stream
        self.dropped = {"slow": 0, "revoked": 0}
        self.refused = {"unavailable": 0, "channel": 0, "revoked": 0, "cap": 0}

    # Lifecycle ---------------------------------------------------------------------------------

    async def start(self, wait: float) -> None:
        """Read (or make) the fleet's secret within `wait` seconds; past that, streams are
        unavailable until `keep_secret` gets it. Start the heartbeat."""
        try:
            self.secret = await asyncio.wait_for(stream_secret(self.redis), wait)
        except (RedisError, OSError, TimeoutError, WeakSecret) as e:
            log.warning("no event stream secret yet (%s): streams wait for Redis", e)
        self._timer = asyncio.get_running_loop().call_later(self._tick_seconds(), self._beat)

    def _tick_seconds(self) -> float:
        return self.heartbeat / len(self.slots)

    async def keep_secret(self) -> None:
        """Fetch the secret until there is one, then check now and then that Redis still holds
        the same: an operator's new secret (a rotation, or one lost in a failover and made
        again) is taken up by every proxy, loudly."""
        while True:
            await asyncio.sleep(1.0 if self.secret is None else SECRET_CHECK_SECONDS)
            try:
                secret = await stream_secret(self.redis)
            except (RedisError, OSError, TimeoutError, WeakSecret):
                continue
            if secret == self.secret:
                continue
            if self.secret is not None:
                log.warning(
                    "the event stream secret in Redis changed: channels signed with the old "
                    "one are refused from now on (their clients re-fetch and get new ones)"
                )
            self.secret = secret
            self._adverts.clear()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for group in list(self.groups.values()):
            for streams in list(group.environments.values()):
                for stream in list(streams):
                    self.detach(stream)
                    stream.transport.abort()

    # The bulk answer's eventStreams ------------------------------------------------------------

    def advertise(self, key: ApiKey, project_id: str, environment: str) -> list[Any] | None:
        """The bulk answer's `eventStreams` for this key, project and environment; None when
        streams are off or no secret is held yet (clients then poll, if they were told to)."""
        if self.secret is None or self.max_streams <= 0:
            return None
        hour = channels.issued_hour(self.clock())
        cache_key = (key.id, project_id, environment)
        cached = self._adverts.get(cache_key)
        if cached is not None and cached[0] == hour:
            return cached[1]
        try:
            token = channels.mint(
                self.secret, channels.Channel(key.id, project_id, environment, hour)
            )
        except ValueError:
            return None
        advert = [
            {
                "type": "sse",
                "endpoint": {"requestUri": f"{PATH}?channel={token}"},
                "inactivityDelaySec": INACTIVITY_SECONDS,
            }
        ]
        if len(self._adverts) >= ADVERTS_MAX:
            self._adverts.clear()
        self._adverts[cache_key] = (hour, advert)
        return advert

    # Admission ---------------------------------------------------------------------------------

    def admit(self, query: bytes, headers: Mapping[bytes, bytes], cors: bool = True) -> Ticket:
        """Whether this request may become a stream, in the API's error shape when not. With
        `cors`, the headers carry what the edge routes' CORS gives an allowed Origin."""
        extra = self.cors_headers(headers.get(b"origin")) if cors else []
        try:
            channel, replay = self._check(query, headers)
        except ApiError as e:
            return Ticket(self, e.status, [*http.JSON_HEADERS, *e.headers, *extra], e.body())
        return Ticket(self, 200, [*HEAD, *extra], channel=channel, replay=replay)

    def _check(
        self, query: bytes, headers: Mapping[bytes, bytes]
    ) -> tuple[channels.Channel, int | None]:
        if not self.sync.loaded:
            self.refused["unavailable"] += 1
            raise unavailable("no configuration snapshot loaded yet")
        if self.secret is None or self.max_streams <= 0:
            self.refused["unavailable"] += 1
            reason = "event streams are off" if self.max_streams <= 0 else "no stream secret yet"
            raise unavailable(reason)
        try:
            tokens = parse_qs(query.decode("latin-1"), max_num_fields=8).get("channel", [])
            if len(tokens) != 1:
                raise channels.InvalidChannel("missing")
            channel = channels.read(self.secret, tokens[0], self.clock())
        except (channels.InvalidChannel, ValueError):
            self.refused["channel"] += 1
            raise invalid_channel() from None
        key = self._keys_by_id().get(channel.key_id)
        if key is None or not key.can_evaluate or not key.allows(channel.project_id):
            self.refused["revoked"] += 1
            raise unauthorized()
        if self.count >= self.max_streams:
            self.refused["cap"] += 1
            raise unavailable("too many event streams on this process")
        held = self.sync.held_version(channel.project_id)
        last = headers.get(b"last-event-id", b"").strip()
        replay = held if last.isdigit() and int(last) < held else None
        return channel, replay

    def cors_headers(self, origin: bytes | None) -> Headers:
        """What Starlette's CORSMiddleware adds to a simple answer on the edge routes."""
        if not self.cors:
            return []
        vary = (b"vary", b"Origin")
        if origin is None:
            return [vary]
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*"), vary]
        if origin in self.origins:
            return [(b"access-control-allow-origin", origin), vary]
        return [vary]

    def _keys_by_id(self) -> dict[str, ApiKey]:
        keys = self.sync.snapshot.keys
        if keys is not self._keys:
            self._keys, self._by_id = keys, {k.id: k for k in keys.values()}
        return self._by_id

    # The registry ------------------------------------------------------------------------------

    def attach(self, ticket: Ticket, transport: asyncio.Transport, chunked: bool) -> Stream:
        assert ticket.channel is not None
        stream = Stream(self, transport, chunked, ticket.channel)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer_bytes)
        group = self.groups.get(stream.project_id)
        if group is None:
            group = self.groups[stream.project_id] = Group(
                self.sync.held_version(stream.project_id)
            )
        group.environments.setdefault(stream.environment, set()).add(stream)
        self.by_key.setdefault(stream.key_id, set()).add(stream)
        self.count += 1
        stream.slot = self.count % len(self.slots)
        self.slots[stream.slot].add(stream)
        if ticket.replay is not None:
            self._write([stream], event(ticket.replay, int(self.clock())))
            self.events += 1
        return stream

    def detach(self, stream: Stream) -> None:
        if not stream.open:
            return
        stream.open = False
        self.count -= 1
        group = self.groups[stream.project_id]
        streams = group.environments[stream.environment]
        streams.discard(stream)
        if not streams:
            del group.environments[stream.environment]
            if not group.environments:
                del self.groups[stream.project_id]
        of_key = self.by_key[stream.key_id]
        of_key.discard(stream)
        if not of_key:
            del self.by_key[stream.key_id]
        self.slots[stream.slot].discard(stream)

    def _drop(self, stream: Stream, reason: str) -> None:
        """Close a stream from this side: a slow one at once (its buffer would only grow),
        a revoked one after what it was already sent."""
        self.detach(stream)
        self.dropped[reason] += 1
        if reason == "slow":
            stream.transport.abort()
        else:
            stream.transport.close()

    def _write(self, streams: Iterable[Stream], frame: Frame) -> int:
        """Write `frame` to each stream, dropping those that fall too far behind; never awaits.
        Returns how many streams were written to."""
        bound = self.buffer_bytes
        behind: list[Stream] = []
        gone: list[Stream] = []
        written = 0
        for stream in streams:
            transport = stream.transport
            try:
                transport.write(frame.chunked if stream.chunked else frame.bare)
                if transport.get_write_buffer_size() > bound:
                    behind.append(stream)
            except RuntimeError:  # the handle closed under us: its connection_lost is coming
                gone.append(stream)
                continue
            written += 1
        for stream in behind:
            self._drop(stream, "slow")
        for stream in gone:
            self.detach(stream)
        return written

    # Changes and heartbeats --------------------------------------------------------------------

    def on_change(self) -> None:
        """After every swap of the snapshot: close the streams of keys that are gone, then
        announce each project's new version to its streams, rendered once."""
        snapshot = self.sync.snapshot
        if snapshot.keys is not self._keys:
            by_id = self._keys_by_id()
            for key_id in [k for k in self.by_key if k not in by_id]:
                for stream in list(self.by_key.get(key_id, ())):
                    self._drop(stream, "revoked")
        for project_id, group in list(self.groups.items()):
            project = snapshot.projects.get(project_id)
            if project is None or project.version <= group.version:
                continue
            started = time.perf_counter()
            group.version = project.version
            frame = event(project.version, int(self.clock()))
            for streams in list(group.environments.values()):
                self.events += self._write(streams, frame)
            self.fanout_seconds = time.perf_counter() - started

    def _beat(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._tick_seconds(), self._beat)
        self._tick = (self._tick + 1) % len(self.slots)
        self._write(self.slots[self._tick], HEARTBEAT)

    # The route, when a request reaches ASGI ----------------------------------------------------

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> int:
        """`/ofrep/v1/sse` when the protocol did not take the request (another method, a
        request pipelined behind another, a path spelled with escapes, or another server):
        the same refusals; one that would be a stream answers 503, since this connection
        cannot carry one (the client's retry, on a connection of its own, can)."""
        if scope["method"] != "GET":
            return await http.reply_error(send, ApiError(405, "Method not allowed"))
        ticket = self.admit(scope["query_string"], http.headers_of(scope), cors=False)
        if ticket.status == 200:
            return await http.reply_error(
                send, unavailable("an event stream needs a connection of its own")
            )
        await http.reply(send, ticket.status, ticket.body, ticket.headers)
        return ticket.status

    # Metrics -----------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("edge_streams_open", "Open OFREP event streams", self.count)
        yield CounterMetricFamily(
            "edge_stream_events", "Change events written to streams (one per stream)",
            self.events,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "edge_stream_fanout_seconds",
            "Seconds the last change took to be written to all its project's streams",
            self.fanout_seconds,
        )
        dropped = CounterMetricFamily(
            "edge_streams_dropped", "Streams this proxy closed, by reason", labels=["reason"]
        )
        for reason, n in self.dropped.items():
            dropped.add_metric([reason], n)
        yield dropped
        refused = CounterMetricFamily(
            "edge_streams_refused", "Stream requests refused, by reason", labels=["reason"]
        )
        for reason, n in self.refused.items():
            refused.add_metric([reason], n)
        yield refused


def raise_open_files_limit() -> int:
    """Streams are sockets: take the soft RLIMIT_NOFILE up to the hard limit, say so, and
    return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:  # an unlimited hard limit is more than Linux allows
            log.warning("open files limit stays %d: could not raise it to %d (%s)", soft, hard, e)
            return soft
    log.info("open files limit: %d (the soft limit was %d)", hard, soft)
    return hard
