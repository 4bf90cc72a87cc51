"""The durable spool and the exposure buffer, on a real Redis that the tests stop."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aredis

from proxy.store import keys
from proxy.store.events import EventStore
from proxy.store.exposures import FLUSH_CHUNK, ExposureBuffer, _chunks
from proxy.store.spool import Spool, SpoolFull
from tests.support import RedisProcess

pytestmark = pytest.mark.anyio


async def test_spooled_events_replay_once_and_the_files_go(
    spool_factory: Callable[..., Spool], event_store: EventStore
) -> None:
    experiment = str(uuid.uuid4())
    spool = spool_factory(max_bytes=1 << 20)
    await spool.append(conversions=[(experiment, "conversion", 1, "u1")])
    await spool.append(
        exposures=[(experiment, 0, "u2")], conversions=[(experiment, "conversion", 1, "u1")]
    )
    assert await spool.replay(event_store) == 3
    assert await spool.replay(event_store) == 0  # nothing left, nothing counted twice
    exposures, conversions = await event_store.counts(experiment, "conversion", 2)
    assert (exposures, conversions) == ([1, 1], [0, 1])
    assert not spool.pending()


async def test_a_torn_last_line_is_skipped_and_files_of_dead_processes_are_replayed(
    tmp_path: Path, spool_factory: Callable[..., Spool], event_store: EventStore
) -> None:
    experiment = str(uuid.uuid4())
    dead = tmp_path / "spool-dead.log"
    dead.write_bytes(f'["c","{experiment}","conversion",0,"a"]\n["c","{experiment}","conv'.encode())
    assert await spool_factory(1 << 20, tmp_path).replay(event_store) == 1
    assert (await event_store.counts(experiment, "conversion", 1))[1] == [1]
    assert not dead.exists()


async def test_a_full_spool_refuses_instead_of_dropping(
    spool_factory: Callable[..., Spool],
) -> None:
    spool = spool_factory(max_bytes=200)
    await spool.append(conversions=[("e", "conversion", 0, "u" * 50)])
    with pytest.raises(SpoolFull):
        await spool.append(conversions=[("e", "conversion", 0, "v" * 150)])
    assert spool.rejected == 1


async def test_exposures_are_deduplicated_bounded_and_spooled_when_redis_fails(
    redis_factory: Callable[..., RedisProcess],
    redis_client_factory: Callable[..., aredis.Redis],
    spool_factory: Callable[..., Spool],
) -> None:
    redis = redis_factory()
    experiment = str(uuid.uuid4())
    client = redis_client_factory(redis.url, socket_timeout=1, socket_connect_timeout=1)
    spool = spool_factory(1 << 20)
    buffer = ExposureBuffer(EventStore(client), spool, buffer_max=3, seen_max=1024)
    for user in ("a", "b", "a", "a"):
        buffer.record(experiment, 0, user)
    assert len(buffer.pending()) == 2  # "a" once
    buffer.record(experiment, 1, "c")
    buffer.record(experiment, 1, "d")  # over the bound of 3: dropped and counted
    assert (len(buffer.pending()), buffer.dropped) == (3, 1)
    await buffer.flush()
    assert buffer.written == 3
    assert await client.smembers(keys.exposures(experiment, 0)) == {b"a", b"b"}
    buffer.record(experiment, 1, "d")  # not remembered as seen when dropped: recorded now
    redis.kill()
    await buffer.flush()
    assert (buffer.spooled, buffer.redis_errors) == (1, 1)
    assert spool.pending()


async def test_a_flush_larger_than_a_pipeline_writes_every_exposure_in_bounded_pipelines(
    event_store: EventStore, redis_client: aredis.Redis, spool_factory: Callable[..., Spool]
) -> None:
    # Two experiments whose groups are each longer than a pipeline, and one shorter: the flush
    # cuts them into pipelines of at most FLUSH_CHUNK users and loses or repeats none.
    experiments = (str(uuid.uuid4()), 2), (str(uuid.uuid4()), 3), (str(uuid.uuid4()), 1)
    buffer = ExposureBuffer(event_store, spool_factory(), buffer_max=100_000, seen_max=1 << 16)
    expose = buffer.group(experiments, epoch="e1")
    users = [f"user-{n}" for n in range(int(FLUSH_CHUNK * 2.5))]
    for n, user in enumerate(users):
        expose(user, (n % 2, n % 3, 0 if n < 10 else None))
    waiting = [(e, v, u) for e, lists in buffer.bins.items() for v, u in enumerate(lists) if u]
    chunks = list(_chunks(waiting))
    assert len(chunks) > 2
    assert max(sum(len(u) for _, _, u in chunk) for chunk in chunks) <= FLUSH_CHUNK
    await buffer.flush()
    assert buffer.written == len(users) * 2 + 10
    (a, _), (b, _), (c, _) = experiments
    for experiment_id, variant, want in (
        (a, 0, set(users[0::2])),
        (a, 1, set(users[1::2])),
        (b, 0, set(users[0::3])),
        (b, 2, set(users[2::3])),
        (c, 0, set(users[:10])),
    ):
        got = await redis_client.smembers(keys.exposures(experiment_id, variant))
        assert {m.decode() for m in got} == want
