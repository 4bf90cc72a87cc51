"""The IR of an evaluation plan: what a flag's answer depends on, typed and small.

Per flag, in creation order: its default answer, its targeting rules (conditions, segment,
rollout) and its running experiment; every possible answer an Outcome whose bytes are ready
to join. proxy/edge/snapshot.py builds it from the stored records; from it come both the
reference closures (snapshot.py) and the generated render functions (render.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.domain import bucketing

Context = Mapping[str, Any]
Condition = tuple[str, str, Any]  # attribute, operator, value
ExposureSink = Callable[[str, int, str], None]  # (experiment id, variant index, user id)
# One call per request for a plan's experiments: (user id, variant index or None per one).
Expose = Callable[[str, tuple[int | None, ...]], None]


class GroupingSink(Protocol):
    """A sink that also records a plan's exposures with one check per request (the exposure
    buffer); a plain ExposureSink gets one call per exposure instead."""

    def __call__(self, experiment_id: str, variant: int, user_id: str) -> None: ...

    def group(self, experiments: tuple[tuple[str, int], ...], epoch: str) -> Expose:
        """The one call per request for a plan whose running experiments are `experiments`
        ((id, variant count) each); `epoch` names that set of experiments and their traffic
        shares, so the sink may remember a user once per plan."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """One possible answer of one flag."""

    key: str
    fragment: bytes  # `"key":{"value":...,"rule_id":...}`, ready to join into the response
    value: Any
    variant: str  # variant key, rule id, or "default"
    reason: str  # OFREP reason: SPLIT, TARGETING_MATCH, DISABLED, DEFAULT
    rule_id: str | None = None


FlagFn = Callable[[Context, str | None], Outcome]


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


# The IR -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentIR:
    conditions: tuple[Condition, ...]  # cheapest first
    match_any: bool


@dataclass(frozen=True, slots=True)
class RuleIR:
    id: str
    conditions: tuple[Condition, ...]  # cheapest first; all must hold
    segment: SegmentIR | None  # one more condition, when the rule names a segment
    rollout: tuple[str, int] | None  # (salt, bucket limit) of a percentage rule
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class SplitIR:
    experiment: ExperimentPlan
    outcomes: tuple[Outcome, ...]  # per variant index


@dataclass(frozen=True, slots=True)
class FlagIR:
    key: str
    default: Outcome
    rules: tuple[RuleIR, ...]  # enabled flag's rules in evaluation order; () for none
    split: SplitIR | None  # the running experiment of this flag and environment

    @property
    def static(self) -> Outcome | None:
        """The answer for everyone, or None when it depends on the user."""
        return self.default if self.split is None and not self.rules else None

    @property
    def needs_user(self) -> bool:
        """A running experiment or a percentage rollout decides it."""
        return self.split is not None or any(r.rollout is not None for r in self.rules)
