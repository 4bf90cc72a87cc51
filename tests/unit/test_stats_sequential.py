"""Analysis settings, always-valid (sequential) figures, corrections, value goals and the sliced
form of the results: every field of stats-vectors-2.json, the null rules, and properties."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.domain.stats import (
    CORRECTIONS,
    DEFAULT_ALPHA,
    DEFAULT_SEQUENTIAL_TUNING,
    Z95,
    Analysis,
    adjust_p_values,
    benjamini_hochberg,
    experiment_results,
    holm_bonferroni,
    normal_quantile,
    results_steps,
    sequential_half_width,
    sequential_p_value,
    value_moments,
    welch_dof,
)
from tests.support import shared

ROW_FIELDS = {
    "key",
    "exposures",
    "conversions",
    "conversion_rate",
    "absolute_lift",
    "absolute_lift_ci",
    "relative_lift",
    "relative_lift_ci",
    "p_value",
    "p_value_adjusted",
    "chance_to_beat_control",
    "sequential",
    "value",
}
SEQUENTIAL_FIELDS = {"absolute_lift_ci", "relative_lift_ci", "p_value", "p_value_adjusted"}
VALUE_FIELDS = {
    "sum",
    "mean",
    "variance",
    "absolute_lift",
    "absolute_lift_ci",
    "relative_lift",
    "relative_lift_ci",
    "p_value",
    "sequential",
    "p_value_adjusted",
}


VECTORS: list[dict[str, Any]] = json.loads(shared("stats-vectors-2.json").read_text())["vectors"]


def _run(vector: dict[str, Any]) -> dict[str, Any]:
    arms = vector["variants"]
    values = None
    if vector["kind"] == "value":
        values = [(arm["sum"], arm["sum_squares"]) for arm in arms]
    # The value vectors give no conversion counts: their conversion figures are not checked.
    variants = [(arm["key"], arm["exposures"], arm.get("conversions", 0)) for arm in arms]
    return experiment_results(
        [100 / len(arms)] * len(arms), variants, Analysis(**vector["analysis"]), values
    )


def _assert_same(expected: Any, actual: Any, where: str) -> None:
    if expected is None or isinstance(expected, (bool, str)):
        assert actual == expected, where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for field, value in expected.items():
            if field != "welch_dof":  # a helper figure, not a response field
                assert field in actual, f"{where}.{field}"
                _assert_same(value, actual[field], f"{where}.{field}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _assert_same(e, a, f"{where}[{i}]")
    elif isinstance(expected, int):
        assert actual == expected and isinstance(actual, int), where
    else:
        assert isinstance(actual, float), where
        # An exact 0 is compared absolutely: vector G's fixed p-value is 0.0 where the z-test's
        # erfc gives 1.8e-81 (the figures were made with 1 - Phi(z), which rounds to 0).
        assert math.isclose(
            actual, expected, rel_tol=1e-6, abs_tol=1e-12 if expected == 0 else 0
        ), f"{where}: {actual} != {expected}"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_field_matches_the_shared_vectors(vector: dict[str, Any]) -> None:
    result = _run(vector)

    assert len(result["variants"]) == len(vector["variants"])
    for expected, actual in zip(vector["variants"], result["variants"], strict=True):
        expected = {k: v for k, v in expected.items() if k not in ("sum", "sum_squares")}
        _assert_same(expected, actual, f"{vector['name']} {expected['key']}")


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["kind"] == "value"], ids=lambda v: v["name"]
)
def test_welch_dof_matches_the_shared_vectors(vector: dict[str, Any]) -> None:
    control, treatment = vector["variants"]

    dof = welch_dof(
        control["value"]["variance"],
        control["exposures"],
        treatment["value"]["variance"],
        treatment["exposures"],
    )

    assert dof == pytest.approx(treatment["value"]["welch_dof"], rel=1e-9)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rows_have_exactly_the_fields_of_the_contract(vector: dict[str, Any]) -> None:
    rows = _run(vector)["variants"]

    for index, row in enumerate(rows):
        assert set(row) == ROW_FIELDS
        if index == 0:
            assert row["sequential"] is None and row["p_value_adjusted"] is None
        else:
            assert set(row["sequential"]) == SEQUENTIAL_FIELDS
        if vector["kind"] == "value":
            assert set(row["value"]) == VALUE_FIELDS
            if index > 0:
                assert set(row["value"]["sequential"]) == SEQUENTIAL_FIELDS
        else:
            assert row["value"] is None


# --- analysis settings ------------------------------------------------------------------------


def test_analysis_defaults_are_those_of_the_contract() -> None:
    assert Analysis() == Analysis(alpha=0.05, sequential_tuning=5000, correction=None)
    assert (DEFAULT_ALPHA, DEFAULT_SEQUENTIAL_TUNING) == (0.05, 5000)
    assert CORRECTIONS == ("holm-bonferroni", "benjamini-hochberg")


@pytest.mark.parametrize(
    "settings_",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"alpha": math.nan},
        {"sequential_tuning": 0},
        {"correction": "bonferroni"},
    ],
)
def test_analysis_refuses_settings_the_formulas_cannot_use(settings_: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Analysis(**settings_)


def test_default_analysis_is_what_the_existing_callers_get() -> None:
    variants = [("control", 10_000, 1_000), ("treatment", 10_000, 1_100)]

    assert experiment_results([50, 50], variants) == experiment_results(
        [50, 50], variants, Analysis(), None
    )


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.2])
def test_fixed_intervals_follow_alpha(alpha: float) -> None:
    variants = [("control", 10_000, 1_000), ("treatment", 10_000, 1_100)]
    at_95 = experiment_results([50, 50], variants)["variants"][1]
    other = experiment_results([50, 50], variants, Analysis(alpha=alpha))["variants"][1]
    z = normal_quantile(alpha / 2, upper=True)

    # The delta-method interval is the lift +- z se: its width scales with z exactly.
    lo, hi = other["relative_lift_ci"]
    lo_95, hi_95 = at_95["relative_lift_ci"]
    assert (hi - lo) / (hi_95 - lo_95) == pytest.approx(z / Z95, rel=1e-12)
    assert other["p_value"] == at_95["p_value"]
    assert other["chance_to_beat_control"] == at_95["chance_to_beat_control"]


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_newcombe_interval_without_conversions_is_the_wilson_upper_limits(alpha: float) -> None:
    # With 0 conversions a Wilson interval is [0, z^2 / (n + z^2)], so Newcombe's is
    # [-z^2 / (n_c + z^2), z^2 / (n_t + z^2)].
    z2 = normal_quantile(alpha / 2, upper=True) ** 2
    variants = [("control", 400, 0), ("treatment", 100, 0)]

    row = experiment_results([50, 50], variants, Analysis(alpha=alpha))["variants"][1]

    assert row["absolute_lift_ci"] == pytest.approx([-z2 / (400 + z2), z2 / (100 + z2)], rel=1e-12)


# --- sequential figures -----------------------------------------------------------------------


def test_sequential_figures_use_the_stated_formulas() -> None:
    # rho^2 = (-2 ln a + ln(1 - 2 ln a)) / N*; at N = N* and alpha = 0.05, N rho^2 = 7.6805...
    alpha, n = 0.05, 5000
    nr2 = -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))

    half = sequential_half_width(0.01, n, alpha, 5000)
    p = sequential_p_value(2.5, n, alpha, 5000)

    assert half == pytest.approx(
        0.01 * math.sqrt(2 * (nr2 + 1) / nr2 * math.log(math.sqrt(nr2 + 1) / alpha)), rel=1e-14
    )
    assert p == pytest.approx(
        math.sqrt(nr2 + 1) * math.exp(-nr2 * 2.5**2 / (2 * (nr2 + 1))), rel=1e-13
    )
    assert sequential_p_value(0.0, n, alpha, 5000) == 1.0


def test_sequential_p_value_keeps_tiny_values_instead_of_underflowing_to_zero() -> None:
    # Vector G has 6.3e-76; a z of 60 at large N is around 1e-700 in logs, still 0 in floats,
    # while 30 must stay a positive number.
    assert 0.0 < sequential_p_value(30.0, 20_000, 0.05, 5000) < 1e-150


def test_sequential_figures_of_an_arm_without_exposures_are_null() -> None:
    row = experiment_results([50, 50], [("c", 0, 0), ("t", 500, 50)])["variants"][1]

    assert row["sequential"] == dict.fromkeys(SEQUENTIAL_FIELDS)


@pytest.mark.parametrize(
    ("control", "treatment"),
    [((1000, 0), (1000, 0)), ((1000, 1000), (1000, 1000)), ((50, 50), (70, 0))],
    ids=["all fail", "all convert", "opposite certainties"],
)
def test_sequential_figures_are_null_when_their_standard_error_is_zero(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    variants = [("c", *control), ("t", *treatment)]

    sequential = experiment_results([50, 50], variants)["variants"][1]["sequential"]

    assert sequential["absolute_lift_ci"] is None
    assert sequential["p_value"] is None
    assert sequential["relative_lift_ci"] is None


def test_sequential_relative_interval_is_null_when_the_control_rate_is_zero() -> None:
    row = experiment_results([50, 50], [("c", 1000, 0), ("t", 1000, 10)])["variants"][1]

    assert row["sequential"]["relative_lift_ci"] is None
    lo, hi = row["sequential"]["absolute_lift_ci"]
    assert lo < 0.01 < hi
    assert 0 < row["sequential"]["p_value"] <= 1


def test_sequential_interval_narrows_as_exposures_grow_at_the_same_rates() -> None:
    widths = []
    for n in (1_000, 5_000, 50_000, 500_000):
        row = experiment_results([50, 50], [("c", n, n // 10), ("t", n, n // 9)])["variants"][1]
        lo, hi = row["sequential"]["absolute_lift_ci"]
        widths.append(hi - lo)

    assert widths == sorted(widths, reverse=True)


# --- corrections ------------------------------------------------------------------------------


def test_holm_matches_a_hand_computed_example() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max.
    assert holm_bonferroni([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_benjamini_hochberg_matches_a_hand_computed_example() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4/1, 4/2, 4/3, 4/4: 0.02, 0.02, 0.04, 0.04 -> running
    # min from the top.
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_corrections_are_capped_at_one() -> None:
    assert holm_bonferroni([0.6, 0.7]) == [1.0, 1.0]
    assert benjamini_hochberg([0.6, 0.7]) == [0.7, 0.7]


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_undefined_p_values_stay_null_and_are_left_out_of_the_family(correction: str) -> None:
    adjusted = adjust_p_values([None, 0.01, None, 0.04], correction)

    assert adjusted[0] is None and adjusted[2] is None
    # A family of two, not four.
    expected = holm_bonferroni if correction == "holm-bonferroni" else benjamini_hochberg
    assert adjusted[1::2] == expected([0.01, 0.04])


def test_no_correction_leaves_every_adjusted_p_value_null() -> None:
    assert adjust_p_values([0.01, None, 0.5], None) == [None, None, None]


def test_an_unknown_correction_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        adjust_p_values([0.01], "sidak")


def test_a_variant_without_exposures_drops_out_of_the_corrected_family() -> None:
    variants = [("c", 10_000, 1_000), ("b", 10_000, 1_100), ("paused", 0, 0), ("d", 10_000, 1_040)]

    rows = experiment_results([25] * 4, variants, Analysis(correction="holm-bonferroni"))[
        "variants"
    ]

    assert rows[2]["p_value_adjusted"] is None
    assert rows[2]["sequential"]["p_value_adjusted"] is None
    assert [rows[1]["p_value_adjusted"], rows[3]["p_value_adjusted"]] == holm_bonferroni(
        [rows[1]["p_value"], rows[3]["p_value"]]
    )


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_value_p_values_are_corrected_as_families_of_their_own(correction: str) -> None:
    variants = [("c", 400, 40), ("b", 400, 52), ("d", 400, 47)]
    values = [(4_000.0, 300_000.0), (5_200.0, 400_000.0), (4_100.0, 290_000.0)]

    rows = experiment_results([34, 33, 33], variants, Analysis(correction=correction), values)[
        "variants"
    ]

    for family in (
        [row for row in rows[1:]],
        [row["sequential"] for row in rows[1:]],
        [row["value"] for row in rows[1:]],
        [row["value"]["sequential"] for row in rows[1:]],
    ):
        raw = [figures["p_value"] for figures in family]
        assert [figures["p_value_adjusted"] for figures in family] == adjust_p_values(
            raw, correction
        )
    assert rows[0]["value"]["p_value_adjusted"] is None


P_VALUES = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(P_VALUES)
def test_holm_adjusted_p_values_are_never_below_the_raw_ones(p_values: list[float]) -> None:
    for raw, adjusted in zip(p_values, holm_bonferroni(p_values), strict=True):
        assert raw <= adjusted <= 1.0


@settings(max_examples=300, deadline=None)
@given(P_VALUES)
def test_bh_adjusted_p_values_are_never_below_the_raw_ones(p_values: list[float]) -> None:
    for raw, adjusted in zip(p_values, benjamini_hochberg(p_values), strict=True):
        assert raw <= adjusted <= 1.0


@settings(max_examples=300, deadline=None)
@given(P_VALUES)
def test_holm_is_never_below_benjamini_hochberg(p_values: list[float]) -> None:
    for holm, bh in zip(holm_bonferroni(p_values), benjamini_hochberg(p_values), strict=True):
        assert holm >= bh


@settings(max_examples=300, deadline=None)
@given(P_VALUES, st.sampled_from(CORRECTIONS), st.randoms(use_true_random=False))
def test_corrections_keep_the_order_and_ignore_the_listing_order(
    p_values: list[float], correction: str, random: Any
) -> None:
    adjusted = adjust_p_values(p_values, correction)
    order = list(range(len(p_values)))
    random.shuffle(order)

    shuffled = adjust_p_values([p_values[i] for i in order], correction)

    assert shuffled == [adjusted[i] for i in order]
    for i, a in enumerate(p_values):
        for j, b in enumerate(p_values):
            if a <= b:
                assert adjusted[i] <= adjusted[j]  # type: ignore[operator]


# --- value goals ------------------------------------------------------------------------------


def test_variance_is_exact_where_the_textbook_formula_cancels() -> None:
    # Values 2^40, 2^40, 2^40 + 2^20: S and Q are exact floats, the variance is 2^40 / 3, but
    # S^2 / 3 is a float of 3.3e24 whose rounding (2^30) is 0.1% of Q - S^2 / 3.
    a, d = 2.0**40, 2.0**20
    total, squares = 3 * a + d, 2 * a * a + (a + d) ** 2

    mean, variance = value_moments(3, total, squares)

    assert mean == pytest.approx(a + d / 3, rel=1e-15)
    assert variance == pytest.approx(2.0**40 / 3, rel=1e-15)


def test_inconsistent_sums_give_a_zero_variance_not_a_negative_one() -> None:
    # Q below S^2 / n cannot come from real values; the figure is clamped, not failed.
    assert value_moments(10, 100.0, 999.0) == (10.0, 0.0)


@pytest.mark.parametrize(
    ("n", "expected"), [(0, (None, None)), (1, (7.5, None)), (2, (3.75, 3.75**2 * 2))]
)
def test_value_moments_need_one_user_for_a_mean_and_two_for_a_variance(
    n: int, expected: tuple[float | None, float | None]
) -> None:
    # n = 2 with sum 7.5: values 7.5 and 0 (squares 56.25), variance 2 * 3.75^2.
    assert value_moments(n, 7.5, 56.25) == expected


def test_welch_dof_reduces_to_the_pooled_count_for_equal_samples() -> None:
    # Equal variances and sizes: (2 v/n)^2 / (2 (v/n)^2 / (n - 1)) = 2 (n - 1).
    assert welch_dof(4.0, 50, 4.0, 50) == pytest.approx(98.0, rel=1e-15)
    # One variance zero: all the uncertainty is the other sample's, with n - 1 degrees.
    assert welch_dof(0.0, 10, 3.0, 25) == pytest.approx(24.0, rel=1e-15)


@pytest.mark.parametrize(("va", "na", "vb", "nb"), [(0.0, 10, 0.0, 10), (1.0, 1, 1.0, 10)])
def test_welch_dof_is_undefined_without_variance_or_with_a_single_user(
    va: float, na: int, vb: float, nb: int
) -> None:
    assert welch_dof(va, na, vb, nb) is None


def _value_row(
    control: tuple[int, float, float], treatment: tuple[int, float, float]
) -> dict[str, Any]:
    variants = [("c", control[0], 0), ("t", treatment[0], 0)]
    values = [control[1:], treatment[1:]]
    return experiment_results([50, 50], variants, values=values)["variants"]


def test_a_goal_without_values_has_a_null_value_block() -> None:
    rows = experiment_results([50, 50], [("c", 100, 10), ("t", 100, 12)])["variants"]

    assert all(row["value"] is None for row in rows)


def test_control_value_block_has_its_moments_and_no_comparison() -> None:
    control = _value_row((4, 10.0, 30.0), (5, 20.0, 100.0))[0]["value"]

    assert (control["sum"], control["mean"], control["variance"]) == (10.0, 2.5, 5 / 3)
    assert control["sequential"] is None and control["p_value_adjusted"] is None
    assert all(control[field] is None for field in ("absolute_lift", "absolute_lift_ci", "p_value"))


def test_value_comparisons_need_two_users_an_arm_for_intervals() -> None:
    value = _value_row((1, 5.0, 25.0), (10, 80.0, 1000.0))[1]["value"]

    assert value["absolute_lift"] == 3.0
    assert value["relative_lift"] == pytest.approx(0.6)
    assert value["absolute_lift_ci"] is None and value["p_value"] is None
    assert value["relative_lift_ci"] is None
    assert value["sequential"] == dict.fromkeys(SEQUENTIAL_FIELDS)


def test_value_arm_without_exposures_has_no_mean_and_no_comparison() -> None:
    rows = _value_row((0, 0.0, 0.0), (10, 80.0, 1000.0))

    assert rows[0]["value"]["mean"] is None
    assert rows[1]["value"]["absolute_lift"] is None
    assert rows[1]["value"]["mean"] == 8.0


def test_value_relative_lift_is_null_when_the_control_mean_is_zero() -> None:
    value = _value_row((10, 0.0, 40.0), (10, 15.0, 80.0))[1]["value"]

    assert value["relative_lift"] is None and value["relative_lift_ci"] is None
    assert value["absolute_lift"] == 1.5
    assert value["absolute_lift_ci"] is not None and value["p_value"] is not None


def test_value_relative_lift_divides_by_the_magnitude_of_a_negative_control_mean() -> None:
    # Means -2 and -1: the treatment is higher by 1, half the control's magnitude: +50%.
    value = _value_row((10, -20.0, 100.0), (10, -10.0, 100.0))[1]["value"]

    assert value["relative_lift"] == pytest.approx(0.5)
    lo, hi = value["relative_lift_ci"]
    assert lo < 0.5 < hi


def test_identical_values_everywhere_leave_nothing_to_test() -> None:
    # Every user worth 3 in both arms: variances 0, the t statistic is 0 / 0.
    value = _value_row((10, 30.0, 90.0), (20, 60.0, 180.0))[1]["value"]

    assert value["variance"] == 0.0
    assert value["absolute_lift"] == 0.0
    assert value["absolute_lift_ci"] is None and value["p_value"] is None
    assert value["sequential"]["absolute_lift_ci"] is None
    assert value["sequential"]["p_value"] is None


def test_value_figures_at_a_trillion_a_user_stay_finite_and_centred() -> None:
    # A million users a side, each worth about 1e12: sums of 1e18 and squares of 1e30.
    n = 1_000_000
    control = (n, n * 1e12, n * 1e24 * (1 + 1e-6))
    treatment = (n, n * 1.001e12, n * 1.001e24 * 1.001e0 * (1 + 1e-6))

    value = _value_row(control, treatment)[1]["value"]

    assert value["absolute_lift"] == pytest.approx(1e9, rel=1e-9)
    lo, hi = value["absolute_lift_ci"]
    assert lo < 1e9 < hi and all(map(math.isfinite, (lo, hi)))
    assert 0.0 <= value["p_value"] <= 1.0


def test_a_tiny_control_mean_gives_figures_not_an_error() -> None:
    # A value may be any finite number: a control mean of 1e-200 once made mean^4 underflow to
    # 0 in the delta-method standard error (a division by zero, so a 500).
    value = _value_row((10, 1e-199, 1e-397), (10, 20.0, 100.0))[1]["value"]

    assert value["absolute_lift"] == pytest.approx(2.0)
    assert value["relative_lift"] == pytest.approx(2e200)
    assert value["relative_lift_ci"] is not None and all(
        map(math.isfinite, value["relative_lift_ci"])
    )


def test_a_relative_lift_beyond_the_floating_range_is_null() -> None:
    value = _value_row((10, 1e-300, 0.0), (10, 1e10, 1e20))[1]["value"]

    assert value["relative_lift"] is None and value["relative_lift_ci"] is None
    assert value["absolute_lift"] == pytest.approx(1e9)


def test_tiny_variances_still_give_welch_intervals() -> None:
    # Variances of 1e-170 square to 0 in the Welch-Satterthwaite denominator unless scaled.
    assert welch_dof(1e-170, 10, 1e-170, 10) == pytest.approx(18.0, rel=1e-14)
    value = _value_row((10, 1e-84, 2e-168), (10, 2e-84, 5e-168))[1]["value"]

    assert value["absolute_lift_ci"] is not None and value["p_value"] is not None


def test_mismatched_value_sums_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        experiment_results([50, 50], [("c", 1, 0), ("t", 1, 0)], values=[(1.0, 1.0)])


# --- the sliced form --------------------------------------------------------------------------


def test_large_experiments_are_cut_into_many_slices() -> None:
    # 20,000-term closed-form sums: each is cut, so one variant alone takes dozens of steps.
    variants = [("c", 200_000, 19_000), ("t", 200_000, 19_500)]
    steps = results_steps([50, 50], variants)

    count = sum(1 for _ in steps)

    assert count > 30
    assert steps.result == experiment_results([50, 50], variants)


def test_result_is_unavailable_before_the_last_slice() -> None:
    steps = results_steps([50, 50], [("c", 100, 10), ("t", 100, 12)])

    with pytest.raises(RuntimeError):
        _ = steps.result
    next(steps)
    with pytest.raises(RuntimeError):
        _ = steps.result


def test_the_stop_of_the_iteration_carries_the_result_too() -> None:
    steps = results_steps([50, 50], [("c", 100, 10), ("t", 100, 12)])
    expected = experiment_results([50, 50], [("c", 100, 10), ("t", 100, 12)])

    while True:
        try:
            next(steps)
        except StopIteration as done:
            assert done.value == expected
            break
    # A finished computation keeps answering the same.
    with pytest.raises(StopIteration) as again:
        next(steps)
    assert again.value.value == expected
    assert steps.run() == expected


def test_arguments_are_checked_before_the_first_slice() -> None:
    with pytest.raises(ValueError):
        results_steps([50], [("c", 1, 0), ("t", 1, 0)])


# --- properties -------------------------------------------------------------------------------

ANALYSES = st.builds(
    Analysis,
    alpha=st.floats(min_value=1e-4, max_value=0.2),
    sequential_tuning=st.integers(100, 1_000_000),
    correction=st.sampled_from([None, *CORRECTIONS]),
)


@st.composite
def _arms(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(1, 10**7))
    return n, draw(st.integers(0, n))


def _contains(outer: list[float], inner: list[float]) -> bool:
    slack = 1e-12 * max(1.0, *map(abs, inner))
    return outer[0] <= inner[0] + slack and inner[1] - slack <= outer[1]


@settings(max_examples=400, deadline=None)
@given(_arms(), _arms(), ANALYSES)
def test_sequential_interval_contains_the_fixed_wald_interval(
    control: tuple[int, int], treatment: tuple[int, int], analysis: Analysis
) -> None:
    (n_c, x_c), (n_t, x_t) = control, treatment
    p_c, p_t = x_c / n_c, x_t / n_t
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    z = normal_quantile(analysis.alpha / 2, upper=True)
    row = experiment_results([50, 50], [("c", n_c, x_c), ("t", n_t, x_t)], analysis)["variants"][1]
    sequential = row["sequential"]

    if se > 0:
        lift = p_t - p_c
        assert _contains(sequential["absolute_lift_ci"], [lift - z * se, lift + z * se])
    # The fixed relative interval is the delta-method Wald interval at the same alpha.
    if row["relative_lift_ci"] is not None and sequential["relative_lift_ci"] is not None:
        assert _contains(sequential["relative_lift_ci"], row["relative_lift_ci"])
    for p in (sequential["p_value"], sequential["p_value_adjusted"], row["p_value_adjusted"]):
        assert p is None or 0.0 <= p <= 1.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40),
    st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40),
    ANALYSES,
)
def test_value_sequential_interval_contains_the_fixed_wald_interval(
    control: list[float], treatment: list[float], analysis: Analysis
) -> None:
    arms = [(len(v), math.fsum(v), math.fsum(x * x for x in v)) for v in (control, treatment)]
    rows = experiment_results(
        [50, 50],
        [("c", arms[0][0], 0), ("t", arms[1][0], 0)],
        analysis,
        [(s, q) for _, s, q in arms],
    )["variants"]
    value = rows[1]["value"]
    se = math.sqrt(sum(rows[i]["value"]["variance"] / arms[i][0] for i in (0, 1)))
    z = normal_quantile(analysis.alpha / 2, upper=True)

    if se > 0:
        lift = value["absolute_lift"]
        assert _contains(value["sequential"]["absolute_lift_ci"], [lift - z * se, lift + z * se])
        # Welch's t interval is wider than the normal one at the same alpha.
        assert _contains(value["absolute_lift_ci"], [lift - z * se, lift + z * se])
        assert 0.0 <= value["p_value"] <= 1.0


@st.composite
def _experiments(
    draw: st.DrawFn,
) -> tuple[list[float], list[tuple[str, int, int]], list[tuple[float, float]] | None]:
    k = draw(st.integers(2, 6))
    variants = []
    for i in range(k):
        n = draw(st.integers(0, 300_000))
        variants.append((f"v{i}", n, draw(st.integers(0, n))))
    values = None
    if draw(st.booleans()):
        values = [
            (s := draw(st.floats(-1e9, 1e9)), s * s / max(1, n) + draw(st.floats(0, 1e12)))
            for _, n, _ in variants
        ]
    return [100 / k] * k, variants, values


@settings(max_examples=60, deadline=None)
@given(_experiments(), ANALYSES)
def test_sliced_form_gives_exactly_the_synchronous_result(
    experiment: tuple[list[float], list[tuple[str, int, int]], list[tuple[float, float]] | None],
    analysis: Analysis,
) -> None:
    weights, variants, values = experiment
    steps = results_steps(weights, variants, analysis, values)
    for _ in steps:
        pass

    assert steps.result == experiment_results(weights, variants, analysis, values)
