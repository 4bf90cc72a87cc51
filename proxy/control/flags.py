"""Flags: `/api/v1/flags` and `/api/v1/flags/{flag_id}` (stored in their project's scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    WRITE,
    authorize,
    body,
    commit,
    commit_owned,
    found,
    list_owned,
    new_id,
    now,
    patch_owned,
    path_id,
    project_of,
    project_record,
    read_owned,
    reply,
    required_project,
    runtime,
    validated,
)
from proxy.domain import model
from proxy.errors import conflict
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
    return await list_owned(request, "flags")


async def read(request: Request) -> Response:
    return await read_owned(request, "flags", "flag_id")


async def update(request: Request) -> Response:
    return await patch_owned(
        request, "flags", "flag_id", lambda flag, data: model.patch_flag(flag, data, now=now())
    )


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
