"""Flags: `/api/v1/flags` and `/api/v1/flags/{flag_id}` (stored in their project's scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    authorize,
    body,
    commit,
    commit_owned,
    list_owned,
    patch_owned,
    path_id,
    project_of,
    project_record,
    read_owned,
    reply,
    required_project,
)
from proxy.domain import changes, model
from proxy.domain.access import WRITE
from proxy.runtime import runtime_of


async def create(request: Request) -> Response:
    authorize(request, WRITE)  # who is asking comes before what they sent
    data = await body(request)
    project_id = required_project(request, data, WRITE)
    await project_record(request, project_id)
    flag = model.new_flag(data, id=model.new_id(), now=model.now())
    added = await commit_owned(
        request, "flags", flag["id"], project_id, lambda s: changes.add_flag(s, flag)
    )
    return reply(added, 201)


async def list_all(request: Request) -> Response:
    return await list_owned(request, "flags")


async def read(request: Request) -> Response:
    return await read_owned(request, "flags", "flag_id")


async def update(request: Request) -> Response:
    return await patch_owned(
        request, "flags", "flag_id", lambda f, data: model.patch_flag(f, data, now=model.now())
    )


async def delete(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    rt = runtime_of(request)
    experiments = await commit(request, project_id, lambda s: changes.remove_flag(s, flag_id))
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
