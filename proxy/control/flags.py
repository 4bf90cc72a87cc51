"""Flags: `/api/v1/flags` and `/api/v1/flags/{flag_id}` (stored in their project's scope)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    READ,
    WRITE,
    authorize,
    body,
    commit,
    commit_owned,
    found,
    new_id,
    now,
    path_id,
    project_of,
    project_record,
    reply,
    required_project,
    runtime,
    validated,
)
from proxy.domain import model
from proxy.errors import conflict, invalid
from proxy.store.config import ScopeState


def add_flag(state: ScopeState, flag: model.Record) -> model.Record:
    if any(f["key"] == flag["key"] for f in state.of("flags").values()):
        raise conflict("A flag with this key already exists in this project")
    state.put("flags", flag)
    return flag


def remove_flag(state: ScopeState, flag_id: str) -> list[model.Record]:
    """Delete the flag with its rules and experiments; return the experiments removed."""
    found(state.of("flags").get(flag_id))
    state.delete("flags", flag_id)
    for rule in [r for r in state.of("rules").values() if r["flag_id"] == flag_id]:
        state.delete("rules", rule["id"])
    experiments = [e for e in state.of("experiments").values() if e["flag_id"] == flag_id]
    for experiment in experiments:
        state.delete("experiments", experiment["id"])
    return experiments


async def create(request: Request) -> Response:
    authorize(request, WRITE)  # who is asking comes before what they sent
    data = await body(request)
    project_id = required_project(request, data, WRITE)
    await project_record(request, project_id)
    flag = validated(lambda: model.new_flag(data, id=new_id(), now=now()))
    added = await commit_owned(
        request, "flags", flag["id"], project_id, lambda s: add_flag(s, flag)
    )
    return reply(added, 201)


async def list_all(request: Request) -> Response:
    authorize(request, READ)
    project_id = request.query_params.get("project_id")
    if not project_id:
        raise invalid({"project_id": "is required (query parameter)"})
    required_project(request, {"project_id": project_id}, READ)
    await project_record(request, project_id)
    state = await runtime(request).store.load(project_id)
    flags = sorted(state.of("flags").values(), key=lambda f: (f["created_at"], f["key"]))
    return reply(flags)


async def read(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    return reply(found(await runtime(request).store.get(project_id, "flags", flag_id)))


async def update(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    data = await body(request)

    def patch(state: ScopeState) -> Any:
        flag = found(state.of("flags").get(flag_id))
        updated = validated(lambda: model.patch_flag(flag, data, now=now()))
        state.put("flags", updated)
        return updated

    return reply(await commit(request, project_id, patch))


async def delete(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    rt = runtime(request)
    experiments = await commit(request, project_id, lambda s: remove_flag(s, flag_id))
    await rt.store.drop_owner("flags", flag_id)
    for e in experiments:
        await rt.events.delete_experiment(e["id"], len(e["variants"]))
    return reply(None, 204)


routes = [
    Route("/api/v1/flags", create, methods=["POST"]),
    Route("/api/v1/flags", list_all, methods=["GET"]),
    Route("/api/v1/flags/{flag_id}", read, methods=["GET"]),
    Route("/api/v1/flags/{flag_id}", update, methods=["PATCH"]),
    Route("/api/v1/flags/{flag_id}", delete, methods=["DELETE"]),
]
