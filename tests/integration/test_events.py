"""EventStore on a real Redis: idempotent exposures and conversions, counts, goals, deletion."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis

from proxy.store import keys
from proxy.store.events import EventStore
from tests.support import RedisProcess


def run(redis_server: RedisProcess, test: Callable[[EventStore, str], Awaitable[None]]) -> None:
    """Run `test` with an event store and a fresh experiment id."""

    async def main() -> None:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            await test(EventStore(client), str(uuid.uuid4()))
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_conversion_is_new_once_and_a_duplicate_is_not(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        assert await events.add_conversions([(exp, "conversion", 1, "alice")]) == [True]
        assert await events.add_conversions([(exp, "conversion", 1, "alice")]) == [False]
        assert await events.counts(exp, "conversion", 2) == ([0, 1], [0, 1])

    run(redis_server, test)


def test_a_converter_counts_as_exposed(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        await events.add_conversions([(exp, "conversion", 0, "never-evaluated")])
        exposures, conversions = await events.counts(exp, "conversion", 2)
        assert exposures == [1, 0]
        assert conversions == [1, 0]
        members = await events.redis.smembers(keys.exposures(exp, 0))
        assert members == {b"never-evaluated"}

    run(redis_server, test)


def test_add_conversions_answers_per_item_of_a_batch(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        await events.add_conversions([(exp, "conversion", 0, "a")])
        batch = [
            (exp, "conversion", 0, "a"),  # already there
            (exp, "conversion", 0, "b"),
            (exp, "signup", 0, "a"),  # same user, another goal: new
            (exp, "conversion", 0, "b"),  # twice in one batch: the second is not new
        ]
        assert await events.add_conversions(batch) == [False, True, True, False]
        assert await events.add_conversions([]) == []

    run(redis_server, test)


def test_counts_are_per_variant_and_per_goal(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        await events.add_exposures(
            [(exp, 0, "u1"), (exp, 0, "u2"), (exp, 1, "u3"), (exp, 2, "u4"), (exp, 2, "u5")]
        )
        await events.add_exposures([(exp, 2, "u6")])
        await events.add_conversions(
            [(exp, "conversion", 0, "u1"), (exp, "conversion", 2, "u4"), (exp, "signup", 1, "u3")]
        )
        assert await events.counts(exp, "conversion", 3) == ([2, 1, 3], [1, 0, 1])
        assert await events.counts(exp, "signup", 3) == ([2, 1, 3], [0, 1, 0])
        assert await events.counts(exp, "unknown-goal", 3) == ([2, 1, 3], [0, 0, 0])
        assert await events.counts(str(uuid.uuid4()), "conversion", 2) == ([0, 0], [0, 0])

    run(redis_server, test)


def test_add_exposures_dedupes_users(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        await events.add_exposures([(exp, 0, "u1"), (exp, 0, "u1"), (exp, 1, "u2")])
        await events.add_exposures([(exp, 0, "u1")])
        assert await events.counts(exp, "conversion", 2) == ([1, 1], [0, 0])

    run(redis_server, test)


def test_replaying_a_batch_changes_nothing(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        exposures = [(exp, v % 3, f"user-{v}") for v in range(30)]
        conversions = [(exp, "conversion", v % 3, f"user-{v}") for v in range(0, 30, 4)]
        await events.add_exposures(exposures)
        assert all(await events.add_conversions(conversions))
        before = await events.counts(exp, "conversion", 3)
        goals_before = await events.goals(exp)

        await events.add_exposures(exposures)
        assert not any(await events.add_conversions(conversions))
        assert await events.counts(exp, "conversion", 3) == before
        assert await events.goals(exp) == goals_before
        assert before == ([10, 10, 10], [3, 3, 2])

    run(redis_server, test)


def test_goals_lists_every_goal_converted_on_sorted(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        assert await events.goals(exp) == []
        await events.add_conversions(
            [(exp, "signup", 0, "a"), (exp, "conversion", 1, "b"), (exp, "signup", 1, "c")]
        )
        assert await events.goals(exp) == ["conversion", "signup"]

    run(redis_server, test)


def test_experiments_do_not_share_events(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        other = str(uuid.uuid4())
        await events.add_conversions([(exp, "conversion", 0, "u")])
        assert await events.add_conversions([(other, "conversion", 0, "u")]) == [True]
        assert await events.counts(other, "conversion", 1) == ([1], [1])
        await events.delete_experiment(other, 1)

    run(redis_server, test)


def test_delete_experiment_removes_its_sets_and_only_its_own(redis_server: RedisProcess) -> None:
    async def test(events: EventStore, exp: str) -> None:
        other = str(uuid.uuid4())
        await events.add_exposures([(exp, 0, "a"), (exp, 1, "b"), (other, 0, "a")])
        await events.add_conversions(
            [(exp, "conversion", 0, "a"), (exp, "signup", 1, "b"), (other, "conversion", 0, "a")]
        )
        names = [
            keys.goals(exp),
            keys.exposures(exp, 0),
            keys.exposures(exp, 1),
            keys.conversions(exp, "conversion", 0),
            keys.conversions(exp, "signup", 1),
        ]
        assert await events.redis.exists(*names) == len(names)

        await events.delete_experiment(exp, 2)
        assert await events.redis.exists(*names) == 0
        assert await events.goals(exp) == []
        assert await events.counts(exp, "conversion", 2) == ([0, 0], [0, 0])
        assert await events.counts(other, "conversion", 1) == ([1], [1])
        await events.delete_experiment(other, 1)

    run(redis_server, test)
