"""API keys and what they may do: scopes, project restriction, tokens (pure: no I/O).

A token is `kr_live_` + 43 url-safe base64 characters (32 random bytes); the service knows a key
only by the SHA-256 of its token. Which key may call which route is decided by `permits`, one
rule for every route, so the authorization matrix is a table a unit test can walk.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READ, WRITE, EVALUATE, ADMIN = "flags:read", "flags:write", "flags:evaluate", "*"
SCOPES = (READ, WRITE, EVALUATE, ADMIN)
TOKEN_PREFIX = "kr_live_"
# What a route needs: a scope, or one of these two stricter rights.
MANAGE_KEYS = "manage-keys"  # scope `*` and no project restriction: a key can never mint a wider
CREATE_PROJECTS = "create-projects"  # flags:write and no project restriction


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    project_ids: frozenset[str] | None  # None: every project
    can_evaluate: bool = field(init=False)  # evaluate, track, OFREP: decided once per key

    def __post_init__(self) -> None:
        object.__setattr__(self, "can_evaluate", self.has(EVALUATE))

    def has(self, scope: str) -> bool:
        """Whether the key's scopes grant `scope`: `*` grants all; flags:read grants what
        flags:evaluate does (evaluate, track, OFREP are reads)."""
        if ADMIN in self.scopes or scope in self.scopes:
            return True
        return scope == EVALUATE and READ in self.scopes

    def allows(self, project_id: str) -> bool:
        return self.project_ids is None or project_id in self.project_ids


def permits(key: ApiKey, need: str, project_id: str | None = None) -> bool:
    """Whether `key` may do what needs `need` (a scope, MANAGE_KEYS or CREATE_PROJECTS), on
    `project_id` when one is named."""
    if need == MANAGE_KEYS:
        granted = ADMIN in key.scopes and key.project_ids is None
    elif need == CREATE_PROJECTS:
        granted = key.has(WRITE) and key.project_ids is None
    else:
        granted = key.has(need)
    return granted and (project_id is None or key.allows(project_id))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str | bytes) -> str:
    """SHA-256 hex of a token, the only form in which keys are known."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


def compile_keys(records: Iterable[Mapping[str, Any]]) -> dict[str, ApiKey]:
    """Token hash -> key, for every key that is not revoked."""
    return {
        r["token_sha256"]: ApiKey(
            r["id"],
            r["name"],
            frozenset(r["scopes"]),
            None if r.get("project_ids") is None else frozenset(r["project_ids"]),
        )
        for r in records
        if not r.get("revoked_at")
    }
