"""Compiled evaluation plans: what `Plan.render` answers for each kind of flag, and exposures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pytest

from proxy.domain import bucketing, model
from proxy.domain.model import Record
from proxy.edge.snapshot import ProjectSnapshot, compile_project

T0 = "2024-01-01T00:00:00Z"
PROJECT_ID = "7e57a1b2-0000-4000-8000-000000000000"
PROJECT = model.new_project(
    {"name": "Shop", "environments": ["production", "staging"]}, id=PROJECT_ID, now=T0
)
USERS = [f"user-{i}" for i in range(2000)]


def uid(n: int) -> str:
    """A fixed, valid record id per number."""
    return f"00000000-0000-4000-8000-{n:012d}"


class Exposures:
    """The on_exposure sink: remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, experiment_id: str, variant: int, user_id: str) -> None:
        self.calls.append((experiment_id, variant, user_id))


def make_flag(
    n: int,
    key: str,
    *,
    flag_type: str = "string",
    default: Any = "off",
    enabled: bool = True,
) -> Record:
    body = {
        "project_id": PROJECT_ID,
        "key": key,
        "name": key,
        "flag_type": flag_type,
        "default_value": default,
    }
    return {**model.new_flag(body, id=uid(n), now=T0), "enabled": enabled}


def make_segment(n: int, rules: list[dict[str, Any]], match_type: str) -> Record:
    body = {"project_id": PROJECT_ID, "name": f"s{n}", "rules": rules, "match_type": match_type}
    return model.new_segment(body, id=uid(n), now=T0)


def make_rule(
    n: int,
    flag: Record,
    value: Any,
    *,
    environment: str = "production",
    segments: Iterable[Record] = (),
    created_at: str = T0,
    **fields: Any,
) -> Record:
    return model.new_rule(
        {"environment": environment, "value": value, **fields},
        flag=flag,
        project=PROJECT,
        segments={s["id"]: s for s in segments},
        next_position=0,
        id=uid(n),
        now=created_at,
    )


def make_experiment(
    n: int,
    flag: Record,
    values: tuple[Any, ...] = ("a", "b"),
    *,
    status: str = "running",
    environment: str = "production",
    percentages: tuple[int, ...] | None = None,
    traffic: float = 100,
) -> Record:
    pcts = percentages or tuple(100 // len(values) for _ in values)
    body = {
        "name": f"e{n}",
        "environment": environment,
        "variants": [
            {"key": f"k{i}", "value": v, "percentage": p}
            for i, (v, p) in enumerate(zip(values, pcts, strict=True))
        ],
        "traffic_percentage": traffic,
    }
    record = model.new_experiment(body, flag=flag, project=PROJECT, id=uid(n), now=T0)
    return {**record, "status": status}


def records(*items: Record) -> dict[str, dict[str, Record]]:
    """Records by kind, as stored in a project scope (kind guessed from the record's shape)."""
    out: dict[str, dict[str, Record]] = {
        k: {} for k in ("flags", "rules", "segments", "experiments")
    }
    for r in items:
        if "flag_type" in r:
            kind = "flags"
        elif "variants" in r:
            kind = "experiments"
        elif "match_type" in r:
            kind = "segments"
        else:
            kind = "rules"
        out[kind][r["id"]] = r
    return out


def compile_(*items: Record, sink: Exposures | None = None) -> ProjectSnapshot:
    return compile_project(PROJECT, 3, records(*items), sink or Exposures())


def evaluate(
    snap: ProjectSnapshot, context: Mapping[str, Any], environment: str = "production"
) -> dict[str, Any]:
    """What evaluate answers: the user id is the context's `user_id`, as in the route."""
    user_id = context.get("user_id")
    body = orjson.loads(snap.plans[environment].render(context, user_id))
    assert set(body) == {"flags"}
    flags: dict[str, Any] = body["flags"]
    return flags


def answer(value: Any, rule_id: str | None = None) -> dict[str, Any]:
    return {"value": value, "rule_id": rule_id}


# Static flags ---------------------------------------------------------------------------------


def test_an_empty_project_renders_no_flags() -> None:
    snap = compile_()
    assert snap.plans["production"].render({}, None) == b'{"flags":{}}'
    assert set(snap.plans) == {"production", "staging"}


def test_flags_without_rules_answer_their_default_for_everyone() -> None:
    snap = compile_(
        make_flag(1, "banner", flag_type="boolean", default=True, enabled=False),
        make_flag(2, "color", default="blue"),
        make_flag(3, "limits", flag_type="json", default={"max": [1, 2]}),
        make_flag(4, "ratio", flag_type="number", default=0.5),
    )
    expected = {
        "banner": answer(True),
        "color": answer("blue"),
        "limits": answer({"max": [1, 2]}),
        "ratio": answer(0.5),
    }
    for context in ({}, {"user_id": "u1"}, {"user_id": "u2", "country": "US"}):
        assert evaluate(snap, context) == expected
    assert all(f.static is not None for f in snap.plans["production"].flags.values())


def test_a_disabled_flag_ignores_its_rules_and_answers_default_with_reason_disabled() -> None:
    f = make_flag(1, "checkout", default="old", enabled=False)
    snap = compile_(f, make_rule(2, f, "new"), make_rule(3, f, "newer", percentage=100))
    assert evaluate(snap, {"user_id": "u1"}) == {"checkout": answer("old")}
    outcome = snap.plans["production"].flags["checkout"].evaluate({"user_id": "u1"}, "u1")
    assert (outcome.reason, outcome.variant, outcome.rule_id) == ("DISABLED", "default", None)


def test_an_enabled_flag_whose_rules_miss_answers_default_with_reason_default() -> None:
    f = make_flag(1, "checkout", default="old")
    rule = make_rule(2, f, "new", conditions=[{"attribute": "beta", "operator": "is_set"}])
    snap = compile_(f, rule)
    assert evaluate(snap, {"user_id": "u1"}) == {"checkout": answer("old")}
    outcome = snap.plans["production"].flags["checkout"].evaluate({}, None)
    assert (outcome.reason, outcome.variant) == ("DEFAULT", "default")


# Targeting rules ------------------------------------------------------------------------------


def test_rules_apply_in_position_order_with_their_rule_id() -> None:
    f = make_flag(1, "checkout")
    us = [{"attribute": "country", "operator": "equals", "value": "US"}]
    catch_all = make_rule(2, f, "everyone", position=5)
    for_us = make_rule(3, f, "us", position=1, conditions=us)
    snap = compile_(f, catch_all, for_us)
    assert evaluate(snap, {"country": "US"}) == {"checkout": answer("us", uid(3))}
    assert evaluate(snap, {"country": "FR"}) == {"checkout": answer("everyone", uid(2))}
    outcome = snap.plans["production"].flags["checkout"].evaluate({"country": "US"}, None)
    assert (outcome.reason, outcome.variant, outcome.rule_id) == ("TARGETING_MATCH", uid(3), uid(3))


def test_rules_of_equal_position_apply_oldest_first() -> None:
    f = make_flag(1, "checkout")
    newer = make_rule(2, f, "newer", position=0, created_at="2024-02-01T00:00:00Z")
    older = make_rule(3, f, "older", position=0, created_at="2024-01-15T00:00:00Z")
    assert evaluate(compile_(f, newer, older), {}) == {"checkout": answer("older", uid(3))}


def test_all_conditions_of_a_rule_must_hold() -> None:
    f = make_flag(1, "checkout")
    conditions = [
        {"attribute": "country", "operator": "in", "value": ["US", "CA"]},
        {"attribute": "age", "operator": "gte", "value": 18},
    ]
    snap = compile_(f, make_rule(2, f, "on", conditions=conditions))
    assert evaluate(snap, {"country": "CA", "age": 18})["checkout"] == answer("on", uid(2))
    assert evaluate(snap, {"country": "CA", "age": 17})["checkout"] == answer("off")
    assert evaluate(snap, {"country": "FR", "age": 40})["checkout"] == answer("off")
    assert evaluate(snap, {})["checkout"] == answer("off")


def test_a_disabled_rule_is_skipped() -> None:
    f = make_flag(1, "checkout")
    snap = compile_(f, make_rule(2, f, "first", enabled=False), make_rule(3, f, "second"))
    assert evaluate(snap, {}) == {"checkout": answer("second", uid(3))}


def test_a_flag_whose_only_rule_is_disabled_is_static() -> None:
    f = make_flag(1, "checkout")
    snap = compile_(f, make_rule(2, f, "first", enabled=False))
    assert snap.plans["production"].flags["checkout"].static is not None
    assert evaluate(snap, {"user_id": "u"}) == {"checkout": answer("off")}


def test_a_percentage_rule_without_user_id_does_not_match() -> None:
    f = make_flag(1, "checkout")
    snap = compile_(f, make_rule(2, f, "rolled", percentage=100), make_rule(3, f, "rest"))
    assert evaluate(snap, {"user_id": "u1"})["checkout"] == answer("rolled", uid(2))
    assert evaluate(snap, {})["checkout"] == answer("rest", uid(3))
    assert evaluate(snap, {"email": "a@b.c"})["checkout"] == answer("rest", uid(3))


def test_a_percentage_rule_admits_exactly_the_users_below_its_bucket_limit() -> None:
    f = make_flag(1, "checkout")
    snap = compile_(f, make_rule(2, f, "rolled", percentage=12.34))
    salt = bucketing.rollout_salt(uid(2))
    admitted = 0
    for user in USERS:
        inside = bucketing.bucket(salt, user) < 1234
        admitted += inside
        expected = answer("rolled", uid(2)) if inside else answer("off")
        assert evaluate(snap, {"user_id": user})["checkout"] == expected
    assert 0 < admitted < len(USERS)


def test_a_zero_percent_rule_matches_no_one() -> None:
    f = make_flag(1, "checkout")
    snap = compile_(f, make_rule(2, f, "rolled", percentage=0))
    assert all(evaluate(snap, {"user_id": u})["checkout"] == answer("off") for u in USERS[:200])


def test_raising_a_rules_percentage_only_adds_users() -> None:
    f = make_flag(1, "checkout")
    low = compile_(f, make_rule(2, f, "rolled", percentage=20))
    high = compile_(f, make_rule(2, f, "rolled", percentage=60))
    in_low = {u for u in USERS if evaluate(low, {"user_id": u})["checkout"]["value"] == "rolled"}
    in_high = {u for u in USERS if evaluate(high, {"user_id": u})["checkout"]["value"] == "rolled"}
    assert in_low < in_high


@pytest.mark.parametrize(
    ("match_type", "context", "matches"),
    [
        ("all", {"plan": "pro", "country": "US"}, True),
        ("all", {"plan": "pro", "country": "FR"}, False),
        ("all", {"plan": "free", "country": "US"}, False),
        ("any", {"plan": "pro", "country": "FR"}, True),
        ("any", {"plan": "free", "country": "US"}, True),
        ("any", {"plan": "free", "country": "FR"}, False),
        ("any", {}, False),
    ],
)
def test_a_segment_is_one_more_condition_of_its_rule(
    match_type: str, context: dict[str, Any], matches: bool
) -> None:
    seg = make_segment(
        9,
        [
            {"key": "plan", "operator": "equals", "value": "pro"},
            {"key": "country", "operator": "equals", "value": "US"},
        ],
        match_type,
    )
    f = make_flag(1, "checkout")
    rule = make_rule(2, f, "seg", segment_id=seg["id"], segments=[seg])
    snap = compile_(f, seg, rule)
    expected = answer("seg", uid(2)) if matches else answer("off")
    assert evaluate(snap, context)["checkout"] == expected


def test_a_segment_and_the_rules_own_conditions_must_both_hold() -> None:
    seg = make_segment(9, [{"key": "plan", "operator": "equals", "value": "pro"}], "all")
    f = make_flag(1, "checkout")
    conditions = [{"attribute": "beta", "operator": "equals", "value": True}]
    rule = make_rule(2, f, "seg", segment_id=seg["id"], segments=[seg], conditions=conditions)
    snap = compile_(f, seg, rule)
    assert evaluate(snap, {"plan": "pro", "beta": True})["checkout"] == answer("seg", uid(2))
    assert evaluate(snap, {"plan": "pro", "beta": False})["checkout"] == answer("off")
    assert evaluate(snap, {"plan": "free", "beta": True})["checkout"] == answer("off")


# Experiments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_a_running_experiment_takes_precedence_over_rules_and_records_exposure(
    enabled: bool,
) -> None:
    f = make_flag(1, "checkout", enabled=enabled)
    sink = Exposures()
    exp = make_experiment(5, f, ("blue", "green"))
    snap = compile_(f, make_rule(2, f, "rule"), exp, sink=sink)
    plan = snap.experiments[exp["id"]]
    seen = set()
    for user in USERS[:500]:
        index = plan.assign(user)
        assert index is not None
        seen.add(index)
        assert evaluate(snap, {"user_id": user}) == {"checkout": answer(("blue", "green")[index])}
        assert sink.calls[-1] == (exp["id"], index, user)
    assert seen == {0, 1}
    assert len(sink.calls) == 500
    outcome = snap.plans["production"].flags["checkout"].evaluate({"user_id": "u"}, "u")
    assert outcome.reason == "SPLIT"
    assert outcome.variant in ("k0", "k1")
    assert outcome.rule_id is None


def test_a_user_keeps_their_variant_on_every_evaluation_and_compilation() -> None:
    f = make_flag(1, "checkout")
    exp = make_experiment(5, f, ("a", "b", "c"), percentages=(20, 30, 50))
    first, second = compile_(f, exp), compile_(f, exp)
    for user in USERS[:300]:
        answers = {orjson.dumps(evaluate(s, {"user_id": user})) for s in (first, second, first)}
        assert len(answers) == 1


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_a_draft_or_stopped_experiment_is_as_if_absent(status: str) -> None:
    f = make_flag(1, "checkout")
    sink = Exposures()
    snap = compile_(f, make_rule(2, f, "rule"), make_experiment(5, f, status=status), sink=sink)
    assert evaluate(snap, {"user_id": "u1"}) == {"checkout": answer("rule", uid(2))}
    g = make_flag(3, "plain", enabled=False)
    snap = compile_(g, make_experiment(6, g, status=status), sink=sink)
    assert evaluate(snap, {"user_id": "u1"}) == {"plain": answer("off")}
    assert snap.plans["production"].flags["plain"].static is not None
    assert sink.calls == []


def test_without_user_id_an_experiment_flag_answers_rules_or_default_and_records_nothing() -> None:
    f = make_flag(1, "with_rule")
    g = make_flag(2, "without_rule", enabled=False)
    sink = Exposures()
    snap = compile_(
        f,
        g,
        make_rule(3, f, "rule"),
        make_experiment(4, f),
        make_experiment(5, g),
        sink=sink,
    )
    assert evaluate(snap, {"country": "US"}) == {
        "with_rule": answer("rule", uid(3)),
        "without_rule": answer("off"),
    }
    outcome = snap.plans["production"].flags["without_rule"].evaluate({}, None)
    assert outcome.reason == "DISABLED"
    assert sink.calls == []


def test_traffic_zero_lets_no_one_into_the_experiment() -> None:
    f = make_flag(1, "checkout")
    sink = Exposures()
    snap = compile_(f, make_rule(2, f, "rule"), make_experiment(5, f, traffic=0), sink=sink)
    for user in USERS[:500]:
        assert evaluate(snap, {"user_id": user}) == {"checkout": answer("rule", uid(2))}
    assert sink.calls == []


def test_users_outside_the_traffic_share_get_rules_and_are_not_exposed() -> None:
    f = make_flag(1, "checkout")
    sink = Exposures()
    exp = make_experiment(5, f, traffic=30)
    snap = compile_(f, make_rule(2, f, "rule"), exp, sink=sink)
    plan = snap.experiments[exp["id"]]
    outside = [u for u in USERS if plan.assign(u) is None]
    inside = [u for u in USERS if plan.assign(u) is not None]
    assert outside and inside
    for user in outside:
        assert evaluate(snap, {"user_id": user}) == {"checkout": answer("rule", uid(2))}
    assert sink.calls == []
    for user in inside:
        assert evaluate(snap, {"user_id": user})["checkout"]["rule_id"] is None
    assert [call[2] for call in sink.calls] == inside


# Environments and the static/dynamic split -----------------------------------------------------


def test_environments_have_separate_rules_and_experiments() -> None:
    f = make_flag(1, "checkout")
    g = make_flag(2, "banner", enabled=False)
    sink = Exposures()
    snap = compile_(
        f,
        g,
        make_rule(3, f, "staging-rule", environment="staging"),
        make_experiment(4, g, ("x", "y"), environment="staging"),
        sink=sink,
    )
    assert evaluate(snap, {"user_id": "u1"}, "production") == {
        "checkout": answer("off"),
        "banner": answer("off"),
    }
    assert sink.calls == []
    staging = evaluate(snap, {"user_id": "u1"}, "staging")
    assert staging["checkout"] == answer("staging-rule", uid(3))
    assert staging["banner"]["value"] in ("x", "y")
    assert len(sink.calls) == 1
    assert all(f.static is not None for f in snap.plans["production"].flags.values())


def test_static_is_set_exactly_for_flags_that_do_not_depend_on_the_user() -> None:
    seg = make_segment(90, [{"key": "plan", "operator": "equals", "value": "pro"}], "all")
    flags = {
        "disabled": make_flag(1, "disabled", enabled=False),
        "enabled": make_flag(2, "enabled"),
        "disabled_with_rules": make_flag(3, "disabled_with_rules", enabled=False),
        "rules_elsewhere": make_flag(4, "rules_elsewhere"),
        "draft_experiment": make_flag(5, "draft_experiment"),
        "condition_rule": make_flag(6, "condition_rule"),
        "catch_all_rule": make_flag(7, "catch_all_rule"),
        "segment_rule": make_flag(8, "segment_rule"),
        "percentage_rule": make_flag(9, "percentage_rule"),
        "running_experiment": make_flag(10, "running_experiment", enabled=False),
    }
    snap = compile_(
        seg,
        *flags.values(),
        make_rule(20, flags["disabled_with_rules"], "r"),
        make_rule(21, flags["rules_elsewhere"], "r", environment="staging"),
        make_experiment(22, flags["draft_experiment"], status="draft"),
        make_rule(
            23,
            flags["condition_rule"],
            "r",
            conditions=[{"attribute": "plan", "operator": "equals", "value": "pro"}],
        ),
        make_rule(24, flags["catch_all_rule"], "r"),
        make_rule(25, flags["segment_rule"], "r", segment_id=seg["id"], segments=[seg]),
        make_rule(26, flags["percentage_rule"], "r", percentage=50),
        make_experiment(27, flags["running_experiment"]),
    )
    compiled = snap.plans["production"].flags
    static = {key for key, c in compiled.items() if c.static is not None}
    assert static == {
        "disabled",
        "enabled",
        "disabled_with_rules",
        "rules_elsewhere",
        "draft_experiment",
    }
    needs_user = {key for key, c in compiled.items() if c.needs_user}
    assert needs_user == {"percentage_rule", "running_experiment"}
    assert {k for k, c in compiled.items() if c.ir.rules or c.ir.split} == set(compiled) - static
    for key in static:
        assert compiled[key].static == compiled[key].evaluate({"user_id": "u", "plan": "pro"}, "u")
    staging = snap.plans["staging"].flags
    assert staging["rules_elsewhere"].static is None
    assert staging["running_experiment"].static is not None


def test_static_and_dynamic_flags_join_into_one_json_object() -> None:
    f = make_flag(1, "dynamic")
    snap = compile_(
        make_flag(2, "static_a", default="a"),
        f,
        make_flag(3, "static_b", default="b"),
        make_rule(4, f, "r", percentage=100),
    )
    assert evaluate(snap, {"user_id": "u"}) == {
        "static_a": answer("a"),
        "static_b": answer("b"),
        "dynamic": answer("r", uid(4)),
    }
    dyn_only = compile_(f, make_rule(4, f, "r", percentage=100))
    assert dyn_only.plans["production"].render({}, None) == b'{"flags":{"dynamic":' + (
        b'{"value":"off","rule_id":null}}}'
    )


def test_the_snapshot_keeps_every_experiment_plan_and_the_records() -> None:
    f = make_flag(1, "checkout")
    running, draft = make_experiment(2, f), make_experiment(3, f, status="draft")
    recs = records(f, running, draft)
    snap = compile_project(PROJECT, 42, recs, Exposures())
    assert snap.id == PROJECT_ID
    assert snap.version == 42
    assert set(snap.experiments) == {running["id"], draft["id"]}
    assert snap.experiments[draft["id"]].status == "draft"
    assert snap.records is recs
