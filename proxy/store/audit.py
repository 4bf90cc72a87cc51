"""The audit streams: pages of a scope's entries, newest first, and the consumer group through
which the fleet's proxies share the webhook deliveries of a project's entries.

Entries are appended by the configuration write itself (proxy.store.config); this module only
reads them. Delivery: one consumer group (`keys.DELIVERY_GROUP`) per project stream, one
consumer per proxy process. XREADGROUP hands each new entry to exactly one consumer; the entry
stays pending until that consumer acknowledges it (XACK), after every webhook got its attempts.
A consumer that dies leaves its entries pending: another one claims those idle longer than the
claim timeout (XAUTOCLAIM) and delivers them, which is at-least-once. A live consumer keeps
what it is working on from looking idle by claiming it again for itself (`touch`).
Every command here exists in Redis 6.2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from redis.exceptions import ResponseError

from proxy.domain import audit
from proxy.store import keys
from proxy.store.connection import Redis

SCAN_PAGE = 200  # entries per XREVRANGE while a filtered page looks for matches
SCAN_MAX = 1000  # entries one filtered page may look at before it answers with a cursor

Raw = tuple[str, Mapping[bytes, bytes]]  # (stream id, fields) as Redis returns them

# KEYS[1] the stream. ARGV: group, consumer, min idle ms, cursor, count. Claims (XAUTOCLAIM,
# JUSTID, so 6.2 and 7.x answer alike) and returns the cursor, then each claimed entry that
# still exists; one trimmed away meanwhile is acknowledged, as nothing is left to deliver.
_CLAIM = """
local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                         'COUNT', ARGV[5], 'JUSTID')
local out = {reply[1]}
for _, id in ipairs(reply[2]) do
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
  else
    out[#out + 1] = found[1]
  end
end
return out
"""


def decode(entry_id: str, fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as the API shows it (proxy.domain.audit.entry)."""
    return audit.entry(entry_id, int(fields[b"v"]), orjson.loads(fields[b"e"]))


class AuditLog:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def page(
        self, scope: str, *, limit: int, cursor: str | None, resource_id: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries older than `cursor` (or from the newest), newest first, of `resource_id`
        alone when given; and the cursor of the next page, None at the end of the log.

        Filtering a stream means reading it: a filtered page looks at SCAN_MAX entries at most,
        and may come back with fewer than `limit` matches (even none) and a cursor to go on."""
        if cursor == "0-0":
            return [], None  # nothing is older than the first possible id (Redis refuses "(0-0")
        key = keys.audit(scope)
        start = "+" if cursor is None else "(" + cursor
        size = limit + 1 if resource_id is None else SCAN_PAGE
        found: list[dict[str, Any]] = []
        scanned = 0
        while True:
            rows: Any = await self.redis.xrevrange(key, max=start, min="-", count=size)
            for raw_id, fields in rows:
                entry_id = _text(raw_id)
                scanned += 1
                if resource_id is None or _text(fields[b"r"]) == resource_id:
                    if len(found) == limit:
                        return found, found[-1]["id"]  # a further match exists
                    found.append(decode(entry_id, fields))
                if resource_id is not None and scanned >= SCAN_MAX:
                    return found, entry_id
                start = "(" + entry_id
            if len(rows) < size:
                return found, None

    # The deliveries' consumer group -------------------------------------------------------------

    async def ensure_group(self, project_id: str) -> None:
        """Create the group at the stream's end (idempotent): what was logged before the first
        webhook is nobody's to deliver."""
        try:
            await self.redis.xgroup_create(
                keys.audit(project_id), keys.DELIVERY_GROUP, id="$", mkstream=True
            )
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def read_new(self, project_id: str, consumer: str, count: int) -> list[Raw]:
        """Up to `count` entries no consumer has been handed yet, now pending for `consumer`."""
        key = keys.audit(project_id)
        try:
            reply: Any = await self.redis.xreadgroup(
                keys.DELIVERY_GROUP, consumer, {key: ">"}, count=count
            )
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await self.ensure_group(project_id)  # the stream was lost (a flushed Redis)
            return []
        # [[stream, [(id, fields), ...]]]: one stream asked, so at most one answered.
        return [(_text(entry_id), fields) for _, rows in reply or () for entry_id, fields in rows]

    async def claim(
        self, project_id: str, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[Raw]]:
        """Entries pending for longer than `min_idle_ms` (their consumer is gone, or stuck),
        now pending for `consumer`; and the cursor to scan on from (`0-0`: from the start)."""
        try:
            reply = await self.redis.eval(
                _CLAIM,
                1,
                keys.audit(project_id),
                keys.DELIVERY_GROUP,
                consumer,
                min_idle_ms,
                cursor,
                count,
            )
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            return "0-0", []
        entries: list[Raw] = [(_text(row[0]), _pairs(row[1])) for row in reply[1:]]
        return _text(reply[0]), entries

    async def touch(self, project_id: str, consumer: str, entry_ids: Iterable[str]) -> None:
        """Reset the idle time of entries `consumer` is still working on, so that no other
        proxy claims them while their retries wait."""
        ids: list[Any] = list(entry_ids)
        if ids:
            await self.redis.xclaim(
                keys.audit(project_id), keys.DELIVERY_GROUP, consumer, 0, ids, justid=True
            )

    async def ack(self, project_id: str, *entry_ids: str) -> None:
        if entry_ids:
            await self.redis.xack(keys.audit(project_id), keys.DELIVERY_GROUP, *entry_ids)

    async def release(
        self, project_id: str, consumer: str, entry_ids: Iterable[str], idle_ms: int
    ) -> None:
        """Hand entries over at once (a proxy that stops): still pending, but as idle as a dead
        consumer's, so the next claim by any proxy takes them."""
        ids: list[Any] = list(entry_ids)
        if ids:
            await self.redis.xclaim(
                keys.audit(project_id), keys.DELIVERY_GROUP, consumer, 0, ids,
                idle=idle_ms, justid=True,
            )  # fmt: skip

    async def pending(self, project_id: str) -> int:
        """Entries handed to a consumer and not acknowledged yet, fleet-wide."""
        try:
            summary = await self.redis.xpending(keys.audit(project_id), keys.DELIVERY_GROUP)
        except ResponseError:
            return 0
        return int(summary["pending"])

    async def prune_consumers(self, project_id: str, keep: str, idle_ms: int) -> None:
        """Forget consumers (proxies long gone) that hold nothing, so the group does not grow
        with every restart."""
        key = keys.audit(project_id)
        try:
            consumers = await self.redis.xinfo_consumers(key, keys.DELIVERY_GROUP)
        except ResponseError:
            return
        for c in consumers:
            name = _text(c["name"])
            if name != keep and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
                await self.redis.xgroup_delconsumer(key, keys.DELIVERY_GROUP, name)


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
