"""Exposures: who was served an experiment's value, deduplicated here, written in batches.

`record` is on the hot path: a hash, one table slot, an append; never I/O. The dedup table is
direct-mapped: slot = hash & mask holds the 64-bit hash of the last (experiment, user) seen
there, so memory is fixed (8 bytes a slot, pages touched only when used) and a collision only
evicts, which costs a repeated SADD that Redis dedupes: counts stay exact. A background task
flushes the batch every `exposure_flush_interval`; the batch drops, and counts, what exceeds
its bound, and a dropped exposure is not remembered as seen, so the user's next evaluate
records it again. A batch that Redis refuses goes to the durable spool; what the spool cannot
take either is dropped and forgotten the same way.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy.store.events import EventStore, Exposure
from proxy.store.spool import Spool, SpoolFull

log = logging.getLogger("proxy.exposures")
FLUSH_CHUNK = 10_000


class ExposureBuffer:
    def __init__(self, events: EventStore, spool: Spool, *, buffer_max: int, seen_max: int) -> None:
        self.events = events
        self.spool = spool
        self.buffer_max = buffer_max
        slots = 1 << max(10, (seen_max - 1).bit_length())  # a power of two >= seen_max
        self.mask = slots - 1
        # An anonymous mapping is zero pages: memory becomes resident only as slots are written.
        self._table = mmap.mmap(-1, 8 * slots)
        self.seen = memoryview(self._table).cast("q")
        self.pending: list[Exposure] = []
        self.dropped = 0
        self.written = 0
        self.spooled = 0
        self.redis_errors = 0

    def record(self, experiment_id: str, variant: int, user_id: str) -> None:
        """On the hot path: never I/O, never an exception."""
        h = hash(experiment_id + user_id)  # 64-bit SipHash; per process, which is all we need
        slot = h & self.mask
        if self.seen[slot] == h:
            return
        if len(self.pending) >= self.buffer_max:
            self.dropped += 1
            return
        self.seen[slot] = h
        self.pending.append((experiment_id, variant, user_id))

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        # In chunks: packing a command is synchronous, and one huge batch would stall every
        # request behind it.
        for start in range(0, len(batch), FLUSH_CHUNK):
            chunk = batch[start : start + FLUSH_CHUNK]
            try:
                await self.events.add_exposures(chunk)
                self.written += len(chunk)
            except (RedisError, OSError, TimeoutError):
                self.redis_errors += 1
                try:
                    await self.spool.append(exposures=chunk)
                    self.spooled += len(chunk)
                except SpoolFull:
                    self.dropped += len(chunk)
                    self.forget(chunk)

    def forget(self, exposures: Sequence[Exposure]) -> None:
        """Unmark exposures that were never stored, so the users' next evaluate records them."""
        seen, mask = self.seen, self.mask
        for experiment_id, _, user_id in exposures:
            h = hash(experiment_id + user_id)
            if seen[h & mask] == h:
                seen[h & mask] = 0

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not Redis (flush handles that): say so, keep running
                log.exception("exposure flush failed")

    def collect(self) -> Iterator[Metric]:
        results = CounterMetricFamily("edge_exposures", "Exposures by outcome", labels=["result"])
        results.add_metric(["written"], self.written)
        results.add_metric(["spooled"], self.spooled)
        results.add_metric(["dropped"], self.dropped)
        yield results
        yield GaugeMetricFamily(
            "edge_exposure_queue_depth", "Exposures waiting for a batch", len(self.pending)
        )
