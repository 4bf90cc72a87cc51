"""Redis fails, the proxy keeps serving and loses nothing: real processes, killed for real."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from tests.e2e.helpers import (
    conversions,
    evaluate,
    make_flag,
    make_project,
    start_experiment,
    track_all,
)
from tests.support import RedisProcess, ServerProcess, eventually, lkg_flags


def test_conversions_acknowledged_while_redis_is_killed_are_counted_once(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory(persist=True)
    server = server_factory(redis.url)
    c = server.client()
    world = start_experiment(c)
    users = [f"user-{i}" for i in range(300)]
    acknowledged = track_all(c, world, users[:100])
    redis.kill()
    acknowledged += track_all(c, world, users[100:200])
    acknowledged += track_all(c, world, users[:50])  # duplicates while Redis is down
    redis.start()  # same port, same append-only file
    acknowledged += track_all(c, world, users[200:])
    assert len(set(acknowledged)) == 300
    eventually(lambda: conversions(c, world) == 300, timeout=15)
    assert list((server.data_dir / "spool").glob("spool-*.replay")) == []


def test_evaluate_keeps_answering_while_redis_is_paused_and_readiness_follows(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory()
    server = server_factory(redis.url, EDGE_STALE_AFTER="1.5", EDGE_POLL_INTERVAL="0.3")
    c = server.client()
    world = start_experiment(c)
    before = evaluate(c, world["project_id"], "u1")
    redis.pause()
    try:
        assert evaluate(c, world["project_id"], "u1") == before
        server.wait("/readyz", 503, timeout=10)
        r = server.client(None).get("/readyz")
        assert "not confirmed" in r.json["reason"]
        assert evaluate(c, world["project_id"], "u1") == before
        assert c.patch(f"/api/v1/flags/{world['flag_id']}", {"name": "x"}).status == 503
    finally:
        redis.resume()
    server.wait("/readyz", 200, timeout=10)


def test_a_proxy_cut_off_from_pubsub_converges_after_reconnecting(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory()
    a = server_factory(redis.url, EDGE_POLL_INTERVAL="30")  # only pub/sub can tell it
    b = server_factory(redis.url, EDGE_POLL_INTERVAL="30")
    ca, cb = a.client(), b.client()
    project_id = make_project(ca)
    flag = make_flag(ca, project_id)
    eventually(lambda: "checkout_flow" in evaluate(cb, project_id, "u"))
    redis.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert cb.patch(f"/api/v1/flags/{flag['id']}", {"default_value": "changed"}).status == 200
    eventually(lambda: evaluate(ca, project_id, "u")["checkout_flow"]["value"] == "changed")


def test_cold_start_with_redis_down_serves_the_last_known_good_snapshot(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory()
    server = server_factory(redis.url)
    c = server.client()
    project_id = make_project(c)
    make_flag(c, project_id)
    answer = evaluate(c, project_id, "u")
    snapshot = server.data_dir / "snapshot.json"  # written at most 0.5 s after a change
    eventually(lambda: lkg_flags(snapshot, project_id) == {"checkout_flow": "control"})
    assert server.stop() == 0
    redis.kill()

    started = time.monotonic()
    server.start(wait_ready=False)
    server.wait("/healthz", 200, timeout=10)
    assert time.monotonic() - started < 10
    r = server.client(None).get("/readyz")
    assert r.status == 503 and "last-known-good" in r.json["reason"]
    assert evaluate(server.client(), project_id, "u") == answer


def test_cold_start_with_redis_down_and_no_snapshot_answers_503_not_unknown_key(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory()
    redis.kill()
    server = server_factory(redis.url, start=False)
    started = time.monotonic()
    server.start(wait_ready=False)
    server.wait("/healthz", 200, timeout=10)
    assert time.monotonic() - started < 10
    c = server.client()
    body = {"project_id": "00000000-0000-4000-8000-000000000000"}
    for path in ("/api/v1/flags/evaluate", "/api/v1/flags/projects"):
        r = c.post(path, body)
        assert r.status == 503 and r.json["error"] == "Service unavailable", r.body
    assert server.client(None).get("/readyz").status == 503
    redis.start()
    server.wait("/readyz", 200, timeout=15)


def test_sigterm_during_load_loses_no_acknowledged_conversion(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory()
    server = server_factory(redis.url)
    world = start_experiment(server.client())
    acknowledged: list[str] = []

    def load(n: int) -> None:
        track_all(server.client(), world, [f"t{n}-{i}" for i in range(400)], into=acknowledged)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    eventually(lambda: len(acknowledged) >= 100)  # the load is running: now the signal
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = server.proc.wait(timeout=15)
    assert code == 0 and time.monotonic() - started < 10
    for t in threads:
        t.join()
    server.proc = None
    assert acknowledged  # the load really ran before the signal
    server.start()
    eventually(lambda: conversions(server.client(), world) == len(set(acknowledged)), timeout=10)
