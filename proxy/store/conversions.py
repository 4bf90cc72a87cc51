"""Conversions to Redis in shared pipelines, or to the durable spool when Redis fails.

Concurrent tracks share one round trip: while a batch is on the wire the next one gathers, so
batches grow with the load. After a failure, batches go straight to the spool for `bypass_for`
seconds instead of each waiting out the Redis timeout; the spool replays into Redis when it
answers again (SADDs: a replay counts nothing twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy.store.events import Conversion, EventStore
from proxy.store.spool import Spool

log = logging.getLogger("proxy.conversions")


class ConversionWriter:
    def __init__(self, events: EventStore, spool: Spool, bypass_for: float = 1.0) -> None:
        self.events = events
        self.spool = spool
        self.bypass_for = bypass_for
        self.bypass_until = 0.0
        self.queue: list[tuple[Conversion, asyncio.Future[bool]]] = []
        self.draining: asyncio.Task[None] | None = None
        self.accepted = 0  # new in Redis
        self.duplicates = 0  # already in Redis
        self.spooled = 0  # kept in the spool for Redis (counted there, or found duplicate)
        self.redis_errors = 0

    async def write(self, conversion: Conversion) -> bool:
        """True when new (or spooled), False for a duplicate; raises SpoolFull when neither
        Redis nor the spool took it."""
        return await self.submit(conversion)

    def submit(self, conversion: Conversion) -> asyncio.Future[bool]:
        """The conversion into the next batch: the future of `write`'s answer."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.queue.append((conversion, future))
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                try:
                    added = await self._write([c for c, _ in batch])
                except Exception as e:  # SpoolFull, or a bug: every waiter hears of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), new in zip(batch, added, strict=True):
                    if not future.done():
                        future.set_result(new)
        finally:
            self.draining = None

    async def _write(self, conversions: list[Conversion]) -> list[bool]:
        """True where new, as Redis says; spooled ones count as new (Redis will dedupe)."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self.bypass_until:
            try:
                added = await self.events.add_conversions(conversions)
            except (RedisError, OSError, TimeoutError) as e:
                log.warning("conversions go to the spool: Redis failed (%s)", type(e).__name__)
                self.bypass_until = loop.time() + self.bypass_for
                self.redis_errors += 1
            else:
                new = sum(added)
                self.accepted += new
                self.duplicates += len(added) - new
                return added
        await self.spool.append(conversions=conversions)  # raises SpoolFull past its bound
        self.spooled += len(conversions)
        return [True] * len(conversions)

    async def close(self) -> None:
        if self.draining is not None:
            await asyncio.wait([self.draining])

    def collect(self) -> Iterator[Metric]:
        results = CounterMetricFamily(
            "edge_conversions", "Conversions by outcome", labels=["result"]
        )
        results.add_metric(["accepted"], self.accepted)
        results.add_metric(["duplicate"], self.duplicates)
        results.add_metric(["spooled"], self.spooled)
        yield results
        yield GaugeMetricFamily(
            "edge_conversion_queue_depth", "Conversions waiting for Redis", len(self.queue)
        )
