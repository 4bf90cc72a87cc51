"""Projects: `/api/v1/flags/projects` (stored in the global scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import authorize, body, commit, path_id, project_record, reply
from proxy.domain import changes, model
from proxy.domain.access import CREATE_PROJECTS, READ
from proxy.runtime import runtime_of
from proxy.store.keys import GLOBAL


async def create(request: Request) -> Response:
    authorize(request, CREATE_PROJECTS)  # a key bound to projects cannot make new ones
    data = await body(request)
    project = model.new_project(data, id=model.new_id(), now=model.now())
    return reply(await commit(request, GLOBAL, lambda s: changes.add_project(s, project)), 201)


async def list_all(request: Request) -> Response:
    key = authorize(request, READ)
    state = await runtime_of(request).store.load(GLOBAL)
    projects = [p for p in state.projects.values() if key.allows(p["id"])]
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
