"""Targeting rules: `/api/v1/flags/{flag_id}/rules[/{rule_id}]`, per flag and environment."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import body, commit, path_id, project_of, project_record, reply
from proxy.domain import changes, model
from proxy.domain.access import READ, WRITE
from proxy.domain.changes import found
from proxy.domain.scope import ScopeState
from proxy.errors import invalid
from proxy.runtime import runtime_of


async def create(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    project = await project_record(request, project_id)
    data = await body(request)

    def add(state: ScopeState) -> model.Rule:
        flag = found(state.flags.get(flag_id))
        existing = changes.flag_rules(state, flag_id, data.get("environment"))
        rule = model.new_rule(
            data,
            flag=flag,
            project=project,
            segments=state.segments,
            next_position=len(existing),
            id=model.new_id(),
            now=model.now(),
        )
        return changes.place(state, rule)

    return reply(await commit(request, project_id, add), 201)


async def list_all(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    env = request.query_params.get("environment")
    if env is not None and env not in (await project_record(request, project_id))["environments"]:
        raise invalid({"environment": "unknown environment for this project"})
    state = await runtime_of(request).store.load(project_id)
    found(state.flags.get(flag_id))
    return reply(changes.flag_rules(state, flag_id, env))


async def update(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    rule_id = path_id(request, "rule_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    data = await body(request)

    def patch(state: ScopeState) -> model.Rule:
        flag = found(state.flags.get(flag_id))
        rule = changes.rule_of(state, flag_id, rule_id)
        updated = model.patch_rule(rule, data, flag=flag, segments=state.segments, now=model.now())
        return changes.place(state, updated)

    return reply(await commit(request, project_id, patch))


async def delete(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    rule_id = path_id(request, "rule_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    await commit(request, project_id, lambda s: changes.remove_rule(s, flag_id, rule_id))
    return reply(None, 204)


routes = [
    Route("/api/v1/flags/{flag_id}/rules", create, methods=["POST"]),
    Route("/api/v1/flags/{flag_id}/rules", list_all, methods=["GET"]),
    Route("/api/v1/flags/{flag_id}/rules/{rule_id}", update, methods=["PATCH"]),
    Route("/api/v1/flags/{flag_id}/rules/{rule_id}", delete, methods=["DELETE"]),
]
