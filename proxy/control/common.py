"""What every control route shares: auth by scope and project, bodies, replies, commits."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.domain.model import ValidationError, is_id
from proxy.edge import wire
from proxy.edge.snapshot import ApiKey
from proxy.errors import ApiError, forbidden, invalid, not_found
from proxy.store.config import ScopeState
from proxy.store.keys import GLOBAL

if TYPE_CHECKING:
    from proxy.app import Runtime

T = TypeVar("T")
READ, WRITE, ADMIN = "flags:read", "flags:write", "*"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def authorize(request: Request, need: str, project_id: str | None = None) -> ApiKey:
    """The key, if it has scope `need` (ADMIN: `*` and no project restriction) and may see
    `project_id`; 401/403 otherwise."""
    key = runtime(request).auth.key(request.scope)
    if need == ADMIN:
        if "*" not in key.scopes or key.project_ids is not None:
            raise forbidden()
    elif not key.has(need):
        raise forbidden()
    if project_id is not None and not key.allows(project_id):
        raise forbidden()
    return key


async def body(request: Request) -> dict[str, Any]:
    limit = runtime(request).settings.max_body_bytes
    return wire.json_object(await wire.read_body(request.scope, request.receive, limit))


def reply(data: Any, status: int = 200) -> Response:
    if status == 204:
        return Response(status_code=204)
    return Response(orjson.dumps({"data": data}), status, media_type="application/json")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


def new_token() -> str:
    return "kr_live_" + secrets.token_urlsafe(32)


def path_id(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if not is_id(value):
        raise not_found()
    return value


def validated(build: Callable[[], T]) -> T:
    """Run a domain constructor, turning its ValidationError into the 422 of the API."""
    try:
        return build()
    except ValidationError as e:
        raise invalid(e.details) from None


async def commit(request: Request, scope: str, change: Callable[[ScopeState], T]) -> T:
    """Apply `change` atomically to `scope` in Redis, then wait until this process serves it
    (read-your-writes on the process that wrote; the others follow through pub/sub)."""
    rt = runtime(request)
    result, version = await rt.store.mutate(scope, change)
    await rt.sync.refresh(scope, at_least=version)
    return result


async def commit_owned(
    request: Request, kind: str, record_id: str, project_id: str, change: Callable[[ScopeState], T]
) -> T:
    """`commit` for a new flag or segment, whose id must lead to its project. The owner index
    is written first, so no record is ever unfindable; a failed commit takes it back."""
    store = runtime(request).store
    await store.set_owner(kind, record_id, project_id)
    try:
        return await commit(request, project_id, change)
    except BaseException:
        await store.drop_owner(kind, record_id)
        raise


async def project_of(request: Request, kind: str, record_id: str, need: str) -> str:
    """The project that owns a flag or segment, after checking the key may act on it."""
    authorize(request, need)
    project_id = await runtime(request).store.owner(kind, record_id)
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


async def project_record(request: Request, project_id: str) -> dict[str, Any]:
    return found(await runtime(request).store.get(GLOBAL, "projects", project_id))


# Flags and segments are both records of a project addressed by their own id: one way to list,
# read and patch them.


async def list_owned(request: Request, kind: str) -> Response:
    """`GET ?project_id=`: the project's records of `kind`, oldest first."""
    authorize(request, READ)
    project_id = request.query_params.get("project_id")
    if not project_id:
        raise invalid({"project_id": "is required (query parameter)"})
    authorize(request, READ, project_id)
    await project_record(request, project_id)
    state = await runtime(request).store.load(project_id)
    return reply(sorted(state.of(kind).values(), key=lambda r: (r["created_at"], r["id"])))


async def read_owned(request: Request, kind: str, param: str) -> Response:
    record_id = path_id(request, param)
    project_id = await project_of(request, kind, record_id, READ)
    return reply(found(await runtime(request).store.get(project_id, kind, record_id)))


async def patch_owned(
    request: Request, kind: str, param: str, patch: Callable[[Any, dict[str, Any]], Any]
) -> Response:
    record_id = path_id(request, param)
    project_id = await project_of(request, kind, record_id, WRITE)
    data = await body(request)

    def change(state: ScopeState) -> Any:
        record = found(state.of(kind).get(record_id))
        updated = validated(lambda: patch(record, data))
        state.put(kind, updated)
        return updated

    return reply(await commit(request, project_id, change))


def found(record: T | None) -> T:
    if record is None:
        raise not_found()
    return record


def check(condition: bool, error: ApiError) -> None:
    if not condition:
        raise error
