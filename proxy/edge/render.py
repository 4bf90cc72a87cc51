"""Generated render functions: one Python function per plan, written and compiled from the
plan's IR (proxy/edge/plan.py) once per snapshot version.

The function answers a whole request in one call: each user-dependent flag is an inline
`if/elif` over its rules, the common operators inline (proxy/domain/rules.py `inline_source`,
the rest calling the condition's compiled test), each attribute read once and each SemVer or
RFC 3339 value parsed once per request; the answer's constant bytes (static flags, separators,
prefix) are pre-joined into the fragments, so a request joins one piece per dynamic flag.
Constants are the function's globals. A plan's exposures are handed over in one call per
request, for all its running experiments at once (one dedup check, not one per experiment).

The reference closures of proxy/edge/snapshot.py give the same bytes and the same exposures
(tests/unit/test_render.py checks it on random plans and contexts).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import CodeType
from typing import Any

import orjson

from proxy.domain import bucketing, rules
from proxy.edge.plan import (
    Context,
    Expose,
    ExposureSink,
    FlagIR,
    GroupingSink,
    Outcome,
    RuleIR,
    SegmentIR,
)

Render = Callable[[Context, str | None], bytes]
Fragment = Callable[[Outcome], bytes]

EVALUATE_PREFIX, EVALUATE_SUFFIX = b'{"flags":{', b"}}"
OFREP_PREFIX, OFREP_SUFFIX = b'{"flags":[', b"]}"


def evaluate_render(flags: Sequence[FlagIR], sink: ExposureSink | GroupingSink) -> Render:
    """evaluate's answer: `{"flags": {"<key>": {"value": ..., "rule_id": ...}, ...}}`."""
    return generate(flags, sink, EVALUATE_PREFIX, EVALUATE_SUFFIX, lambda o: o.fragment)


def ofrep_fragment(outcome: Outcome, environment: str) -> bytes:
    """One flag of OFREP's bulk answer."""
    return orjson.dumps(
        {
            "key": outcome.key,
            "value": outcome.value,
            "reason": outcome.reason,
            "variant": outcome.variant,
            "metadata": {"environment": environment},
        }
    )


def ofrep_render(
    flags: Sequence[FlagIR], sink: ExposureSink | GroupingSink, environment: str
) -> Render:
    """OFREP's bulk answer: `{"flags": [{"key", "value", "reason", "variant", "metadata"}]}`."""
    return generate(
        flags, sink, OFREP_PREFIX, OFREP_SUFFIX, lambda o: ofrep_fragment(o, environment)
    )


def epoch(flags: Sequence[FlagIR]) -> str:
    """What a user's exposures on this plan depend on: its running experiments and their
    traffic shares. Unchanged by any other change, so a new snapshot version does not make
    every user's exposures be recorded again."""
    return "|".join(
        f"{ir.split.experiment.id}:{ir.split.experiment.traffic_limit}"
        for ir in flags
        if ir.split is not None
    )


def expose_of(sink: ExposureSink | GroupingSink, flags: Sequence[FlagIR]) -> Expose:
    """The plan's one call per request: the sink's own grouping, or a call per exposure."""
    experiments = tuple(
        (ir.split.experiment.id, ir.split.experiment.variant_count)
        for ir in flags
        if ir.split is not None
    )
    experiment_ids = tuple(e for e, _ in experiments)
    group = getattr(sink, "group", None)
    if group is not None:
        expose: Expose = group(experiments, epoch(flags))
        return expose

    def each(user_id: str, variants: tuple[int | None, ...]) -> None:
        for experiment_id, variant in zip(experiment_ids, variants, strict=True):
            if variant is not None:
                sink(experiment_id, variant, user_id)

    return each


class _Writer:
    """Python source, and the constants it names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"K{len(self.names)}"
        self.names[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def generate(
    flags: Sequence[FlagIR],
    sink: ExposureSink | GroupingSink,
    prefix: bytes,
    suffix: bytes,
    fragment: Fragment,
) -> Render:
    # The answer's pieces: constant bytes runs (static flags, separators) fold into the
    # fragments of the next dynamic flag, or into the tail.
    dynamic: list[tuple[FlagIR, bytes]] = []
    pending = bytearray(prefix)
    for index, ir in enumerate(flags):
        separator = b"," if index else b""
        static = ir.static
        if static is not None:
            pending += separator + fragment(static)
        else:
            dynamic.append((ir, bytes(pending) + separator))
            pending = bytearray()
    tail = bytes(pending) + suffix
    if not dynamic:

        def constant(context: Context, user_id: str | None) -> bytes:
            return tail

        return constant

    w = _Writer()
    attributes = _Attributes(w, [ir for ir, _ in dynamic])
    w.emit(0, "def render(ctx, uid):")
    attributes.read(1)
    w.emit(1, "out = []")
    split_vars = []
    for index, (ir, before) in enumerate(dynamic):
        choose = {id(o): w.const(before + fragment(o)) for o in _outcomes(ir)}
        if ir.split is None:
            _targeting(w, attributes, ir, choose, 1)
            continue
        e = ir.split.experiment
        var = f"x{index}"
        split_vars.append(var)
        admitted = "uid is not None"
        if e.traffic_limit < bucketing.BUCKETS:
            admitted += f" and BUCKET({e.traffic_salt!r}, uid) < {e.traffic_limit}"
        w.emit(1, f"if {admitted}:")
        w.emit(2, f"{var} = {w.const(e.table)}[BUCKET({e.salt!r}, uid)]")
        variants = w.const(tuple(w.names[choose[id(o)]] for o in ir.split.outcomes))
        w.emit(2, f"out.append({variants}[{var}])")
        w.emit(1, "else:")
        w.emit(2, f"{var} = None")
        _targeting(w, attributes, ir, choose, 2)
    if split_vars:
        w.emit(1, "if uid is not None:")
        w.emit(2, f"EXPOSE(uid, ({', '.join(split_vars)},))")
    w.emit(1, f"out.append({w.const(tail)})")
    w.emit(1, "return JOIN(out)")
    namespace: dict[str, Any] = {
        **w.names,
        "BUCKET": bucketing.bucket,
        "JOIN": b"".join,
        "EXPOSE": expose_of(sink, flags),
        "__builtins__": {"type": type, "str": str, "int": int, "float": float},
    }
    exec(_code("\n".join(w.lines)), namespace)
    # Popped, not read: the function holds its globals, and globals holding the function would
    # be a cycle, which only the cyclic collector frees; and the snapshot's objects are frozen
    # out of its sight (proxy/edge/sync.py), so every old plan would stay for good.
    render: Render = namespace.pop("render")
    return render


_CODE: OrderedDict[str, CodeType] = OrderedDict()
_CODE_MAX = 256


def _code(source: str) -> CodeType:
    """The compiled source, kept while it is among the last few used: a change that keeps a
    plan's shape (a default value, a rule's value, most changes of another environment) gives
    the same source with other constants, so compile() runs only when the shape changes."""
    code = _CODE.get(source)
    if code is None:
        code = _CODE[source] = compile(source, "<generated render>", "exec")
        if len(_CODE) > _CODE_MAX:
            _CODE.popitem(last=False)
    else:
        _CODE.move_to_end(source)
    return code


def _outcomes(ir: FlagIR) -> list[Outcome]:
    found = [ir.default, *(r.outcome for r in ir.rules)]
    if ir.split is not None:
        found += ir.split.outcomes
    return found


class _Attributes:
    """The context attributes a plan's rules read, each read once per request (`v<n>`), with
    the derived forms its operators need (`d<n>`: a SemVer or an RFC 3339 parse)."""

    def __init__(self, w: _Writer, flags: Sequence[FlagIR]) -> None:
        self.w = w
        self.values: dict[str, str] = {}
        self.derived: dict[tuple[str, str], str] = {}
        for ir in flags:
            for rule in ir.rules:
                for attribute, operator, _ in _conditions(rule):
                    self.values.setdefault(attribute, f"v{len(self.values)}")
                    kind = rules.derived_of(operator)
                    if kind is not None:
                        self.derived.setdefault((attribute, kind), f"d{len(self.derived)}")

    def read(self, depth: int) -> None:
        if self.values:
            self.w.emit(depth, "get = ctx.get")
        for attribute, var in self.values.items():
            self.w.emit(depth, f"{var} = get({attribute!r})")
        for (attribute, kind), var in self.derived.items():
            parse = self.w.const(rules.DERIVED[kind])
            self.w.emit(depth, f"{var} = {parse}({self.values[attribute]})")

    def condition(self, attribute: str, operator: str, value: Any) -> str:
        kind = rules.derived_of(operator)
        derived = None if kind is None else self.derived[attribute, kind]
        test = self.w.const(rules.compile_test(operator, value))
        return rules.inline_source(
            operator, value, self.values[attribute], derived, self.w.const, test
        )


def _conditions(rule: RuleIR) -> list[tuple[str, str, Any]]:
    found = list(rule.conditions)
    if rule.segment is not None:
        found += rule.segment.conditions
    return found


def _segment_source(attributes: _Attributes, segment: SegmentIR) -> str:
    if not segment.conditions:
        return "False" if segment.match_any else "True"  # OR of nothing, AND of nothing
    joiner = " or " if segment.match_any else " and "
    return "(" + joiner.join(attributes.condition(*c) for c in segment.conditions) + ")"


def _targeting(
    w: _Writer, attributes: _Attributes, ir: FlagIR, choose: dict[int, str], depth: int
) -> None:
    """The flag's rules as an if/elif chain, its default as the else."""
    branches = []
    for rule in ir.rules:
        parts = [attributes.condition(*c) for c in rule.conditions]
        if rule.segment is not None:
            parts.append(_segment_source(attributes, rule.segment))
        if rule.rollout is not None:
            salt, limit = rule.rollout
            parts.append(f"(uid is not None and BUCKET({salt!r}, uid) < {limit})")
        branches.append((" and ".join(parts) or "True", choose[id(rule.outcome)]))
    default = choose[id(ir.default)]
    if not branches:
        w.emit(depth, f"out.append({default})")
        return
    for i, (test, outcome) in enumerate(branches):
        w.emit(depth, f"{'if' if i == 0 else 'elif'} {test}:")
        w.emit(depth + 1, f"out.append({outcome})")
    w.emit(depth, "else:")
    w.emit(depth + 1, f"out.append({default})")
