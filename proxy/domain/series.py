"""An experiment's daily series for one goal (pure, standard library only): for each UTC day that
had events, the cumulative exposures and conversions per variant at the end of that day, the
conversion rate, the absolute lift over the control and its always-valid interval.

The always-valid (sequential) interval holds at every day at once, which is why the series shows
it rather than the fixed-horizon one; its formula and its rounding are the results' own, so the
last day equals the results. Like the results, it is computed in slices (proxy.domain.stats.Steps).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from proxy.domain import stats

# Days per slice: a day is a few microseconds per variant, so 32 days of 20 variants stay near
# a quarter of a millisecond.
DAYS_PER_SLICE = 32

Day = tuple[str, tuple[int, ...], tuple[int, ...]]  # date, cumulative exposures, conversions


def cumulative(
    exposures: Sequence[int],
    conversions: Sequence[int],
    exposure_days: Sequence[Mapping[str, int]],
    conversion_days: Sequence[Mapping[str, int]],
    today: str,
) -> list[Day]:
    """Cumulative counts per variant at the end of each day that had events, oldest first.

    `exposures` and `conversions` are the totals now (the sets' sizes); the day maps count each
    event on the day it was first recorded. Events recorded before days were counted (an
    experiment older than this code) are in the totals and on no day: they happened before the
    first counted day ended, so they count from that day on; with no counted day at all they
    are one day, today. Each figure is capped at its total, so the last day is the totals.
    """
    dates = sorted({d for m in (*exposure_days, *conversion_days) for d in m})
    if not dates:
        return [(today, tuple(exposures), tuple(conversions))] if any(exposures) else []

    def running(totals: Sequence[int], days: Sequence[Mapping[str, int]]) -> list[list[int]]:
        per_day: list[list[int]] = []
        counts = [max(0, total - sum(d.values())) for total, d in zip(totals, days, strict=True)]
        for date in dates:
            counts = [c + d.get(date, 0) for c, d in zip(counts, days, strict=True)]
            per_day.append([min(c, t) for c, t in zip(counts, totals, strict=True)])
        per_day[-1] = list(totals)
        return per_day

    n = running(exposures, exposure_days)
    x = running(conversions, conversion_days)
    return [(date, tuple(n[i]), tuple(x[i])) for i, date in enumerate(dates)]


def series_steps(
    keys: Sequence[str], days: Sequence[Day], analysis: stats.Analysis = stats.DEFAULT_ANALYSIS
) -> stats.Steps[list[dict[str, Any]]]:
    """The series' days as `{date, variants: [{key, exposures, conversions, conversion_rate,
    absolute_lift, sequential_absolute_lift_ci}]}`, in slices; the first variant is the control,
    whose comparisons are None, as is every figure that is undefined (no exposures in either
    arm, or a standard error of 0)."""
    for _, n, x in days:
        if len(n) != len(keys) or len(x) != len(keys):
            raise ValueError(f"a day of {len(n)} exposures, {len(x)} conversions, {len(keys)} keys")
    return stats.Steps(_series(keys, days, analysis))


def _series(
    keys: Sequence[str], days: Sequence[Day], analysis: stats.Analysis
) -> Generator[None, None, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    for index, (date, exposures, conversions) in enumerate(days, 1):
        out.append({"date": date, "variants": _day(keys, exposures, conversions, analysis)})
        if index % DAYS_PER_SLICE == 0:
            yield
    return out


def _day(
    keys: Sequence[str],
    exposures: Sequence[int],
    conversions: Sequence[int],
    analysis: stats.Analysis,
) -> list[dict[str, Any]]:
    # Clamped as the results clamp them: a conversion can outlive its exposure's write.
    arms = [
        (key, max(0, n), min(max(0, x), max(0, n)))
        for key, n, x in zip(keys, exposures, conversions, strict=True)
    ]
    _, n_c, x_c = arms[0]
    rows = []
    for index, (key, n, x) in enumerate(arms):
        row: dict[str, Any] = {
            "key": key,
            "exposures": n,
            "conversions": x,
            "conversion_rate": x / n if n > 0 else None,
            "absolute_lift": None,
            "sequential_absolute_lift_ci": None,
        }
        if index > 0 and n_c > 0 and n > 0:
            p_c, p_t = x_c / n_c, x / n
            lift = p_t - p_c
            row["absolute_lift"] = lift
            # The same expression as the results' sequential interval, term for term.
            se = math.sqrt(p_t * (1 - p_t) / n + p_c * (1 - p_c) / n_c)
            if se > 0:
                half = stats.sequential_half_width(
                    se, n_c + n, analysis.alpha, analysis.sequential_tuning
                )
                row["sequential_absolute_lift_ci"] = [lift - half, lift + half]
        rows.append(row)
    return rows
