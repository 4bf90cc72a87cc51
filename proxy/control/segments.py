"""Segments: `/api/v1/flags/segments[/{segment_id}]`, reusable condition groups of a project."""

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


async def create(request: Request) -> Response:
    authorize(request, WRITE)  # who is asking comes before what they sent
    data = await body(request)
    project_id = required_project(request, data, WRITE)
    await project_record(request, project_id)
    segment = validated(lambda: model.new_segment(data, id=new_id(), now=now()))

    def add(state: ScopeState) -> model.Record:
        state.put("segments", segment)
        return segment

    return reply(await commit_owned(request, "segments", segment["id"], project_id, add), 201)


async def list_all(request: Request) -> Response:
    authorize(request, READ)
    project_id = request.query_params.get("project_id")
    if not project_id:
        raise invalid({"project_id": "is required (query parameter)"})
    required_project(request, {"project_id": project_id}, READ)
    await project_record(request, project_id)
    state = await runtime(request).store.load(project_id)
    return reply(sorted(state.of("segments").values(), key=lambda s: (s["created_at"], s["id"])))


async def read(request: Request) -> Response:
    segment_id = path_id(request, "segment_id")
    project_id = await project_of(request, "segments", segment_id, READ)
    return reply(found(await runtime(request).store.get(project_id, "segments", segment_id)))


async def update(request: Request) -> Response:
    segment_id = path_id(request, "segment_id")
    project_id = await project_of(request, "segments", segment_id, WRITE)
    data = await body(request)

    def patch(state: ScopeState) -> Any:
        segment = found(state.of("segments").get(segment_id))
        updated = validated(lambda: model.patch_segment(segment, data, now=now()))
        state.put("segments", updated)
        return updated

    return reply(await commit(request, project_id, patch))


async def delete(request: Request) -> Response:
    segment_id = path_id(request, "segment_id")
    project_id = await project_of(request, "segments", segment_id, WRITE)

    def remove(state: ScopeState) -> None:
        found(state.of("segments").get(segment_id))
        if any(r.get("segment_id") == segment_id for r in state.of("rules").values()):
            raise conflict("Segment is used by a targeting rule")
        state.delete("segments", segment_id)

    await commit(request, project_id, remove)
    await runtime(request).store.drop_owner("segments", segment_id)
    return reply(None, 204)


routes = [
    Route("/api/v1/flags/segments", create, methods=["POST"]),
    Route("/api/v1/flags/segments", list_all, methods=["GET"]),
    Route("/api/v1/flags/segments/{segment_id}", read, methods=["GET"]),
    Route("/api/v1/flags/segments/{segment_id}", update, methods=["PATCH"]),
    Route("/api/v1/flags/segments/{segment_id}", delete, methods=["DELETE"]),
]
