"""The local durable spool: events that Redis could not take, kept on disk until it can.

Each process appends JSON lines to a file of its own (`spool-<id>.log`, held under an exclusive
flock while the process lives) and fsyncs before it returns, so an acknowledged conversion
survives a crash of the process or the machine. Replay rotates the active file aside and
writes its events to Redis; because every event is an SADD, a replay that is cut short and run
again counts nothing twice. Files left by dead processes (their lock is free) are replayed by
whichever process finds them first. A torn last line was never acknowledged and is skipped.

The spool is bounded (`EDGE_SPOOL_MAX_BYTES` over all files); past it `append` raises
SpoolFull, and track answers 503 instead of acknowledging what it cannot keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy.store.events import Conversion, EventStore, Exposure
from proxy.store.files import open_private, private_dir

log = logging.getLogger("proxy.spool")
REPLAY_CHUNK = 1000


class SpoolFull(Exception):
    """The spool reached its size bound."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.appended = 0
        self.replayed = 0
        self.rejected = 0
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._lock = asyncio.Lock()

    def _open(self) -> IO[bytes]:
        if self._file is None:
            private_dir(self.directory)
            self._path = self.directory / f"spool-{uuid.uuid4().hex}.log"
            self._file = open_private(self._path)  # held for the process's life
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self._file

    def size(self) -> int:
        total = 0
        for path in self.directory.glob("spool-*"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def _write(self, data: bytes) -> None:
        if self.size() + len(data) > self.max_bytes:
            raise SpoolFull()
        f = self._open()
        f.write(data)
        f.flush()
        os.fsync(f.fileno())

    async def append(
        self, conversions: Sequence[Conversion] = (), exposures: Sequence[Exposure] = ()
    ) -> None:
        """Durably store the events (fsync'd when this returns), or raise SpoolFull."""
        lines = [orjson.dumps(["c", *c]) for c in conversions]
        lines += [orjson.dumps(["e", *e]) for e in exposures]
        data = b"\n".join(lines) + b"\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, data)
            except SpoolFull:
                self.rejected += len(lines)
                raise
        self.appended += len(lines)

    def pending(self) -> bool:
        return self.size() > 0

    async def run(self, events: EventStore, interval: float) -> None:
        """Replay whenever something is spooled and Redis takes it."""
        while True:
            await asyncio.sleep(interval)
            if self.pending():
                try:
                    await self.replay(events)
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError, TimeoutError) as e:
                    log.debug("spool replay deferred (%s)", type(e).__name__)
                except Exception:
                    log.exception("spool replay failed")

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "edge_spool_events", "Spooled events by operation", labels=["op"]
        )
        events.add_metric(["appended"], self.appended)
        events.add_metric(["replayed"], self.replayed)
        events.add_metric(["rejected"], self.rejected)
        yield events
        yield GaugeMetricFamily("edge_spool_bytes", "Size of the durable spool", self.size())

    async def replay(self, events: EventStore) -> int:
        """Write every spooled event to Redis; raise (keeping the files) if Redis fails."""
        async with self._lock:
            # Rotate our own file aside so appends go to a fresh one while we replay.
            if self._file is not None and self._path is not None and self._file.tell() > 0:
                os.replace(self._path, self._path.with_suffix(".replay"))
                self._file.close()
                self._file, self._path = None, None
        count = 0
        for path in sorted(self.directory.glob("spool-*")):
            if path == self._path:
                continue
            count += await self._replay_file(path, events)
        self.replayed += count
        return count

    async def _replay_file(self, path: Path, events: EventStore) -> int:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by the `with` below)
        except FileNotFoundError:
            return 0  # another process replayed it first
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live process owns it
            conversions, exposures = _parse(f.read())
            for i in range(0, len(conversions), REPLAY_CHUNK):
                await events.add_conversions(conversions[i : i + REPLAY_CHUNK])
            for i in range(0, len(exposures), REPLAY_CHUNK):
                await events.add_exposures(exposures[i : i + REPLAY_CHUNK])
            path.unlink(missing_ok=True)
        if conversions or exposures:
            log.info("replayed %d spooled events from %s", len(conversions) + len(exposures), path)
        return len(conversions) + len(exposures)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            if self._path is not None and self._path.stat().st_size == 0:
                self._path.unlink(missing_ok=True)
            self._file, self._path = None, None


def _parse(data: bytes) -> tuple[list[Conversion], list[Exposure]]:
    conversions: list[Conversion] = []
    exposures: list[Exposure] = []
    for line in data.split(b"\n"):
        try:
            item: list[Any] = orjson.loads(line)
            if item[0] == "c":
                conversion = (str(item[1]), str(item[2]), int(item[3]), str(item[4]))
                # A sixth field is the value; lines written before values existed have none.
                if len(item) > 5 and item[5] is not None:
                    conversions.append((*conversion, float(item[5])))
                else:
                    conversions.append(conversion)
            elif item[0] == "e":
                exposures.append((str(item[1]), int(item[2]), str(item[3])))
        except (orjson.JSONDecodeError, IndexError, TypeError, ValueError):
            continue  # an empty or torn line: never acknowledged
    return conversions, exposures
