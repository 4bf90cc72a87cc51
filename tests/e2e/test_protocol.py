"""The HTTP protocol on both settings of the fast path: the same answers, byte for byte but the
date, whether evaluate and track are answered inside the protocol (EDGE_FAST_PATH=1) or by the
ASGI app (EDGE_FAST_PATH=0); keep-alive, pipelining, HTTP/1.0, 100-continue, limits, CORS, 500s
that keep the connection, metrics; and the read deadlines that close slow requests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.helpers import conversions, make_flag, make_key, make_project, start_experiment
from tests.support import BOOTSTRAP, RedisProcess, ServerProcess, eventually, parse_head

ORIGIN = "https://app.example"
SETTINGS = {
    "EDGE_HEADER_TIMEOUT": "1",
    "EDGE_BODY_TIMEOUT": "1",
    "EDGE_KEEPALIVE_TIMEOUT": "1",
    "EDGE_CORS_ORIGINS": ORIGIN,
    "EDGE_MAX_BODY_BYTES": "2048",
    "EDGE_MAX_HEADER_BYTES": "4096",
}


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    base = tmp_path_factory.mktemp("protocol")
    servers = {
        "fast": ServerProcess(redis_server.url, base / "fast", EDGE_FAST_PATH="1", **SETTINGS),
        "asgi": ServerProcess(redis_server.url, base / "asgi", EDGE_FAST_PATH="0", **SETTINGS),
    }
    for s in servers.values():
        s.start()
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture(scope="module")
def project(pair: dict[str, ServerProcess]) -> str:
    c = pair["fast"].client()
    project_id = make_project(c)
    make_flag(c, project_id, key="banner", flag_type="boolean", default_value=True)
    for s in pair.values():  # both serve it before any test starts
        eventually(
            lambda s=s: "banner" in s.client().post(EVALUATE, body(project_id)).json["flags"]
        )
    return project_id


@pytest.fixture(scope="module")
def experiment(pair: dict[str, ServerProcess]) -> dict[str, Any]:
    """A running experiment that both servers know."""
    running = start_experiment(pair["fast"].client())
    probe = {**track_body(running, "probe"), "goal": "probe"}
    for s in pair.values():
        eventually(lambda s=s: s.client().post(TRACK, probe).status == 200)
    return running


@pytest.fixture(params=["fast", "asgi"])
def server(request: pytest.FixtureRequest, pair: dict[str, ServerProcess]) -> ServerProcess:
    chosen: ServerProcess = pair[request.param]
    return chosen


EVALUATE = "/api/v1/flags/evaluate"
TRACK = "/api/v1/flags/track"


def body(project_id: str, user: str = "u1") -> dict[str, Any]:
    return {"project_id": project_id, "environment": "production", "context": {"user_id": user}}


def track_body(experiment: dict[str, Any], user: str, **fields: Any) -> dict[str, Any]:
    ids = {"flag_id": experiment["flag_id"], "experiment_id": experiment["experiment_id"]}
    return {**ids, "user_id": user, **fields}


def request(
    payload: bytes | None,
    *,
    path: str = EVALUATE,
    method: str = "POST",
    version: str = "1.1",
    headers: dict[str, str] | None = None,
) -> bytes:
    h = {"Host": "127.0.0.1", "Authorization": f"Bearer {BOOTSTRAP}", **(headers or {})}
    if payload is not None and "Transfer-Encoding" not in h:
        h.setdefault("Content-Length", str(len(payload)))
        h.setdefault("Content-Type", "application/json")
    head = f"{method} {path} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode() + b"\r\n" + (payload or b"")


class Conn:
    """A raw HTTP connection that reads answers one by one."""

    def __init__(self, server: ServerProcess, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), "connection closed before an answer"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, headers = parse_head(head)
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed inside a body"
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, payload

    def closed(self) -> bool:
        """Whether the server closed the connection (EOF before the socket's timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def answer_of(server: ServerProcess, data: bytes) -> tuple[int, dict[str, str], bytes]:
    conn = Conn(server)
    try:
        conn.send(data)
        status, headers, payload = conn.answer()
    finally:
        conn.close()
    headers.pop("date", None)
    return status, headers, payload


def test_both_settings_answer_every_kind_of_evaluate_the_same(
    pair: dict[str, ServerProcess], project: str
) -> None:
    cases = [
        request(orjson.dumps(body(project))),
        request(orjson.dumps(body(project)), headers={"Authorization": "Bearer kr_live_nope"}),
        request(orjson.dumps(body(project)), headers={"Authorization": "Basic x"}),
        request(b"not json"),
        request(b"[1, 2]"),
        request(orjson.dumps({"project_id": project, "environment": "nope"})),
        request(orjson.dumps({"project_id": "00000000-0000-4000-8000-000000000000"})),
        request(orjson.dumps({**body(project), "context": {"user_id": "x" * 300}})),
        request(orjson.dumps({**body(project), "flags": ["banner", "missing"]})),
        request(b""),
    ]
    for case in cases:
        fast, asgi = answer_of(pair["fast"], case), answer_of(pair["asgi"], case)
        assert fast == asgi, case
    status, headers, payload = answer_of(pair["fast"], cases[0])
    assert status == 200 and headers["cache-control"] == "private, no-store"
    assert orjson.loads(payload) == {"flags": {"banner": {"value": True, "rule_id": None}}}


def test_both_settings_answer_every_kind_of_track_the_same(
    pair: dict[str, ServerProcess], experiment: dict[str, Any]
) -> None:
    c = pair["fast"].client()
    _, evaluate_only = make_key(c, scopes=["flags:evaluate"])
    _, other_project = make_key(c, scopes=["flags:evaluate"], project_ids=[make_project(c)])
    _, write_only = make_key(c, scopes=["flags:write"])
    for s in pair.values():
        eventually(lambda s=s: s.client(token=write_only).post(TRACK, {}).status == 403)

    def cases(user: str) -> list[bytes]:
        track = orjson.dumps(track_body(experiment, user))
        return [
            request(track, path=TRACK),  # new: 200
            request(track, path=TRACK),  # the same again: a duplicate, 200
            request(orjson.dumps(track_body(experiment, user, value=12.5)), path=TRACK),
            request(track, path=TRACK, headers={"Authorization": f"Bearer {evaluate_only}"}),
            request(track, path=TRACK, headers={"Authorization": f"Bearer {other_project}"}),
            request(track, path=TRACK, headers={"Authorization": f"Bearer {write_only}"}),
            request(track, path=TRACK, headers={"Authorization": "Bearer kr_live_nope"}),
            request(b"not json", path=TRACK),
            request(b"[1]", path=TRACK),
            request(b"", path=TRACK),
            request(orjson.dumps(track_body(experiment, "")), path=TRACK),
            request(orjson.dumps(track_body(experiment, user, value="a lot")), path=TRACK),
            request(orjson.dumps({**track_body(experiment, user), "flag_id": "nope"}), path=TRACK),
        ]

    before = conversions(pair["fast"].client(), experiment)
    fast = [answer_of(pair["fast"], case) for case in cases("fast-user")]
    asgi = [answer_of(pair["asgi"], case) for case in cases("asgi-user")]
    assert fast == asgi
    assert [status for status, _, _ in fast] == [200, 200, 200, 200, 403, 403, 401, 400, 400,
                                                 400, 422, 422, 404]  # fmt: skip
    assert orjson.loads(fast[0][2]) == {"data": {"ok": True}}
    # Each 200 of a new user is one conversion, counted once, whichever path answered it.
    assert before is not None
    eventually(lambda: conversions(pair["fast"].client(), experiment) == before + 2)


def test_pipelined_tracks_are_answered_in_order_behind_their_writes(
    server: ServerProcess, project: str, experiment: dict[str, Any]
) -> None:
    conn = Conn(server)
    tracks = [request(orjson.dumps(track_body(experiment, f"pipe-{n}")), path=TRACK) for n in "ab"]
    conn.send(
        tracks[0]
        + request(orjson.dumps(body(project)))
        + request(b"{", path=TRACK)
        + tracks[1]
        + request(None, method="GET", path="/healthz")
    )
    answers = [conn.answer() for _ in range(5)]
    conn.close()
    assert [status for status, _, _ in answers] == [200, 200, 400, 200, 200]
    assert b"flags" in answers[1][2] and answers[4][2] != answers[0][2]


def test_a_track_on_http_1_0_is_answered_and_closed(
    server: ServerProcess, experiment: dict[str, Any]
) -> None:
    conn = Conn(server)
    conn.send(request(orjson.dumps(track_body(experiment, "old")), path=TRACK, version="1.0"))
    status, headers, _ = conn.answer()
    assert status == 200 and headers["connection"] == "close"
    assert conn.closed()


def test_keep_alive_serves_many_requests_on_one_connection(
    server: ServerProcess, project: str
) -> None:
    conn = Conn(server)
    for user in ("a", "b", "c"):
        conn.send(request(orjson.dumps(body(project, user))))
        status, headers, _ = conn.answer()
        assert status == 200 and "connection" not in headers
    conn.close()


def test_pipelined_requests_are_answered_in_order(server: ServerProcess, project: str) -> None:
    conn = Conn(server)
    conn.send(
        request(orjson.dumps(body(project)))
        + request(None, method="GET", path="/healthz")
        + request(b"{")
        + request(orjson.dumps(body(project)))
    )
    statuses = [conn.answer()[0] for _ in range(4)]
    conn.close()
    assert statuses == [200, 200, 400, 200]


def test_http_1_0_is_answered_and_closed(server: ServerProcess, project: str) -> None:
    conn = Conn(server)
    conn.send(request(orjson.dumps(body(project)), version="1.0"))
    status, headers, _ = conn.answer()
    assert status == 200 and headers["connection"] == "close"
    assert conn.closed()


def test_expect_100_continue_gets_its_interim_answer(server: ServerProcess, project: str) -> None:
    payload = orjson.dumps(body(project))
    conn = Conn(server)
    conn.send(request(payload, headers={"Expect": "100-continue"})[: -len(payload)])
    status, _, _ = conn.answer()
    assert status == 100
    conn.send(payload)
    assert conn.answer()[0] == 200
    conn.close()


def test_bodies_over_the_limit_are_413_also_mid_body(server: ServerProcess, project: str) -> None:
    big = b'{"project_id": "' + b"x" * 4000 + b'"}'
    assert answer_of(server, request(big))[0] == 413  # Content-Length says so
    chunked = b"%x\r\n%s\r\n" % (len(big), big) + b"0\r\n\r\n"
    conn = Conn(server)
    conn.send(request(chunked, headers={"Transfer-Encoding": "chunked"}))
    status, _, payload = conn.answer()
    assert (status, orjson.loads(payload)) == (413, {"error": "Request body too large"})
    conn.send(request(orjson.dumps(body(project))))  # the connection goes on
    assert conn.answer()[0] == 200
    conn.close()


def test_headers_over_the_limit_are_431(server: ServerProcess, project: str) -> None:
    data = request(orjson.dumps(body(project)), headers={"X-Padding": "p" * 5000})
    assert answer_of(server, data)[0] == 431


def test_cors_requests_get_their_headers(server: ServerProcess, project: str) -> None:
    status, headers, _ = answer_of(
        server, request(orjson.dumps(body(project)), headers={"Origin": ORIGIN})
    )
    assert status == 200 and headers["access-control-allow-origin"] == ORIGIN


def test_a_500_names_a_request_id_logs_once_and_keeps_the_connection(
    pair: dict[str, ServerProcess], redis_server: RedisProcess
) -> None:
    c = pair["fast"].client()
    project_id = make_project(c)
    # A project record without its default environment (hand-edited Redis): an evaluate that
    # names no environment cannot be answered, which is a bug's 500, not the client's fault.
    r = redis_server.client()
    record = orjson.loads(r.hget("{g}:projects", project_id))
    record["settings"] = {}
    r.hset("{g}:projects", project_id, orjson.dumps(record))
    for scope, tag in (("g", "{g}"), (project_id, "{p:" + project_id + "}")):
        version = r.incr(tag + ":version")  # the project reloads with its new record
        r.publish("edge:changes", orjson.dumps({"scope": scope, "version": version}))
    for server in pair.values():
        log_before = server.log.read_text().count("unhandled error")
        conn = Conn(server)

        def crashes(conn: Conn = conn) -> bool:
            conn.send(request(orjson.dumps({"project_id": project_id})))
            return conn.answer()[0] == 500

        eventually(crashes)
        conn.send(request(orjson.dumps({"project_id": project_id}), headers={"X-Request-Id": "r1"}))
        status, headers, payload = conn.answer()
        assert status == 500 and headers["x-request-id"] == "r1"
        assert orjson.loads(payload) == {"error": "Internal server error", "request_id": "r1"}
        conn.send(request(None, method="GET", path="/healthz"))
        assert conn.answer()[0] == 200  # the same connection, still open
        conn.close()
        logged = server.log.read_text()
        assert "Exception in ASGI application" not in logged  # uvicorn's own, second trace
        assert logged.count("unhandled error") > log_before


def test_evaluate_and_track_are_counted_in_the_metrics(
    server: ServerProcess, project: str, experiment: dict[str, Any]
) -> None:
    def count(path: str) -> float:
        text = server.client().get("/metrics").body.decode()
        for line in text.splitlines():
            route = 'edge_http_requests_total{route="POST ' + path + '"'
            if line.startswith(route) and 'status="200"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count(EVALUATE), count(TRACK)
    answer_of(server, request(orjson.dumps(body(project))))
    answer_of(server, request(orjson.dumps(track_body(experiment, "counted")), path=TRACK))
    assert (count(EVALUATE), count(TRACK)) == (before[0] + 1, before[1] + 1)


# Read deadlines: EDGE_HEADER_TIMEOUT, EDGE_BODY_TIMEOUT and EDGE_KEEPALIVE_TIMEOUT are 1 s here;
# the socket waits up to 5 s for the server to close, so a server without deadlines fails.


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    conn = Conn(server)
    assert conn.closed()


def test_a_request_whose_headers_never_end_is_closed(server: ServerProcess) -> None:
    conn = Conn(server)
    conn.send(b"POST /api/v1/flags/evaluate HTTP/1.1\r\nHost: x\r\n")
    assert conn.closed()


def test_headers_trickled_byte_by_byte_are_cut_off(server: ServerProcess) -> None:
    conn = Conn(server, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(OSError):  # EPIPE or a reset once the server has closed
        for byte in b"POST /api/v1/flags/evaluate HTTP/1.1\r\nX-Slow: " + b"x" * 100:
            conn.send(bytes([byte]))
            time.sleep(0.2)
            if time.monotonic() - started > 10:
                break
    conn.close()


def test_a_body_that_never_ends_is_closed(server: ServerProcess, project: str) -> None:
    payload = orjson.dumps(body(project))
    conn = Conn(server)
    conn.send(request(payload)[: -len(payload) // 2])
    assert conn.closed()


def test_the_deadlines_are_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for variable in ("EDGE_HEADER_TIMEOUT", "EDGE_BODY_TIMEOUT", "EDGE_KEEPALIVE_TIMEOUT"):
        assert variable in readme
