"""The normal quantile, Student's t and the regularized incomplete beta behind the intervals,
against closed forms and identities that owe nothing to the code under test, the shared
vectors, and properties."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.domain.stats import (
    Z95,
    normal_quantile,
    regularized_beta,
    student_t_cdf,
    student_t_quantile,
    student_t_sf,
    student_t_two_sided_p,
    student_t_upper_quantile,
)


def _shared(name: str) -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "shared" / name, here.parents[2] / "shared" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"shared/{name} not found beside the repository")


STUDENT_T: list[dict[str, Any]] = json.loads(_shared("stats-vectors-2.json").read_text())[
    "student_t"
]


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _normal_pdf(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


# --- normal quantile --------------------------------------------------------------------------


def test_normal_quantile_at_97_5_percent_is_the_familiar_z() -> None:
    assert normal_quantile(0.975) == pytest.approx(Z95, rel=1e-15)
    assert normal_quantile(0.025, upper=True) == pytest.approx(Z95, rel=1e-15)
    # Phi^-1(0.95) and Phi^-1(0.995), as printed in every table to 16 digits.
    assert normal_quantile(0.05, upper=True) == pytest.approx(1.6448536269514722, rel=1e-15)
    assert normal_quantile(0.005, upper=True) == pytest.approx(2.5758293035489004, rel=1e-15)


@pytest.mark.parametrize("p", [1e-300, 1e-100, 1e-20, 1e-9, 1e-3, 0.025, 0.2, 0.4999])
def test_normal_quantile_inverts_erfc_deep_into_the_tail(p: float) -> None:
    z = normal_quantile(p, upper=True)

    # A relative error e in z moves the tail by about z^2 e; erfc itself is exact to ~1e-15.
    assert _normal_sf(z) == pytest.approx(p, rel=1e-14 * max(1.0, z * z))
    assert normal_quantile(p) == -z


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, math.nan])
def test_normal_quantile_refuses_what_is_not_a_probability(p: float) -> None:
    with pytest.raises(ValueError):
        normal_quantile(p)


# --- Student's t: closed forms ----------------------------------------------------------------

T_POINTS = [1e-9, 1e-3, 0.3, 1.0, 1.7, 2.0, 3.5, 10.0, 100.0, 1e4, 1e8]


@pytest.mark.parametrize("t", T_POINTS)
def test_t_with_one_degree_of_freedom_is_cauchy(t: float) -> None:
    # P(T > t) = atan2(1, t) / pi, exact in both tails.
    assert student_t_sf(t, 1) == pytest.approx(math.atan2(1, t) / math.pi, rel=1e-13)
    assert student_t_cdf(-t, 1) == pytest.approx(math.atan2(1, t) / math.pi, rel=1e-13)
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-14)


@pytest.mark.parametrize("t", T_POINTS)
def test_t_with_two_degrees_of_freedom_has_its_closed_form(t: float) -> None:
    # P(T > t) = (1 - t / s) / 2 with s = sqrt(2 + t^2), rationalised: 1 / (s (s + t)).
    s = math.sqrt(2 + t * t)
    assert student_t_sf(t, 2) == pytest.approx(1 / (s * (s + t)), rel=1e-13)
    assert student_t_cdf(-t, 2) == pytest.approx(1 / (s * (s + t)), rel=1e-13)


@pytest.mark.parametrize("t", [0.0, 0.01, 0.5, 1.0, 2.0, 4.0, 9.0])
def test_t_with_three_and_four_degrees_of_freedom_has_its_closed_form(t: float) -> None:
    # Abramowitz and Stegun 26.7.3/26.7.4, evaluated where they are well conditioned (cdf >= 1/2).
    theta = math.atan(t / math.sqrt(3))
    three = 0.5 + (theta + math.sin(theta) * math.cos(theta)) / math.pi
    u = t * t / 4
    four = 0.5 + 0.375 * t / math.sqrt(1 + u) * (1 - t * t / (12 * (1 + u)))

    assert student_t_cdf(t, 3) == pytest.approx(three, rel=1e-13)
    assert student_t_cdf(t, 4) == pytest.approx(four, rel=1e-13)


@pytest.mark.parametrize("p", [1e-12, 1e-6, 0.001, 0.025, 0.1, 0.3, 0.49, 0.5000001, 0.9, 0.975])
def test_t_quantile_with_one_and_two_degrees_of_freedom_has_its_closed_form(p: float) -> None:
    # df = 1: tan(pi (p - 1/2)), or cot(pi p) in the lower tail where p - 1/2 would round.
    cauchy = -1 / math.tan(math.pi * p) if p < 0.25 else math.tan(math.pi * (p - 0.5))
    # df = 2: (2p - 1) / sqrt(2 p (1 - p)), exact in floating point for p >= 1/4.
    two = (2 * p - 1) / math.sqrt(2 * p * (1 - p))

    assert student_t_quantile(p, 1) == pytest.approx(cauchy, rel=1e-13)
    assert student_t_quantile(p, 2) == pytest.approx(two, rel=1e-12)


@pytest.mark.parametrize("p", [0.001, 0.01, 0.05, 0.2, 0.4, 0.6, 0.95, 0.999])
def test_t_quantile_with_four_degrees_of_freedom_has_its_closed_form(p: float) -> None:
    # Shaw (2006): with a = 4 p (1 - p),
    # t = sign(p - 1/2) 2 sqrt(cos(acos(sqrt a) / 3) / sqrt a - 1).
    a = 4 * p * (1 - p)
    closed = math.copysign(
        2 * math.sqrt(math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a) - 1), p - 0.5
    )

    assert student_t_quantile(p, 4) == pytest.approx(closed, rel=1e-11)


@pytest.mark.parametrize("row", STUDENT_T, ids=[f"df={r['dof']}" for r in STUDENT_T])
def test_t_matches_the_shared_vectors(row: dict[str, Any]) -> None:
    assert student_t_cdf(row["t"], row["dof"]) == pytest.approx(row["cdf"], rel=1e-12)
    assert student_t_quantile(0.975, row["dof"]) == pytest.approx(row["quantile_0.975"], rel=1e-12)


def test_two_sided_p_value_is_twice_the_tail() -> None:
    for df in (1.0, 7.5, 300.0, 1e6):
        for t in (-4.0, -0.2, 0.0, 1.3, 25.0):
            assert student_t_two_sided_p(t, df) == pytest.approx(
                min(1.0, 2 * student_t_sf(abs(t), df)), rel=1e-15
            )
    assert student_t_two_sided_p(0.0, 3.0) == 1.0
    assert student_t_two_sided_p(math.inf, 3.0) == 0.0


# --- Student's t: large degrees of freedom ----------------------------------------------------


@pytest.mark.parametrize("df", [1e5, 1e6, 1e8, 1e10, 1e12])
@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_t_tail_departs_from_the_normal_by_its_first_order_term(df: float, t: float) -> None:
    # P(T > t) - P(Z > t) = phi(t) (t^3 + t) / (4 df) + O(df^-2): checking the difference to 1%
    # at df = 1e12 checks the tail itself to about 1e-15 of its value.
    first_order = _normal_pdf(t) * (t**3 + t) / (4 * df)

    difference = student_t_sf(t, df) - _normal_sf(t)

    assert difference == pytest.approx(first_order, rel=max(1e-2, 30 * t**4 / df))


@pytest.mark.parametrize("df", [1e5, 1e7, 1e9, 1e11])
@pytest.mark.parametrize("q", [0.1, 0.025, 1e-4])
def test_t_quantile_departs_from_the_normal_by_its_first_order_term(df: float, q: float) -> None:
    # Cornish-Fisher: t_q - z_q = (z^3 + z) / (4 df) + O(df^-2).
    z = normal_quantile(q, upper=True)

    difference = student_t_upper_quantile(q, df) - z

    assert difference == pytest.approx((z**3 + z) / (4 * df), rel=max(1e-2, 30 * z**4 / df))


@pytest.mark.parametrize("t", [0.01, 1.0, 1.75, 2.0, 6.0, 30.0])
def test_t_tail_is_continuous_where_the_method_changes_with_df(t: float) -> None:
    # Below df = 1e4 a continued fraction, above an expansion in 1/df: the two must agree.
    below, above = student_t_sf(t, 1e4 * (1 - 1e-13)), student_t_sf(t, 1e4)
    assert below == pytest.approx(above, rel=1e-11)


def test_t_at_infinite_degrees_of_freedom_is_normal() -> None:
    assert student_t_sf(1.5, math.inf) == _normal_sf(1.5)
    assert student_t_upper_quantile(0.025, math.inf) == normal_quantile(0.025, upper=True)


def test_t_quantile_of_a_tail_beyond_the_floating_range_is_infinite() -> None:
    # df = 0.3: P(T > t) falls like t^-0.3, so a tail of 1e-100 lies beyond 1e300.
    assert student_t_upper_quantile(1e-100, 0.3) == math.inf
    assert math.isfinite(student_t_upper_quantile(1e-60, 0.3))


@pytest.mark.parametrize(
    "call",
    [
        lambda: student_t_sf(1.0, 0.0),
        lambda: student_t_cdf(1.0, -2.0),
        lambda: student_t_quantile(0.0, 3.0),
        lambda: student_t_quantile(0.5, math.nan),
        lambda: student_t_upper_quantile(1.0, 3.0),
    ],
)
def test_t_refuses_meaningless_arguments(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


# --- Student's t: properties ------------------------------------------------------------------

DOF = st.floats(min_value=-1.0, max_value=12.0).map(lambda e: 10.0**e)


@settings(max_examples=300, deadline=None)
@given(DOF, st.floats(-60, 60), st.floats(-60, 60))
def test_t_cdf_is_monotone(df: float, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)

    assert 0.0 <= student_t_cdf(lo, df) <= student_t_cdf(hi, df) <= 1.0


@settings(max_examples=300, deadline=None)
@given(DOF, st.floats(min_value=-3.0, max_value=1.7).map(lambda e: 10.0**e))
def test_t_upper_quantile_inverts_the_tail(df: float, t: float) -> None:
    tail = student_t_sf(t, df)
    if tail < 1e-300:
        return

    # The tail is exact to ~1e-15 relative, and the quantile's relative error is that over
    # t f(t) / P(T > t), which is at least about df for t beyond the centre.
    assert student_t_upper_quantile(tail, df) == pytest.approx(t, rel=1e-10)
    assert student_t_quantile(tail, df) == pytest.approx(-t, rel=1e-10)


@settings(max_examples=300, deadline=None)
@given(DOF, st.floats(-30, 30))
def test_t_quantile_inverts_the_cdf(df: float, x: float) -> None:
    p = student_t_cdf(x, df)
    if not 0 < p < 1:
        return
    # p carries an absolute rounding of about 1e-16, which moves x by that over the density;
    # the density comes from the tail, which keeps its digits where p is within 1e-12 of 1.
    h = 1e-4 * max(1.0, abs(x))
    density = (student_t_sf(abs(x) - h, df) - student_t_sf(abs(x) + h, df)) / (2 * h)
    if not density > 0:
        return

    assert student_t_quantile(p, df) == pytest.approx(x, rel=1e-9, abs=1e-9 + 3e-16 / density)


@settings(max_examples=300, deadline=None)
@given(DOF, st.floats(min_value=-12.0, max_value=-0.31).map(lambda e: 10.0**e))
def test_t_quantile_shrinks_towards_the_normal_as_df_grows(df: float, q: float) -> None:
    z = normal_quantile(q, upper=True)
    loose, tight = student_t_upper_quantile(q, df), student_t_upper_quantile(q, 2 * df)

    assert z <= tight * (1 + 1e-13)
    assert tight <= loose * (1 + 1e-13)
    assert student_t_upper_quantile(q, 1e15) == pytest.approx(z, rel=1e-12)


# --- regularized incomplete beta --------------------------------------------------------------


@pytest.mark.parametrize("x", [1e-12, 0.01, 0.3, 0.5, 0.77, 0.999])
@pytest.mark.parametrize("a", [0.5, 1.0, 3.7, 40.0, 2e5])
def test_incomplete_beta_with_a_unit_parameter_is_a_power(x: float, a: float) -> None:
    assert regularized_beta(a, 1.0, x) == pytest.approx(x**a, rel=1e-12, abs=1e-300)
    assert regularized_beta(1.0, a, x) == pytest.approx(-math.expm1(a * math.log1p(-x)), rel=1e-12)


@pytest.mark.parametrize(
    ("n", "k", "p"), [(10, 3, 0.2), (30, 10, 0.3), (60, 45, 0.7), (200, 1, 0.01)]
)
def test_incomplete_beta_is_the_binomial_upper_tail(n: int, k: int, p: float) -> None:
    # I_p(k, n - k + 1) = P(Binomial(n, p) >= k), summed exactly term by term.
    tail = math.fsum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    assert regularized_beta(k, n - k + 1, p) == pytest.approx(tail, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=-1.0, max_value=5.0).map(lambda e: 10.0**e),
    # Both parameters large is outside the documented precision (see regularized_beta).
    st.floats(min_value=-1.0, max_value=3.0).map(lambda e: 10.0**e),
    st.floats(min_value=0.001, max_value=0.999),
)
def test_incomplete_beta_is_symmetric_under_swapping_the_tails(
    a: float, b: float, x: float
) -> None:
    assert regularized_beta(a, b, x) + regularized_beta(b, a, 1 - x) == pytest.approx(1, abs=1e-11)


def test_incomplete_beta_of_equal_parameters_at_one_half_is_one_half() -> None:
    # Both parameters large is where the prefactor cancels most (see regularized_beta).
    for a in (0.5, 2.0, 33.3, 1e3, 1e4):
        assert regularized_beta(a, a, 0.5) == pytest.approx(0.5, rel=1e-12)
