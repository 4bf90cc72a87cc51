"""Projects: `/api/v1/flags/projects` (stored in the global scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    READ,
    WRITE,
    authorize,
    body,
    commit,
    new_id,
    now,
    path_id,
    project_record,
    reply,
    runtime,
    validated,
)
from proxy.domain import model
from proxy.errors import conflict
from proxy.store.config import ScopeState
from proxy.store.keys import GLOBAL


def add_project(state: ScopeState, project: model.Record) -> model.Record:
    taken = {p["slug"] for p in state.of("projects").values()}
    if project["slug"] is None:
        project = {**project, "slug": model.slugify(project["name"], taken)}
    elif project["slug"] in taken:
        raise conflict("A project with this slug already exists")
    state.put("projects", project)
    return project


async def create(request: Request) -> Response:
    key = authorize(request, WRITE)
    if key.project_ids is not None:  # a key bound to projects cannot make new ones
        authorize(request, "*")
    data = await body(request)
    project = validated(lambda: model.new_project(data, id=new_id(), now=now()))
    return reply(await commit(request, GLOBAL, lambda s: add_project(s, project)), 201)


async def list_all(request: Request) -> Response:
    key = authorize(request, READ)
    state = await runtime(request).store.load(GLOBAL)
    projects = [p for p in state.of("projects").values() if key.allows(p["id"])]
    return reply(sorted(projects, key=lambda p: (p["created_at"], p["id"])))


async def read(request: Request) -> Response:
    project_id = path_id(request, "project_id")
    authorize(request, READ, project_id)
    return reply(await project_record(request, project_id))


routes = [
    Route("/api/v1/flags/projects", create, methods=["POST"]),
    Route("/api/v1/flags/projects", list_all, methods=["GET"]),
    Route("/api/v1/flags/projects/{project_id}", read, methods=["GET"]),
]
