"""Experiment statistics against the shared vectors, the null rules, and independent checks of
the chance to beat the control at every size."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.domain.stats import (
    CLOSED_FORM_MAX_TERMS,
    chance_to_beat,
    chi2_sf,
    experiment_results,
    integrated_chance,
)
from tests.support import shared

COMPARISON_FIELDS = (
    "absolute_lift",
    "absolute_lift_ci",
    "relative_lift",
    "relative_lift_ci",
    "p_value",
    "chance_to_beat_control",
)
# Row fields that came after stats-vectors.json (its vectors are at the default analysis): they
# are checked against stats-vectors-2.json in test_stats_sequential.py.
LATER_FIELDS = {"p_value_adjusted", "sequential", "value"}


VECTORS: list[dict[str, Any]] = json.loads(shared("stats-vectors.json").read_text())["vectors"]


def _results(weights: list[float], *arms: tuple[int, int]) -> dict[str, Any]:
    keys = ["control", *(f"v{i}" for i in range(1, len(arms)))]
    return experiment_results(weights, [(k, n, x) for k, (n, x) in zip(keys, arms, strict=True)])


def _assert_same(expected: Any, actual: Any, where: str) -> None:
    if expected is None or isinstance(expected, (bool, str)):
        assert actual == expected, where
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _assert_same(e, a, f"{where}[{i}]")
    elif isinstance(expected, int):
        assert actual == expected and isinstance(actual, int), where
    else:
        assert isinstance(actual, float), where
        assert math.isclose(actual, expected, rel_tol=1e-6), f"{where}: {actual} != {expected}"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_field_matches_the_shared_vectors(vector: dict[str, Any]) -> None:
    variants = [(v["key"], v["exposures"], v["conversions"]) for v in vector["variants"]]
    result = experiment_results(vector["weights"], variants)

    assert len(result["variants"]) == len(vector["variants"])
    for expected, actual in zip(vector["variants"], result["variants"], strict=True):
        assert set(actual) == set(expected) | LATER_FIELDS
        for field, value in expected.items():
            _assert_same(value, actual[field], f"{vector['name']} {expected['key']}.{field}")
    assert set(result["srm"]) == set(vector["srm"])
    for field, value in vector["srm"].items():
        _assert_same(value, result["srm"][field], f"{vector['name']} srm.{field}")


def test_control_has_no_comparison_figures() -> None:
    control = _results([50, 50], (1000, 100), (1000, 120))["variants"][0]

    assert control["conversion_rate"] == 0.1
    assert all(control[field] is None for field in COMPARISON_FIELDS)


def test_no_exposures_anywhere_gives_nulls() -> None:
    result = _results([50, 50], (0, 0), (0, 0))

    for row in result["variants"]:
        assert row["conversion_rate"] is None
        assert all(row[field] is None for field in COMPARISON_FIELDS)
    assert result["srm"] == {"p_value": None, "warning": False}


@pytest.mark.parametrize("arms", [((0, 0), (500, 50)), ((500, 50), (0, 0))])
def test_an_arm_without_exposures_leaves_every_comparison_null(
    arms: tuple[tuple[int, int], tuple[int, int]],
) -> None:
    result = _results([50, 50], *arms)
    treatment = result["variants"][1]

    assert all(treatment[field] is None for field in COMPARISON_FIELDS)
    assert [row["conversion_rate"] for row in result["variants"]] == [
        x / n if n else None for n, x in arms
    ]
    assert result["srm"]["p_value"] is not None


def test_zero_control_rate_nulls_only_the_relative_lift() -> None:
    treatment = _results([50, 50], (1000, 0), (1000, 10))["variants"][1]

    assert treatment["relative_lift"] is None
    assert treatment["relative_lift_ci"] is None
    assert treatment["absolute_lift"] == pytest.approx(0.01)
    assert treatment["absolute_lift_ci"][0] < 0.01 < treatment["absolute_lift_ci"][1]
    assert treatment["p_value"] is not None
    assert treatment["chance_to_beat_control"] > 0.99


@pytest.mark.parametrize("conversions", [0, 1000], ids=["pooled rate 0", "pooled rate 1"])
def test_p_value_is_null_when_pooled_rate_is_zero_or_one(conversions: int) -> None:
    treatment = _results([50, 50], (1000, conversions), (1000, conversions))["variants"][1]

    assert treatment["p_value"] is None
    assert treatment["absolute_lift"] == 0
    assert treatment["chance_to_beat_control"] == pytest.approx(0.5, abs=1e-9)


def test_conversions_above_exposures_are_clamped_not_rejected() -> None:
    treatment = _results([50, 50], (100, 10), (100, 150))["variants"][1]

    assert treatment["conversions"] == 100
    assert treatment["conversion_rate"] == 1.0
    assert treatment["relative_lift"] == pytest.approx(9.0)


def test_equal_arms_have_no_lift_and_p_value_one() -> None:
    treatment = _results([50, 50], (5000, 250), (5000, 250))["variants"][1]

    assert treatment["absolute_lift"] == 0
    assert treatment["relative_lift"] == 0
    assert treatment["p_value"] == 1.0
    assert treatment["chance_to_beat_control"] == pytest.approx(0.5, abs=1e-9)
    lo, hi = treatment["absolute_lift_ci"]
    assert lo == pytest.approx(-hi)


def test_lift_intervals_contain_the_lift() -> None:
    for arms in [((28, 14), (30, 16)), ((10, 0), (10, 10)), ((10_000, 9_999), (10_000, 10_000))]:
        treatment = _results([50, 50], *arms)["variants"][1]
        lo, hi = treatment["absolute_lift_ci"]
        assert -1 <= lo <= treatment["absolute_lift"] <= hi <= 1


# --- chance to beat control -------------------------------------------------------------------


def test_chance_to_beat_matches_known_exact_values() -> None:
    assert chance_to_beat(1, 1, 1, 1) == pytest.approx(0.5, rel=1e-12)
    # Beta(2, 1) vs Beta(1, 2): P = 5/6.
    assert chance_to_beat(2, 1, 1, 2) == pytest.approx(5 / 6, rel=1e-12)
    # Beta(a, 1) vs Beta(c, 1): P = a / (a + c), here with ten million conversions.
    assert chance_to_beat(10_000_000, 1, 9_999_995, 1) == pytest.approx(
        10_000_000 / 19_999_995, rel=1e-6
    )
    assert integrated_chance(10_000_000, 1, 9_999_995, 1) == pytest.approx(
        10_000_000 / 19_999_995, rel=1e-9
    )


@pytest.mark.parametrize(
    "params",
    [
        (20_001, 180_001, 19_501, 180_501),
        (19_001, 1_000, 18_801, 1_200),
        (501, 9_501, 451, 9_551),
        (17, 15, 15, 15),
        (1, 101, 1, 51),
        (3, 1_000_000, 5, 1_000_000),
        (2_701, 997_301, 301, 99_701),
    ],
)
def test_closed_form_and_integration_agree_where_both_run(params: tuple[int, ...]) -> None:
    a_t, b_t, a_c, b_c = params
    assert min(params) <= CLOSED_FORM_MAX_TERMS  # chance_to_beat takes the closed form here

    assert chance_to_beat(a_t, b_t, a_c, b_c) == pytest.approx(
        integrated_chance(a_t, b_t, a_c, b_c), rel=1e-8
    )


def test_closed_form_and_integration_agree_at_two_million_exposures() -> None:
    # 15,000 conversions keep the closed form within reach at two million exposures each.
    a_t, b_t = 1 + 15_000, 1 + 2_000_000 - 15_000
    a_c, b_c = 1 + 14_700, 1 + 2_000_000 - 14_700

    closed = chance_to_beat(a_t, b_t, a_c, b_c)
    assert closed == pytest.approx(integrated_chance(a_t, b_t, a_c, b_c), rel=1e-8)
    assert 0.9 < closed < 1


@pytest.mark.parametrize(
    "counts",
    [
        ((2_000_000, 100_000), (2_000_000, 101_000)),
        ((2_000_000, 1_000_000), (2_000_000, 999_000)),
        ((10_000_000, 5_000_000), (9_000_000, 4_500_900)),
        ((1_000_000, 300_000), (3_000_000, 901_000)),
    ],
)
def test_chance_to_beat_at_millions_is_consistent_under_swap_and_flip(
    counts: tuple[tuple[int, int], tuple[int, int]],
) -> None:
    (n_c, x_c), (n_t, x_t) = counts
    a_c, b_c, a_t, b_t = 1 + x_c, 1 + n_c - x_c, 1 + x_t, 1 + n_t - x_t
    assert min(a_c, b_c, a_t, b_t) > CLOSED_FORM_MAX_TERMS  # the integration path

    forward = chance_to_beat(a_t, b_t, a_c, b_c)
    # Ties have probability 0, so the two orders add to 1.
    assert forward + chance_to_beat(a_c, b_c, a_t, b_t) == pytest.approx(1, abs=1e-9)
    # 1 - X ~ Beta(b, a): the same probability from the mirrored densities, on other nodes.
    assert forward == pytest.approx(chance_to_beat(b_c, a_c, b_t, a_t), rel=1e-9, abs=1e-15)
    assert 0 < forward < 1


def test_chance_to_beat_keeps_small_probabilities_precise() -> None:
    # The cheapest sum here is the complement; 1 - (about 1) must not be what is returned.
    params = (45_001, 9_955_001, 5_001, 995_001)
    p = chance_to_beat(*params)

    assert 0 < p < 1e-9
    assert p == pytest.approx(integrated_chance(*params), rel=1e-6)
    assert p + chance_to_beat(5_001, 995_001, 45_001, 9_955_001) == pytest.approx(1, abs=1e-9)


# --- sample ratio mismatch --------------------------------------------------------------------


def test_chi2_survival_function_matches_closed_forms() -> None:
    for x in (0.01, 0.5, 3.0, 16.0, 60.0):
        # df = 1: erfc(sqrt(x / 2)); df = 2: exp(-x / 2).
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10)
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-10)
        # df = 4: exp(-x / 2) (1 + x / 2).
        assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-10)
    assert chi2_sf(0.0, 3) == 1.0


def test_three_variant_srm_against_the_configured_split() -> None:
    weights = [50.0, 25.0, 25.0]
    arms = ((5_000, 500), (2_700, 270), (2_300, 230))
    total = sum(n for n, _ in arms)
    expected = [total * w / 100 for w in weights]
    chi2 = sum((n - e) ** 2 / e for (n, _), e in zip(arms, expected, strict=True))

    srm = _results(weights, *arms)["srm"]

    # df = 2: the survival function is exp(-x / 2).
    assert srm["p_value"] == pytest.approx(math.exp(-chi2 / 2), rel=1e-10)
    assert srm["p_value"] < 0.001
    assert srm["warning"] is True


def test_three_variant_srm_on_the_configured_split_is_quiet() -> None:
    srm = _results([50, 25, 25], (5_000, 500), (2_500, 250), (2_500, 260))["srm"]

    assert srm == {"p_value": 1.0, "warning": False}


def test_srm_warning_needs_eight_exposures_per_variant() -> None:
    srm = _results([1, 99], (7, 0), (1, 0))["srm"]

    assert srm["p_value"] < 0.001
    assert srm["warning"] is False


def test_srm_leaves_out_variants_with_weight_zero() -> None:
    with_paused = _results([50, 50, 0], (5_200, 520), (4_800, 500), (0, 0))["srm"]
    without = _results([50, 50], (5_200, 520), (4_800, 500))["srm"]

    assert with_paused == without
    assert with_paused["warning"] is True


@pytest.mark.parametrize("weights", [[100, 0], [0, 0]])
def test_srm_needs_two_weighted_variants(weights: list[float]) -> None:
    assert _results(weights, (100, 1), (100, 1))["srm"] == {"p_value": None, "warning": False}


def test_mismatched_weights_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        experiment_results([50, 50], [("control", 1, 0)])


# --- properties -------------------------------------------------------------------------------


@st.composite
def _experiments(draw: st.DrawFn) -> tuple[list[float], list[tuple[str, int, int]]]:
    k = draw(st.integers(min_value=1, max_value=4))
    weights = draw(st.lists(st.integers(0, 100), min_size=k, max_size=k))
    variants = []
    for i in range(k):
        exposures = draw(st.integers(0, 60))
        # Conversions may exceed exposures: the function must clamp, not fail.
        variants.append((f"v{i}", exposures, draw(st.integers(0, exposures + 3))))
    return [float(w) for w in weights], variants


@settings(max_examples=300, deadline=None)
@given(_experiments())
def test_results_never_raise_and_probabilities_stay_in_unit_interval(
    experiment: tuple[list[float], list[tuple[str, int, int]]],
) -> None:
    weights, variants = experiment
    result = experiment_results(weights, variants)

    for row in result["variants"]:
        assert row["conversions"] <= row["exposures"]
        for field in ("conversion_rate", "p_value", "chance_to_beat_control"):
            value = row[field]
            assert value is None or 0.0 <= value <= 1.0, (field, value)
        for field in ("absolute_lift_ci", "relative_lift_ci"):
            interval = row[field]
            assert interval is None or (
                interval[0] <= interval[1] and all(map(math.isfinite, interval))
            )
    p = result["srm"]["p_value"]
    assert p is None or 0.0 <= p <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 300),
)
def test_chance_to_beat_and_its_reverse_add_to_one(x_t: int, y_t: int, x_c: int, y_c: int) -> None:
    forward = chance_to_beat(1 + x_t, 1 + y_t, 1 + x_c, 1 + y_c)
    backward = chance_to_beat(1 + x_c, 1 + y_c, 1 + x_t, 1 + y_t)

    assert 0.0 <= forward <= 1.0
    assert forward + backward == pytest.approx(1.0, abs=1e-9)
