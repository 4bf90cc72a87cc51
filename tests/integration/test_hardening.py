"""Defects of issue 11 proved fixed at the component: event tombstones, exposures forgotten when
nothing could keep them, honest metrics, a snapshot writer that keeps trying, private files."""

from __future__ import annotations

import asyncio
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis

from proxy.edge.sync import Sync
from proxy.store import keys
from proxy.store.config import ConfigStore
from proxy.store.conversions import ConversionWriter
from proxy.store.events import EventStore
from proxy.store.exposures import ExposureBuffer
from proxy.store.files import private_dir, write_atomically
from proxy.store.spool import Spool
from tests.support import RedisProcess

pytestmark = pytest.mark.anyio

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def dead(redis_client_factory: Callable[..., aredis.Redis]) -> aredis.Redis:
    """A client of a Redis that is not there."""
    return redis_client_factory(DEAD_REDIS, socket_connect_timeout=0.2, socket_timeout=0.2)


def family(collector: Any, name: str) -> dict[tuple[str, ...], float]:
    for metric in collector.collect():
        if metric.name == name:
            return {tuple(s.labels.values()): s.value for s in metric.samples}
    raise AssertionError(f"no metric {name}")


async def test_a_deleted_experiments_events_never_come_back(redis_client: aredis.Redis) -> None:
    client = redis_client
    events = EventStore(client)
    experiment = str(uuid.uuid4())
    await events.add_exposures([(experiment, 0, "a")])
    assert await events.add_conversions([(experiment, "conversion", 0, "a")]) == [True]
    await events.delete_experiment(experiment, 2)
    # What was in flight when it was deleted: a buffered batch, a conversion, a spool replay.
    await events.add_exposures([(experiment, 0, "b"), (experiment, 1, "c")])
    assert await events.add_conversions([(experiment, "signup", 1, "c")]) == [False]
    left = await client.keys("{x:" + experiment + "}:*")
    assert left == [keys.tombstone(experiment).encode()]


async def test_exposures_dropped_with_a_full_spool_are_recorded_again(
    dead: aredis.Redis, spool_factory: Callable[..., Spool]
) -> None:
    spool = spool_factory(max_bytes=1)  # takes nothing
    buffer = ExposureBuffer(EventStore(dead), spool, buffer_max=100, seen_max=1024)
    buffer.record("e1", 0, "u1")
    buffer.record("e1", 0, "u1")  # seen: once in the batch
    assert len(buffer.pending()) == 1
    await buffer.flush()
    assert buffer.dropped == 1 and buffer.pending() == []
    buffer.record("e1", 0, "u1")  # the user's next evaluate
    assert buffer.pending() == [("e1", 0, "u1")]


async def test_spooled_conversions_are_not_counted_as_accepted(
    dead: aredis.Redis, redis_client: aredis.Redis, spool_factory: Callable[..., Spool]
) -> None:
    spool = spool_factory()
    writer = ConversionWriter(EventStore(dead), spool)
    assert await writer.write(("e1", "conversion", 0, "u1")) is True
    counts = family(writer, "edge_conversions")
    assert counts[("accepted",)] == 0 and counts[("spooled",)] == 1
    live = ConversionWriter(EventStore(redis_client), spool)
    experiment = str(uuid.uuid4())
    await live.write((experiment, "conversion", 0, "u1"))
    await live.write((experiment, "conversion", 0, "u1"))
    counts = family(live, "edge_conversions")
    assert (counts[("accepted",)], counts[("duplicate",)], counts[("spooled",)]) == (1, 1, 0)


async def started(
    redis_client_factory: Callable[..., aredis.Redis],
    sync_factory: Callable[..., Sync],
    url: str,
    lkg: Path,
) -> Sync:
    store = ConfigStore(redis_client_factory(url, socket_connect_timeout=0.2, socket_timeout=0.5))
    sync = sync_factory(store, url, poll_interval=60.0, lkg_path=lkg)
    await sync.start(wait=1.0)
    return sync


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_the_snapshot_writer_keeps_trying_after_a_failure(
    redis_server: RedisProcess,
    redis_client_factory: Callable[..., aredis.Redis],
    sync_factory: Callable[..., Sync],
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    lkg = blocker / "snapshot.json"
    sync = await started(redis_client_factory, sync_factory, redis_server.url, lkg)
    sync._changed()  # a change: the writer wakes up 0.5 s later and fails
    await until(lambda: sync.lkg_write_errors >= 1)
    assert family(sync, "edge_snapshot_write_errors")[()] >= 1
    blocker.unlink()  # the disk is fixed: the next retry succeeds with no new change
    await until(lkg.exists)
    assert orjson.loads(lkg.read_bytes())["format"] == 1


async def test_the_confirmed_age_of_a_snapshot_file_is_the_files_age(
    redis_server: RedisProcess,
    redis_client_factory: Callable[..., aredis.Redis],
    sync_factory: Callable[..., Sync],
    tmp_path: Path,
) -> None:
    lkg = tmp_path / "snapshot.json"
    warm = await started(redis_client_factory, sync_factory, redis_server.url, lkg)
    warm._changed()
    await until(lkg.exists)
    await warm.stop()
    written = time.time() - 100
    os.utime(lkg, (written, written))
    cold = await started(redis_client_factory, sync_factory, DEAD_REDIS, lkg)
    assert cold.from_lkg
    age = family(cold, "edge_snapshot_confirmed_age_seconds")[()]
    assert 99 <= age <= 110  # not the host's uptime


async def test_local_files_are_private(spool_factory: Callable[..., Spool], tmp_path: Path) -> None:
    spool = spool_factory(directory=tmp_path / "spool")
    await spool.append(exposures=[("e", 0, "user-id")])
    (spooled,) = (tmp_path / "spool").glob("spool-*")
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    write_atomically(tmp_path / "lkg" / "snapshot.json", b"{}")
    assert stat.S_IMODE((tmp_path / "lkg" / "snapshot.json").stat().st_mode) == 0o600
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
