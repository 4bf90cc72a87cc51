"""EventStore on a real Redis: idempotent exposures and conversions, counts, goals, deletion."""

from __future__ import annotations

import uuid

import pytest

from proxy.store import keys
from proxy.store.events import EventStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def exp() -> str:
    """A fresh experiment id: tests share the suite's Redis, so each counts its own."""
    return str(uuid.uuid4())


async def test_a_conversion_is_new_once_and_a_duplicate_is_not(
    event_store: EventStore, exp: str
) -> None:
    assert await event_store.add_conversions([(exp, "conversion", 1, "alice")]) == [True]
    assert await event_store.add_conversions([(exp, "conversion", 1, "alice")]) == [False]
    assert await event_store.counts(exp, "conversion", 2) == ([0, 1], [0, 1])


async def test_a_converter_counts_as_exposed(event_store: EventStore, exp: str) -> None:
    await event_store.add_conversions([(exp, "conversion", 0, "never-evaluated")])
    exposures, conversions = await event_store.counts(exp, "conversion", 2)
    assert exposures == [1, 0]
    assert conversions == [1, 0]
    members = await event_store.redis.smembers(keys.exposures(exp, 0))
    assert members == {b"never-evaluated"}


async def test_add_conversions_answers_per_item_of_a_batch(
    event_store: EventStore, exp: str
) -> None:
    await event_store.add_conversions([(exp, "conversion", 0, "a")])
    batch = [
        (exp, "conversion", 0, "a"),  # already there
        (exp, "conversion", 0, "b"),
        (exp, "signup", 0, "a"),  # same user, another goal: new
        (exp, "conversion", 0, "b"),  # twice in one batch: the second is not new
    ]
    assert await event_store.add_conversions(batch) == [False, True, True, False]
    assert await event_store.add_conversions([]) == []


async def test_counts_are_per_variant_and_per_goal(event_store: EventStore, exp: str) -> None:
    await event_store.add_exposures(
        [(exp, 0, "u1"), (exp, 0, "u2"), (exp, 1, "u3"), (exp, 2, "u4"), (exp, 2, "u5")]
    )
    await event_store.add_exposures([(exp, 2, "u6")])
    await event_store.add_conversions(
        [(exp, "conversion", 0, "u1"), (exp, "conversion", 2, "u4"), (exp, "signup", 1, "u3")]
    )
    assert await event_store.counts(exp, "conversion", 3) == ([2, 1, 3], [1, 0, 1])
    assert await event_store.counts(exp, "signup", 3) == ([2, 1, 3], [0, 1, 0])
    assert await event_store.counts(exp, "unknown-goal", 3) == ([2, 1, 3], [0, 0, 0])
    assert await event_store.counts(str(uuid.uuid4()), "conversion", 2) == ([0, 0], [0, 0])


async def test_add_exposures_dedupes_users(event_store: EventStore, exp: str) -> None:
    await event_store.add_exposures([(exp, 0, "u1"), (exp, 0, "u1"), (exp, 1, "u2")])
    await event_store.add_exposures([(exp, 0, "u1")])
    assert await event_store.counts(exp, "conversion", 2) == ([1, 1], [0, 0])


async def test_replaying_a_batch_changes_nothing(event_store: EventStore, exp: str) -> None:
    exposures = [(exp, v % 3, f"user-{v}") for v in range(30)]
    conversions = [(exp, "conversion", v % 3, f"user-{v}") for v in range(0, 30, 4)]
    await event_store.add_exposures(exposures)
    assert all(await event_store.add_conversions(conversions))
    before = await event_store.counts(exp, "conversion", 3)
    goals_before = await event_store.goals(exp)

    await event_store.add_exposures(exposures)
    assert not any(await event_store.add_conversions(conversions))
    assert await event_store.counts(exp, "conversion", 3) == before
    assert await event_store.goals(exp) == goals_before
    assert before == ([10, 10, 10], [3, 3, 2])


async def test_goals_lists_every_goal_converted_on_sorted(
    event_store: EventStore, exp: str
) -> None:
    assert await event_store.goals(exp) == []
    await event_store.add_conversions(
        [(exp, "signup", 0, "a"), (exp, "conversion", 1, "b"), (exp, "signup", 1, "c")]
    )
    assert await event_store.goals(exp) == ["conversion", "signup"]


async def test_experiments_do_not_share_events(event_store: EventStore, exp: str) -> None:
    other = str(uuid.uuid4())
    await event_store.add_conversions([(exp, "conversion", 0, "u")])
    assert await event_store.add_conversions([(other, "conversion", 0, "u")]) == [True]
    assert await event_store.counts(other, "conversion", 1) == ([1], [1])
    await event_store.delete_experiment(other, 1)


async def test_delete_experiment_removes_its_sets_and_only_its_own(
    event_store: EventStore, exp: str
) -> None:
    other = str(uuid.uuid4())
    await event_store.add_exposures([(exp, 0, "a"), (exp, 1, "b"), (other, 0, "a")])
    await event_store.add_conversions(
        [(exp, "conversion", 0, "a"), (exp, "signup", 1, "b"), (other, "conversion", 0, "a")]
    )
    names = [
        keys.goals(exp),
        keys.exposures(exp, 0),
        keys.exposures(exp, 1),
        keys.conversions(exp, "conversion", 0),
        keys.conversions(exp, "signup", 1),
    ]
    assert await event_store.redis.exists(*names) == len(names)

    await event_store.delete_experiment(exp, 2)
    assert await event_store.redis.exists(*names) == 0
    assert await event_store.goals(exp) == []
    assert await event_store.counts(exp, "conversion", 2) == ([0, 0], [0, 0])
    assert await event_store.counts(other, "conversion", 1) == ([1], [1])
    await event_store.delete_experiment(other, 1)
