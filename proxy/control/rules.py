"""Targeting rules: `/api/v1/flags/{flag_id}/rules[/{rule_id}]`, per flag and environment."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    READ,
    WRITE,
    body,
    commit,
    found,
    new_id,
    now,
    path_id,
    project_of,
    project_record,
    reply,
    runtime,
    validated,
)
from proxy.domain import model
from proxy.errors import invalid, not_found
from proxy.store.config import ScopeState


def flag_rules(state: ScopeState, flag_id: str, env: str | None = None) -> list[model.Record]:
    rules = [
        r
        for r in state.of("rules").values()
        if r["flag_id"] == flag_id and (env is None or r["environment"] == env)
    ]
    return sorted(rules, key=model.rule_order)


def rule_of(state: ScopeState, flag_id: str, rule_id: str) -> model.Record:
    rule: model.Record = found(state.of("rules").get(rule_id))
    if rule["flag_id"] != flag_id:
        raise not_found()
    return rule


def place(state: ScopeState, rule: model.Record) -> model.Record:
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


async def create(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    project = await project_record(request, project_id)
    data = await body(request)

    def add(state: ScopeState) -> model.Record:
        flag = found(state.of("flags").get(flag_id))
        existing = flag_rules(state, flag_id, data.get("environment"))
        rule = validated(
            lambda: model.new_rule(
                data,
                flag=flag,
                project=project,
                segments=state.of("segments"),
                next_position=len(existing),
                id=new_id(),
                now=now(),
            )
        )
        return place(state, rule)

    return reply(await commit(request, project_id, add), 201)


async def list_all(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    env = request.query_params.get("environment")
    if env is not None and env not in (await project_record(request, project_id))["environments"]:
        raise invalid({"environment": "unknown environment for this project"})
    state = await runtime(request).store.load(project_id)
    found(state.of("flags").get(flag_id))
    return reply(flag_rules(state, flag_id, env))


async def update(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    rule_id = path_id(request, "rule_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    data = await body(request)

    def patch(state: ScopeState) -> Any:
        flag = found(state.of("flags").get(flag_id))
        rule = rule_of(state, flag_id, rule_id)
        updated = validated(
            lambda: model.patch_rule(
                rule, data, flag=flag, segments=state.of("segments"), now=now()
            )
        )
        return place(state, updated)

    return reply(await commit(request, project_id, patch))


async def delete(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    rule_id = path_id(request, "rule_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)

    def remove(state: ScopeState) -> None:
        state.delete("rules", rule_of(state, flag_id, rule_id)["id"])

    await commit(request, project_id, remove)
    return reply(None, 204)


routes = [
    Route("/api/v1/flags/{flag_id}/rules", create, methods=["POST"]),
    Route("/api/v1/flags/{flag_id}/rules", list_all, methods=["GET"]),
    Route("/api/v1/flags/{flag_id}/rules/{rule_id}", update, methods=["PATCH"]),
    Route("/api/v1/flags/{flag_id}/rules/{rule_id}", delete, methods=["DELETE"]),
]
