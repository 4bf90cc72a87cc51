"""The records of the API and every validation rule they obey (pure: no I/O).

Records are plain JSON-ready dicts, exactly as stored in Redis and (mostly) as returned; their
shapes are the TypedDicts below, so mypy checks every use while orjson and the hot path see
plain dicts. Each `new_*` builds a record from a request body and each `patch_*` applies a PATCH
body; both raise ValidationError with a field path -> message map, the `details` of a 422. The
requests of the edge routes (evaluate, track) are validated here too: one file for every rule.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict, cast
from urllib.parse import urlsplit

from proxy.domain import stats
from proxy.domain.access import SCOPES
from proxy.domain.rules import ConditionError, check_condition

Record = dict[str, Any]  # any JSON object: a request body, a record before it is typed

FLAG_TYPES = ("boolean", "string", "number", "json")
DEFAULT_ENVIRONMENTS = ("production", "staging", "development")
FLAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # environments, variant keys, goals
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_TEXT = 2000
MAX_CONDITIONS = 50
MAX_VARIANTS = 20
# Nesting of arrays and objects in any stored value. orjson writes at most 254 levels and the
# last-known-good file nests every record four levels deeper; 32 is far below both, and far
# above any real flag value.
MAX_DEPTH = 32
DEFAULT_GOAL = "conversion"
MAX_USER_ID = 256  # characters of a user id, on every route that takes one
MAX_VALUE = 1e12  # |value| of a conversion
MAX_FLAG_KEYS = 1000  # keys in evaluate's optional `flags` list
MAX_ALPHA = 0.2  # an experiment's analysis: 0 < alpha <= MAX_ALPHA
MIN_SEQUENTIAL_TUNING = 100  # and MIN_ <= sequential_tuning <= MAX_ (the exposures N*)
MAX_SEQUENTIAL_TUNING = 1_000_000_000


def must_match(regex: re.Pattern[str]) -> str:
    """The message for a field that must match `regex`, built from the regex itself."""
    return f"must match {regex.pattern}"


USER_ID_RULE = f"must be a string or an integer of 1 to {MAX_USER_ID} characters"


# Record shapes --------------------------------------------------------------------------------


class Project(TypedDict):
    id: str
    name: str
    slug: str | None  # None until the store derives a free one from the name
    environments: list[str]
    settings: dict[str, Any]  # default_environment, and whatever else the user keeps there
    created_at: str
    updated_at: str


class KeyRecord(TypedDict):
    id: str
    name: str
    scopes: list[str]
    project_ids: list[str] | None
    prefix: str  # the token's first 12 characters, to recognise it in a list
    created_at: str
    token_sha256: NotRequired[str]  # stored, never shown
    revoked_at: NotRequired[str | None]  # a revoked key is kept, so its return can be told


class Flag(TypedDict):
    id: str
    project_id: str
    key: str
    name: str
    flag_type: str
    default_value: Any
    enabled: bool
    description: str | None
    tags: list[str]
    created_at: str
    updated_at: str


class Condition(TypedDict):
    attribute: str
    operator: str
    value: Any


class Rule(TypedDict):
    id: str
    flag_id: str
    environment: str
    position: int
    conditions: list[Condition]
    value: Any
    percentage: float | None
    enabled: bool
    segment_id: str | None
    created_at: str
    updated_at: str


class SegmentCondition(TypedDict):
    key: str
    operator: str
    value: Any


class Segment(TypedDict):
    id: str
    project_id: str
    name: str
    description: str | None
    rules: list[SegmentCondition]
    match_type: Literal["all", "any"]
    created_at: str
    updated_at: str


class Variant(TypedDict):
    key: str
    value: Any
    percentage: int


class AnalysisSettings(TypedDict):
    alpha: float
    sequential_tuning: int
    correction: str | None


class Experiment(TypedDict):
    id: str
    flag_id: str
    project_id: str
    name: str
    environment: str
    status: Literal["draft", "running", "stopped"]
    variants: list[Variant]
    traffic_percentage: float
    # Absent from records stored before analysis settings existed: read it with analysis_of.
    analysis: NotRequired[AnalysisSettings]
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None


class Webhook(TypedDict):
    id: str
    project_id: str
    url: str
    events: list[str]  # audit actions, or ["*"] for all
    enabled: bool
    description: str | None
    disabled_reason: str | None  # why the delivery disabled it; None when enabled by hand
    # The project version of the write that created it or last enabled it: only entries of
    # later versions are its to receive, so a webhook never gets the backlog of what happened
    # before it existed, or while it was disabled.
    since_version: int
    created_at: str
    updated_at: str


AnyRecord = Project | KeyRecord | Flag | Rule | Segment | Experiment | Webhook


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> str:
    """The current time as the API writes it: RFC 3339, UTC, milliseconds, `Z`. Milliseconds,
    so that records listed by (created_at, id) come in the order they were made."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Errors ---------------------------------------------------------------------------------------


class DomainError(Exception):
    """A request the domain refuses; the routes and the CLI turn each kind into their answer."""


class ValidationError(DomainError):
    """Well-formed input that breaks a rule (422): `details` maps field paths to messages."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__(details)
        self.details = details


class NotFound(DomainError):
    """No such record (404)."""


class Conflict(DomainError):
    """A change the current state does not allow (409): a duplicate, a lifecycle step."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Check:
    """Collects every problem of a body, so one 422 names them all."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.errors: dict[str, str] = {}

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path, message)

    def done(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)

    def text(self, name: str, *, required: bool, limit: int = 200, default: Any = None) -> Any:
        if name not in self.body or self.body[name] is None:
            if required:
                self.fail(name, "is required")
            return default
        value = self.body[name]
        if not isinstance(value, str) or not value.strip():
            self.fail(name, "must be a non-empty string")
        elif len(value) > limit:
            self.fail(name, f"must be at most {limit} characters")
        return value

    def optional_text(self, name: str, default: Any) -> Any:
        """A free-text field that may be null or empty (descriptions)."""
        value = self.body.get(name, default)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            self.fail(name, f"must be a string of at most {MAX_TEXT} characters")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.body.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, "must be a boolean")
            return default
        return value

    def tags(self, default: list[str]) -> list[str]:
        value = self.body.get("tags", default)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > 50:
            self.fail("tags", "must be a list of at most 50 strings")
            return default
        bad = [
            i for i, tag in enumerate(value) if not isinstance(tag, str) or not 0 < len(tag) <= 64
        ]
        for i in bad:
            self.fail(f"tags[{i}]", "must be a string of 1 to 64 characters")
        return default if bad else list(dict.fromkeys(value))


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (isinstance(value, int) or math.isfinite(value))
    )


def depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest at most `limit` levels in `value` (iterative: a hostile
    value must not exhaust the stack of the check meant to refuse it)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return False
        stack.extend((child, level + 1) for child in children)
    return True


DEPTH_RULE = f"must not nest arrays and objects more than {MAX_DEPTH} levels deep"


def value_fits(flag_type: str, value: Any) -> bool:
    if flag_type == "boolean":
        return isinstance(value, bool)
    if flag_type == "string":
        return isinstance(value, str)
    if flag_type == "number":
        return is_number(value)
    return True  # json: any JSON value


def percentage(value: Any, *, whole: bool) -> float | None:
    """A percentage 0-100: integral when `whole`, else to 0.01. None when it is not one."""
    if not is_number(value) or not 0 <= value <= 100:
        return None
    if whole:
        return float(value) if float(value).is_integer() else None
    if abs(value * 100 - round(value * 100)) > 1e-6:
        return None
    return float(value)


def _environment(check: _Check, project: Project, name: str = "environment") -> Any:
    env = check.body.get(name)
    if env is None:
        check.fail(name, "is required")
    elif env not in project["environments"]:
        check.fail(name, "unknown environment for this project")
    return env


# Projects ------------------------------------------------------------------------------------


def slugify(name: str, taken: set[str]) -> str:
    """A slug from the name that no other project has (`shop`, then `shop-2`, ...)."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:56] or "project"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def new_project(body: Mapping[str, Any], *, id: str, now: str) -> Project:
    c = _Check(body)
    name = c.text("name", required=True)
    slug = body.get("slug")
    if slug is not None and (not isinstance(slug, str) or not SLUG_RE.fullmatch(slug)):
        c.fail("slug", must_match(SLUG_RE))
    envs = body.get("environments", list(DEFAULT_ENVIRONMENTS))
    if envs is None:
        envs = list(DEFAULT_ENVIRONMENTS)
    if not isinstance(envs, list) or not 1 <= len(envs) <= 20:
        c.fail("environments", "must be a list of 1 to 20 names")
        envs = list(DEFAULT_ENVIRONMENTS)
    else:
        for i, env in enumerate(envs):
            if not isinstance(env, str) or not NAME_RE.fullmatch(env):
                c.fail(f"environments[{i}]", must_match(NAME_RE))
        if len(set(map(str, envs))) != len(envs):
            c.fail("environments", "must not repeat a name")
    settings = body.get("settings")
    if settings is None:
        settings = {}
    elif not isinstance(settings, dict):
        c.fail("settings", "must be an object")
        settings = {}
    elif not depth_ok(settings):
        c.fail("settings", DEPTH_RULE)
        settings = {}
    settings = dict(settings)
    default_env = settings.setdefault("default_environment", envs[0] if envs else None)
    if default_env not in envs:
        c.fail("settings.default_environment", "must be one of the project's environments")
    c.done()
    return {
        "id": id,
        "name": name,
        "slug": slug,  # None: the store derives a free one from the name
        "environments": envs,
        "settings": settings,
        "created_at": now,
        "updated_at": now,
    }


# API keys -------------------------------------------------------------------------------------


def new_key(
    body: Mapping[str, Any], *, projects: Mapping[str, Any], id: str, now: str, token: str
) -> KeyRecord:
    c = _Check(body)
    name = c.text("name", required=True)
    scopes = body.get("scopes")
    if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
        c.fail("scopes", f"must be a non-empty list of {', '.join(SCOPES)}")
        scopes = []
    project_ids = body.get("project_ids")
    if project_ids is not None:
        if not isinstance(project_ids, list) or not project_ids:
            c.fail("project_ids", "must be a non-empty list of project ids, or absent")
        else:
            for i, pid in enumerate(project_ids):
                if not isinstance(pid, str) or pid not in projects:
                    c.fail(f"project_ids[{i}]", "unknown project")
    c.done()
    return {
        "id": id,
        "name": name,
        "scopes": list(dict.fromkeys(scopes)),
        "project_ids": None if project_ids is None else list(dict.fromkeys(project_ids)),
        "prefix": token[:12],
        "created_at": now,
    }


# Flags ----------------------------------------------------------------------------------------


def new_flag(body: Mapping[str, Any], *, id: str, now: str) -> Flag:
    c = _Check(body)
    key = body.get("key")
    if not isinstance(key, str) or not FLAG_KEY_RE.fullmatch(key):
        c.fail("key", must_match(FLAG_KEY_RE))
    name = c.text("name", required=True)
    flag_type = body.get("flag_type")
    if flag_type not in FLAG_TYPES:
        c.fail("flag_type", f"must be one of {', '.join(FLAG_TYPES)}")
    if "default_value" not in body:
        c.fail("default_value", "is required")
    elif flag_type in FLAG_TYPES and not value_fits(flag_type, body["default_value"]):
        c.fail("default_value", f"must be a {flag_type} value")
    elif not depth_ok(body["default_value"]):
        c.fail("default_value", DEPTH_RULE)
    description = c.optional_text("description", None)
    tags = c.tags([])
    c.done()
    return {
        "id": id,
        "project_id": body["project_id"],
        "key": body["key"],
        "name": name,
        "flag_type": body["flag_type"],
        "default_value": body["default_value"],
        "enabled": False,
        "description": description,
        "tags": tags,
        "created_at": now,
        "updated_at": now,
    }


def _immutable(c: _Check, record: Mapping[str, Any], *names: str) -> None:
    """A PATCH may repeat a field it cannot change, but not change it."""
    for name in names:
        if name in c.body and c.body[name] != record.get(name):
            c.fail(name, "cannot be changed")


def patch_flag(flag: Flag, body: Mapping[str, Any], *, now: str) -> Flag:
    c = _Check(body)
    _immutable(c, flag, "id", "project_id", "key", "flag_type")
    name = c.text("name", required=False, default=flag["name"])
    description = c.optional_text("description", flag["description"])
    enabled = c.boolean("enabled", flag["enabled"])
    tags = c.tags(flag["tags"])
    default = body.get("default_value", flag["default_value"])
    if not value_fits(flag["flag_type"], default):
        c.fail("default_value", f"must be a {flag['flag_type']} value")
    elif not depth_ok(default):
        c.fail("default_value", DEPTH_RULE)
    c.done()
    return {
        **flag,
        "name": name,
        "description": description,
        "enabled": enabled,
        "tags": tags,
        "default_value": default,
        "updated_at": now,
    }


# Targeting rules and segments -----------------------------------------------------------------


def _conditions(c: _Check, field: str, attr_field: str) -> list[Record]:
    """Conditions as stored: `attr_field` is "attribute" in rules and "key" in segments."""
    raw = c.body.get(field, [])
    if not isinstance(raw, list) or len(raw) > MAX_CONDITIONS:
        c.fail(field, f"must be a list of at most {MAX_CONDITIONS} conditions")
        return []
    out = []
    for i, cond in enumerate(raw):
        path = f"{field}[{i}]"
        if not isinstance(cond, dict):
            c.fail(path, "must be an object")
            continue
        attribute, operator, value = cond.get(attr_field), cond.get("operator"), cond.get("value")
        try:
            check_condition(attribute, operator, value)
        except ConditionError as e:
            c.fail(path, str(e))
            continue
        out.append({attr_field: attribute, "operator": operator, "value": value})
    return out


def _rule_fields(
    c: _Check, flag: Flag, segments: Mapping[str, Segment], base: Mapping[str, Any]
) -> Record:
    fields = dict(base)
    if "position" in c.body:
        pos = c.body["position"]
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= 1_000_000:
            c.fail("position", "must be an integer from 0 to 1000000")
        fields["position"] = pos
    if "conditions" in c.body or "conditions" not in base:
        fields["conditions"] = _conditions(c, "conditions", "attribute")
    if "value" in c.body or "value" not in base:
        if "value" not in c.body:
            c.fail("value", "is required")
        elif not value_fits(flag["flag_type"], c.body["value"]):
            c.fail("value", f"must be a {flag['flag_type']} value (the flag's type)")
        elif not depth_ok(c.body["value"]):
            c.fail("value", DEPTH_RULE)
        fields["value"] = c.body.get("value")
    if "percentage" in c.body:
        raw = c.body["percentage"]
        pct = None if raw is None else percentage(raw, whole=False)
        if raw is not None and pct is None:
            c.fail("percentage", "must be a number from 0 to 100, to 0.01")
        fields["percentage"] = pct
    fields["enabled"] = c.boolean("enabled", base.get("enabled", True))
    if "segment_id" in c.body:
        seg = c.body["segment_id"]
        if seg is not None and (not isinstance(seg, str) or seg not in segments):
            c.fail("segment_id", "unknown segment in this project")
        fields["segment_id"] = seg
    return fields


def new_rule(
    body: Mapping[str, Any],
    *,
    flag: Flag,
    project: Project,
    segments: Mapping[str, Segment],
    next_position: int,
    id: str,
    now: str,
) -> Rule:
    c = _Check(body)
    env = _environment(c, project)
    base = {"position": next_position, "percentage": None, "segment_id": None}
    fields = _rule_fields(c, flag, segments, base)
    c.done()
    rule = {
        "id": id,
        "flag_id": flag["id"],
        "environment": env,
        **fields,
        "created_at": now,
        "updated_at": now,
    }
    return cast(Rule, rule)


def patch_rule(
    rule: Rule, body: Mapping[str, Any], *, flag: Flag, segments: Mapping[str, Segment], now: str
) -> Rule:
    c = _Check(body)
    _immutable(c, rule, "id", "flag_id", "environment")
    fields = _rule_fields(c, flag, segments, rule)
    c.done()
    return cast(Rule, {**rule, **fields, "updated_at": now})


def rule_order(rule: Rule) -> tuple[int, str, str]:
    """Evaluation order: lower position first, then the older rule."""
    return (rule["position"], rule["created_at"], rule["id"])


def new_segment(body: Mapping[str, Any], *, id: str, now: str) -> Segment:
    c = _Check(body)
    fields = _segment_fields(c, {"description": None, "match_type": "all"})
    c.done()
    segment = {
        "id": id,
        "project_id": body["project_id"],
        **fields,
        "created_at": now,
        "updated_at": now,
    }
    return cast(Segment, segment)


def patch_segment(segment: Segment, body: Mapping[str, Any], *, now: str) -> Segment:
    c = _Check(body)
    _immutable(c, segment, "id", "project_id")
    fields = _segment_fields(c, segment)
    c.done()
    return cast(Segment, {**segment, **fields, "updated_at": now})


def _segment_fields(c: _Check, base: Mapping[str, Any]) -> Record:
    fields: Record = {}
    fields["name"] = c.text("name", required="name" not in base, default=base.get("name"))
    fields["description"] = c.optional_text("description", base["description"])
    if "rules" in c.body or "rules" not in base:
        fields["rules"] = _conditions(c, "rules", "key")
    match = c.body.get("match_type", base["match_type"])
    if match not in ("all", "any"):
        c.fail("match_type", "must be all or any")
    fields["match_type"] = match
    return fields


# Experiments ----------------------------------------------------------------------------------


def new_experiment(
    body: Mapping[str, Any], *, flag: Flag, project: Project, id: str, now: str
) -> Experiment:
    c = _Check(body)
    name = c.text("name", required=True)
    env = _environment(c, project)
    variants = _variants(c, flag)
    traffic = _traffic(c, 100.0)
    analysis = _analysis(c, DEFAULT_ANALYSIS)
    c.done()
    return {
        "id": id,
        "flag_id": flag["id"],
        "project_id": flag["project_id"],
        "name": name,
        "environment": env,
        "status": "draft",
        "variants": variants,
        "traffic_percentage": traffic,
        "analysis": analysis,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "stopped_at": None,
    }


def _variants(c: _Check, flag: Flag) -> list[Variant]:
    raw = c.body.get("variants")
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        c.fail("variants", f"must be a list of 2 to {MAX_VARIANTS} variants")
        return []
    out, seen, total, whole_percentages = [], set(), 0.0, True
    for i, v in enumerate(raw):
        path = f"variants[{i}]"
        if not isinstance(v, dict):
            c.fail(path, "must be an object")
            continue
        key, value, pct = v.get("key"), v.get("value"), v.get("percentage")
        if not isinstance(key, str) or not NAME_RE.fullmatch(key):
            c.fail(f"{path}.key", must_match(NAME_RE))
        elif key in seen:
            c.fail(f"{path}.key", "duplicate variant key")
        else:
            seen.add(key)
        if "value" not in v or not value_fits(flag["flag_type"], value):
            c.fail(f"{path}.value", f"must be a {flag['flag_type']} value (the flag's type)")
        elif not depth_ok(value):
            c.fail(f"{path}.value", DEPTH_RULE)
        whole = percentage(pct, whole=True)
        if whole is None:
            c.fail(f"{path}.percentage", "must be an integer from 0 to 100")
            whole_percentages = False
        else:
            total += whole
            pct = int(whole)
        out.append({"key": key, "value": value, "percentage": pct})
    if len(out) == len(raw) and whole_percentages and total != 100:
        c.fail("variants", f"percentages must sum to 100, not {total:g}")
    return cast(list[Variant], out)


def _traffic(c: _Check, default: float) -> float:
    raw = c.body.get("traffic_percentage", default)
    pct = percentage(raw, whole=False)
    if pct is None:
        c.fail("traffic_percentage", "must be a number from 0 to 100, to 0.01")
        return default
    return pct


def patch_experiment(experiment: Experiment, body: Mapping[str, Any], *, now: str) -> Experiment:
    c = _Check(body)
    _immutable(c, experiment, "id", "flag_id", "project_id", "environment", "variants", "status")
    name = c.text("name", required=False, default=experiment["name"])
    traffic = _traffic(c, experiment["traffic_percentage"])
    if experiment["status"] == "running" and traffic < experiment["traffic_percentage"]:
        c.fail("traffic_percentage", "may only rise while the experiment runs")
    elif experiment["status"] == "stopped" and traffic != experiment["traffic_percentage"]:
        c.fail("traffic_percentage", "cannot change after the experiment stopped")
    # At any status: how results are read never changes what was recorded.
    analysis = _analysis(c, analysis_of(experiment))
    c.done()
    return {
        **experiment,
        "name": name,
        "traffic_percentage": traffic,
        "analysis": analysis,
        "updated_at": now,
    }


DEFAULT_ANALYSIS: AnalysisSettings = {
    "alpha": stats.DEFAULT_ALPHA,
    "sequential_tuning": stats.DEFAULT_SEQUENTIAL_TUNING,
    "correction": None,
}


def analysis_of(experiment: Experiment) -> AnalysisSettings:
    """The experiment's analysis settings, complete: a record stored before they existed, or
    one missing a field, reads as the defaults."""
    stored: Mapping[str, Any] = experiment.get("analysis") or {}
    return cast(AnalysisSettings, {**DEFAULT_ANALYSIS, **stored})


def with_analysis(experiment: Experiment) -> Experiment:
    """The experiment as the API shows it: `analysis` always complete."""
    return {**experiment, "analysis": analysis_of(experiment)}


def analysis_settings(settings: AnalysisSettings) -> stats.Analysis:
    return stats.Analysis(settings["alpha"], settings["sequential_tuning"], settings["correction"])


def _analysis(c: _Check, base: AnalysisSettings) -> AnalysisSettings:
    """`analysis` of a body merged into `base`: only the fields it names change."""
    out = dict(base)
    if "analysis" not in c.body:
        return cast(AnalysisSettings, out)
    raw = c.body["analysis"]
    if not isinstance(raw, dict):
        c.fail("analysis", "must be an object of alpha, sequential_tuning, correction")
        return cast(AnalysisSettings, out)
    for name, value in raw.items():
        path = f"analysis.{name}"
        if name == "alpha":
            # alpha / 2 > 0: the smallest subnormal halves to 0, where no quantile exists.
            if not is_number(value) or not (value <= MAX_ALPHA and value / 2 > 0):
                c.fail(path, f"must be a number above 0 and at most {MAX_ALPHA:g}")
            else:
                out[name] = float(value)
        elif name == "sequential_tuning":
            # The range first: a huge integer has no float to ask is_integer of.
            if (
                not is_number(value)
                or not MIN_SEQUENTIAL_TUNING <= value <= MAX_SEQUENTIAL_TUNING
                or not float(value).is_integer()
            ):
                c.fail(
                    path,
                    f"must be an integer from {MIN_SEQUENTIAL_TUNING} to {MAX_SEQUENTIAL_TUNING:,}",
                )
            else:
                out[name] = int(value)
        elif name == "correction":
            if value is not None and value not in stats.CORRECTIONS:
                c.fail(path, "must be null, " + " or ".join(f'"{x}"' for x in stats.CORRECTIONS))
            else:
                out[name] = value
        else:
            c.fail(path, "unknown field (alpha, sequential_tuning, correction)")
    return cast(AnalysisSettings, out)


# Audit log and webhooks ----------------------------------------------------------------------

# What an audit entry's `resource_type` is for each kind of record.
RESOURCE_TYPES = {
    "projects": "project",
    "keys": "key",
    "flags": "flag",
    "rules": "rule",
    "segments": "segment",
    "experiments": "experiment",
    "webhooks": "webhook",
}
# Every resource type is created, updated and deleted; these updates have a name of their own.
VERBS = ("created", "updated", "deleted")
SPECIAL_ACTIONS = (
    "flag.toggled",
    "key.revoked",
    "key.restored",
    "experiment.started",
    "experiment.stopped",
)
AUDIT_ACTIONS = tuple(
    sorted(
        {f"{t}.{verb}" for t in RESOURCE_TYPES.values() for verb in VERBS} | set(SPECIAL_ACTIONS)
    )
)
ALL_EVENTS = "*"
MAX_EVENTS = len(AUDIT_ACTIONS) + 1  # each action once, and the wildcard
MAX_WEBHOOKS = 20  # per project: each entry is delivered to each of them
MAX_URL = 2048
AUDIT_LIMIT_DEFAULT, AUDIT_LIMIT_MAX = 50, 200
STREAM_ID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")  # an audit entry id, the cursor
MAX_STREAM_PART = 2**64 - 1  # each half of a stream id is an unsigned 64-bit integer


def webhook_url(value: Any) -> str | None:
    """What is wrong with a webhook's target URL, or None. Only the URL itself: where its host
    points is checked by `address_refusal` once resolved."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL:
        return f"must be a URL of at most {MAX_URL} characters"
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        return "must be ASCII without spaces (write an international host name in punycode)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "must be a valid URL"
    if not value.startswith(("http://", "https://")):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (the signature authenticates the sender)"
    if "#" in value:
        return "must not have a fragment"
    if port == 0:
        return "must not use port 0"
    return None


IP = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
ADDRESS_RULES: tuple[tuple[str, Callable[[IP], bool]], ...] = (
    ("is a loopback address", lambda ip: ip.is_loopback),
    ("is an unspecified address", lambda ip: ip.is_unspecified),
    ("is a link-local address", lambda ip: ip.is_link_local),
    ("is a multicast address", lambda ip: ip.is_multicast),
    ("is a private address", lambda ip: ip.is_private),
    ("is a reserved address", lambda ip: ip.is_reserved),
    # Whatever else is not on the public Internet (the shared address space 100.64/10, ...).
    ("is not a public address", lambda ip: not ip.is_global),
)


def address_refusal(address: str) -> str | None:
    """Why a webhook may not be sent to this IP address, or None when it is public. Private,
    loopback, link-local, multicast, reserved and unspecified addresses are refused, and so is
    an IPv6 address that embeds one of them (IPv4-mapped, NAT64, 6to4, Teredo): a webhook must
    never be a way into the proxy's own network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "is not an IP address"
    candidates: list[IP] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            candidates = [ip.ipv4_mapped]  # a connection to it goes to that IPv4 address
        if ip.sixtofour is not None:
            candidates.append(ip.sixtofour)
        if ip.teredo is not None:
            candidates.extend(ip.teredo)
        if ip in NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in candidates:
        for reason, refused in ADDRESS_RULES:
            if refused(candidate):
                return reason
    return None


def _events(c: _Check, default: list[str] | None) -> list[str]:
    raw = c.body.get("events", default)
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_EVENTS:
        c.fail("events", f'must be a non-empty list of audit actions, or ["{ALL_EVENTS}"]')
        return []
    for i, event in enumerate(raw):
        if event != ALL_EVENTS and event not in AUDIT_ACTIONS:
            c.fail(f"events[{i}]", f"must be one of {', '.join(AUDIT_ACTIONS)}, or {ALL_EVENTS}")
    return list(dict.fromkeys(e for e in raw if isinstance(e, str)))


def new_webhook(body: Mapping[str, Any], *, id: str, now: str) -> Webhook:
    c = _Check(body)
    problem = webhook_url(body.get("url"))
    if problem:
        c.fail("url", problem)
    events = _events(c, None)
    enabled = c.boolean("enabled", True)
    description = c.optional_text("description", None)
    c.done()
    return {
        "id": id,
        "project_id": body["project_id"],
        "url": body["url"],
        "events": events,
        "enabled": enabled,
        "description": description,
        "disabled_reason": None,
        "since_version": 0,  # set by the write that stores it (proxy.domain.changes)
        "created_at": now,
        "updated_at": now,
    }


def patch_webhook(webhook: Webhook, body: Mapping[str, Any], *, now: str) -> Webhook:
    c = _Check(body)
    _immutable(c, webhook, "id", "project_id")
    url = body.get("url", webhook["url"])
    problem = webhook_url(url)
    if problem:
        c.fail("url", problem)
    events = _events(c, webhook["events"])
    enabled = c.boolean("enabled", webhook["enabled"])
    description = c.optional_text("description", webhook["description"])
    c.done()
    # Enabled again by hand: the reason it was disabled no longer holds.
    reason = None if enabled else webhook["disabled_reason"]
    return {
        **webhook,
        "url": url,
        "events": events,
        "enabled": enabled,
        "description": description,
        "disabled_reason": reason,
        "updated_at": now,
    }


class AuditQuery(TypedDict):
    limit: int
    cursor: str | None  # entries older than this id; None: from the newest
    resource_id: str | None


def audit_query(params: Mapping[str, str]) -> AuditQuery:
    """`GET /audit`'s query: `limit` (1 to 200, default 50), `cursor` (an entry id, from a
    previous page's `next_cursor`) and `resource_id` (a record's id)."""
    errors: dict[str, str] = {}
    limit = AUDIT_LIMIT_DEFAULT
    raw = params.get("limit")
    if raw is not None:
        if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= AUDIT_LIMIT_MAX:
            limit = int(raw)
        else:
            errors["limit"] = f"must be an integer from 1 to {AUDIT_LIMIT_MAX}"
    cursor = params.get("cursor")
    if cursor is not None:
        parts = [int(p) for p in cursor.split("-")] if STREAM_ID_RE.fullmatch(cursor) else []
        if parts and max(parts) <= MAX_STREAM_PART:
            cursor = f"{parts[0]}-{parts[1]}"
        else:
            errors["cursor"] = "must be a next_cursor from a previous page"
    resource_id = params.get("resource_id")
    if resource_id is not None and not is_id(resource_id):
        errors["resource_id"] = "must be a UUID"
    if errors:
        raise ValidationError(errors)
    return {"limit": limit, "cursor": cursor, "resource_id": resource_id}


def require_ids(body: Mapping[str, Any], *names: str) -> None:
    """Fields that name other records: present and shaped like an id (existence is checked
    by the caller, which knows the store)."""
    errors = {
        n: "must be a UUID" for n in names if not isinstance(body.get(n), str) or not is_id(body[n])
    }
    if errors:
        raise ValidationError(errors)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_RE.fullmatch(value))


# Edge requests: evaluate, track, OFREP ------------------------------------------------------


class UserIdError(ValueError):
    """A user id that breaks USER_ID_RULE; each route names the field in its own answer."""


def user_id(value: object) -> str | None:
    """The one rule of what a user id is, shared by evaluate, OFREP and track: a string or an
    integer (bucketed by its decimal spelling) of 1 to MAX_USER_ID characters. Absent, null and
    "" mean no user, as OFREP's empty targetingKey does: such a request is never exposed, and
    an id that track would refuse is refused here too, so no exposure can never convert."""
    if type(value) is str:
        if len(value) <= MAX_USER_ID:
            return value or None
    elif value is None:
        return None
    elif type(value) is int:
        spelled = str(value)  # JSON integers reach here within 64 bits: at most 20 characters
        if len(spelled) <= MAX_USER_ID:
            return spelled
    raise UserIdError(USER_ID_RULE)


class TrackRequest(TypedDict):
    flag_id: str
    experiment_id: str
    user_id: str
    goal: str
    value: float | None


def track_request(body: Mapping[str, Any]) -> TrackRequest:
    errors: dict[str, str] = {}
    for name in ("flag_id", "experiment_id"):
        if not isinstance(body.get(name), str):
            errors[name] = "is required"
    try:
        uid = user_id(body.get("user_id"))
    except UserIdError:
        uid = None
    if uid is None:
        errors["user_id"] = USER_ID_RULE
    goal = body.get("goal", DEFAULT_GOAL)
    if not isinstance(goal, str) or not NAME_RE.fullmatch(goal):
        errors["goal"] = must_match(NAME_RE)
    value = body.get("value")
    if value is not None and (not is_number(value) or abs(value) > MAX_VALUE):
        errors["value"] = f"must be a finite number with |value| <= {MAX_VALUE:g}"
    if errors:
        raise ValidationError(errors)
    assert uid is not None
    return {
        "flag_id": body["flag_id"],
        "experiment_id": body["experiment_id"],
        "user_id": uid,
        "goal": goal,
        "value": None if value is None else float(value),
    }


def goal_name(value: str | None) -> str:
    """A goal named in a query (`?goal=`): the default when absent."""
    if value is None:
        return DEFAULT_GOAL
    if not NAME_RE.fullmatch(value):
        raise ValidationError({"goal": must_match(NAME_RE)})
    return value


def context_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate's `context`: an object, or absent (an empty context)."""
    context = body.get("context")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise ValidationError({"context": "must be an object"})
    return context


def flag_keys(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Evaluate's optional `flags`: the keys to answer (and expose) alone, in the order asked
    and without repeats; None for all."""
    keys = body.get("flags")
    if keys is None:
        return None
    if (
        not isinstance(keys, list)
        or len(keys) > MAX_FLAG_KEYS
        or not all(isinstance(k, str) for k in keys)
    ):
        raise ValidationError({"flags": f"must be a list of at most {MAX_FLAG_KEYS} flag keys"})
    return tuple(dict.fromkeys(keys))
