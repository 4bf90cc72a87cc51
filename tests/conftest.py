"""Session fixtures: one redis-server for the suite, and factories for more processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import RedisProcess, ServerProcess


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """Redis processes of one test's own (fault tests kill and pause them)."""
    started: list[RedisProcess] = []

    def make(**kw: Any) -> RedisProcess:
        r = RedisProcess(tmp_path / f"redis-{len(started)}", **kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        if r.proc is not None:
            r.resume()
        r.kill()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(redis_url: str | None, *, start: bool = True, **env: str) -> ServerProcess:
        s = ServerProcess(redis_url, tmp_path / f"server-{len(started)}", **env)
        started.append(s)
        return s.start() if start else s

    yield make
    for s in started:
        s.stop()
