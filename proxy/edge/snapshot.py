"""Compile stored configuration into immutable evaluation plans, once per version.

A plan per (project, environment) holds the answer of every flag that is the same for all
users already rendered to bytes, and one small closure per flag that depends on the user
(a running experiment, targeting rules). Every possible answer of a flag is an Outcome built
here, so evaluate and OFREP only pick one; nothing is rendered per request but the join.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.domain import bucketing, model, rules
from proxy.domain.access import ApiKey, compile_keys
from proxy.domain.model import Experiment, Flag, Project, Rule, Segment

Records = Mapping[str, Mapping[str, Any]]  # kind -> id -> record, as stored
Context = Mapping[str, Any]
ExposureSink = Callable[[str, int, str], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One possible answer of one flag."""

    fragment: bytes  # `"key":{"value":...,"rule_id":...}`, ready to join into the response
    value: Any
    variant: str  # variant key, rule id, or "default"
    reason: str  # OFREP reason: SPLIT, TARGETING_MATCH, DISABLED, DEFAULT
    rule_id: str | None = None


FlagFn = Callable[[Context, str | None], Outcome]


@dataclass(frozen=True, slots=True)
class CompiledFlag:
    key: str
    static: Outcome | None  # the answer for everyone, or None when it depends on the user
    evaluate: FlagFn
    needs_user: bool  # a running experiment or a percentage rollout decides it


@dataclass(frozen=True, slots=True)
class Plan:
    prefix: bytes
    dynamic: tuple[FlagFn, ...]
    flags: Mapping[str, CompiledFlag]

    def render(self, context: Context, user_id: str | None) -> bytes:
        if not self.dynamic:
            return self.prefix + b"}}"
        return self.prefix + b",".join([f(context, user_id).fragment for f in self.dynamic]) + b"}}"

    def render_only(self, context: Context, user_id: str | None, keys: Iterable[str]) -> bytes:
        """The answer for the flags named (unknown ones left out): only their experiments
        see the user, so an app that shows one flag exposes the user to that one alone."""
        parts = []
        for key in keys:
            flag = self.flags.get(key)
            if flag is not None:
                outcome = flag.static or flag.evaluate(context, user_id)
                parts.append(outcome.fragment)
        return b'{"flags":{' + b",".join(parts) + b"}}"


@dataclass(frozen=True, slots=True)
class ExperimentPlan:
    id: str
    flag_id: str
    project_id: str
    status: str
    variant_count: int
    table: bytes
    salt: str
    traffic_salt: str
    traffic_limit: int

    def assign(self, user_id: str) -> int | None:
        """The user's variant index, or None when the user is outside the traffic share."""
        if bucketing.bucket(self.traffic_salt, user_id) >= self.traffic_limit:
            return None
        return self.table[bucketing.bucket(self.salt, user_id)]


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


def compile_project(
    project: Project, version: int, records: Records, on_exposure: ExposureSink
) -> ProjectSnapshot:
    # Creation order: answers are stable, whatever order Redis returns a hash in.
    flags: list[Flag] = sorted(records["flags"].values(), key=lambda f: (f["created_at"], f["id"]))
    segment_records: Mapping[str, Segment] = records["segments"]
    segments = {
        s["id"]: rules.compile_match(
            [(c["key"], c["operator"], c["value"]) for c in s["rules"]],
            match_any=s["match_type"] == "any",
        )
        for s in segment_records.values()
    }
    experiments = {e["id"]: _experiment(e) for e in records["experiments"].values()}
    plans = {}
    experiment_records: Mapping[str, Experiment] = records["experiments"]
    for env in project["environments"]:
        running = {
            e["flag_id"]: experiments[e["id"]]
            for e in experiment_records.values()
            if e["environment"] == env and e["status"] == "running"
        }
        env_rules: list[Rule] = sorted(
            (r for r in records["rules"].values() if r["environment"] == env and r["enabled"]),
            key=model.rule_order,
        )
        compiled = {
            f["key"]: _flag(
                f,
                [r for r in env_rules if r["flag_id"] == f["id"]],
                segments,
                running.get(f["id"]),
                experiment_records,
                on_exposure,
            )
            for f in flags
        }
        plans[env] = _plan(compiled)
    return ProjectSnapshot(project["id"], version, project, plans, experiments, records)


def _plan(flags: dict[str, CompiledFlag]) -> Plan:
    static = b",".join(f.static.fragment for f in flags.values() if f.static is not None)
    dynamic = tuple(f.evaluate for f in flags.values() if f.static is None)
    prefix = b'{"flags":{' + static + (b"," if static and dynamic else b"")
    return Plan(prefix, dynamic, flags)


def _outcome(key: str, value: Any, variant: str, reason: str, rule_id: str | None) -> Outcome:
    fragment = orjson.dumps(key) + b":" + orjson.dumps({"value": value, "rule_id": rule_id})
    return Outcome(fragment, value, variant, reason, rule_id)


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


def _flag(
    flag: Flag,
    flag_rules: list[Rule],
    segments: Mapping[str, rules.Predicate],
    experiment: ExperimentPlan | None,
    experiment_records: Mapping[str, Experiment],
    on_exposure: ExposureSink,
) -> CompiledFlag:
    key = flag["key"]
    reason = "DEFAULT" if flag["enabled"] else "DISABLED"
    default = _outcome(key, flag["default_value"], "default", reason, None)
    targeting, rollout = _targeting(key, flag, flag_rules, segments, default)
    fallback = targeting or _constant(default)
    if experiment is not None:
        variants = experiment_records[experiment.id]["variants"]
        return CompiledFlag(
            key, None, _split(key, experiment, variants, fallback, on_exposure), True
        )
    if targeting is None:
        return CompiledFlag(key, default, fallback, False)
    return CompiledFlag(key, None, targeting, rollout)


def _constant(outcome: Outcome) -> FlagFn:
    def constant(context: Context, user_id: str | None) -> Outcome:
        return outcome

    return constant


def _targeting(
    key: str,
    flag: Flag,
    flag_rules: list[Rule],
    segments: Mapping[str, rules.Predicate],
    default: Outcome,
) -> tuple[FlagFn | None, bool]:
    """The rules of an enabled flag as one closure; None when no rule can ever apply."""
    if not flag["enabled"] or not flag_rules:
        return None, False
    compiled: list[tuple[rules.Predicate, str | None, int, Outcome]] = []
    for r in flag_rules:
        conds = [(c["attribute"], c["operator"], c["value"]) for c in r["conditions"]]
        pred = rules.compile_match(conds)
        segment_id = r.get("segment_id")
        if segment_id:
            # A segment we do not hold (a hand-edited store) matches no one: fail closed.
            pred = _both(pred, segments.get(segment_id, _nobody))
        pct = r.get("percentage")
        salt = None if pct is None else bucketing.rollout_salt(r["id"])
        lim = bucketing.BUCKETS if pct is None else bucketing.limit(pct)
        compiled.append(
            (pred, salt, lim, _outcome(key, r["value"], r["id"], "TARGETING_MATCH", r["id"]))
        )
    rule_list = tuple(compiled)
    bucket = bucketing.bucket
    needs_user = any(r.get("percentage") is not None for r in flag_rules)
    if len(rule_list) == 1 and not needs_user:  # the common case, without the loop
        only, hit = rule_list[0][0], rule_list[0][3]

        def one_rule(context: Context, user_id: str | None) -> Outcome:
            return hit if only(context) else default

        return one_rule, False

    def targeting(context: Context, user_id: str | None) -> Outcome:
        for pred, salt, lim, outcome in rule_list:
            if pred(context) and (
                salt is None or (user_id is not None and bucket(salt, user_id) < lim)
            ):
                return outcome
        return default

    return targeting, needs_user


def _nobody(context: Context) -> bool:
    return False


def _both(a: rules.Predicate, b: rules.Predicate) -> rules.Predicate:
    return lambda context: a(context) and b(context)


def _split(
    key: str,
    experiment: ExperimentPlan,
    variants: list[model.Variant],
    fallback: FlagFn,
    on_exposure: ExposureSink,
) -> FlagFn:
    outcomes = tuple(_outcome(key, v["value"], v["key"], "SPLIT", None) for v in variants)
    table, salt, traffic_salt = experiment.table, experiment.salt, experiment.traffic_salt
    traffic_limit, experiment_id = experiment.traffic_limit, experiment.id
    bucket = bucketing.bucket
    everyone = traffic_limit >= bucketing.BUCKETS

    def split(context: Context, user_id: str | None) -> Outcome:
        if user_id is not None and (everyone or bucket(traffic_salt, user_id) < traffic_limit):
            index = table[bucket(salt, user_id)]
            on_exposure(experiment_id, index, user_id)
            return outcomes[index]
        return fallback(context, user_id)

    return split
