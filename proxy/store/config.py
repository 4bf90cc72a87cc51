"""The configuration repository: read a scope whole, and write it back atomically.

Every write is one Lua script on one slot: it checks the scope's version (compare-and-swap, so
validation done on what was read still holds), applies the record changes, bumps the version,
appends one audit entry per changed record to the scope's audit stream and publishes `{scope,
version}` on the changes channel. Callers retry on a lost race. Because the entries are written
by the same script as the changes, a change never exists without its entry, and a write that
loses its race leaves no entry either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson

from proxy.domain import audit
from proxy.domain.audit import Actor
from proxy.domain.scope import Kind, ScopeState
from proxy.store import keys
from proxy.store.connection import Redis

T = TypeVar("T")

# KEYS[1] version, KEYS[2] audit stream, KEYS[3..] record hashes. ARGV: expected version,
# channel, scope, audit bound, n; then n (hash index, record id, JSON or "" to delete) triples;
# then (resource id, entry JSON) pairs. Each entry is a stream entry of fields v (the version
# this write made), r (the resource id, so a filtered read need not parse JSON) and e. The
# stream is trimmed approximately (`~`: whole macro nodes only, which is cheap).
_COMMIT = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
local last = 5 + 3 * tonumber(ARGV[5])
for i = 6, last, 3 do
  local k = KEYS[tonumber(ARGV[i])]
  if ARGV[i + 2] == '' then
    redis.call('HDEL', k, ARGV[i + 1])
  else
    redis.call('HSET', k, ARGV[i + 1], ARGV[i + 2])
  end
end
v = redis.call('INCR', KEYS[1])
for i = last + 1, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'v', v, 'r', ARGV[i], 'e', ARGV[i + 1])
end
redis.call('PUBLISH', ARGV[2], '{"scope":"' .. ARGV[3] .. '","version":' .. v .. '}')
return v
"""


# KEYS[1] version, KEYS[2..] record hashes: the whole scope at one version, in one call.
_LOAD = """
local out = {redis.call('GET', KEYS[1]) or '0'}
for i = 2, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
"""


class ConcurrentWrite(Exception):
    """Another writer changed the scope between read and write, every time it was retried."""


class ConfigStore:
    def __init__(self, redis: Redis, audit_max_entries: int = 100_000) -> None:
        self.redis = redis
        self.audit_max_entries = audit_max_entries

    async def load(self, scope: str) -> ScopeState:
        kinds = keys.kinds(scope)
        names = [keys.version(scope), *(keys.records(scope, kind) for kind in kinds)]
        # A script rather than MULTI: atomic on one slot in every mode (redis-py's async
        # cluster client mishandles MULTI pipelines).
        version, *flat = await self.redis.eval(_LOAD, len(names), *names)
        records: dict[str, dict[str, Any]] = {
            kind: {_text(h[i]): orjson.loads(h[i + 1]) for i in range(0, len(h), 2)}
            for kind, h in zip(kinds, flat, strict=True)
        }
        return ScopeState(scope, int(version), records)

    async def versions(self, scopes: Iterable[str]) -> dict[str, int]:
        scopes = list(scopes)
        pipe = self.redis.pipeline(transaction=False)
        for scope in scopes:
            pipe.get(keys.version(scope))
        values = await pipe.execute()
        return {s: int(v or 0) for s, v in zip(scopes, values, strict=True)}

    async def commit(self, state: ScopeState, *, actor: Actor) -> int:
        """Write the state's pending changes, with their audit entries by `actor`, if nobody else
        wrote first; return the version."""
        kinds = keys.kinds(state.scope)
        argv: list[Any] = [state.version, keys.CHANGES_CHANNEL, state.scope]
        argv += [self.audit_max_entries, len(state.changes)]
        for change in state.changes:
            value = b"" if change.after is None else orjson.dumps(change.after)
            argv += [kinds.index(change.kind) + 3, change.id, value]
        project_id = None if state.scope == keys.GLOBAL else state.scope
        for resource_id, entry in audit.entries(state.changes, actor, project_id):
            argv += [resource_id, entry]
        hash_keys = [keys.records(state.scope, kind) for kind in kinds]
        # Plain EVAL, not EVALSHA: writes are rare, and it needs no script cache on any node.
        all_keys = [keys.version(state.scope), keys.audit(state.scope), *hash_keys]
        version = int(await self.redis.eval(_COMMIT, len(all_keys), *all_keys, *argv))
        if version < 0:
            raise ConcurrentWrite(state.scope)
        state.changes.clear()
        state.version = version
        return version

    async def mutate(
        self, scope: str, change: Callable[[ScopeState], T], *, actor: Actor
    ) -> tuple[T, int]:
        """Read, apply the pure `change` (which may raise a DomainError), commit as `actor`;
        retry when another writer won the race."""
        for _ in range(20):
            state = await self.load(scope)
            result = change(state)
            if not state.changes:
                return result, state.version
            try:
                return result, await self.commit(state, actor=actor)
            except ConcurrentWrite:
                continue
        raise ConcurrentWrite(scope)

    async def get(self, scope: str, kind: Kind, record_id: str) -> Any:
        """One record as stored, or None."""
        value = await self.redis.hget(keys.records(scope, kind), record_id)
        return None if value is None else orjson.loads(value)

    async def set_owner(self, kind: Kind, record_id: str, project_id: str) -> None:
        await self.redis.hset(keys.owner_index(kind), record_id, project_id)

    async def drop_owner(self, kind: Kind, *record_ids: str) -> None:
        if record_ids:
            await self.redis.hdel(keys.owner_index(kind), *record_ids)

    async def owner(self, kind: Kind, record_id: str) -> str | None:
        value = await self.redis.hget(keys.owner_index(kind), record_id)
        return None if value is None else _text(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
