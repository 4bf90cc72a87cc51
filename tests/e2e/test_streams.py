"""OFREP event streams on real server processes: a change made through one proxy reaches a
stream held by another; Last-Event-ID replay; forged, expired and revoked channels; a slow
reader dropped while another keeps receiving; the cap; heartbeats; CORS; SIGTERM; and the
bulk answer's eventStreams and flagConfigEtag wait."""

from __future__ import annotations

import http.client
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.domain import channel as channels
from proxy.store import keys
from tests.e2e.helpers import make_flag, make_project
from tests.support import Client, RedisProcess, ServerProcess, eventually, parse_head

ORIGIN = "https://app.example"
BULK = "/ofrep/v1/evaluate/flags"
SETTINGS = {
    "EDGE_STREAM_HEARTBEAT": "0.3",
    "EDGE_CORS_ORIGINS": ORIGIN,
    "EDGE_STREAM_BUFFER_BYTES": "2048",
}


class Stream:
    """One event stream over a raw socket: its head, then the SSE blocks of its body (chunked
    on HTTP/1.1), read as a browser's EventSource would."""

    def __init__(
        self,
        port: int,
        uri: str,
        headers: dict[str, str] | None = None,
        *,
        version: str = "1.1",
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:  # before connect: the window the server sees stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        lines = {"Host": "127.0.0.1", "Accept": "text/event-stream", **(headers or {})}
        head = f"GET {uri} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items())
        self.sock.sendall(head.encode() + b"\r\n")
        self.raw = b""
        self.body = b""
        self.chunked = False
        self.in_body = False  # the head is read: what comes is the body
        self.ended = False  # the body's end (the last chunk, or the close)

    def head(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and, for a refusal, its body."""
        while b"\r\n\r\n" not in self.raw:
            assert self._recv(), "closed before the head"
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        status, headers = parse_head(head)
        if "content-length" in headers:  # a refusal
            length = int(headers["content-length"])
            while len(self.raw) < length:
                assert self._recv(), "closed inside a body"
            return status, headers, self.raw[:length]
        self.chunked = headers.get("transfer-encoding") == "chunked"
        self.in_body = True
        self._decode()
        return status, headers, b""

    def _recv(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.ended = True
            return False
        self.raw += data
        self._decode()
        return True

    def _decode(self) -> None:
        if not self.in_body:
            return
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
            return
        while b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return
            if size == 0:
                self.ended = True
            self.body += rest[:size]
            self.raw = rest[size + 2 :]

    def block(self, timeout: float = 5.0) -> dict[str, str] | None:
        """The next SSE block (comments as `comment`), or None if none came in time."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.body:
            if self.ended or time.monotonic() > deadline:
                return None
            try:
                if not self._recv():
                    return None
            except TimeoutError:
                return None
        text, self.body = self.body.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        for line in text.decode().split("\n"):
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")
        return fields

    def event(self, timeout: float = 5.0) -> dict[str, str] | None:
        """The next event, skipping heartbeats."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            block = self.block(left)
            if block is None:
                return None
            if "comment" not in block:
                return block
        return None

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the stream within `timeout` (reading what is left)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not self._recv():
                    return True
            except TimeoutError:
                continue
        return False

    def close(self) -> None:
        self.sock.close()


# --- the world ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    base = tmp_path_factory.mktemp("streams")
    a = ServerProcess(redis_server.url, base / "a", **SETTINGS).start()
    b = ServerProcess(redis_server.url, base / "b", **SETTINGS).start()
    yield a, b
    a.stop()
    b.stop()


class World:
    """A project with one boolean flag, an evaluate-only key restricted to it, and its channel;
    ready once every proxy named knows the key (it is made through the first)."""

    def __init__(self, *servers: ServerProcess) -> None:
        self.admin = admin = servers[0].client()
        self.project_id = make_project(admin)
        self.flag = make_flag(admin, self.project_id, key="banner", flag_type="boolean",
                              default_value=False)  # fmt: skip
        r = admin.post(
            "/api/v1/keys",
            {"name": "web", "scopes": ["flags:evaluate"], "project_ids": [self.project_id]},
        )
        assert r.status == 201, r.body
        self.key_id, self.token = r.json["data"]["id"], r.json["data"]["token"]
        for server in servers:
            eventually(lambda s=server: s.client(self.token).post(BULK, {}).status == 200)

    def bulk(self, server: ServerProcess, query: str = "") -> Any:
        r = server.client(self.token).post(BULK + query, {"context": {"targetingKey": "u1"}})
        assert r.status == 200, r.body
        return r.json

    def uri(self, server: ServerProcess) -> str:
        uri: str = self.bulk(server)["eventStreams"][0]["endpoint"]["requestUri"]
        return uri

    def toggle(self, value: bool) -> int:
        """Change the flag through the admin's proxy; returns the project's new version."""
        r = self.admin.patch(f"/api/v1/flags/{self.flag['id']}", {"default_value": value})
        assert r.status == 200, r.body
        return version_of(self.admin, self.project_id)


def version_of(client: Client, project_id: str) -> int:
    for line in client.get("/metrics").body.decode().splitlines():
        if line.startswith(f'edge_snapshot_version{{project="{project_id}"}}'):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("the project is not held")


def metric(server: ServerProcess, name: str) -> float:
    for line in server.client(None).get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def open_stream(server: ServerProcess, uri: str, **kw: Any) -> Stream:
    stream = Stream(server.port, uri, **kw)
    status, _, body = stream.head()
    assert status == 200, body
    return stream


@pytest.fixture
def world(pair: tuple[ServerProcess, ServerProcess]) -> World:
    return World(*pair)


def secret(redis_server: RedisProcess) -> bytes:
    value = redis_server.client().get(keys.STREAM_SECRET)
    assert isinstance(value, bytes)
    return value


# --- the bulk answer ----------------------------------------------------------------------------


def test_the_bulk_answer_advertises_one_relative_stream_the_same_on_every_proxy(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    a, b = pair
    streams = world.bulk(a)["eventStreams"]
    assert len(streams) == 1
    (stream,) = streams
    assert stream["type"] == "sse" and stream["inactivityDelaySec"] == 120
    assert set(stream["endpoint"]) == {"requestUri"}  # no origin: the provider's base URL
    assert stream["endpoint"]["requestUri"].startswith("/ofrep/v1/sse?channel=")
    assert world.token not in stream["endpoint"]["requestUri"]
    assert world.bulk(b)["eventStreams"] == streams  # any proxy issues the same channel


# --- push across proxies ------------------------------------------------------------------------


def test_a_change_through_one_proxy_reaches_a_stream_on_the_other(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    _a, b = pair
    stream = open_stream(b, world.uri(b))
    version = world.toggle(True)  # through A
    event = stream.event()
    assert event is not None, "no event within 5 s"
    assert event["id"] == str(version) and event["event"] == "message"
    data = orjson.loads(event["data"])
    assert data["type"] == "refetchEvaluation" and data["etag"] == f'"{version}"'
    assert abs(data["lastModified"] - time.time()) < 60
    # What the web provider does next: re-fetch with the event's etag.
    flags = world.bulk(b, f"?flagConfigEtag={data['etag']}")["flags"]
    assert flags[0]["value"] is True
    stream.close()


def test_every_stream_of_the_project_hears_each_change_once(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    a, b = pair
    streams = [open_stream(s, world.uri(s)) for s in (a, b, b)]
    versions = [world.toggle(True), world.toggle(False)]
    for stream in streams:
        ids = [e["id"] if (e := stream.event()) else None for _ in versions]
        assert ids == [str(v) for v in versions]
        stream.close()


def test_a_stream_hears_nothing_of_another_project(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    a, b = pair
    other = World(a, b)
    stream = open_stream(b, world.uri(b))
    other.toggle(True)
    assert stream.event(timeout=1.0) is None
    stream.close()


def test_a_stream_of_one_environment_hears_its_projects_changes(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    _a, b = pair
    r = b.client(world.token).post(
        BULK, {"context": {"targetingKey": "u1", "environment": "staging"}}
    )
    uri = r.json["eventStreams"][0]["endpoint"]["requestUri"]
    assert uri != world.uri(b)  # its own channel
    stream = open_stream(b, uri)
    version = world.toggle(True)  # the version is the project's, whatever the environment
    event = stream.event()
    assert event is not None and event["id"] == str(version)
    stream.close()


# --- replay -------------------------------------------------------------------------------------


def test_last_event_id_older_than_the_version_gets_one_event_at_once(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    _a, b = pair
    version = world.toggle(True)
    eventually(lambda: version_of(b.client(), world.project_id) == version)
    behind = open_stream(b, world.uri(b), headers={"Last-Event-ID": str(version - 1)})
    event = behind.event(timeout=2.0)
    assert event is not None and event["id"] == str(version)
    assert behind.event(timeout=0.5) is None  # one, not one per missed change
    current = open_stream(b, world.uri(b), headers={"Last-Event-ID": str(version)})
    assert current.event(timeout=0.7) is None
    behind.close()
    current.close()


# --- channels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["", "?channel=", "?channel=nope", "?channel=a.b", "?channel=%FF%FE", "?x=1"]
)
def test_a_missing_or_malformed_channel_is_401(
    pair: tuple[ServerProcess, ServerProcess], query: str
) -> None:
    stream = Stream(pair[1].port, "/ofrep/v1/sse" + query)
    status, headers, body = stream.head()
    assert status == 401 and headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"error": "Invalid or expired event stream channel"}
    stream.close()


def test_a_forged_or_expired_channel_is_401(
    pair: tuple[ServerProcess, ServerProcess], world: World, redis_server: RedisProcess
) -> None:
    a, b = pair
    real = channels.read(secret(redis_server), world.uri(a).split("=", 1)[1], time.time())
    hour = channels.issued_hour(time.time())
    forged = channels.mint(b"not the fleet's secret!", real)
    expired = channels.mint(
        secret(redis_server),
        channels.Channel(real.key_id, real.project_id, real.environment, hour - 49 * 3600),
    )
    for token in (forged, expired):
        stream = Stream(b.port, f"/ofrep/v1/sse?channel={token}")
        status, _, body = stream.head()
        assert (status, orjson.loads(body)["error"]) == (
            401,
            "Invalid or expired event stream channel",
        )
        stream.close()
    # A day-old channel is still good.
    day_old = channels.mint(
        secret(redis_server),
        channels.Channel(real.key_id, real.project_id, real.environment, hour - 24 * 3600),
    )
    open_stream(b, f"/ofrep/v1/sse?channel={day_old}").close()


def test_a_revoked_keys_streams_end_and_its_channel_is_refused(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    a, b = pair
    uri = world.uri(b)
    streams = [open_stream(b, uri), open_stream(a, uri)]
    kept = World(a, b)  # another key's stream is untouched
    other = open_stream(b, kept.uri(b))
    dropped = metric(b, 'edge_streams_dropped_total{reason="revoked"}')
    assert world.admin.delete(f"/api/v1/keys/{world.key_id}").status == 204  # through A
    for stream in streams:
        assert stream.closed(timeout=5.0), "a revoked key's stream stayed open"
    assert metric(b, 'edge_streams_dropped_total{reason="revoked"}') == dropped + 1
    refused = Stream(b.port, uri)
    status, _, body = refused.head()
    assert (status, orjson.loads(body)) == (401, {"error": "Invalid or missing API key"})
    version = kept.toggle(True)
    event = other.event()
    assert event is not None and event["id"] == str(version)
    other.close()


# --- slow readers, the cap, heartbeats ----------------------------------------------------------


def test_a_slow_reader_is_dropped_while_another_keeps_receiving(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    _a, b = pair
    uri = world.uri(b)
    slow = open_stream(b, uri, rcvbuf=1024)  # never read from here on
    reader = open_stream(b, uri)
    before = metric(b, 'edge_streams_dropped_total{reason="slow"}')
    received: list[str] = []
    last = 0
    for round_ in range(400):  # ~100 bytes an event: the kernel's buffers fill, then ours
        last = world.toggle(round_ % 2 == 0)
        while (event := reader.event(timeout=0.01)) is not None:
            received.append(event["id"])
        if metric(b, 'edge_streams_dropped_total{reason="slow"}') > before:
            break
    else:
        raise AssertionError("the slow reader was never dropped")
    while (event := reader.event(timeout=0.5)) is not None:
        received.append(event["id"])
    assert received[-1] == str(last)  # the reader heard every change up to the last
    assert slow.closed(timeout=5.0)
    reader.close()


def test_heartbeats_keep_a_quiet_stream_talking(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    stream = open_stream(pair[1], world.uri(pair[1]))
    blocks = [stream.block(timeout=2.0) for _ in range(2)]
    assert blocks == [{"comment": "hb"}, {"comment": "hb"}]
    stream.close()


def test_past_the_cap_a_stream_is_refused_with_503_and_fast_path_off_changes_nothing(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess], world: World
) -> None:
    capped = server_factory(redis_server.url, EDGE_MAX_STREAMS="2", EDGE_FAST_PATH="0")
    uri = world.uri(capped)
    held = [open_stream(capped, uri), open_stream(capped, uri)]
    refused = Stream(capped.port, uri)
    status, _, body = refused.head()
    assert status == 503 and orjson.loads(body)["error"] == "Service unavailable"
    assert metric(capped, 'edge_streams_refused_total{reason="cap"}') == 1
    assert metric(capped, "edge_streams_open") == 2
    held[0].close()
    eventually(lambda: metric(capped, "edge_streams_open") == 1)
    open_stream(capped, uri).close()
    held[1].close()


def test_streams_off_means_no_event_streams_advertised_and_503(
    redis_server: RedisProcess,
    server_factory: Callable[..., ServerProcess],
    pair: tuple[ServerProcess, ServerProcess],
    world: World,
) -> None:
    off = server_factory(redis_server.url, EDGE_MAX_STREAMS="0")
    assert "eventStreams" not in world.bulk(off)
    stream = Stream(off.port, world.uri(pair[0]))
    assert stream.head()[0] == 503
    stream.close()


# --- HTTP ---------------------------------------------------------------------------------------


def test_the_head_says_event_stream_no_cache_no_buffering_and_cors(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    stream = Stream(pair[1].port, world.uri(pair[1]), headers={"Origin": ORIGIN})
    status, headers, _ = stream.head()
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "content-length" not in headers and headers["transfer-encoding"] == "chunked"
    stream.close()
    stranger = Stream(pair[1].port, world.uri(pair[1]), headers={"Origin": "https://evil.example"})
    status, headers, _ = stranger.head()
    assert status == 200 and "access-control-allow-origin" not in headers
    stranger.close()


def test_a_preflight_for_last_event_id_is_allowed(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    r = (
        pair[1]
        .client(None)
        .request(
            "OPTIONS",
            world.uri(pair[1]),
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id",
            },
        )
    )
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in r.headers["access-control-allow-methods"]
    assert "last-event-id" in r.headers["access-control-allow-headers"].lower()


def test_other_methods_on_the_stream_path_are_405(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    r = pair[1].client(None).post("/ofrep/v1/sse?channel=x", {})
    assert (r.status, r.json) == (405, {"error": "Method not allowed"})


def test_an_http_1_0_stream_ends_with_its_connection(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    stream = Stream(pair[1].port, world.uri(pair[1]), version="1.0")
    status, headers, _ = stream.head()
    assert status == 200 and "transfer-encoding" not in headers
    version = world.toggle(True)
    event = stream.event()
    assert event is not None and event["id"] == str(version)
    stream.close()


def test_a_client_that_sends_on_its_stream_is_cut_off(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    stream = open_stream(pair[1], world.uri(pair[1]))
    stream.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert stream.closed()
    assert b"HTTP/1.1" not in stream.body  # nothing was answered on it


def test_the_connection_serves_requests_before_it_becomes_a_stream(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", pair[1].port, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    conn.request("GET", world.uri(pair[1]))
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type") == "text/event-stream"
    version = world.toggle(True)
    body = b""
    while f"id: {version}".encode() not in body:  # heartbeats may come first
        chunk = response.read1(65536)
        assert chunk, "the stream ended"
        body += chunk
    conn.close()


# --- flagConfigEtag -----------------------------------------------------------------------------


def test_a_refetch_naming_a_newer_version_waits_until_the_proxy_holds_it(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess], world: World
) -> None:
    # A proxy that learns of changes only by pub/sub (its poll never fires): it lags behind a
    # change written to Redis without a message, until the message is sent by hand.
    lagging = server_factory(redis_server.url, EDGE_POLL_INTERVAL="3600")
    redis = redis_server.client()
    flags_key = "{p:" + world.project_id + "}:flags"
    record = orjson.loads(redis.hget(flags_key, world.flag["id"]))
    record["default_value"] = True
    redis.hset(flags_key, world.flag["id"], orjson.dumps(record))
    version = int(redis.incr("{p:" + world.project_id + "}:version"))
    assert world.bulk(lagging)["flags"][0]["value"] is False  # behind, and it knows no better
    message = orjson.dumps({"scope": world.project_id, "version": version})
    timer = threading.Timer(0.3, lambda: redis.publish(keys.CHANGES_CHANNEL, message))
    timer.start()
    flags = world.bulk(lagging, f"?flagConfigEtag=%22{version}%22&flagConfigLastModified=1")
    timer.join()
    assert flags["flags"][0]["value"] is True  # it waited for the version it was told of


def test_a_refetch_naming_a_version_that_never_comes_is_answered_all_the_same(
    pair: tuple[ServerProcess, ServerProcess], world: World
) -> None:
    flags = world.bulk(pair[1], '?flagConfigEtag="99999999"')["flags"]
    assert flags[0]["value"] is False
    assert world.bulk(pair[1], "?flagConfigEtag=garbage")["flags"][0]["value"] is False


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_with_streams_open_closes_them_and_exits_0_within_the_bound(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess], world: World
) -> None:
    server = server_factory(redis_server.url, EDGE_SHUTDOWN_TIMEOUT="3")
    uri = world.uri(server)
    streams = [open_stream(server, uri) for _ in range(20)]
    slow = open_stream(server, uri, rcvbuf=1024)
    eventually(lambda: metric(server, "edge_streams_open") == 21)
    assert server.proc is not None
    proc = server.proc
    proc.terminate()
    try:
        code = proc.wait(timeout=3 + 2)  # the drain bound and a margin for the flush
    except subprocess.TimeoutExpired:
        raise AssertionError("the server did not exit within the shutdown bound") from None
    server.proc = None
    assert code == 0
    for stream in streams:
        assert stream.closed(timeout=1.0)
        assert stream.ended
    slow.close()


def test_the_server_raises_its_open_files_limit_to_the_hard_limit(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))  # the child inherits it
    try:
        server = server_factory(redis_server.url)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert server.proc is not None
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    (row,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert row.split()[3:5] == [str(hard), str(hard)], row
