"""The records of the API and every validation rule they obey (pure: no I/O).

Records are plain JSON-ready dicts, exactly as stored in Redis and (mostly) as returned. Each
`new_*` builds a record from a request body and each `patch_*` applies a PATCH body; both raise
ValidationError with a field path -> message map, the `details` of a 422.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from proxy.domain.rules import ConditionError, check_condition

Record = dict[str, Any]

FLAG_TYPES = ("boolean", "string", "number", "json")
SCOPES = ("flags:read", "flags:write", "flags:evaluate", "*")
DEFAULT_ENVIRONMENTS = ("production", "staging", "development")
FLAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # environments, variant keys, goals
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_TEXT = 2000
MAX_CONDITIONS = 50
MAX_VARIANTS = 20


class ValidationError(Exception):
    def __init__(self, details: dict[str, str]) -> None:
        super().__init__(details)
        self.details = details


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


def _environment(check: _Check, project: Record, name: str = "environment") -> Any:
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


def new_project(body: Mapping[str, Any], *, id: str, now: str) -> Record:
    c = _Check(body)
    name = c.text("name", required=True)
    slug = body.get("slug")
    if slug is not None and (not isinstance(slug, str) or not SLUG_RE.fullmatch(slug)):
        c.fail("slug", "must match ^[a-z0-9][a-z0-9-]{0,63}$")
    envs = body.get("environments", list(DEFAULT_ENVIRONMENTS))
    if envs is None:
        envs = list(DEFAULT_ENVIRONMENTS)
    if not isinstance(envs, list) or not 1 <= len(envs) <= 20:
        c.fail("environments", "must be a list of 1 to 20 names")
        envs = list(DEFAULT_ENVIRONMENTS)
    else:
        for i, env in enumerate(envs):
            if not isinstance(env, str) or not NAME_RE.fullmatch(env):
                c.fail(f"environments[{i}]", "must match ^[A-Za-z0-9_.-]{1,64}$")
        if len(set(map(str, envs))) != len(envs):
            c.fail("environments", "must not repeat a name")
    settings = body.get("settings")
    if settings is None:
        settings = {}
    elif not isinstance(settings, dict):
        c.fail("settings", "must be an object")
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
) -> Record:
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


def new_flag(body: Mapping[str, Any], *, id: str, now: str) -> Record:
    c = _Check(body)
    key = body.get("key")
    if not isinstance(key, str) or not FLAG_KEY_RE.fullmatch(key):
        c.fail("key", "must match ^[A-Za-z0-9_.-]{1,128}$")
    name = c.text("name", required=True)
    flag_type = body.get("flag_type")
    if flag_type not in FLAG_TYPES:
        c.fail("flag_type", f"must be one of {', '.join(FLAG_TYPES)}")
    if "default_value" not in body:
        c.fail("default_value", "is required")
    elif flag_type in FLAG_TYPES and not value_fits(flag_type, body["default_value"]):
        c.fail("default_value", f"must be a {flag_type} value")
    description = c.optional_text("description", None)
    tags = c.tags([])
    c.done()
    return {
        "id": id,
        "project_id": body["project_id"],
        "key": key,
        "name": name,
        "flag_type": flag_type,
        "default_value": body["default_value"],
        "enabled": False,
        "description": description,
        "tags": tags,
        "created_at": now,
        "updated_at": now,
    }


def _immutable(c: _Check, record: Record, *names: str) -> None:
    """A PATCH may repeat a field it cannot change, but not change it."""
    for name in names:
        if name in c.body and c.body[name] != record.get(name):
            c.fail(name, "cannot be changed")


def patch_flag(flag: Record, body: Mapping[str, Any], *, now: str) -> Record:
    c = _Check(body)
    _immutable(c, flag, "id", "project_id", "key", "flag_type")
    name = c.text("name", required=False, default=flag["name"])
    description = c.optional_text("description", flag["description"])
    enabled = c.boolean("enabled", flag["enabled"])
    tags = c.tags(flag["tags"])
    default = body.get("default_value", flag["default_value"])
    if not value_fits(flag["flag_type"], default):
        c.fail("default_value", f"must be a {flag['flag_type']} value")
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


def _rule_fields(c: _Check, flag: Record, segments: Mapping[str, Record], base: Record) -> Record:
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
    flag: Record,
    project: Record,
    segments: Mapping[str, Record],
    next_position: int,
    id: str,
    now: str,
) -> Record:
    c = _Check(body)
    env = _environment(c, project)
    base = {"position": next_position, "percentage": None, "segment_id": None}
    fields = _rule_fields(c, flag, segments, base)
    c.done()
    return {
        "id": id,
        "flag_id": flag["id"],
        "environment": env,
        **fields,
        "created_at": now,
        "updated_at": now,
    }


def patch_rule(
    rule: Record, body: Mapping[str, Any], *, flag: Record, segments: Mapping[str, Record], now: str
) -> Record:
    c = _Check(body)
    _immutable(c, rule, "id", "flag_id", "environment")
    fields = _rule_fields(c, flag, segments, rule)
    c.done()
    return {**rule, **fields, "updated_at": now}


def rule_order(rule: Record) -> tuple[int, str, str]:
    """Evaluation order: lower position first, then the older rule."""
    return (rule["position"], rule["created_at"], rule["id"])


def new_segment(body: Mapping[str, Any], *, id: str, now: str) -> Record:
    c = _Check(body)
    fields = _segment_fields(c, {"description": None, "match_type": "all"})
    c.done()
    return {
        "id": id,
        "project_id": body["project_id"],
        **fields,
        "created_at": now,
        "updated_at": now,
    }


def patch_segment(segment: Record, body: Mapping[str, Any], *, now: str) -> Record:
    c = _Check(body)
    _immutable(c, segment, "id", "project_id")
    fields = _segment_fields(c, segment)
    c.done()
    return {**segment, **fields, "updated_at": now}


def _segment_fields(c: _Check, base: Record) -> Record:
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
    body: Mapping[str, Any], *, flag: Record, project: Record, id: str, now: str
) -> Record:
    c = _Check(body)
    name = c.text("name", required=True)
    env = _environment(c, project)
    variants = _variants(c, flag)
    traffic = _traffic(c, 100.0)
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
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "stopped_at": None,
    }


def _variants(c: _Check, flag: Record) -> list[Record]:
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
            c.fail(f"{path}.key", "must be a non-empty name matching ^[A-Za-z0-9_.-]{1,64}$")
        elif key in seen:
            c.fail(f"{path}.key", "duplicate variant key")
        else:
            seen.add(key)
        if "value" not in v or not value_fits(flag["flag_type"], value):
            c.fail(f"{path}.value", f"must be a {flag['flag_type']} value (the flag's type)")
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
    return out


def _traffic(c: _Check, default: float) -> float:
    raw = c.body.get("traffic_percentage", default)
    pct = percentage(raw, whole=False)
    if pct is None:
        c.fail("traffic_percentage", "must be a number from 0 to 100, to 0.01")
        return default
    return pct


def patch_experiment(experiment: Record, body: Mapping[str, Any], *, now: str) -> Record:
    c = _Check(body)
    _immutable(c, experiment, "id", "flag_id", "project_id", "environment", "variants", "status")
    name = c.text("name", required=False, default=experiment["name"])
    traffic = _traffic(c, experiment["traffic_percentage"])
    if experiment["status"] == "running" and traffic < experiment["traffic_percentage"]:
        c.fail("traffic_percentage", "may only rise while the experiment runs")
    elif experiment["status"] == "stopped" and traffic != experiment["traffic_percentage"]:
        c.fail("traffic_percentage", "cannot change after the experiment stopped")
    c.done()
    return {**experiment, "name": name, "traffic_percentage": traffic, "updated_at": now}


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
