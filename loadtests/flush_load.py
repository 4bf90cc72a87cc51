"""The bench phase `exposure_flush`: how long one flush of exposures holds the event loop that
evaluate runs on.

In this process, on the bench's Redis: an exposure buffer (proxy.store.exposures, with the
server's default settings) is filled to its bound, EDGE_EXPOSURE_BUFFER_MAX exposures, as the
large project's evaluates fill it (35 running experiments of 3 variants, each request a new
user), then flushed beside a ticker that only yields. The longest CPU time between two of the
ticker's turns is the most an evaluate waits behind a flush (machine noise aside). Target: a
flush never holds the loop for more than a millisecond. The first flush of a process is
reported apart: it also opens its connection (and sends the script to a Redis that lacks it).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aredis

from loadtests.loadgen import beside_ticker, percentile
from proxy.settings import Settings
from proxy.store.events import EventStore
from proxy.store.exposures import ExposureBuffer
from proxy.store.spool import Spool

EXPERIMENTS = 35  # the large project's running experiments
VARIANTS = 3
REPEATS = 5


class Recorder(Protocol):
    def record(self, name: str, text: str, figure: dict[str, Any]) -> None: ...


def exposure_flush(bench: Recorder, redis_url: str, repeats: int = REPEATS) -> None:
    print("# exposure flush: a full buffer, written beside a ticker on one loop", flush=True)
    figure = flush_gaps(redis_url, repeats)
    bench.record(
        "exposure_flush",
        f"{figure['exposures']} exposures ({EXPERIMENTS} experiments x {VARIANTS} variants):"
        f" a flush took {figure['flush_ms']:.1f}ms (median of {repeats}), the loop was held at"
        f" most {figure['max_gap_ms']:.2f}ms of CPU between turns (p99"
        f" {figure['p99_gap_ms']:.2f}ms; target <= 1 ms); a process's first flush, which also"
        f" opens its connection: {figure['first_flush_max_gap_ms']:.2f}ms",
        figure,
    )


def flush_gaps(redis_url: str, repeats: int) -> dict[str, Any]:
    settings = Settings()
    # As the server does after each snapshot change: long-lived objects leave the collector.
    gc.collect()
    gc.freeze()

    async def main() -> dict[str, Any]:
        client = aredis.Redis.from_url(redis_url)
        runs: list[list[float]] = []  # per flush, the ticker's gaps in ms of CPU
        flushes: list[float] = []
        size = 0
        with tempfile.TemporaryDirectory() as tmp:
            spool = Spool(Path(tmp), max_bytes=settings.spool_max_bytes)
            try:
                for _ in range(repeats + 1):  # the first flush of a process apart
                    buffer = ExposureBuffer(
                        EventStore(client),
                        spool,
                        buffer_max=settings.exposure_buffer_max,
                        seen_max=settings.exposure_seen_max,
                    )
                    fill(buffer)
                    size = buffer.size
                    gaps: list[float] = []
                    _, took = await beside_ticker(buffer.flush(), gaps)
                    flushes.append(took)
                    runs.append(gaps)
                    assert buffer.written == size, "the flush did not write everything"
            finally:
                await client.aclose()
        first, later = runs[0], sorted(g for gaps in runs[1:] for g in gaps)
        return {
            "exposures": size,
            "flush_ms": round(statistics.median(flushes[1:]), 2),
            "max_gap_ms": round(later[-1], 3),
            "p99_gap_ms": round(percentile(later, 99), 3),
            "turns": len(later),
            "first_flush_max_gap_ms": round(max(first), 3),
        }

    return asyncio.run(main())


def fill(buffer: ExposureBuffer) -> None:
    """Exposures until the buffer is full, as a plan with EXPERIMENTS running records them."""
    run = uuid.uuid4().hex[:8]  # new experiments every repeat: every SADD adds a member
    experiments = tuple((f"bench-{run}-{i}", VARIANTS) for i in range(EXPERIMENTS))
    expose = buffer.group(experiments, epoch=run)
    users = buffer.buffer_max // EXPERIMENTS
    for n in range(users):
        expose(f"user-{n:06d}", tuple((n + i) % VARIANTS for i in range(EXPERIMENTS)))
