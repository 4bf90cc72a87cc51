"""What a webhook has besides its record: its signing secret, its count of failed attempts in a
row, and the log of its latest delivery attempts.

The record (url, events, enabled) is a record of its project's scope like a flag: written with
its audit entry, and synced to every proxy, which is how each proxy knows where to deliver. The
secret is not in it. Every record of a scope is in every proxy's snapshot and in the snapshot's
last-known-good file on disk, and is shown in audit entries; a secret there would be one file
copy away from forging deliveries. So secrets live in a hash of their own beside the project's
records (`{p:<id>}:webhook-secrets`), read by the delivery when it signs, shown once when made,
never listed. The failure count and the deliveries log change with every attempt, which must
not bump the project's version (every proxy would recompile the project for each attempt), so
they are kept beside the records too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from proxy.store import keys
from proxy.store.connection import Redis

DELIVERIES_KEPT = 100  # attempts kept per webhook, newest first

# KEYS[1] deliveries list, KEYS[2] failures hash, KEYS[3] secrets hash. ARGV: the attempt's
# JSON, webhook id, "1" when it succeeded, how many attempts to keep. Returns the failed
# attempts in a row after this one, or -1 when the webhook was deleted meanwhile (nothing is
# written, so a deleted webhook leaves no keys behind).
_RECORD = """
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then return -1 end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 0
end
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
"""


class WebhookStore:
    def __init__(self, redis: Redis, kept: int = DELIVERIES_KEPT) -> None:
        self.redis = redis
        self.kept = kept

    async def set_secret(self, project_id: str, webhook_id: str, secret: str) -> None:
        await self.redis.hset(keys.webhook_secrets(project_id), webhook_id, secret)

    async def secret(self, project_id: str, webhook_id: str) -> str | None:
        value = await self.redis.hget(keys.webhook_secrets(project_id), webhook_id)
        return None if value is None else _text(value)

    async def failure_counts(self, project_id: str, webhook_ids: Iterable[str]) -> dict[str, int]:
        ids = list(webhook_ids)
        if not ids:
            return {}
        values = await self.redis.hmget(keys.webhook_failures(project_id), ids)
        return {i: int(v or 0) for i, v in zip(ids, values, strict=True)}

    async def reset_failures(self, project_id: str, webhook_id: str) -> None:
        await self.redis.hdel(keys.webhook_failures(project_id), webhook_id)

    async def record_attempt(
        self, project_id: str, webhook_id: str, attempt: Mapping[str, Any], ok: bool
    ) -> int:
        """Log an attempt; return the webhook's failed attempts in a row (0 after a success,
        -1 when the webhook no longer exists)."""
        names = [
            keys.webhook_deliveries(project_id, webhook_id),
            keys.webhook_failures(project_id),
            keys.webhook_secrets(project_id),
        ]
        args: list[Any] = [orjson.dumps(attempt), webhook_id, "1" if ok else "0", self.kept]
        return int(await self.redis.eval(_RECORD, len(names), *names, *args))

    async def deliveries(self, project_id: str, webhook_id: str) -> list[dict[str, Any]]:
        """The latest attempts, newest first."""
        rows = await self.redis.lrange(keys.webhook_deliveries(project_id, webhook_id), 0, -1)
        return [orjson.loads(row) for row in rows]

    async def drop(self, project_id: str, webhook_id: str) -> None:
        """Forget a deleted webhook's secret, count and log."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(keys.webhook_secrets(project_id), webhook_id)
        pipe.hdel(keys.webhook_failures(project_id), webhook_id)
        pipe.delete(keys.webhook_deliveries(project_id, webhook_id))
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
