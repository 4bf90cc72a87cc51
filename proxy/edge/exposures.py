"""Exposures: who was served an experiment's value, deduplicated here, written in batches.

`record` is on the hot path: a set lookup and an append, never I/O. A background task flushes
the batch every `exposure_flush_interval`. Memory is bounded twice: the dedup set is cleared
when full (Redis sets dedupe anyway; this only saves writes) and the batch drops, and counts,
what exceeds its bound; a dropped exposure is not remembered as seen, so the user's next
evaluate records it again. A batch that Redis refuses goes to the durable spool.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.exceptions import RedisError

from proxy.store.events import EventStore, Exposure
from proxy.store.spool import Spool, SpoolFull


class ExposureBuffer:
    def __init__(self, events: EventStore, spool: Spool, *, buffer_max: int, seen_max: int) -> None:
        self.events = events
        self.spool = spool
        self.buffer_max = buffer_max
        self.seen_max = seen_max
        self.seen: set[str] = set()
        self.pending: list[Exposure] = []
        self.dropped = 0
        self.written = 0
        self.spooled = 0
        self.redis_errors = 0

    def record(self, experiment_id: str, variant: int, user_id: str) -> None:
        marker = experiment_id + user_id
        if marker in self.seen:
            return
        if len(self.pending) >= self.buffer_max:
            self.dropped += 1
            return
        if len(self.seen) >= self.seen_max:
            self.seen.clear()
        self.seen.add(marker)
        self.pending.append((experiment_id, variant, user_id))

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            await self.events.add_exposures(batch)
            self.written += len(batch)
        except (RedisError, OSError, TimeoutError):
            self.redis_errors += 1
            try:
                await self.spool.append(exposures=batch)
                self.spooled += len(batch)
            except SpoolFull:
                self.dropped += len(batch)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self.flush()
