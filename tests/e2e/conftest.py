"""Two real server processes on the suite's Redis: every e2e test runs against both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Client, RedisCluster, RedisProcess, ServerProcess


@pytest.fixture(scope="session")
def servers(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    base = tmp_path_factory.mktemp("servers")
    a = ServerProcess(redis_server.url, base / "a").start()
    b = ServerProcess(redis_server.url, base / "b").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="session")
def cluster_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers on a three-master Redis Cluster (`REDIS_URL` names one seed node)."""
    base = tmp_path_factory.mktemp("cluster")
    cluster = RedisCluster(base / "redis").start()
    a = ServerProcess(cluster.url, base / "a", REDIS_MODE="cluster").start()
    b = ServerProcess(cluster.url, base / "b", REDIS_MODE="cluster").start()
    yield a, b
    a.stop()
    b.stop()
    cluster.kill()


@pytest.fixture(params=["standalone", "cluster"])
def backends(request: pytest.FixtureRequest) -> tuple[ServerProcess, ServerProcess]:
    """For the tests that must hold on both: two servers on one Redis, or on a cluster."""
    name = "servers" if request.param == "standalone" else "cluster_servers"
    pair: tuple[ServerProcess, ServerProcess] = request.getfixturevalue(name)
    return pair


@pytest.fixture
def backend_clients(backends: tuple[ServerProcess, ServerProcess]) -> tuple[Client, Client]:
    """A client of each of the two servers of `backends`: on one Redis, then on a cluster."""
    first, second = backends
    return first.client(), second.client()


@pytest.fixture
def a(servers: tuple[ServerProcess, ServerProcess]) -> Client:
    return servers[0].client()


@pytest.fixture
def b(servers: tuple[ServerProcess, ServerProcess]) -> Client:
    return servers[1].client()
