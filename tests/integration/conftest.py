"""Async factory fixtures for the integration tests, in arq's style: each yields a function that
makes what a test needs, and closes everything it made at teardown, even when the test fails.
The tests run on anyio's pytest plugin (it comes with Starlette), on asyncio as in production."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.exceptions import RedisError

from proxy.edge.sync import Sync
from proxy.store.config import ConfigStore
from proxy.store.events import EventStore
from proxy.store.spool import Spool
from tests.support import RedisProcess


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis_client_factory(
    redis_server: RedisProcess,
) -> AsyncIterator[Callable[..., aredis.Redis]]:
    """Clients on the suite's Redis, or on `url` (a test's own Redis); `options` go to
    `Redis.from_url` (timeouts)."""
    made: list[aredis.Redis] = []

    def make(url: str | None = None, **options: Any) -> aredis.Redis:
        client = aredis.Redis.from_url(url or redis_server.url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(RedisError, OSError):  # its Redis may be dead by now
            await client.aclose()


@pytest.fixture
def redis_client(redis_client_factory: Callable[..., aredis.Redis]) -> aredis.Redis:
    """A client on the suite's Redis (tests share it: each writes keys of its own)."""
    return redis_client_factory()


@pytest.fixture
def config_store(redis_client: aredis.Redis) -> ConfigStore:
    return ConfigStore(redis_client)


@pytest.fixture
def event_store(redis_client: aredis.Redis) -> EventStore:
    return EventStore(redis_client)


@pytest.fixture
def spool_factory(tmp_path: Path) -> Iterator[Callable[..., Spool]]:
    """Spools in the test's directory (or `directory`), each closed at teardown."""
    made: list[Spool] = []

    def make(max_bytes: int = 1 << 20, directory: Path | None = None) -> Spool:
        spool = Spool(directory or tmp_path, max_bytes=max_bytes)
        made.append(spool)
        return spool

    yield make
    for spool in made:
        spool.close()


@pytest.fixture
async def sync_factory(
    redis_client_factory: Callable[..., aredis.Redis], tmp_path: Path
) -> AsyncIterator[Callable[..., Sync]]:
    """Syncs over `store`, subscribing with a client of their own on `pubsub_url`; the test
    starts them, and every one made is stopped at teardown (stopping twice is harmless)."""
    made: list[Sync] = []

    def make(
        store: ConfigStore,
        pubsub_url: str,
        *,
        poll_interval: float,
        lkg_path: Path | None = None,
        on_exposure: Callable[[str, int, str], None] = lambda *exposure: None,
    ) -> Sync:
        sync = Sync(
            store,
            redis_client_factory(pubsub_url, socket_connect_timeout=2),
            on_exposure,
            poll_interval=poll_interval,
            lkg_path=lkg_path or tmp_path / "snapshot.json",
        )
        made.append(sync)
        return sync

    yield make
    for sync in made:
        await sync.stop()
