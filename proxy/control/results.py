"""Experiment results and daily series, cached by their inputs and computed in slices.

Both are pure functions of a few counts read from Redis in one round trip, so each is cached
under exactly those counts: a reader polling an experiment whose counts did not move costs
that one read and a dictionary lookup. A recomputation runs in slices of a quarter of a
millisecond (proxy.domain.stats.Steps) with the loop free between them, so evaluate and track
on the same worker never wait behind it for longer than one slice; readers asking at the same
time for the same inputs share one computation.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Generator, Hashable, Iterator
from typing import Any, Generic, TypeVar

import orjson
from prometheus_client.core import CounterMetricFamily, Metric

from proxy.domain import model, series, stats
from proxy.store.events import EventStore, Tally, utc_day

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

RESULTS_CACHED = 256
SERIES_CACHED = 64
# Days of a series encoded per slice: a day of 20 variants is about 3 KB of JSON.
DAYS_PER_ENCODING = 64


class Memo(Generic[K, V]):
    """Outcomes of pure computations by their inputs: the last `size` used are kept, and one
    computation runs per key however many wait for it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.done: OrderedDict[K, V] = OrderedDict()
        self.running: dict[K, asyncio.Task[V]] = {}
        self.hits = 0
        self.misses = 0

    def cached(self, key: K) -> V | None:
        if key not in self.done:
            return None
        self.done.move_to_end(key)
        self.hits += 1
        return self.done[key]

    async def get(self, key: K, make: Callable[[], stats.Steps[V]]) -> V:
        value = self.cached(key)
        if value is not None:
            return value
        task = self.running.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            self.misses += 1
            task = asyncio.ensure_future(self._compute(key, make))
            self.running[key] = task
        # Shielded: a reader that goes away does not cancel what the others wait for.
        return await asyncio.shield(task)

    async def _compute(self, key: K, make: Callable[[], stats.Steps[V]]) -> V:
        try:
            steps = make()
            for _ in steps:
                await asyncio.sleep(0)
            value = steps.result
        finally:
            self.running.pop(key, None)
        self.done[key] = value
        while len(self.done) > self.size:
            self.done.popitem(last=False)
        return value


# Both keep JSON bytes, not the figures' dicts: a bytes object is one object the cyclic garbage
# collector never visits, where 256 results of 20 variants would be 100,000 it walks on every
# full collection, at a cost to every request of the worker.
RESULTS: Memo[tuple[Any, ...], bytes] = Memo(RESULTS_CACHED)
SERIES: Memo[tuple[Any, ...], bytes] = Memo(SERIES_CACHED)


def _settings(analysis: model.AnalysisSettings) -> tuple[float, int, str | None]:
    return analysis["alpha"], analysis["sequential_tuning"], analysis["correction"]


async def experiment_results(
    experiment: model.Experiment, goal: str, tally: Tally
) -> orjson.Fragment:
    """`{control, goal, variants, srm}` of the goal, from the counts read, as JSON (a fragment
    that orjson embeds as it is in the answer)."""
    variants = experiment["variants"]
    analysis = model.analysis_of(experiment)
    keys = tuple(v["key"] for v in variants)
    weights = tuple(v["percentage"] for v in variants)
    key = (
        experiment["id"],
        goal,
        keys,
        weights,
        tally.exposures,
        tally.conversions,
        tally.sums,
        _settings(analysis),
    )

    def make() -> stats.Steps[bytes]:
        steps = stats.results_steps(
            weights,
            list(zip(keys, tally.exposures, tally.conversions, strict=True)),
            model.analysis_settings(analysis),
            tally.values(),
        )
        return stats.Steps(_results_json(steps, keys[0], goal))

    return orjson.Fragment(await RESULTS.get(key, make))


def _results_json(
    steps: stats.Steps[dict[str, Any]], control: str, goal: str
) -> Generator[None, None, bytes]:
    yield from steps
    return orjson.dumps({"control": control, "goal": goal, **steps.result})


async def experiment_series(events: EventStore, experiment: model.Experiment, goal: str) -> bytes:
    """The `GET .../series` answer as JSON bytes, `{"data": {goal, days}}`.

    A first read of the totals alone names the inputs: counts only ever grow, each new event
    adds one to a total and one to a day in the same script, so equal totals mean equal days
    and the cached answer is still the answer. Only a miss reads the day hashes.
    """
    variants = experiment["variants"]
    analysis = model.analysis_of(experiment)
    keys = tuple(v["key"] for v in variants)
    tally = await events.tally(experiment["id"], goal, len(variants))
    today = utc_day(events.clock())
    # Today too: events older than day counting are on no day, and the series puts them on the
    # first one, which is today when there is no other (so the answer may change at midnight).
    settings = _settings(analysis)
    key: tuple[Any, ...] = (experiment["id"], goal, keys, tally.exposures, tally.conversions)
    key += (settings, today)
    cached = SERIES.cached(key)
    if cached is not None:
        return cached
    days = await events.days(experiment["id"], goal, len(variants))
    history = series.cumulative(
        days.exposures, days.conversions, days.exposure_days, days.conversion_days, today
    )
    if (days.exposures, days.conversions) != (tally.exposures, tally.conversions):
        # Events arrived between the two reads: this answer is for the later counts.
        key = (experiment["id"], goal, keys, days.exposures, days.conversions, settings, today)
    head = orjson.dumps(goal)
    chosen = model.analysis_settings(analysis)
    return await SERIES.get(
        key, lambda: stats.Steps(_encoded(series.series_steps(keys, history, chosen), head))
    )


def _encoded(steps: stats.Steps[list[dict[str, Any]]], goal: bytes) -> Generator[None, None, bytes]:
    """The series' JSON, computed and then encoded in slices of days."""
    yield from steps
    days = steps.result
    parts = []
    for start in range(0, len(days), DAYS_PER_ENCODING):
        parts.append(orjson.dumps(days[start : start + DAYS_PER_ENCODING])[1:-1])
        yield
    return b'{"data":{"goal":' + goal + b',"days":[' + b",".join(parts) + b"]}}"


class CacheMetrics:
    """Cache hits and misses of both, for /metrics: a poller's reads should be hits."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "edge_results_cache",
            "Results and series reads by cache outcome",
            labels=["kind", "outcome"],
        )
        for kind, memo in (("results", RESULTS), ("series", SERIES)):
            family.add_metric([kind, "hit"], memo.hits)
            family.add_metric([kind, "miss"], memo.misses)
        yield family


CACHE_METRICS = CacheMetrics()
