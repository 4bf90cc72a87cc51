"""API keys: `/api/v1/keys` (scope `*` without project restriction), and the bootstrap key.

Only the SHA-256 of a token is stored; the token itself is returned once, at creation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    ADMIN,
    authorize,
    body,
    commit,
    found,
    new_id,
    new_token,
    now,
    path_id,
    reply,
    runtime,
    validated,
)
from proxy.domain import model
from proxy.store.config import ConfigStore, ScopeState
from proxy.store.keys import GLOBAL


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def view(key: model.Record) -> model.Record:
    return {k: v for k, v in key.items() if k != "token_sha256"}


def make_key(state: ScopeState, data: dict[str, Any], token: str) -> model.Record:
    key = model.new_key(data, projects=state.of("projects"), id=new_id(), now=now(), token=token)
    key["token_sha256"] = token_sha256(token)
    state.put("keys", key)
    return key


def revoke_key(state: ScopeState, key_id: str) -> None:
    found(state.of("keys").get(key_id))
    state.delete("keys", key_id)


async def create_key(store: ConfigStore, data: dict[str, Any]) -> tuple[model.Record, str, int]:
    """Shared by the route and the CLI: returns the record, the token (shown once), version."""
    token = new_token()
    key, version = await store.mutate(GLOBAL, lambda s: validated(lambda: make_key(s, data, token)))
    return view(key), token, version


async def ensure_bootstrap_key(store: ConfigStore, token: str) -> None:
    """Idempotent: a key with exactly this token, scope `*`, no project restriction."""
    digest = token_sha256(token)

    def ensure(state: ScopeState) -> None:
        if not any(k["token_sha256"] == digest for k in state.of("keys").values()):
            make_key(state, {"name": "bootstrap", "scopes": ["*"]}, token)

    await store.mutate(GLOBAL, ensure)


async def create(request: Request) -> Response:
    authorize(request, ADMIN)
    data = await body(request)
    key, token, version = await create_key(runtime(request).store, data)
    await runtime(request).sync.refresh(GLOBAL, at_least=version)
    return reply({**key, "token": token}, 201)


async def list_all(request: Request) -> Response:
    authorize(request, ADMIN)
    state = await runtime(request).store.load(GLOBAL)
    keys = sorted(state.of("keys").values(), key=lambda k: (k["created_at"], k["id"]))
    return reply([view(k) for k in keys])


async def revoke(request: Request) -> Response:
    authorize(request, ADMIN)
    key_id = path_id(request, "key_id")
    await commit(request, GLOBAL, lambda s: revoke_key(s, key_id))
    return reply(None, 204)


routes = [
    Route("/api/v1/keys", create, methods=["POST"]),
    Route("/api/v1/keys", list_all, methods=["GET"]),
    Route("/api/v1/keys/{key_id}", revoke, methods=["DELETE"]),
]
