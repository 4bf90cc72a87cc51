"""The records of one configuration scope as read at one version, and the changes a write makes
to them (pure: the store reads a ScopeState and commits its changes atomically).

A scope is the global one (projects and API keys) or one project (its flags, rules, segments,
experiments and webhooks). Each change keeps the record before and after, so a write knows
exactly what it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from proxy.domain.model import (
    AnyRecord,
    Experiment,
    Flag,
    KeyRecord,
    Project,
    Rule,
    Segment,
    Webhook,
)

Kind = Literal["projects", "keys", "flags", "rules", "segments", "experiments", "webhooks"]
GLOBAL_KINDS: tuple[Kind, ...] = ("projects", "keys")
# Webhooks are records of their project like any other (written atomically, audited, synced to
# every proxy, which is how each knows where to deliver), without their secret: see
# proxy.store.webhooks for where that is kept.
PROJECT_KINDS: tuple[Kind, ...] = ("flags", "rules", "segments", "experiments", "webhooks")


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    id: str
    before: AnyRecord | None  # None: created
    after: AnyRecord | None  # None: deleted


@dataclass
class ScopeState:
    scope: str
    version: int
    records: dict[str, dict[str, Any]]  # kind -> id -> record
    changes: list[Change] = field(default_factory=list)

    # Typed views of the record kinds; a scope holds only its own kinds.
    @property
    def projects(self) -> dict[str, Project]:
        return cast(dict[str, Project], self.records["projects"])

    @property
    def keys(self) -> dict[str, KeyRecord]:
        return cast(dict[str, KeyRecord], self.records["keys"])

    @property
    def flags(self) -> dict[str, Flag]:
        return cast(dict[str, Flag], self.records["flags"])

    @property
    def rules(self) -> dict[str, Rule]:
        return cast(dict[str, Rule], self.records["rules"])

    @property
    def segments(self) -> dict[str, Segment]:
        return cast(dict[str, Segment], self.records["segments"])

    @property
    def experiments(self) -> dict[str, Experiment]:
        return cast(dict[str, Experiment], self.records["experiments"])

    @property
    def webhooks(self) -> dict[str, Webhook]:
        return cast(dict[str, Webhook], self.records["webhooks"])

    def put(self, kind: Kind, record: AnyRecord) -> None:
        records = self.records[kind]
        self.changes.append(Change(kind, record["id"], records.get(record["id"]), record))
        records[record["id"]] = record

    def delete(self, kind: Kind, record_id: str) -> None:
        before = self.records[kind].pop(record_id, None)
        self.changes.append(Change(kind, record_id, before, None))
