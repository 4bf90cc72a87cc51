"""Exposures: who was served an experiment's value, deduplicated here, written in batches.

On the hot path a plan hands over all its exposures of a request in one call (`group`): one
hash of (the plan's experiment epoch, user), one slot of the dedup table, and, for a user not
seen yet, one append per experiment to that experiment's and variant's list: items are grouped
as they are recorded, so a flush formats nothing per item (one JSON array per list). The
reference path (`record`, one exposure at a time: OFREP single calls, `flags`-filtered
evaluates) uses the same table keyed by (experiment, user).

The dedup table is direct-mapped: slot = hash & mask holds the 64-bit hash of the last key
seen there, so memory is fixed (8 bytes a slot, pages touched only when used) and a collision
only evicts, which costs a repeated SADD that Redis dedupes: counts stay exact. What exceeds
the batch's bound is dropped, counted and not remembered, so the user's next evaluate records
it again. A batch that Redis refuses goes to the durable spool; when the spool cannot take it
either, it is dropped and the whole table forgotten (an O(1) swap for fresh zero pages), so
every user's next evaluate records them again.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy.store.events import EventStore, Exposure, ExposureGroup
from proxy.store.spool import Spool, SpoolFull

log = logging.getLogger("proxy.exposures")
FLUSH_CHUNK = 2_000  # users per pipeline: packing one is synchronous, so keep each small


class ExposureBuffer:
    def __init__(self, events: EventStore, spool: Spool, *, buffer_max: int, seen_max: int) -> None:
        self.events = events
        self.spool = spool
        self.buffer_max = buffer_max
        self.slots = 1 << max(10, (seen_max - 1).bit_length())  # a power of two >= seen_max
        self.mask = self.slots - 1
        self.seen = self._table()
        # experiment id -> per variant, the user ids waiting; the outer lists live as long as
        # the process, so a plan's generated render can hold them.
        self.bins: dict[str, list[list[str]]] = {}
        self.size = 0
        self.dropped = 0
        self.written = 0
        self.spooled = 0
        self.redis_errors = 0

    def _table(self) -> memoryview:
        # An anonymous mapping is zero pages: memory becomes resident only as slots are written.
        return memoryview(mmap.mmap(-1, 8 * self.slots)).cast("q")

    def _bins(self, experiment_id: str, variants: int) -> list[list[str]]:
        bins = self.bins.setdefault(experiment_id, [])
        bins.extend([] for _ in range(variants - len(bins)))
        return bins

    # The hot path: never I/O, never an exception ----------------------------------------------

    def record(self, experiment_id: str, variant: int, user_id: str) -> None:
        """One exposure."""
        h = hash(experiment_id + user_id)  # 64-bit SipHash; per process, which is all we need
        slot = h & self.mask
        if self.seen[slot] == h:
            return
        if self.size >= self.buffer_max:
            self.dropped += 1
            return
        self.seen[slot] = h
        self._bins(experiment_id, variant + 1)[variant].append(user_id)
        self.size += 1

    __call__ = record

    def group(
        self, experiments: tuple[tuple[str, int], ...], epoch: str
    ) -> Callable[[str, tuple[int | None, ...]], None]:
        """A plan's exposures of one request, with one dedup check for them all."""
        bins = [self._bins(experiment_id, variants) for experiment_id, variants in experiments]
        prefix = epoch + "\x00"

        def expose(user_id: str, variants: tuple[int | None, ...]) -> None:
            h = hash(prefix + user_id)
            slot = h & self.mask
            seen = self.seen
            if seen[slot] == h:
                return
            n = len(variants) - variants.count(None)
            if self.size + n > self.buffer_max:
                self.dropped += n
                return
            seen[slot] = h
            for lists, variant in zip(bins, variants, strict=True):
                if variant is not None:
                    lists[variant].append(user_id)
            self.size += n

        return expose

    # Flushing ----------------------------------------------------------------------------------

    def take(self) -> list[ExposureGroup]:
        """Everything waiting, as (experiment, variant, user ids), leaving the buffer empty."""
        groups = []
        for experiment_id, lists in self.bins.items():
            for variant, users in enumerate(lists):
                if users:
                    groups.append((experiment_id, variant, users))
                    lists[variant] = []
        self.size = 0
        return groups

    def pending(self) -> list[Exposure]:
        """The exposures waiting, one by one (for tests)."""
        return [
            (experiment_id, variant, user)
            for experiment_id, lists in self.bins.items()
            for variant, users in enumerate(lists)
            for user in users
        ]

    async def flush(self) -> None:
        if not self.size:
            return
        for chunk in _chunks(self.take()):
            count = sum(len(users) for _, _, users in chunk)
            try:
                await self.events.add_exposure_groups(chunk)
                self.written += count
            except (RedisError, OSError, TimeoutError):
                self.redis_errors += 1
                flat = [(e, v, u) for e, v, users in chunk for u in users]
                try:
                    await self.spool.append(exposures=flat)
                    self.spooled += count
                except SpoolFull:
                    self.dropped += count
                    self.seen = self._table()  # forget everyone: their next evaluate records

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
            "edge_exposure_queue_depth", "Exposures waiting for a batch", self.size
        )


def _chunks(groups: list[ExposureGroup]) -> Iterator[list[ExposureGroup]]:
    """Pipelines of at most FLUSH_CHUNK users; a list longer than that is cut in pieces."""
    chunk: list[ExposureGroup] = []
    size = 0
    for experiment_id, variant, users in groups:
        for start in range(0, len(users), FLUSH_CHUNK):
            piece = users[start : start + FLUSH_CHUNK]
            if size + len(piece) > FLUSH_CHUNK and chunk:
                yield chunk
                chunk, size = [], 0
            chunk.append((experiment_id, variant, piece))
            size += len(piece)
    if chunk:
        yield chunk
