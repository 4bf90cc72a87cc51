"""Segments: `/api/v1/flags/segments[/{segment_id}]`, reusable condition groups of a project."""

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
from proxy.domain.scope import ScopeState
from proxy.runtime import runtime_of


async def create(request: Request) -> Response:
    authorize(request, WRITE)  # who is asking comes before what they sent
    data = await body(request)
    project_id = required_project(request, data, WRITE)
    await project_record(request, project_id)
    segment = model.new_segment(data, id=model.new_id(), now=model.now())

    def add(state: ScopeState) -> model.Segment:
        state.put("segments", segment)
        return segment

    return reply(await commit_owned(request, "segments", segment["id"], project_id, add), 201)


async def list_all(request: Request) -> Response:
    return await list_owned(request, "segments")


async def read(request: Request) -> Response:
    return await read_owned(request, "segments", "segment_id")


async def update(request: Request) -> Response:
    return await patch_owned(
        request,
        "segments",
        "segment_id",
        lambda s, data: model.patch_segment(s, data, now=model.now()),
    )


async def delete(request: Request) -> Response:
    segment_id = path_id(request, "segment_id")
    project_id = await project_of(request, "segments", segment_id, WRITE)
    await commit(request, project_id, lambda s: changes.remove_segment(s, segment_id))
    await runtime_of(request).store.drop_owner("segments", segment_id)
    return reply(None, 204)


routes = [
    Route("/api/v1/flags/segments", create, methods=["POST"]),
    Route("/api/v1/flags/segments", list_all, methods=["GET"]),
    Route("/api/v1/flags/segments/{segment_id}", read, methods=["GET"]),
    Route("/api/v1/flags/segments/{segment_id}", update, methods=["PATCH"]),
    Route("/api/v1/flags/segments/{segment_id}", delete, methods=["DELETE"]),
]
