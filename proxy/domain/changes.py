"""Every write the service makes, as a pure function of a scope's records (pure: no I/O).

The routes and the CLI alike read a ScopeState, apply one of these, and let the store commit
the changes atomically (retrying on a lost race, which re-runs the function on fresh records).
They raise the domain's errors: ValidationError (422), NotFound (404), Conflict (409).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from proxy.domain import access, model
from proxy.domain.model import (
    Conflict,
    Experiment,
    Flag,
    KeyRecord,
    NotFound,
    Project,
    Rule,
    Webhook,
)
from proxy.domain.scope import ScopeState

T = TypeVar("T")


def found(record: T | None) -> T:
    if record is None:
        raise NotFound()
    return record


# Projects and keys (the global scope) ---------------------------------------------------------


def add_project(state: ScopeState, project: Project) -> Project:
    """Store a validated project; a missing slug is derived from the name, free of clashes."""
    taken = {p["slug"] for p in state.projects.values() if p["slug"] is not None}
    if project["slug"] is None:
        project = {**project, "slug": model.slugify(project["name"], taken)}
    elif project["slug"] in taken:
        raise Conflict("A project with this slug already exists")
    state.put("projects", project)
    return project


def key_view(key: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never its token's hash."""
    return {k: v for k, v in key.items() if k not in ("token_sha256", "revoked_at")}


def active_keys(state: ScopeState) -> list[KeyRecord]:
    keys = [k for k in state.keys.values() if not k.get("revoked_at")]
    return sorted(keys, key=lambda k: (k["created_at"], k["id"]))


def add_key(
    state: ScopeState, body: Mapping[str, Any], *, token: str, id: str, now: str
) -> KeyRecord:
    key = model.new_key(body, projects=state.projects, id=id, now=now, token=token)
    key["token_sha256"] = access.token_sha256(token)
    state.put("keys", key)
    return key


def revoke_key(state: ScopeState, key_id: str, *, now: str) -> KeyRecord:
    """Revoked keys are kept, marked, so that a revoked bootstrap key's return can be told."""
    key = state.keys.get(key_id)
    if key is None or key.get("revoked_at"):
        raise NotFound()
    revoked: KeyRecord = {**key, "revoked_at": now}
    state.put("keys", revoked)
    return revoked


def ensure_bootstrap_key(state: ScopeState, token: str, *, id: str, now: str) -> str | None:
    """Make sure a key with exactly this token, scope `*` and no restriction is active.
    Returns "created", "restored" (it had been revoked) or None (nothing to do)."""
    digest = access.token_sha256(token)
    for key in state.keys.values():
        if key.get("token_sha256") == digest:
            if not key.get("revoked_at"):
                return None
            state.put("keys", {**key, "revoked_at": None})
            return "restored"
    add_key(state, {"name": "bootstrap", "scopes": [access.ADMIN]}, token=token, id=id, now=now)
    return "created"


# Flags, rules, segments (a project's scope) ---------------------------------------------------


def add_flag(state: ScopeState, flag: Flag) -> Flag:
    if any(f["key"] == flag["key"] for f in state.flags.values()):
        raise Conflict("A flag with this key already exists in this project")
    state.put("flags", flag)
    return flag


def flags_in_order(state: ScopeState) -> list[Flag]:
    """A project's flags in creation order: stable, whatever order Redis returns them in."""
    return sorted(state.flags.values(), key=lambda f: (f["created_at"], f["id"]))


def remove_flag(state: ScopeState, flag_id: str) -> list[Experiment]:
    """Delete the flag with its rules and experiments; return the experiments removed."""
    found(state.flags.get(flag_id))
    state.delete("flags", flag_id)
    for rule in [r for r in state.rules.values() if r["flag_id"] == flag_id]:
        state.delete("rules", rule["id"])
    experiments = [e for e in state.experiments.values() if e["flag_id"] == flag_id]
    for experiment in experiments:
        state.delete("experiments", experiment["id"])
    return experiments


def flag_rules(state: ScopeState, flag_id: str, env: str | None = None) -> list[Rule]:
    """A flag's rules (in one environment, or all) in evaluation order."""
    rules = [
        r
        for r in state.rules.values()
        if r["flag_id"] == flag_id and (env is None or r["environment"] == env)
    ]
    return sorted(rules, key=model.rule_order)


def rule_of(state: ScopeState, flag_id: str, rule_id: str) -> Rule:
    rule = found(state.rules.get(rule_id))
    if rule["flag_id"] != flag_id:
        raise NotFound()
    return rule


def place(state: ScopeState, rule: Rule) -> Rule:
    """Put `rule` at index `rule["position"]` of its flag's rules in its environment and
    renumber them 0..n-1: positions are the evaluation order, as in a list."""
    others = [
        r for r in flag_rules(state, rule["flag_id"], rule["environment"]) if r["id"] != rule["id"]
    ]
    index = min(rule["position"], len(others))
    ordered = [*others[:index], rule, *others[index:]]
    for i, r in enumerate(ordered):
        if r is rule or r["position"] != i:
            state.put("rules", {**r, "position": i})
    return {**rule, "position": index}


def remove_rule(state: ScopeState, flag_id: str, rule_id: str) -> None:
    state.delete("rules", rule_of(state, flag_id, rule_id)["id"])


def remove_segment(state: ScopeState, segment_id: str) -> None:
    found(state.segments.get(segment_id))
    if any(r.get("segment_id") == segment_id for r in state.rules.values()):
        raise Conflict("Segment is used by a targeting rule")
    state.delete("segments", segment_id)


# Experiments ----------------------------------------------------------------------------------


def experiment_of(state: ScopeState, flag_id: str, experiment_id: str) -> Experiment:
    experiment = found(state.experiments.get(experiment_id))
    if experiment["flag_id"] != flag_id:
        raise NotFound()
    return experiment


def flag_experiments(state: ScopeState, flag_id: str) -> list[Experiment]:
    experiments = [e for e in state.experiments.values() if e["flag_id"] == flag_id]
    return sorted(experiments, key=lambda e: (e["created_at"], e["id"]))


def transition(
    state: ScopeState, flag_id: str, experiment_id: str, to: str, *, now: str
) -> Experiment:
    """The lifecycle: draft -> running -> stopped, nothing else; at most one running
    experiment per flag and environment."""
    experiment = experiment_of(state, flag_id, experiment_id)
    changed: Experiment
    if to == "running":
        if experiment["status"] != "draft":
            raise Conflict(f"Experiment is {experiment['status']}; only a draft can start")
        for other in state.experiments.values():
            if (
                other["flag_id"] == flag_id
                and other["environment"] == experiment["environment"]
                and other["status"] == "running"
            ):
                raise Conflict("Another experiment is already running on this flag")
        changed = {**experiment, "status": "running", "started_at": now, "updated_at": now}
    else:
        if experiment["status"] != "running":
            raise Conflict(f"Experiment is {experiment['status']}; only a running one can stop")
        changed = {**experiment, "status": "stopped", "stopped_at": now, "updated_at": now}
    state.put("experiments", changed)
    return changed


# Webhooks -------------------------------------------------------------------------------------


def add_webhook(state: ScopeState, webhook: Webhook) -> Webhook:
    """Store a validated webhook, marked with the version this write gives the project: it
    receives the entries of later writes only."""
    if len(state.webhooks) >= model.MAX_WEBHOOKS:
        raise Conflict(f"A project has at most {model.MAX_WEBHOOKS} webhooks")
    stored: Webhook = {**webhook, "since_version": state.version + 1}
    state.put("webhooks", stored)
    return stored


def update_webhook(
    state: ScopeState, webhook_id: str, body: Mapping[str, Any], *, now: str
) -> tuple[Webhook, bool]:
    """Apply a PATCH; also returns whether it enabled a disabled webhook, which then receives
    the entries of later writes only, as if new: not what happened while it was disabled."""
    webhook = found(state.webhooks.get(webhook_id))
    updated = model.patch_webhook(webhook, body, now=now)
    enabled_again = updated["enabled"] and not webhook["enabled"]
    if enabled_again:
        updated = {**updated, "since_version": state.version + 1}
    state.put("webhooks", updated)
    return updated, enabled_again


def webhooks_in_order(state: ScopeState) -> list[Webhook]:
    return sorted(state.webhooks.values(), key=lambda w: (w["created_at"], w["id"]))


def remove_webhook(state: ScopeState, webhook_id: str) -> None:
    found(state.webhooks.get(webhook_id))
    state.delete("webhooks", webhook_id)


def disable_webhook(state: ScopeState, webhook_id: str, reason: str, *, now: str) -> bool:
    """The delivery's own write: disable a webhook that keeps failing. False when there is
    nothing to do (deleted, or disabled already, perhaps by another proxy)."""
    webhook = state.webhooks.get(webhook_id)
    if webhook is None or not webhook["enabled"]:
        return False
    disabled: Webhook = {**webhook, "enabled": False, "disabled_reason": reason, "updated_at": now}
    state.put("webhooks", disabled)
    return True
