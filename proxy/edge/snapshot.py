"""Compile stored configuration into immutable evaluation plans, once per version.

A plan per (project, environment) is first described by a small typed IR: per flag, in
creation order, its default answer, its targeting rules (conditions, segment, rollout) and its
running experiment. Every possible answer of a flag is an Outcome built here, its bytes ready
to join. From the IR come, at compile time, the reference closures (one per flag: OFREP single
calls and `flags`-filtered evaluates use them, and tests use them as the oracle) and the plan's
generated render function (proxy/edge/render.py), which answers a whole evaluate in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.domain import bucketing, model, rules
from proxy.domain.access import ApiKey, compile_keys
from proxy.domain.model import Experiment, Flag, Project, Rule, Segment
from proxy.edge import render
from proxy.edge.plan import (
    Condition,
    Context,
    ExperimentPlan,
    ExposureSink,
    FlagFn,
    FlagIR,
    GroupingSink,
    Outcome,
    RuleIR,
    SegmentIR,
    SplitIR,
)

Records = Mapping[str, Mapping[str, Any]]  # kind -> id -> record, as stored


class CompiledFlag:
    """A flag of a plan: its IR, and its reference closure, built on first use (OFREP single
    calls and `flags`-filtered evaluates; the generated render needs none)."""

    __slots__ = ("_evaluate", "ir", "key", "needs_user", "sink", "static")

    def __init__(self, ir: FlagIR, sink: ExposureSink | GroupingSink) -> None:
        self.ir = ir
        self.key = ir.key
        self.static = ir.static  # the answer for everyone, or None when it depends on the user
        self.needs_user = ir.needs_user
        self.sink = sink
        self._evaluate: FlagFn | None = None

    @property
    def evaluate(self) -> FlagFn:
        if self._evaluate is None:
            self._evaluate = closure(self.ir, self.sink)
        return self._evaluate


Render = Callable[[Context, str | None], bytes]


@dataclass(slots=True)
class Plan:
    environment: str
    flags: Mapping[str, CompiledFlag]  # creation order
    render: Render  # generated: the whole evaluate answer, exposures recorded once
    sink: ExposureSink | GroupingSink  # where this plan's exposures go
    ofrep_render: Render | None = None  # generated on first use (proxy.ofrep)

    def render_reference(self, context: Context, user_id: str | None) -> bytes:
        """The answer the closures give, flag by flag: the generated render's oracle."""
        return render_with(self.flags.values(), context, user_id)

    def render_only(self, context: Context, user_id: str | None, keys: Iterable[str]) -> bytes:
        """The answer for the flags named (unknown ones left out): only their experiments
        see the user, so an app that shows one flag exposes the user to that one alone."""
        named = (self.flags[k] for k in keys if k in self.flags)
        return render_with(named, context, user_id)


def render_with(flags: Iterable[CompiledFlag], context: Context, user_id: str | None) -> bytes:
    parts = [(f.static or f.evaluate(context, user_id)).fragment for f in flags]
    return b'{"flags":{' + b",".join(parts) + b"}}"


@dataclass(frozen=True, slots=True)
class ProjectSnapshot:
    id: str
    version: int
    project: Project
    plans: Mapping[str, Plan]
    experiments: Mapping[str, ExperimentPlan]
    records: Records  # as stored: for the last-known-good file


@dataclass(frozen=True, slots=True)
class Snapshot:
    global_version: int
    keys: Mapping[str, ApiKey]  # SHA-256 hex of the token -> key
    projects: Mapping[str, ProjectSnapshot]
    experiments: Mapping[str, ExperimentPlan] = field(default_factory=dict)
    global_records: Records = field(default_factory=dict)


EMPTY = Snapshot(0, {}, {})


def with_global(snap: Snapshot, version: int, records: Records) -> Snapshot:
    """The new global scope; projects it no longer names are dropped with it."""
    projects = {pid: p for pid, p in snap.projects.items() if pid in records["projects"]}
    experiments = {e: p for ps in projects.values() for e, p in ps.experiments.items()}
    keys = compile_keys(records["keys"].values())
    return Snapshot(version, keys, projects, experiments, records)


def with_project(snap: Snapshot, project: ProjectSnapshot | None, project_id: str) -> Snapshot:
    projects = dict(snap.projects)
    if project is None:
        projects.pop(project_id, None)
    else:
        projects[project_id] = project
    experiments = {e: p for ps in projects.values() for e, p in ps.experiments.items()}
    return Snapshot(snap.global_version, snap.keys, projects, experiments, snap.global_records)


# Compiling ----------------------------------------------------------------------------------


def compile_project(
    project: Project, version: int, records: Records, sink: ExposureSink | GroupingSink
) -> ProjectSnapshot:
    # Creation order: answers are stable, whatever order Redis returns a hash in.
    flags: list[Flag] = sorted(records["flags"].values(), key=lambda f: (f["created_at"], f["id"]))
    segment_records: Mapping[str, Segment] = records["segments"]
    segments = {
        s["id"]: SegmentIR(
            tuple(
                rules.cheapest_first([(c["key"], c["operator"], c["value"]) for c in s["rules"]])
            ),
            s["match_type"] == "any",
        )
        for s in segment_records.values()
    }
    experiment_records: Mapping[str, Experiment] = records["experiments"]
    experiments = {e["id"]: _experiment(e) for e in experiment_records.values()}
    # A flag's default answer is the same in every environment: rendered once.
    defaults = {f["id"]: _default(f) for f in flags}
    plans = {}
    for env in project["environments"]:
        running = {
            e["flag_id"]: e
            for e in experiment_records.values()
            if e["environment"] == env and e["status"] == "running"
        }
        by_flag: dict[str, list[Rule]] = {}
        for r in sorted(records["rules"].values(), key=model.rule_order):
            if r["environment"] == env and r["enabled"]:
                by_flag.setdefault(r["flag_id"], []).append(r)
        irs = [
            flag_ir(
                f,
                defaults[f["id"]],
                by_flag.get(f["id"], ()),
                segments,
                running.get(f["id"]),
                experiments,
            )
            for f in flags
        ]
        compiled = {ir.key: CompiledFlag(ir, sink) for ir in irs}
        plans[env] = Plan(env, compiled, render.evaluate_render(irs, sink), sink)
    return ProjectSnapshot(project["id"], version, project, plans, experiments, records)


def _outcome(key: str, value: Any, variant: str, reason: str, rule_id: str | None) -> Outcome:
    fragment = orjson.dumps(key) + b":" + orjson.dumps({"value": value, "rule_id": rule_id})
    return Outcome(key, fragment, value, variant, reason, rule_id)


def _experiment(e: Experiment) -> ExperimentPlan:
    return ExperimentPlan(
        id=e["id"],
        flag_id=e["flag_id"],
        project_id=e["project_id"],
        status=e["status"],
        variant_count=len(e["variants"]),
        table=bucketing.variant_table([v["percentage"] for v in e["variants"]]),
        salt=bucketing.variant_salt(e["id"]),
        traffic_salt=bucketing.traffic_salt(e["id"]),
        traffic_limit=bucketing.limit(e["traffic_percentage"]),
    )


# A segment we do not hold (a hand-edited store) matches no one: fail closed.
_NO_SEGMENT = SegmentIR((), match_any=True)


def _default(flag: Flag) -> Outcome:
    reason = "DEFAULT" if flag["enabled"] else "DISABLED"
    return _outcome(flag["key"], flag["default_value"], "default", reason, None)


def flag_ir(
    flag: Flag,
    default: Outcome,
    flag_rules: Sequence[Rule],
    segments: Mapping[str, SegmentIR],
    experiment: Experiment | None,
    experiments: Mapping[str, ExperimentPlan],
) -> FlagIR:
    key = flag["key"]
    rule_irs: list[RuleIR] = []
    if flag["enabled"]:  # a disabled flag's rules never apply
        for r in flag_rules:
            conditions = [(c["attribute"], c["operator"], c["value"]) for c in r["conditions"]]
            segment_id = r.get("segment_id")
            pct = r.get("percentage")
            rule_irs.append(
                RuleIR(
                    r["id"],
                    tuple(rules.cheapest_first(conditions)),
                    segments.get(segment_id, _NO_SEGMENT) if segment_id else None,
                    None
                    if pct is None
                    else (bucketing.rollout_salt(r["id"]), bucketing.limit(pct)),
                    _outcome(key, r["value"], r["id"], "TARGETING_MATCH", r["id"]),
                )
            )
    split = None
    if experiment is not None:
        outcomes = tuple(
            _outcome(key, v["value"], v["key"], "SPLIT", None) for v in experiment["variants"]
        )
        split = SplitIR(experiments[experiment["id"]], outcomes)
    return FlagIR(key, default, tuple(rule_irs), split)


# Reference closures -------------------------------------------------------------------------


def _match(conditions: Sequence[Condition], segment: SegmentIR | None) -> rules.Predicate:
    predicate = rules.compile_match(conditions)
    if segment is None:
        return predicate
    in_segment = rules.compile_match(segment.conditions, match_any=segment.match_any)
    return lambda context: predicate(context) and in_segment(context)


def closure(ir: FlagIR, sink: ExposureSink | GroupingSink) -> FlagFn:
    """The flag's answer as a closure, straight from its IR."""
    default = ir.default
    compiled = tuple((_match(r.conditions, r.segment), r.rollout, r.outcome) for r in ir.rules)
    bucket = bucketing.bucket

    def targeting(context: Context, user_id: str | None) -> Outcome:
        for matches, rollout, outcome in compiled:
            if matches(context) and (
                rollout is None
                or (user_id is not None and bucket(rollout[0], user_id) < rollout[1])
            ):
                return outcome
        return default

    if ir.split is None:
        return targeting
    experiment, outcomes = ir.split.experiment, ir.split.outcomes

    def split(context: Context, user_id: str | None) -> Outcome:
        if user_id is not None:
            index = experiment.assign(user_id)
            if index is not None:
                sink(experiment.id, index, user_id)
                return outcomes[index]
        return targeting(context, user_id)

    return split
