"""API keys: `/api/v1/keys` (scope `*` without project restriction).

Only the SHA-256 of a token is stored; the token itself is returned once, at creation. A
revoked key is kept, marked, and never listed again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import authorize, body, commit, path_id, reply
from proxy.domain import access, changes, model
from proxy.domain.access import MANAGE_KEYS
from proxy.runtime import runtime_of
from proxy.store.keys import GLOBAL


async def create(request: Request) -> Response:
    authorize(request, MANAGE_KEYS)
    data = await body(request)
    token = access.new_token()
    key = await commit(
        request,
        GLOBAL,
        lambda s: changes.add_key(s, data, token=token, id=model.new_id(), now=model.now()),
    )
    return reply({**changes.key_view(key), "token": token}, 201)


async def list_all(request: Request) -> Response:
    authorize(request, MANAGE_KEYS)
    state = await runtime_of(request).store.load(GLOBAL)
    return reply([changes.key_view(k) for k in changes.active_keys(state)])


async def revoke(request: Request) -> Response:
    authorize(request, MANAGE_KEYS)
    key_id = path_id(request, "key_id")
    await commit(request, GLOBAL, lambda s: changes.revoke_key(s, key_id, now=model.now()))
    return reply(None, 204)


routes = [
    Route("/api/v1/keys", create, methods=["POST"]),
    Route("/api/v1/keys", list_all, methods=["GET"]),
    Route("/api/v1/keys/{key_id}", revoke, methods=["DELETE"]),
]
