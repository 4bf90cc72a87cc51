"""What every control route shares: auth by scope and project, bodies, replies, commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy import http
from proxy.domain import access, audit
from proxy.domain.access import READ, WRITE, ApiKey
from proxy.domain.changes import found
from proxy.domain.model import is_id
from proxy.domain.scope import Kind, ScopeState
from proxy.errors import forbidden, invalid, not_found
from proxy.runtime import runtime_of
from proxy.store.keys import GLOBAL

T = TypeVar("T")
# API answers are never kept by a browser or an intermediary: they change with every write.
NO_STORE = {"cache-control": "no-store"}


def authorize(request: Request, need: str, project_id: str | None = None) -> ApiKey:
    """The key, if it may do what needs `need` (proxy.domain.access.permits), on `project_id`
    when one is named; 401/403 otherwise."""
    key = runtime_of(request).auth.key(request.scope)
    if not access.permits(key, need, project_id):
        raise forbidden()
    request.scope["edge.key"] = key  # the actor of this request's writes
    return key


def actor(request: Request) -> audit.Actor:
    """Who a write is by: the key the request was authorized with (asked for again only if it
    was not, which would spend a second token of its rate limit)."""
    key: ApiKey | None = request.scope.get("edge.key")
    if key is None:
        key = runtime_of(request).auth.key(request.scope)
    return audit.key_actor(key)


async def body(request: Request) -> dict[str, Any]:
    limit = runtime_of(request).settings.max_body_bytes
    return http.json_object(await http.read_body(request.scope, request.receive, limit))


def reply(data: Any, status: int = 200) -> Response:
    if status == 204:
        return Response(status_code=204, headers=NO_STORE)
    body = orjson.dumps({"data": data})
    return Response(body, status, NO_STORE, media_type="application/json")


def path_id(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if not is_id(value):
        raise not_found()
    return value


async def commit(request: Request, scope: str, change: Callable[[ScopeState], T]) -> T:
    """Apply `change` atomically to `scope` in Redis, with its audit entries by the request's
    key, then wait until this process serves it (read-your-writes on the process that wrote;
    the others follow through pub/sub)."""
    rt = runtime_of(request)
    result, version = await rt.store.mutate(scope, change, actor=actor(request))
    await rt.sync.refresh(scope, at_least=version)
    return result


async def commit_owned(
    request: Request, kind: Kind, record_id: str, project_id: str, change: Callable[[ScopeState], T]
) -> T:
    """`commit` for a new flag or segment, whose id must lead to its project. The owner index
    is written first, so no record is ever unfindable; a failed commit takes it back."""
    store = runtime_of(request).store
    await store.set_owner(kind, record_id, project_id)
    try:
        return await commit(request, project_id, change)
    except BaseException:
        await store.drop_owner(kind, record_id)
        raise


async def project_of(request: Request, kind: Kind, record_id: str, need: str) -> str:
    """The project that owns a flag or segment, after checking the key may act on it."""
    authorize(request, need)
    project_id = await runtime_of(request).store.owner(kind, record_id)
    if project_id is None:
        raise not_found()
    authorize(request, need, project_id)
    return project_id


def required_project(request: Request, data: dict[str, Any], need: str) -> str:
    project_id = data.get("project_id")
    if not isinstance(project_id, str) or not project_id:
        raise invalid({"project_id": "is required"})
    authorize(request, need, project_id)
    return project_id


async def project_record(request: Request, project_id: str) -> Any:
    return found(await runtime_of(request).store.get(GLOBAL, "projects", project_id))


# Flags and segments are both records of a project addressed by their own id: one way to list,
# read and patch them.


async def list_owned(request: Request, kind: Kind) -> Response:
    """`GET ?project_id=`: the project's records of `kind`, oldest first."""
    authorize(request, READ)
    project_id = request.query_params.get("project_id")
    if not project_id:
        raise invalid({"project_id": "is required (query parameter)"})
    authorize(request, READ, project_id)
    await project_record(request, project_id)
    state = await runtime_of(request).store.load(project_id)
    return reply(sorted(state.records[kind].values(), key=lambda r: (r["created_at"], r["id"])))


async def read_owned(request: Request, kind: Kind, param: str) -> Response:
    record_id = path_id(request, param)
    project_id = await project_of(request, kind, record_id, READ)
    return reply(found(await runtime_of(request).store.get(project_id, kind, record_id)))


async def patch_owned(
    request: Request, kind: Kind, param: str, patch: Callable[[Any, dict[str, Any]], Any]
) -> Response:
    record_id = path_id(request, param)
    project_id = await project_of(request, kind, record_id, WRITE)
    data = await body(request)

    def change(state: ScopeState) -> Any:
        updated = patch(found(state.records[kind].get(record_id)), data)
        state.put(kind, updated)
        return updated

    return reply(await commit(request, project_id, change))
