"""Experiment statistics: per-variant lift, intervals, p-values and chance to beat the control,
always-valid (sequential) figures, multiple-comparison corrections, value goals, and the
sample-ratio-mismatch check. Pure Python, standard library only.

Results are computed on the server's event loop, so the work is also available cut into slices
(`results_steps`): iterating it runs one slice per step, none much longer than a quarter of a
millisecond, and the caller may yield to the loop between steps. `experiment_results` is the
same computation run to the end in one go.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from statistics import NormalDist
from typing import Any, Generic, TypeVar

Z95 = 1.959963984540054
DEFAULT_ALPHA = 0.05
DEFAULT_SEQUENTIAL_TUNING = 5000
CORRECTIONS = ("holm-bonferroni", "benjamini-hochberg")
SRM_ALPHA = 0.001
SRM_MIN_EXPOSURES = 8
# Above this many terms the closed-form sum costs more than a request should (about 8 ms at
# 20,000 terms, 16 ms at 50,000: each term is a log and an exp in Python), so chance_to_beat
# switches to numerical integration, which takes about 4 ms at any count and matches exact
# (mpmath) values to about 1e-13.
CLOSED_FORM_MAX_TERMS = 20_000

_GAMMA_EPS = 1e-15
_GAMMA_MAX_ITER = 10_000
_TINY = 1e-300
# The integration window ends where a density falls below exp(-_LOG_FLOOR) of its peak: the
# mass left out is then far below 1e-20 of the whole.
_LOG_FLOOR = 80.0
_BISECTIONS = 200
_PANEL_SD = 0.5
_GL_NODES = 16
_GL_GAP_NODES = 6
# Work per slice of the cooperative form, sized on a 2-core test machine so that a slice stays
# near a quarter of a millisecond: about 0.4 us a closed-form term, 9 us a plain panel, 60 us a
# panel of the overlap (each of its nodes also integrates the gap before it).
_TERMS_PER_SLICE = 512
_PANELS_PER_SLICE = 20
_OVERLAP_PANELS_PER_SLICE = 3

_BETA_EPS = 1e-15
_BETA_MAX_ITER = 10_000
# From here on Stirling's series with the terms of _STIRLING is exact to double precision; below
# it math.lgamma is, since the values are small.
_STIRLING_MIN = 10.0
# B_2k / (2k (2k - 1)) for k = 1..6: the next term is below 1e-15 at z >= 10.
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360)
_QUANTILE_MAX_ITER = 200
# From here on Student's t goes through an expansion for large df (see _t_two_sided_expansion):
# the continued fraction loses about 1e-16 * df of relative precision.
_T_EXPANSION_MIN_DOF = 1e4
# c_n = d_n Gamma(1/2 + 2n) / Gamma(1/2), d_n the coefficients of tau^2n in
# (sinh(tau/2) / (tau/2))^(-1/2), from ln(sinh(x)/x) = sum 2^2k B_2k x^2k / (2k (2k)!); exact.
_T_EXPANSION = (
    -1 / 64,
    21 / 8192,
    -671 / 524288,
    180323 / 134217728,
    -20898423 / 8589934592,
    7426362705 / 1099511627776,
)
# ln of the largest t the quantile reports as a number (about 1e304); beyond it, inf.
_LOG_MAX_T = 700.0
_NORMAL = NormalDist()

T = TypeVar("T")


@dataclass(frozen=True)
class Analysis:
    """An experiment's analysis settings: intervals at level 1 - alpha, the sequential tuning N*
    (the two arms' total exposures where the team expects to decide), and the correction applied
    across the non-control variants (None or one of CORRECTIONS).

    The API's narrower ranges (alpha <= 0.2, N* >= 100) are the validation's business; this only
    refuses values for which the formulas mean nothing."""

    alpha: float = DEFAULT_ALPHA
    sequential_tuning: int = DEFAULT_SEQUENTIAL_TUNING
    correction: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha!r}")
        if not self.sequential_tuning > 0:
            raise ValueError(f"sequential_tuning must be positive, not {self.sequential_tuning!r}")
        if self.correction is not None and self.correction not in CORRECTIONS:
            raise ValueError(f"unknown correction {self.correction!r}")


DEFAULT_ANALYSIS = Analysis()


class Steps(Generic[T]):
    """A computation cut into slices. Each step of the iteration runs one slice and yields None;
    once the iteration ends, `result` holds the outcome (also carried, as with a generator, by
    the StopIteration that ends it). An async caller yields to its loop between steps:

        steps = results_steps(...)
        for _ in steps:
            await asyncio.sleep(0)
        results = steps.result
    """

    __slots__ = ("_generator", "_outcome")

    def __init__(self, generator: Generator[None, None, T]) -> None:
        self._generator = generator
        self._outcome: tuple[T] | None = None

    def __iter__(self) -> Iterator[None]:
        return self

    def __next__(self) -> None:
        if self._outcome is not None:
            raise StopIteration(self._outcome[0])
        try:
            next(self._generator)
        except StopIteration as done:
            self._outcome = (done.value,)
            raise
        return None

    @property
    def result(self) -> T:
        if self._outcome is None:
            raise RuntimeError("the computation has not run to its end")
        return self._outcome[0]

    def run(self) -> T:
        """Every remaining slice at once."""
        for _ in self:
            pass
        return self.result


# --- results ----------------------------------------------------------------------------------


def experiment_results(
    weights: Sequence[float],
    variants: Sequence[tuple[str, int, int]],
    analysis: Analysis = DEFAULT_ANALYSIS,
    values: Sequence[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Results of one goal of an experiment; the first variant is the control.

    `weights` are the configured percentages of the variants, in the same order; `variants` are
    (key, exposures, conversions); `values`, for a goal whose conversions carry values, are
    (sum, sum of squares) of the users' values per variant, in the same order. Every figure that
    is undefined is None; see results_steps for the shape and the rules.
    """
    return results_steps(weights, variants, analysis, values).run()


def results_steps(
    weights: Sequence[float],
    variants: Sequence[tuple[str, int, int]],
    analysis: Analysis = DEFAULT_ANALYSIS,
    values: Sequence[tuple[float, float]] | None = None,
) -> Steps[dict[str, Any]]:
    """experiment_results as slices of work (see Steps); the arguments are checked at once.

    The result is `{"variants": [row, ...], "srm": {"p_value", "warning"}}`, a row being `{key,
    exposures, conversions, conversion_rate, absolute_lift, absolute_lift_ci, relative_lift,
    relative_lift_ci, p_value, p_value_adjusted, chance_to_beat_control, sequential, value}`.
    The control's comparison figures, `p_value_adjusted` and `sequential` are None; a
    non-control row's `sequential` is `{absolute_lift_ci, relative_lift_ci, p_value,
    p_value_adjusted}`. `value` is None without `values`, else `{sum, mean, variance,
    absolute_lift, absolute_lift_ci, relative_lift, relative_lift_ci, p_value, sequential,
    p_value_adjusted}` (the control's comparisons and `sequential` None).

    When a figure is None:
    - any comparison, when either arm has no exposures;
    - relative lifts and their intervals, when the control's rate (or mean) is 0, or the ratio
      lies beyond the floating range (a value goal's control mean of 1e-300);
    - the fixed conversion p-value, when the pooled rate is 0 or 1;
    - sequential intervals and p-values, and value intervals and p-values, when their standard
      error is 0 (every user of both arms alike: nothing to test, the statistic is 0 / 0);
    - a value mean without exposures, a value variance and every value comparison that needs
      it with fewer than two exposures;
    - `p_value_adjusted` without a correction, and wherever the p-value it adjusts is None:
      such variants are left out of the family the others are corrected within.
    """
    if len(weights) != len(variants):
        raise ValueError(f"{len(weights)} weights for {len(variants)} variants")
    if values is not None and len(values) != len(variants):
        raise ValueError(f"{len(values)} value sums for {len(variants)} variants")
    return Steps(_results(weights, variants, analysis, values))


def _results(
    weights: Sequence[float],
    variants: Sequence[tuple[str, int, int]],
    analysis: Analysis,
    values: Sequence[tuple[float, float]] | None,
) -> Generator[None, None, dict[str, Any]]:
    # Counts come from Redis set cardinalities that are written separately, so a conversion can
    # outlive its exposure; clamping keeps every rate a probability instead of failing the page.
    arms = [(key, max(0, n), min(max(0, x), max(0, n))) for key, n, x in variants]
    z = normal_quantile(analysis.alpha / 2, upper=True)
    rows: list[dict[str, Any]] = []
    for index, (key, n, x) in enumerate(arms):
        row: dict[str, Any] = {
            "key": key,
            "exposures": n,
            "conversions": x,
            "conversion_rate": x / n if n > 0 else None,
        }
        if index == 0:
            row.update(_no_comparison())
            row["sequential"] = None
        else:
            comparison = yield from _comparison(arms[0][1], arms[0][2], n, x, z, analysis)
            row.update(comparison)
        row["value"] = None
        rows.append(row)
        yield
    if values is not None:
        yield from _add_values(rows, values, analysis)
    _adjust_rows(rows, analysis.correction)
    return {"variants": rows, "srm": _srm(weights, [n for _, n, _ in arms])}


def _no_comparison() -> dict[str, Any]:
    return {
        "absolute_lift": None,
        "absolute_lift_ci": None,
        "relative_lift": None,
        "relative_lift_ci": None,
        "p_value": None,
        "p_value_adjusted": None,
        "chance_to_beat_control": None,
    }


def _comparison(
    n_c: int, x_c: int, n_t: int, x_t: int, z: float, analysis: Analysis
) -> Generator[None, None, dict[str, Any]]:
    out = _no_comparison()
    out["sequential"] = _no_sequential()
    if n_c == 0 or n_t == 0:
        return out
    p_c, p_t = x_c / n_c, x_t / n_t
    lift = p_t - p_c
    var_t = p_t * (1 - p_t) / n_t
    var_c = p_c * (1 - p_c) / n_c
    out["absolute_lift"] = lift
    out["absolute_lift_ci"] = _newcombe_interval(x_t, n_t, x_c, n_c, z)
    relative: float | None = None
    relative_se: float | None = None
    if p_c > 0:
        # Dividing the absolute lift (not p_t / p_c - 1) keeps relative and absolute consistent.
        relative = lift / p_c
        relative_se = _relative_se(p_t, var_t, p_c, var_c)
        out["relative_lift"] = relative
        out["relative_lift_ci"] = [relative - z * relative_se, relative + z * relative_se]
    pooled = (x_c + x_t) / (n_c + n_t)
    if 0 < pooled < 1:
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
        out["p_value"] = min(1.0, math.erfc(abs(lift / se) / math.sqrt(2)))
    # The sequential figures use the unpooled variance, as GrowthBook's do.
    out["sequential"] = _sequential(
        lift, math.sqrt(var_t + var_c), relative, relative_se, n_c + n_t, analysis
    )
    out["chance_to_beat_control"] = yield from _chance_steps(
        1 + x_t, 1 + n_t - x_t, 1 + x_c, 1 + n_c - x_c
    )
    return out


def _relative_se(mean_t: float, var_t: float, mean_c: float, var_c: float) -> float:
    """Delta-method standard error of (mean_t - mean_c) / |mean_c|, given the variances of the
    two means: sqrt(var_t / mean_c^2 + mean_t^2 var_c / mean_c^4), written with the ratio of
    the means and hypot so that nothing is raised to a power: a control mean of 1e-90 (a value
    goal allows any finite value) would underflow mean_c^4 to 0. It may overflow to inf, which
    the callers treat as undefined."""
    return math.hypot(math.sqrt(var_t), mean_t / mean_c * math.sqrt(var_c)) / abs(mean_c)


def _wilson(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _newcombe_interval(x_t: int, n_t: int, x_c: int, n_c: int, z: float) -> list[float]:
    """Newcombe's hybrid score interval (his method 10) for p_t - p_c, at the normal quantile z."""
    p_t, p_c = x_t / n_t, x_c / n_c
    lo_t, hi_t = _wilson(x_t, n_t, z)
    lo_c, hi_c = _wilson(x_c, n_c, z)
    lift = p_t - p_c
    return [
        lift - math.sqrt((p_t - lo_t) ** 2 + (hi_c - p_c) ** 2),
        lift + math.sqrt((hi_t - p_t) ** 2 + (p_c - lo_c) ** 2),
    ]


# --- value goals ------------------------------------------------------------------------------


def value_moments(n: int, total: float, squares: float) -> tuple[float | None, float | None]:
    """(mean, variance) of n users' values from their sum and sum of squares; None where
    undefined (no users for the mean, fewer than two for the variance, a non-finite sum).

    Q - S^2/n is computed exactly from the two floats (as fractions): at large sums it is the
    difference of two numbers of 1e30 whose first fifteen digits agree. A negative result, which
    only inconsistent inputs can give, is clamped to 0.
    """
    if n <= 0 or not (math.isfinite(total) and math.isfinite(squares)):
        return None, None
    mean = total / n
    if n < 2:
        return mean, None
    s = Fraction(total)
    centred = Fraction(squares) - s * s / n
    return mean, max(0.0, float(centred / (n - 1)))


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float | None:
    """Welch-Satterthwaite degrees of freedom of the difference of two means, from each sample's
    variance and size; None when undefined (a sample under 2, or both variances 0)."""
    if n_a < 2 or n_b < 2:
        return None
    a, b = var_a / n_a, var_b / n_b
    # Scaled by the larger term, so that variances of 1e-170 do not square to 0.
    scale = max(a, b)
    if not scale > 0:
        return None
    a, b = a / scale, b / scale
    return (a + b) ** 2 / (a * a / (n_a - 1) + b * b / (n_b - 1))


def _add_values(
    rows: list[dict[str, Any]], values: Sequence[tuple[float, float]], analysis: Analysis
) -> Generator[None, None, None]:
    moments = [
        value_moments(row["exposures"], total, squares)
        for row, (total, squares) in zip(rows, values, strict=True)
    ]
    mean_c, var_c = moments[0]
    n_c = rows[0]["exposures"]
    for index, (row, (total, _), (mean, variance)) in enumerate(
        zip(rows, values, moments, strict=True)
    ):
        block: dict[str, Any] = {
            "sum": total if math.isfinite(total) else None,
            "mean": mean,
            "variance": variance,
        }
        if index == 0:
            block.update(_no_value_comparison())
            block["sequential"] = None
        else:
            block.update(
                _value_comparison(n_c, mean_c, var_c, row["exposures"], mean, variance, analysis)
            )
        block["p_value_adjusted"] = None
        row["value"] = block
        # A t quantile and a t tail, each a few Newton steps of a continued fraction.
        yield


def _no_value_comparison() -> dict[str, Any]:
    return {
        "absolute_lift": None,
        "absolute_lift_ci": None,
        "relative_lift": None,
        "relative_lift_ci": None,
        "p_value": None,
    }


def _value_comparison(
    n_c: int,
    mean_c: float | None,
    var_c: float | None,
    n_t: int,
    mean_t: float | None,
    var_t: float | None,
    analysis: Analysis,
) -> dict[str, Any]:
    out = _no_value_comparison()
    out["sequential"] = _no_sequential()
    if mean_c is None or mean_t is None:
        return out
    lift = mean_t - mean_c
    out["absolute_lift"] = lift
    relative = lift / abs(mean_c) if mean_c != 0 else None
    if relative is not None and not math.isfinite(relative):
        # A control mean of 1e-300 against one of 1: a ratio past the floating range.
        relative = None
    out["relative_lift"] = relative
    if var_c is None or var_t is None:
        return out
    # Variances of the two means, as for a conversion rate p (1 - p) / n.
    of_mean_t, of_mean_c = var_t / n_t, var_c / n_c
    se = math.sqrt(of_mean_t + of_mean_c)
    relative_se = None
    if relative is not None:
        relative_se = _relative_se(mean_t, of_mean_t, mean_c, of_mean_c)
    out["sequential"] = _sequential(lift, se, relative, relative_se, n_c + n_t, analysis)
    dof = welch_dof(var_c, n_c, var_t, n_t)
    if dof is None or not se > 0:
        return out
    t = student_t_upper_quantile(analysis.alpha / 2, dof)
    out["absolute_lift_ci"] = [lift - t * se, lift + t * se]
    out["p_value"] = student_t_two_sided_p(lift / se, dof)
    if relative is not None and relative_se is not None and 0 < relative_se < math.inf:
        out["relative_lift_ci"] = [relative - t * relative_se, relative + t * relative_se]
    return out


# --- sequential (always-valid) figures --------------------------------------------------------
#
# The asymptotic confidence sequence of Waudby-Smith et al. (arXiv 2103.06476, eq. 9), tuned as
# GrowthBook tunes it (eq. 161 there): rho^2 = (-2 ln a + ln(1 - 2 ln a)) / N*, which makes the
# interval narrowest when the two arms' total N reaches N*. At every N it is wider than the
# fixed-horizon normal interval at the same alpha, which is the price of being valid whenever
# it is read.


def sequential_rho_squared(alpha: float, tuning: float) -> float:
    log_alpha = math.log(alpha)
    return (-2 * log_alpha + math.log1p(-2 * log_alpha)) / tuning


def sequential_half_width(se: float, n: int, alpha: float, tuning: float) -> float:
    """Half-width of the always-valid interval of an estimate with standard error se, after n
    users in both arms: se * sqrt(2 (n rho^2 + 1) / (n rho^2) * ln(sqrt(n rho^2 + 1) / alpha))."""
    nr2 = n * sequential_rho_squared(alpha, tuning)
    return se * math.sqrt(2 * (nr2 + 1) / nr2 * (0.5 * math.log1p(nr2) - math.log(alpha)))


def sequential_p_value(z: float, n: int, alpha: float, tuning: float) -> float:
    """Always-valid p-value of the statistic z = estimate / se after n users in both arms:
    min(1, sqrt(n rho^2 + 1) exp(-n rho^2 z^2 / (2 (n rho^2 + 1)))), taken in logs so that a
    large z gives a tiny p rather than 0 * inf."""
    nr2 = n * sequential_rho_squared(alpha, tuning)
    log_p = 0.5 * math.log1p(nr2) - nr2 * z * z / (2 * (nr2 + 1))
    return math.exp(min(0.0, log_p))


def _no_sequential() -> dict[str, Any]:
    return {
        "absolute_lift_ci": None,
        "relative_lift_ci": None,
        "p_value": None,
        "p_value_adjusted": None,
    }


def _sequential(
    lift: float,
    se: float,
    relative: float | None,
    relative_se: float | None,
    n: int,
    analysis: Analysis,
) -> dict[str, Any]:
    out = _no_sequential()
    alpha, tuning = analysis.alpha, analysis.sequential_tuning
    if se > 0:
        half = sequential_half_width(se, n, alpha, tuning)
        out["absolute_lift_ci"] = [lift - half, lift + half]
        out["p_value"] = sequential_p_value(lift / se, n, alpha, tuning)
    if relative is not None and relative_se is not None and 0 < relative_se < math.inf:
        half = sequential_half_width(relative_se, n, alpha, tuning)
        out["relative_lift_ci"] = [relative - half, relative + half]
    return out


# --- multiple-comparison corrections ----------------------------------------------------------


def adjust_p_values(p_values: Sequence[float | None], correction: str | None) -> list[float | None]:
    """The p-values adjusted by `correction` (None or one of CORRECTIONS), in the same order.

    A None p-value (a figure that is undefined) is not a test: it stays None and is left out of
    the family, so m counts only the defined ones. Without a correction every entry is None.
    """
    adjusted: list[float | None] = [None] * len(p_values)
    if correction is None:
        return adjusted
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    if correction == "holm-bonferroni":
        fixed = holm_bonferroni([p for p, _ in present])
    elif correction == "benjamini-hochberg":
        fixed = benjamini_hochberg([p for p, _ in present])
    else:
        raise ValueError(f"unknown correction {correction!r}")
    for (_, i), p in zip(present, fixed, strict=True):
        adjusted[i] = p
    return adjusted


def holm_bonferroni(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest of m becomes (m - i + 1) p, raised to the
    running maximum so that the order of the p-values is kept, and capped at 1."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg's step-up adjustment: the i-th smallest of m becomes m p / i, lowered
    to the running minimum from the largest down, and capped at 1."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 1.0
    order = sorted(range(m), key=lambda j: p_values[j])
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, m / (rank + 1) * p_values[i])
        adjusted[i] = running
    return adjusted


def _adjust_rows(rows: list[dict[str, Any]], correction: str | None) -> None:
    """Fills every p_value_adjusted of the non-control rows: the fixed and the sequential
    p-values, of the conversion and of the value figures, each a family of its own."""
    others = rows[1:]
    families: list[list[dict[str, Any]]] = [
        list(others),
        [row["sequential"] for row in others],
    ]
    if others and others[0]["value"] is not None:
        families.append([row["value"] for row in others])
        families.append([row["value"]["sequential"] for row in others])
    for family in families:
        adjusted = adjust_p_values([figures["p_value"] for figures in family], correction)
        for figures, p in zip(family, adjusted, strict=True):
            figures["p_value_adjusted"] = p


# --- normal and Student's t distributions -----------------------------------------------------


def normal_quantile(p: float, upper: bool = False) -> float:
    """Phi^-1(p), or with `upper` the z with P(Z > z) = p. Asking for the upper quantile of a small
    p directly keeps its precision: 1 - p would round it away at p = 1e-17."""
    if not 0 < p < 1:
        raise ValueError(f"a probability in (0, 1) is needed, not {p!r}")
    # Wichura's AS241, exact to about 1e-16 throughout.
    z = _NORMAL.inv_cdf(p)
    return -z if upper else z


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df > 0 degrees of freedom (not necessarily an integer)."""
    return student_t_sf(-t, df)


def student_t_sf(t: float, df: float) -> float:
    """P(T > t), through the regularized incomplete beta: P(|T| > |t|) = I_x(df/2, 1/2) with
    x = df / (df + t^2), by continued fraction or, from df = 1e4, by an expansion in 1/df (see
    _t_two_sided_expansion). The tail is computed directly, so small p-values keep their
    precision: about 1e-13 relative wherever the result is above the underflow.
    """
    _check_dof(df)
    if math.isnan(t) or t == 0 or math.isinf(t) or math.isinf(df):
        return _t_sf_special(t)
    tail = 0.5 * _t_two_sided(abs(t), df)
    return tail if t > 0 else 1 - tail


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| > |t|): the two-sided p-value of a t statistic."""
    _check_dof(df)
    if math.isnan(t) or t == 0 or math.isinf(t) or math.isinf(df):
        return min(1.0, 2 * _t_sf_special(abs(t)))
    return min(1.0, _t_two_sided(abs(t), df))


def _check_dof(df: float) -> None:
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, not {df!r}")


def _t_sf_special(t: float) -> float:
    """P(T > t) where it does not depend on df (t = 0, +-inf, nan), or where df is infinite."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    return 0.5 * math.erfc(t / math.sqrt(2))


def _t_parts(t: float, df: float) -> tuple[float, float, float, float]:
    """x = df / (df + t^2), y = t^2 / (df + t^2) and their logs, for t > 0.

    Each comes from whichever of t^2 / df and its inverse is below 1, so that none is a rounded
    difference: ln x is multiplied by df / 2, which may be 1e8, so an error of 1e-16 in x would
    become one of 1e-8 in the tail. Logs of t^2 / df beyond the floating range come from ln t
    and ln df.
    """
    u = t * t / df
    if _TINY < u < 1 / _TINY:
        log_u, v = math.log(u), df / (t * t)
    else:
        log_u = 2 * math.log(t) - math.log(df)
        u, v = math.exp(min(log_u, 700.0)), math.exp(min(-log_u, 700.0))
    if log_u < 0:
        return 1 / (1 + u), u / (1 + u), -math.log1p(u), log_u - math.log1p(u)
    return v / (1 + v), 1 / (1 + v), -log_u - math.log1p(v), -math.log1p(v)


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| > t) for t > 0."""
    if df >= _T_EXPANSION_MIN_DOF:
        return _t_two_sided_expansion(t, df)
    x, y, log_x, log_y = _t_parts(t, df)
    return _beta_inc(df / 2, 0.5, x, y, log_x, log_y)


def _t_central(t: float, df: float) -> float:
    """P(0 < T < t) for t > 0, directly rather than as 1/2 - P(T > t) where df allows: near 0
    that difference would keep only the first digits of a small probability."""
    if df >= _T_EXPANSION_MIN_DOF:
        # Exact to 1e-16 absolute, which only matters within 1e-7 of the centre, where 1/2 - q
        # (the target) has no more digits anyway.
        return 0.5 - 0.5 * _t_two_sided_expansion(t, df)
    x, y, log_x, log_y = _t_parts(t, df)
    return 0.5 * _beta_inc(0.5, df / 2, y, x, log_y, log_x)


def _t_two_sided_expansion(t: float, df: float) -> float:
    """P(|T| > t) = I_x(a, 1/2), a = df / 2, for large df.

    With s = e^-tau the integral of I_x(a, b) becomes that of e^(-T tau) tau^(b-1) g(tau) from
    -ln x, where T = a + (b - 1) / 2 and g(tau) = (sinh(tau/2) / (tau/2))^(b-1) is even with
    g(0) = 1 (the reduction behind DiDonato and Morris's BGRAT). Integrating g's power series
    term by term gives, for b = 1/2,
        I_x(a, 1/2) = Gamma(a + 1/2) / (Gamma(a) sqrt(T)) * sum c_n T^-2n Q(1/2 + 2n, u)
    with u = -T ln x and Q the regularized upper gamma, Q(1/2, u) = erfc(sqrt(u)). Every term
    is formed without cancellation, at any df. The result only stays above the underflow where
    -ln x < 745 / T, which at df >= _T_EXPANSION_MIN_DOF bounds the neglected terms below 1e-14
    relative; in the body they are below 1e-25.
    """
    a = df / 2
    big_t = a - 0.25
    u = big_t * -_t_parts(t, df)[2]
    if not u > 0:
        return 1.0
    log_u = math.log(u)
    q = math.erfc(math.sqrt(u))
    total = q
    shape, scale = 0.5, 1.0
    for c in _T_EXPANSION:
        # Q(s + 1, u) = Q(s, u) + u^s e^-u / Gamma(s + 1), twice per term.
        for _ in range(2):
            q += math.exp(shape * log_u - u - math.lgamma(shape + 1))
            shape += 1
        scale /= big_t * big_t
        total += c * scale * q
    return min(1.0, math.exp(-_lgamma_drop(a, 0.5) - 0.5 * math.log(big_t)) * total)


def _t_log_density(t: float, df: float) -> float:
    return -_log_beta(df / 2, 0.5) - 0.5 * math.log(df) - (df + 1) / 2 * math.log1p(t * t / df)


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1 and df > 0."""
    if not 0 < p < 1:
        raise ValueError(f"a probability in (0, 1) is needed, not {p!r}")
    # 1 - p is exact for p >= 0.5 (Sterbenz), so the upper tail loses nothing.
    return student_t_upper_quantile(1 - p, df) if p >= 0.5 else -student_t_upper_quantile(p, df)


def student_t_upper_quantile(q: float, df: float) -> float:
    """The t with P(T > t) = q, for 0 < q < 1 and df > 0.

    Newton's method in u = ln t on the log of the tail P(T > t) = q, or for q above 1/4 of the
    central probability P(0 < T < t) = 1/2 - q (exact there): the first is nearly linear in u in
    heavy tails and nearly quadratic in t in light ones, the second nearly linear in u near 0,
    so a few steps reach full precision from the starting guess. The root stays bracketed
    between the normal quantile (t's tails are heavier) and the point where the power-law
    asymptote of the tail, which lies above the tail itself, equals q; a step that would leave
    the bracket bisects instead.
    """
    if not 0 < q < 1:
        raise ValueError(f"a probability in (0, 1) is needed, not {q!r}")
    _check_dof(df)
    if q == 0.5:
        return 0.0
    if q > 0.5:
        return -student_t_upper_quantile(1 - q, df)
    z = normal_quantile(q, upper=True)
    if math.isinf(df):
        return z
    central = q > 0.25
    log_target = math.log(0.5 - q if central else q)
    lo = math.log(z)
    # P(T > t) <= df^(df/2 - 1) t^-df / B(df/2, 1/2), the integral of the density's asymptote.
    hi = max(lo, 0.5 * math.log(df) - (math.log(q) + math.log(df) + _log_beta(df / 2, 0.5)) / df)
    if hi > _LOG_MAX_T:
        if student_t_sf(math.exp(_LOG_MAX_T), df) > q:
            return math.inf
        hi = _LOG_MAX_T
    # Cornish-Fisher (Abramowitz and Stegun 26.7.5) is a good start wherever it is in the
    # bracket, that is wherever df is not small for this tail.
    z2 = z * z
    guess = (
        z
        + (
            (z2 + 1) * z / 4
            + ((5 * z2 + 16) * z2 + 3) * z / (96 * df)
            + (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / (384 * df * df)
        )
        / df
    )
    u = math.log(guess) if guess > 0 and lo < math.log(guess) < hi else (lo + hi) / 2
    for _ in range(_QUANTILE_MAX_ITER):
        t = math.exp(u)
        # h rises with u and is 0 at the root; h' = t f(t) / P.
        probability = _t_central(t, df) if central else 0.5 * _t_two_sided(t, df)
        if probability > 0:
            h = math.log(probability) - log_target
            h = h if central else -h
            slope = t * math.exp(_t_log_density(t, df)) / probability
        else:
            h, slope = (-math.inf if central else math.inf), 0.0
        if h == 0:
            break
        if h > 0:
            hi = u
        else:
            lo = u
        step = h / slope if slope > 0 else math.nan
        if lo < u - step < hi:
            u -= step
            # Near the root each step squares the error, so after one this small the error is
            # far below the rounding of the probability itself.
            if abs(step) < 1e-9:
                break
        else:
            u = (lo + hi) / 2
            if hi - lo < 1e-15:
                break
    return math.exp(u)


# --- regularized incomplete beta --------------------------------------------------------------


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1.

    Exact to about 1e-13 while one parameter is below 1e4 or so. When both are large, the logs
    of x^a y^b and B(a, b) cancel to within about 1e-16 min(a, b) of their size (3e-10 at
    a = b = 1e7), and the continued fraction needs about sqrt(min(a, b)) steps; Student's t,
    with b = 1/2, meets neither.
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"beta parameters must be positive, not {a!r}, {b!r}")
    if math.isnan(x):
        return math.nan
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    return _beta_inc(a, b, x, 1 - x, math.log(x), math.log1p(-x))


def _beta_inc(a: float, b: float, x: float, y: float, log_x: float, log_y: float) -> float:
    """I_x(a, b) given x, y = 1 - x and their logs, each computed without cancellation.

    The continued fraction (Numerical Recipes' betacf, by modified Lentz) converges fast for
    x < (a + 1) / (a + b + 2); beyond it the symmetry I_x(a, b) = 1 - I_y(b, a) puts it back
    there. The prefactor x^a y^b / B(a, b) is taken in logs with a Stirling difference for
    B(a, b), since lgamma(1e7) carries an absolute error of 1e-8 that would be a relative one
    here.
    """
    if x < (a + 1) / (a + b + 2):
        return _beta_front(a, b, log_x, log_y) * _beta_cf(a, b, x) / a
    return 1 - _beta_front(b, a, log_y, log_x) * _beta_cf(b, a, y) / b


def _beta_front(a: float, b: float, log_x: float, log_y: float) -> float:
    return math.exp(a * log_x + b * log_y - _log_beta(a, b))


def _beta_cf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1, a - 1
    c = 1.0
    d = 1 - qab * x / qap
    d = 1 / (d if abs(d) >= _TINY else _TINY)
    h = d
    for m in range(1, _BETA_MAX_ITER):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) >= _TINY else _TINY)
            c = 1 + numerator / c
            if abs(c) < _TINY:
                c = _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1) < _BETA_EPS:
            break
    return h


def _log_beta(a: float, b: float) -> float:
    """ln B(a, b), to an absolute error near 1e-16 even when a or b is 1e8 (where lgamma alone
    would be off by 1e-8): large arguments go through Stirling's series, in differences."""
    small, large = min(a, b), max(a, b)
    if large < _STIRLING_MIN:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    if small < _STIRLING_MIN:
        return math.lgamma(small) + _lgamma_drop(large, small)
    # (s - 1/2) ln s + (l - 1/2) ln l - (s + l - 1/2) ln(s + l), regrouped around ln(s + l).
    return (
        0.5 * math.log(2 * math.pi)
        - (large - 0.5) * math.log1p(small / large)
        + (small - 0.5) * math.log(small / (small + large))
        - 0.5 * math.log(small + large)
        + _stirling_tail(small)
        + _stirling_tail(large)
        - _stirling_tail(small + large)
    )


def _lgamma_drop(a: float, b: float) -> float:
    """lgamma(a) - lgamma(a + b) for a >= _STIRLING_MIN, from Stirling's series: the (a - 1/2)
    ln a - a parts cancel exactly on paper, so they are never formed."""
    return (
        -b * math.log(a)
        - (a + b - 0.5) * math.log1p(b / a)
        + b
        + _stirling_tail(a)
        - _stirling_tail(a + b)
    )


def _stirling_tail(z: float) -> float:
    """lgamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2), for z >= _STIRLING_MIN."""
    inverse_square = 1 / (z * z)
    total = 0.0
    for coefficient in reversed(_STIRLING):
        total = total * inverse_square + coefficient
    return total / z


# --- chance to beat control -------------------------------------------------------------------
#
# Which method runs where (T = treatment, C = control, parameters a = 1 + conversions,
# b = 1 + non-conversions):
# - Evan Miller's closed-form sum, exact, with as many terms as one Beta parameter. It can run
#   over any of the four: ties have probability 0, so P(T > C) = 1 - P(C > T), and 1 - X ~
#   Beta(b, a) turns a beta into an alpha. Over a_t or b_c it gives P(T > C) directly; over a_c
#   or b_t it gives the complement, which is only kept when it leaves P(T > C) >= 0.5 (lgamma
#   rounds to about 1e-8 relative at counts of 10 million, and 1 - x would magnify that when
#   P(T > C) is small).
# - Otherwise, when the smallest usable parameter exceeds CLOSED_FORM_MAX_TERMS, composite
#   Gauss-Legendre quadrature of f_T(x) F_C(x) over the region where the densities are
#   non-negligible; its cost does not grow with the counts.
#
# Each is written as a generator that yields between slices of its work; the plain functions
# run it to the end.


def chance_to_beat(a_t: int, b_t: int, a_c: int, b_c: int) -> float:
    """P(T > C) for T ~ Beta(a_t, b_t) and C ~ Beta(a_c, b_c), all parameters >= 1."""
    return Steps(_chance_steps(a_t, b_t, a_c, b_c)).run()


def _chance_steps(a_t: int, b_t: int, a_c: int, b_c: int) -> Generator[None, None, float]:
    direct = min(a_t, b_c)
    complement = min(a_c, b_t)
    # When T's mean is below C's, P(T > C) is below about 0.5, so the complement sum would only
    # be computed to be thrown away.
    likely_ahead = a_t * (a_c + b_c) >= a_c * (a_t + b_t)
    if likely_ahead and complement < direct and complement <= CLOSED_FORM_MAX_TERMS:
        if a_c <= b_t:
            p = 1 - (yield from _closed_form(a_t, b_t, a_c, b_c))
        else:
            p = 1 - (yield from _closed_form(b_c, a_c, b_t, a_t))
        if p >= 0.5:
            return min(1.0, p)
    if direct > CLOSED_FORM_MAX_TERMS:
        p = yield from _integrated_steps(a_t, b_t, a_c, b_c)
    elif a_t <= b_c:
        p = yield from _closed_form(a_c, b_c, a_t, b_t)
    else:
        p = yield from _closed_form(b_t, a_t, b_c, a_c)
    return min(1.0, max(0.0, p))


def _closed_form(a_a: int, b_a: int, a_b: int, b_b: int) -> Generator[None, None, float]:
    """P(B > A) = sum over i < a_b of B(a_a+i, b_a+b_b) / ((b_b+i) B(1+i, b_b) B(a_a, b_a)).

    The first term comes from lgamma; each next one from the ratio of consecutive terms,
    (a_a+i)(b_b+i) / ((a_a+b_a+b_b+i)(1+i)), added in log space: the same sum, but one log per
    term instead of four lgammas, and no underflow when early terms are below 1e-308. Each slice
    of terms is summed exactly (fsum) on its own, then the slices' sums together: a full fsum
    of 20,000 terms would be one slice of 0.3 ms by itself.
    """
    total_ab = a_a + b_a + b_b
    # At i = 0, b_b B(1, b_b) = 1 exactly; leaving that pair of lgammas out saves their rounding
    # (about 1e-8 at counts of 10 million).
    log_term = (math.lgamma(b_a + b_b) - math.lgamma(b_a)) - (
        math.lgamma(total_ab) - math.lgamma(a_a + b_a)
    )
    sums: list[float] = []
    for start in range(0, a_b, _TERMS_PER_SLICE):
        terms: list[float] = []
        for i in range(start, min(a_b, start + _TERMS_PER_SLICE)):
            if log_term > -745.0:
                terms.append(math.exp(log_term))
            log_term += math.log((a_a + i) * (b_b + i) / ((total_ab + i) * (1 + i)))
        sums.append(math.fsum(terms))
        yield
    return math.fsum(sums)


@cache
def _gauss_legendre(k: int) -> tuple[tuple[float, float], ...]:
    """(node, weight) pairs of k-point Gauss-Legendre on [-1, 1], by Newton's method."""

    def legendre(x: float) -> tuple[float, float]:
        p0, p1 = 1.0, x
        for m in range(2, k + 1):
            p0, p1 = p1, ((2 * m - 1) * x * p1 - (m - 1) * p0) / m
        return p1, k * (x * p1 - p0) / (x * x - 1)

    pairs = []
    for j in range(1, k + 1):
        x = math.cos(math.pi * (j - 0.25) / (k + 0.5))
        for _ in range(100):
            value, slope = legendre(x)
            x -= value / slope
            if abs(value / slope) < 1e-16:
                break
        slope = legendre(x)[1]
        pairs.append((x, 2 / ((1 - x * x) * slope * slope)))
    return tuple(sorted(pairs))


class _BetaShape:
    """A Beta(a, b) density scaled to 1 at its mode, and the window [lo, hi] outside which it
    stays below exp(-_LOG_FLOOR) of its peak.

    Scaling by the peak instead of 1/B(a, b) avoids subtracting lgammas of order 1e8, and
    writing the logs around the mean with log1p keeps full precision at 10 million counts; the
    caller normalises numerically with the same quadrature. The window comes from bisection on
    the log-density, which is concave, so it is as wide as skewed (small-count) shapes need.
    """

    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b
        total = a + b
        self.mean = a / total
        # 1 - mean from b, not by subtraction: an error of 1e-16 here would be multiplied by b.
        self.mean_complement = b / total
        self.sd = math.sqrt(a * b / (total * total * (total + 1)))
        mode = (a - 1) / (total - 2) if total > 2 else 0.5
        self.peak = 0.0
        self.peak = self.log_density(mode)
        self.lo = 0.0 if a == 1 else self._edge(0.0, mode)
        self.hi = 1.0 if b == 1 else self._edge(1.0, mode)

    def log_density(self, x: float) -> float:
        # A zero exponent is skipped rather than multiplied, so the peak of Beta(1, b) at 0 and
        # of Beta(a, 1) at 1 is finite.
        d = x - self.mean
        left = (self.a - 1) * _log_ratio(x, d, self.mean) if self.a > 1 else 0.0
        right = (self.b - 1) * _log_ratio(1 - x, -d, self.mean_complement) if self.b > 1 else 0.0
        return left + right - self.peak

    def density(self, x: float) -> float:
        return math.exp(self.log_density(x))

    def _edge(self, outside: float, inside: float) -> float:
        for _ in range(_BISECTIONS):
            middle = (outside + inside) / 2
            if middle in (outside, inside):
                break
            if self.log_density(middle) < -_LOG_FLOOR:
                outside = middle
            else:
                inside = middle
        return outside


def _log_ratio(value: float, d: float, y: float) -> float:
    """log(value / y) where value = y + d. Near 1 it goes through log1p of the offset d, since a
    rounded value (1 - x for x < 0.5 is off by up to 1e-16) would be magnified to 1e-9 by
    exponents of 1e7; far from 1 the value itself is exact (1 - x is, for x >= 0.5)."""
    u = d / y
    return math.log1p(u) if u > -0.5 else math.log(value / y)


def _panels(lo: float, hi: float, width: float) -> list[tuple[float, float]]:
    count = max(1, math.ceil((hi - lo) / width))
    step = (hi - lo) / count
    return [(lo + j * step, lo + (j + 1) * step if j < count - 1 else hi) for j in range(count)]


def _panel_integral(
    f: Callable[[float], float], p0: float, p1: float, rule: tuple[tuple[float, float], ...]
) -> float:
    half, mid = (p1 - p0) / 2, (p1 + p0) / 2
    return half * math.fsum(w * f(mid + half * t) for t, w in rule)


def _integrate(f: Callable[[float], float], lo: float, hi: float, width: float, k: int) -> float:
    if hi <= lo:
        return 0.0
    rule = _gauss_legendre(k)
    return math.fsum(_panel_integral(f, p0, p1, rule) for p0, p1 in _panels(lo, hi, width))


def _integrate_steps(
    f: Callable[[float], float], lo: float, hi: float, width: float, k: int
) -> Generator[None, None, float]:
    """_integrate, yielding every _PANELS_PER_SLICE panels and at the end."""
    if hi <= lo:
        return 0.0
    rule = _gauss_legendre(k)
    parts = []
    for j, (p0, p1) in enumerate(_panels(lo, hi, width), 1):
        parts.append(_panel_integral(f, p0, p1, rule))
        if j % _PANELS_PER_SLICE == 0:
            yield
    # The remainder ends its own slice, so that it never adds up with the next loop's.
    yield
    return math.fsum(parts)


def integrated_chance(a_t: int, b_t: int, a_c: int, b_c: int) -> float:
    """P(T > C) = integral of f_T(x) F_C(x) dx, by composite Gauss-Legendre quadrature.

    Panels are half a standard deviation of the narrower density wide, so 16 nodes integrate
    them to rounding error. F_C is carried forward from node to node by a further small rule
    over each gap, so it stays accurate in relative terms even where it is tiny.
    """
    return Steps(_integrated_steps(a_t, b_t, a_c, b_c)).run()


def _integrated_steps(a_t: int, b_t: int, a_c: int, b_c: int) -> Generator[None, None, float]:
    t, c = _BetaShape(a_t, b_t), _BetaShape(a_c, b_c)
    if c.hi <= t.lo:
        return 1.0
    if t.hi <= c.lo:
        return 0.0
    yield
    width_t, width_c = _PANEL_SD * t.sd, _PANEL_SD * c.sd
    z_t = yield from _integrate_steps(t.density, t.lo, t.hi, width_t, _GL_NODES)
    z_c = yield from _integrate_steps(c.density, c.lo, c.hi, width_c, _GL_NODES)
    # Above C's window F_C is 1, so T's mass there counts whole; below it, not at all.
    above = yield from _integrate_steps(t.density, max(t.lo, c.hi), t.hi, width_t, _GL_NODES)
    above *= z_c
    start, end = max(t.lo, c.lo), min(t.hi, c.hi)
    cdf = yield from _integrate_steps(c.density, c.lo, start, width_c, _GL_NODES)
    rule = _gauss_legendre(_GL_NODES)
    overlap = []
    for j, (p0, p1) in enumerate(_panels(start, end, min(width_t, width_c)), 1):
        half, mid = (p1 - p0) / 2, (p1 + p0) / 2
        previous = p0
        for node, w in rule:
            x = mid + half * node
            cdf += _integrate(c.density, previous, x, x - previous, _GL_GAP_NODES)
            overlap.append(half * w * t.density(x) * cdf)
            previous = x
        cdf += _integrate(c.density, previous, p1, p1 - previous, _GL_GAP_NODES)
        if j % _OVERLAP_PANELS_PER_SLICE == 0:
            yield
    yield
    return (math.fsum(overlap) + above) / (z_t * z_c)


# --- sample ratio mismatch --------------------------------------------------------------------


def _srm(weights: Sequence[float], exposures: Sequence[int]) -> dict[str, Any]:
    """Pearson chi-square of the exposures against the configured split, df = k - 1.

    Variants with weight 0 receive no traffic by design, so they are left out of the test (and
    of the minimum-exposures rule) rather than turning every paused variant into a mismatch.
    """
    tested = [(w, n) for w, n in zip(weights, exposures, strict=True) if math.isfinite(w) and w > 0]
    total = sum(n for _, n in tested)
    if len(tested) < 2 or total == 0:
        return {"p_value": None, "warning": False}
    weight_sum = math.fsum(w for w, _ in tested)
    chi2 = math.fsum(
        (n - total * w / weight_sum) ** 2 / (total * w / weight_sum) for w, n in tested
    )
    p = chi2_sf(chi2, len(tested) - 1)
    warning = p < SRM_ALPHA and all(n >= SRM_MIN_EXPOSURES for _, n in tested)
    return {"p_value": p, "warning": warning}


def chi2_sf(x: float, df: int) -> float:
    """Survival function of the chi-square distribution: Q(df/2, x/2)."""
    return _gamma_q(df / 2, x / 2)


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x), as in Numerical Recipes (gammq).

    The series converges fast for x < a + 1 and the continued fraction beyond it; each is used
    where it does not lose the small tail to cancellation.
    """
    if x <= 0:
        return 1.0
    log_prefactor = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1 / a
        ap = a
        for _ in range(_GAMMA_MAX_ITER):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _GAMMA_EPS:
                break
        return min(1.0, max(0.0, 1 - total * math.exp(log_prefactor)))
    # Modified Lentz evaluation of the continued fraction.
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    h = d
    for i in range(1, _GAMMA_MAX_ITER):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _GAMMA_EPS:
            break
    return min(1.0, max(0.0, math.exp(log_prefactor) * h))
