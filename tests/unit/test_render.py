"""The generated render functions against their oracle, the reference closures: for random
plans (static, targeted, segmented, rolled-out and experiment flags) and random contexts, the
same bytes and the same exposures; and OFREP's bulk answer likewise."""

from __future__ import annotations

import gc
import tempfile
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.domain import model, rules
from proxy.edge import render
from proxy.edge.snapshot import ProjectSnapshot, compile_project
from proxy.store.events import EventStore
from proxy.store.exposures import ExposureBuffer
from proxy.store.spool import Spool

T0 = "2024-01-01T00:00:00.000Z"
PROJECT_ID = "00000000-0000-4000-8000-000000000000"
PROJECT = model.new_project({"name": "P"}, id=PROJECT_ID, now=T0)
ATTRIBUTES = ("country", "plan", "age", "version", "signup", "tags", "user_id")
VERSIONS = ("1.0.0", "2.4.0", "2.5.0-beta.1", "10.0.0")
TIMES = ("2024-01-01T00:00:00Z", "2025-06-30T12:00:00.5+02:00", "1999-12-31T23:59:59Z")


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# Small pools, so that contexts often hit a condition's value exactly (the edges: equal to a
# threshold, the same spelling in another type).
scalars = st.one_of(
    st.sampled_from(["US", "DE", "10", "true", "", "2.4.0"]),
    st.integers(min_value=0, max_value=3) | st.just(10),
    st.sampled_from([2.0, 10.0, 1e20]),
    st.booleans(),
)


@st.composite
def conditions(draw: st.DrawFn, key: str = "attribute") -> dict[str, Any]:
    attribute = draw(st.sampled_from(ATTRIBUTES))
    operator = draw(st.sampled_from(sorted(rules.OPERATORS)))
    value: Any
    if operator in ("in", "not_in"):
        value = draw(st.lists(scalars, min_size=1, max_size=4))
    elif operator in ("gt", "gte", "lt", "lte"):
        value = draw(st.integers(min_value=0, max_value=3) | st.sampled_from([2.0, 2.5, 10]))
    elif operator.startswith("semver"):
        value = draw(st.sampled_from(VERSIONS))
    elif operator in ("before", "after"):
        value = draw(st.sampled_from(TIMES))
    elif operator in ("is_set", "is_not_set"):
        value = None
    elif operator == "regex":
        value = draw(st.sampled_from(["^U", "E$", "[0-9]+", "p.o"]))
    else:
        value = draw(scalars)
    return {key: attribute, "operator": operator, "value": value}


context_values = st.one_of(
    scalars,
    st.none(),
    st.sampled_from(VERSIONS + TIMES + ("not-a-version",)),
    st.lists(scalars, max_size=3),
    st.just({"nested": 1}),
)
contexts = st.dictionaries(st.sampled_from(ATTRIBUTES[:-1]), context_values, min_size=2, max_size=6)
users = st.one_of(st.none(), st.sampled_from([f"user-{i}" for i in range(40)]))


@st.composite
def projects(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {k: {} for k in ("flags", "rules", "segments", "experiments")}
    n = iter(range(1, 10_000))
    segments = []
    for _ in range(draw(st.integers(0, 2))):
        body = {
            "project_id": PROJECT_ID,
            "name": "s",
            "rules": draw(st.lists(conditions("key"), max_size=3)),
            "match_type": draw(st.sampled_from(["all", "any"])),
        }
        segment = model.new_segment(body, id=uid(next(n)), now=T0)
        segments.append(segment)
        out["segments"][segment["id"]] = segment
    for i in range(draw(st.integers(1, 8))):
        body = {
            "project_id": PROJECT_ID,
            "key": f"flag{i}",
            "name": "f",
            "flag_type": "string",
            "default_value": f"default{i}",
        }
        flag = {**model.new_flag(body, id=uid(next(n)), now=f"2024-01-01T00:00:0{i}.000Z"),
                "enabled": draw(st.integers(0, 4)) > 0}  # fmt: skip
        out["flags"][flag["id"]] = flag
        for position in range(draw(st.integers(0, 3))):
            rule_body: dict[str, Any] = {
                "environment": "production",
                "value": f"rule{i}.{position}",
                "conditions": draw(st.lists(conditions(), max_size=2)),
                "position": position,
                "enabled": draw(st.booleans()) or draw(st.booleans()),
            }
            if draw(st.booleans()):
                rule_body["percentage"] = draw(st.sampled_from([0, 12.34, 50, 100]))
            if segments and draw(st.booleans()):
                rule_body["segment_id"] = draw(st.sampled_from(segments))["id"]
            rule = model.new_rule(
                rule_body,
                flag=flag,
                project=PROJECT,
                segments={s["id"]: s for s in segments},
                next_position=position,
                id=uid(next(n)),
                now=T0,
            )
            out["rules"][rule["id"]] = rule
        if draw(st.integers(0, 2)) == 0:
            variants = draw(st.integers(2, 3))
            percentages = [100 // variants] * variants
            percentages[0] += 100 - sum(percentages)
            body = {
                "name": "e",
                "environment": "production",
                "variants": [
                    {"key": f"v{j}", "value": f"variant{i}.{j}", "percentage": p}
                    for j, p in enumerate(percentages)
                ],
                "traffic_percentage": draw(st.sampled_from([100, 50, 0.01, 0])),
            }
            experiment = model.new_experiment(
                body, flag=flag, project=PROJECT, id=uid(next(n)), now=T0
            )
            out["experiments"][experiment["id"]] = {**experiment, "status": "running"}
    return out


def pool_of(records: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """Per attribute, the values where a wrong inline form would show: the project's own
    condition values, their other spellings (10, "10", 10.0), with a character before or
    after."""
    pool: dict[str, list[Any]] = {}
    found = [c for r in records["rules"].values() for c in r["conditions"]]
    found += [
        {**c, "attribute": c["key"]} for s in records["segments"].values() for c in s["rules"]
    ]
    for c in found:
        values = c["value"] if isinstance(c["value"], list) else [c["value"]]
        for v in values:
            spelled = v if isinstance(v, str) else orjson.dumps(v).decode()
            pool.setdefault(c["attribute"], []).extend([v, spelled, f"x{spelled}", f"{spelled}x"])
            if type(v) in (int, float) and v == int(v) and abs(v) < 1e15:
                pool[c["attribute"]] += [int(v), float(v)]
    return pool


def near(records: dict[str, dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Random contexts mostly made of the pool's values."""
    pool = pool_of(records)
    if not pool:
        return contexts
    near_values = {a: st.sampled_from(vs) for a, vs in pool.items()}
    return st.fixed_dictionaries(
        {a: st.one_of(v, v, v, context_values) for a, v in near_values.items()},
        optional={a: context_values for a in ATTRIBUTES[:-1] if a not in pool},
    )


class Recorder:
    """A plain exposure sink: one call per exposure."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, experiment_id: str, variant: int, user_id: str) -> None:
        self.calls.append((experiment_id, variant, user_id))


def compiled(records: dict[str, dict[str, Any]], sink: Any) -> ProjectSnapshot:
    return compile_project(PROJECT, 1, records, sink)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projects(), st.data())
def test_generated_and_reference_renders_agree_byte_for_byte_and_in_exposures(
    records: dict[str, dict[str, Any]], data: st.DataObject
) -> None:
    sink = Recorder()
    plan = compiled(records, sink).plans["production"]
    requests = data.draw(st.lists(st.tuples(near(records), users), min_size=1, max_size=12))
    # And every pool value alone, with and without a user: the edges, exhaustively.
    requests += [({a: v}, u) for a, vs in pool_of(records).items() for v in vs for u in (None, "u")]
    for context, user in requests:
        ctx = context if user is None else {**context, "user_id": user}
        sink.calls.clear()
        generated = plan.render(ctx, user)
        generated_exposures = list(sink.calls)
        sink.calls.clear()
        reference = plan.render_reference(ctx, user)
        assert generated == reference
        assert generated_exposures == sink.calls
        orjson.loads(generated)  # and it is JSON


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projects(), contexts, users)
def test_the_ofrep_bulk_render_agrees_with_the_reference_results(
    records: dict[str, dict[str, Any]], context: dict[str, Any], user: str | None
) -> None:
    sink = Recorder()
    plan = compiled(records, sink).plans["production"]
    ctx = context if user is None else {**context, "user_id": user}
    irs = [f.ir for f in plan.flags.values()]
    generated = render.ofrep_render(irs, sink, "production")(ctx, user)
    expected = []
    for flag in plan.flags.values():
        outcome = flag.static or flag.evaluate(ctx, user)
        expected.append(orjson.loads(render.ofrep_fragment(outcome, "production")))
    assert orjson.loads(generated) == {"flags": expected}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projects(), st.lists(users, min_size=1, max_size=20))
def test_the_buffer_records_the_same_exposures_as_one_call_per_exposure(
    records: dict[str, dict[str, Any]], user_ids: list[str | None]
) -> None:
    # Never flushed here: its Redis client never connects, its spool is never written.
    unused = EventStore(aredis.Redis()), Spool(Path(tempfile.gettempdir()) / "unused", 0)
    buffer = ExposureBuffer(*unused, buffer_max=10_000, seen_max=1 << 16)
    reference = Recorder()
    grouped = compiled(records, buffer).plans["production"]
    plain = compiled(records, reference).plans["production"]
    for user in user_ids:
        ctx = {} if user is None else {"user_id": user}
        assert grouped.render(ctx, user) == plain.render(ctx, user)
    # Each (experiment, user) once in the buffer, however often the user came.
    assert Counter(buffer.pending()) == Counter(set(reference.calls))


def test_an_old_plan_is_freed_by_reference_counting_alone() -> None:
    """The sync freezes each snapshot out of the cyclic collector's sight, so a plan that only
    the collector could free (a cycle) would never be freed at all."""
    records = {k: {} for k in ("flags", "rules", "segments", "experiments")}
    body = {"project_id": PROJECT_ID, "key": "f", "name": "f", "flag_type": "string"}
    flag = {**model.new_flag({**body, "default_value": "d"}, id=uid(1), now=T0), "enabled": True}
    rule = model.new_rule(
        {"environment": "production", "value": "r", "percentage": 50},
        flag=flag, project=PROJECT, segments={}, next_position=0, id=uid(2), now=T0,
    )  # fmt: skip
    records["flags"][flag["id"]] = flag
    records["rules"][rule["id"]] = rule
    gc.disable()
    try:
        plan = compiled(records, Recorder()).plans["production"]
        plan.render({}, "u")
        plan.flags["f"].evaluate({}, "u")
        alive = [weakref.ref(plan.render), weakref.ref(plan.flags["f"].evaluate)]
        del plan
        assert [ref() for ref in alive] == [None, None]
    finally:
        gc.enable()
