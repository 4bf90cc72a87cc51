"""Bucketing: deterministic buckets, variant tables, monotonic rollouts and independent salts."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.domain import bucketing
from proxy.domain.bucketing import BUCKETS, bucket, limit, rollout_salt, variant_table
from proxy.edge.snapshot import ExperimentPlan, _experiment

# Fixed user ids: the statistical checks below are exact computations on this list, so they
# give the same answer on every run and cannot flake.
USERS = [f"user-{i}" for i in range(20_000)]
EXPERIMENT_ID = "5b1f7c2a-3d4e-4f60-8a9b-0c1d2e3f4a5b"

user_ids = st.text(min_size=0, max_size=40)
hundredths = st.integers(min_value=0, max_value=10_000)  # a percentage to 0.01, times 100


def within(share: float, expected: float, n: int, sigmas: float = 5.0) -> bool:
    """Whether an observed share of n Bernoulli draws is within `sigmas` standard deviations."""
    return abs(share - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


def plan(
    percentages: list[int], traffic: float, experiment_id: str = EXPERIMENT_ID
) -> ExperimentPlan:
    return _experiment(
        {
            "id": experiment_id,
            "flag_id": "flag-1",
            "project_id": "project-1",
            "status": "running",
            "variants": [
                {"key": f"v{i}", "value": i, "percentage": p} for i, p in enumerate(percentages)
            ],
            "traffic_percentage": traffic,
        }
    )


# Variant tables -------------------------------------------------------------------------------


def test_variant_table_has_one_entry_per_bucket() -> None:
    assert len(variant_table([50, 50])) == BUCKETS == 10_000
    assert len(variant_table([100])) == BUCKETS


def test_variant_table_gives_variants_consecutive_ranges_in_order() -> None:
    table = variant_table([20, 30, 50])
    assert set(table[:2000]) == {0}
    assert set(table[2000:5000]) == {1}
    assert set(table[5000:]) == {2}


def test_variant_table_skips_a_variant_of_zero_percent() -> None:
    table = variant_table([0, 100, 0])
    assert set(table) == {1}


def _split(cuts: list[int]) -> list[int]:
    edges = [0, *sorted(cuts), 100]
    return [b - a for a, b in itertools.pairwise(edges)]


# Any split of 100 into 1 to 20 integer parts (zeros included).
splits = st.lists(st.integers(min_value=0, max_value=100), max_size=19).map(_split)


@given(splits)
def test_variant_table_of_any_split_is_consecutive_ranges_of_its_sizes(split: list[int]) -> None:
    table = variant_table(split)
    assert len(table) == BUCKETS
    assert list(table) == sorted(table)
    for index, pct in enumerate(split):
        assert table.count(index) == pct * 100


@given(st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=20))
def test_variant_table_of_any_other_sum_is_refused(split: list[int]) -> None:
    if sum(split) != 100:
        with pytest.raises(ValueError):
            variant_table(split)


@pytest.mark.parametrize("split", [[50, 40], [60, 50], [], [99], [101], [0, 0]])
def test_variant_table_rejects_percentages_not_summing_to_100(split: list[int]) -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        variant_table(split)


def test_variant_table_rejects_a_negative_percentage() -> None:
    with pytest.raises(ValueError):
        variant_table([-10, 100])


# Buckets and limits ---------------------------------------------------------------------------


def test_bucket_is_murmur3_x86_32_of_salt_and_user_modulo_10000() -> None:
    # Reference vectors of MurmurHash3_x86_32 with seed 0: a change of hash or of how salt and
    # user id are joined would move every user of every running experiment.
    assert bucket("", "") == 0
    assert bucket("", "hello") == 0x248BFA47 % BUCKETS
    assert bucket("The quick brown fox ", "jumps over the lazy dog") == 0x2E4FF723 % BUCKETS


@given(salt=st.text(max_size=60), user_id=user_ids)
def test_bucket_is_deterministic_and_in_range(salt: str, user_id: str) -> None:
    b = bucket(salt, user_id)
    assert 0 <= b < BUCKETS
    assert bucket(salt, user_id) == b


def test_variant_and_traffic_salts_of_one_experiment_differ() -> None:
    assert bucketing.variant_salt(EXPERIMENT_ID) != bucketing.traffic_salt(EXPERIMENT_ID)


@given(hundredths)
def test_limit_of_a_percentage_to_a_hundredth_is_an_exact_bucket_count(n: int) -> None:
    assert limit(n / 100) == n


def test_limit_examples() -> None:
    assert limit(0) == 0
    assert limit(0.01) == 1
    assert limit(12.34) == 1234
    assert limit(50) == 5000
    assert limit(100) == BUCKETS


# Rollouts -------------------------------------------------------------------------------------


@given(
    rule_id=st.uuids().map(str),
    users=st.lists(user_ids, min_size=1, max_size=50),
    a=hundredths,
    b=hundredths,
)
def test_raising_a_rollout_only_adds_users(rule_id: str, users: list[str], a: int, b: int) -> None:
    low, high = sorted((a, b))
    salt = rollout_salt(rule_id)
    for uid in users:
        if bucket(salt, uid) < limit(low / 100):
            assert bucket(salt, uid) < limit(high / 100)


def test_a_rollout_admits_its_percentage_of_users() -> None:
    salt = rollout_salt("rule-a")
    for pct in (1, 10, 33.33, 50, 90):
        share = sum(bucket(salt, u) < limit(pct) for u in USERS) / len(USERS)
        assert within(share, pct / 100, len(USERS)), (pct, share)


@pytest.mark.parametrize(
    ("salt_a", "salt_b"),
    [
        (rollout_salt("rule-a"), rollout_salt("rule-b")),
        (
            rollout_salt("0d6c0a52-51b8-4c53-9f7d-0b6a1a2b3c4d"),
            rollout_salt("0d6c0a52-51b8-4c53-9f7d-0b6a1a2b3c4e"),
        ),
        (bucketing.variant_salt(EXPERIMENT_ID), bucketing.traffic_salt(EXPERIMENT_ID)),
    ],
)
def test_two_salts_admit_independent_users(salt_a: str, salt_b: str) -> None:
    half = limit(50)
    in_a = [bucket(salt_a, u) < half for u in USERS]
    in_b = [bucket(salt_b, u) < half for u in USERS]
    both = sum(a and b for a, b in zip(in_a, in_b, strict=True)) / len(USERS)
    assert within(sum(in_a) / len(USERS), 0.5, len(USERS))
    assert within(sum(in_b) / len(USERS), 0.5, len(USERS))
    assert within(both, 0.25, len(USERS)), both


# Experiments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [[50, 50], [20, 30, 50]])
def test_variant_split_follows_the_percentages(split: list[int]) -> None:
    p = plan(split, 100)
    counts = [0] * len(split)
    for uid in USERS:
        index = p.assign(uid)
        assert index is not None
        counts[index] += 1
    for count, pct in zip(counts, split, strict=True):
        assert within(count / len(USERS), pct / 100, len(USERS)), (split, counts)


def test_traffic_percentage_admits_its_share_of_users() -> None:
    p = plan([50, 50], 30)
    share = sum(p.assign(u) is not None for u in USERS) / len(USERS)
    assert within(share, 0.30, len(USERS)), share


def test_traffic_zero_admits_no_one_and_full_traffic_everyone() -> None:
    assert all(plan([50, 50], 0).assign(u) is None for u in USERS[:2000])
    assert all(plan([50, 50], 100).assign(u) is not None for u in USERS[:2000])


def test_variant_of_a_user_is_the_same_across_compilations() -> None:
    first, second = plan([20, 30, 50], 100), plan([20, 30, 50], 100)
    assert [first.assign(u) for u in USERS[:2000]] == [second.assign(u) for u in USERS[:2000]]


def test_different_experiments_split_users_independently() -> None:
    a = plan([50, 50], 100, "11111111-1111-4111-8111-111111111111")
    b = plan([50, 50], 100, "22222222-2222-4222-8222-222222222222")
    both_first = sum(a.assign(u) == 0 and b.assign(u) == 0 for u in USERS) / len(USERS)
    assert within(both_first, 0.25, len(USERS)), both_first


def test_raising_traffic_never_moves_a_user_between_variants() -> None:
    low, high = plan([20, 30, 50], 30), plan([20, 30, 50], 70)
    entered_low = 0
    for uid in USERS:
        before = low.assign(uid)
        if before is not None:
            entered_low += 1
            assert high.assign(uid) == before
    assert entered_low > 0


@settings(max_examples=50)
@given(
    users=st.lists(user_ids, min_size=1, max_size=50),
    a=hundredths,
    b=hundredths,
    split=st.sampled_from([[50, 50], [20, 30, 50], [1, 99], [10] * 10]),
)
def test_raising_traffic_only_adds_users_and_keeps_their_variant(
    users: list[str], a: int, b: int, split: list[int]
) -> None:
    low, high = sorted((a, b))
    before, after = plan(split, low / 100), plan(split, high / 100)
    for uid in users:
        variant = before.assign(uid)
        if variant is not None:
            assert after.assign(uid) == variant


def test_experiment_plan_built_directly_assigns_by_its_table() -> None:
    table = variant_table([50, 50])
    salt = bucketing.variant_salt(EXPERIMENT_ID)
    direct = ExperimentPlan(
        id=EXPERIMENT_ID,
        flag_id="flag-1",
        project_id="project-1",
        status="running",
        variant_count=2,
        table=table,
        salt=salt,
        traffic_salt=bucketing.traffic_salt(EXPERIMENT_ID),
        traffic_limit=BUCKETS,
    )
    compiled = plan([50, 50], 100)
    for uid in USERS[:1000]:
        assert direct.assign(uid) == table[bucket(salt, uid)] == compiled.assign(uid)
