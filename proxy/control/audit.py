"""The audit log: `GET /api/v1/flags/audit`, every configuration write, newest first.

A project's entries are read with its `project_id` (flags:read on that project); without it, the
global scope's (projects and keys), which only a key without a project restriction may read.
Pages are cursor-based: `meta.next_cursor` is the id of the last entry given, or null at the end.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import NO_STORE, authorize, project_record
from proxy.domain import model
from proxy.domain.access import READ
from proxy.errors import forbidden
from proxy.runtime import runtime_of
from proxy.store.keys import GLOBAL


async def read(request: Request) -> Response:
    key = authorize(request, READ)  # who is asking comes before what they asked
    query = model.audit_query(request.query_params)
    project_id = request.query_params.get("project_id") or None
    if project_id is None:
        if key.project_ids is not None:  # the global log names every project and key
            raise forbidden()
        scope = GLOBAL
    else:
        authorize(request, READ, project_id)
        await project_record(request, project_id)
        scope = project_id
    entries, cursor = await runtime_of(request).audit.page(
        scope, limit=query["limit"], cursor=query["cursor"], resource_id=query["resource_id"]
    )
    body = orjson.dumps({"data": entries, "meta": {"next_cursor": cursor}})
    return Response(body, 200, NO_STORE, media_type="application/json")


routes = [Route("/api/v1/flags/audit", read, methods=["GET"])]
