"""The daily series (proxy.domain.series): cumulative counts per day from per-day increments, and
each day's figures, the last day's being exactly the results' own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.domain import series, stats

KEYS = ("control", "blue", "green")


def test_days_are_cumulative_oldest_first_over_every_day_with_events() -> None:
    days = series.cumulative(
        exposures=[5, 4],
        conversions=[2, 1],
        exposure_days=[{"2024-03-01": 3, "2024-03-03": 2}, {"2024-03-01": 4}],
        conversion_days=[{"2024-03-02": 1, "2024-03-03": 1}, {"2024-03-03": 1}],
        today="2024-03-09",
    )
    assert days == [
        ("2024-03-01", (3, 4), (0, 0)),
        ("2024-03-02", (3, 4), (1, 0)),  # a day with a conversion only is a day with events
        ("2024-03-03", (5, 4), (2, 1)),
    ]


def test_events_older_than_day_counting_count_from_the_first_day() -> None:
    days = series.cumulative(
        exposures=[10, 8],  # 6 and 5 of them before days were counted
        conversions=[3, 2],
        exposure_days=[{"2024-03-05": 4}, {"2024-03-06": 3}],
        conversion_days=[{"2024-03-06": 1}, {}],
        today="2024-03-09",
    )
    assert days == [("2024-03-05", (10, 5), (2, 2)), ("2024-03-06", (10, 8), (3, 2))]


def test_without_counted_days_the_totals_are_today_and_nothing_is_no_day() -> None:
    assert series.cumulative([3, 2], [1, 0], [{}, {}], [{}, {}], "2024-03-09") == [
        ("2024-03-09", (3, 2), (1, 0))
    ]
    assert series.cumulative([0, 0], [0, 0], [{}, {}], [{}, {}], "2024-03-09") == []


def test_the_last_day_is_the_totals_even_when_days_overcount() -> None:
    days = series.cumulative([2, 2], [1, 1], [{"d1": 3}, {"d1": 2}], [{"d1": 1}, {"d1": 2}], "d9")
    assert days == [("d1", (2, 2), (1, 1))]


def test_the_control_has_no_comparison_and_an_empty_arm_no_figure() -> None:
    day = series.series_steps(KEYS, [("2024-03-01", (10, 0, 10), (2, 0, 2))]).run()[0]
    control, blue, green = day["variants"]
    assert control == {
        "key": "control",
        "exposures": 10,
        "conversions": 2,
        "conversion_rate": 0.2,
        "absolute_lift": None,
        "sequential_absolute_lift_ci": None,
    }
    assert blue["conversion_rate"] is None and blue["absolute_lift"] is None
    assert green["absolute_lift"] == 0.0
    assert green["sequential_absolute_lift_ci"] is not None


def test_a_long_series_runs_in_slices() -> None:
    days = [(f"d{i:04}", (100 + i, 100 + i), (i, i)) for i in range(1000)]
    steps = series.series_steps(KEYS[:2], days)
    slices = sum(1 for _ in steps)
    assert slices >= 1000 // series.DAYS_PER_SLICE
    assert len(steps.result) == 1000


arm = st.tuples(st.integers(0, 10**7), st.integers(0, 10**7))


@given(
    arms=st.lists(arm, min_size=2, max_size=5),
    alpha=st.sampled_from([0.01, 0.05, 0.2]),
    tuning=st.integers(100, 10**6),
)
def test_a_day_has_exactly_the_results_figures(
    arms: list[tuple[int, int]], alpha: float, tuning: int
) -> None:
    keys = [f"v{i}" for i in range(len(arms))]
    analysis = stats.Analysis(alpha, tuning)
    exposures = tuple(n for n, _ in arms)
    conversions = tuple(x for _, x in arms)
    day = series.series_steps(keys, [("d", exposures, conversions)], analysis).run()[0]
    results = stats.experiment_results(
        [1] * len(arms), list(zip(keys, exposures, conversions, strict=True)), analysis
    )
    for got, want in zip(day["variants"], results["variants"], strict=True):
        assert got["exposures"] == want["exposures"]
        assert got["conversions"] == want["conversions"]
        assert got["conversion_rate"] == want["conversion_rate"]
        assert got["absolute_lift"] == want["absolute_lift"]
        sequential = want["sequential"] or {}
        assert got["sequential_absolute_lift_ci"] == sequential.get("absolute_lift_ci")
