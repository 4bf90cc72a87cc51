"""Keep this process's snapshot current: pub/sub for speed, a version poll for certainty.

On every (re)connection the subscription is made first and the full resync second, so no change
falls between them. A message names a scope and its new version; older or equal versions than
the one held are ignored. Because pub/sub can drop messages, every `poll_interval` the versions
of all scopes are compared with Redis. Each successful contact with Redis confirms the snapshot
current (readiness reads `confirmed_at`). The snapshot is also written to a last-known-good
file, from which a cold start serves when Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aredis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy.edge import snapshot as snap
from proxy.edge.plan import ExposureSink, GroupingSink
from proxy.store import keys
from proxy.store.config import ConfigStore
from proxy.store.files import write_atomically

log = logging.getLogger("proxy.sync")
LKG_FORMAT = 1


class Sync:
    def __init__(
        self,
        store: ConfigStore,
        pubsub_client: aredis.Redis,
        on_exposure: ExposureSink | GroupingSink,
        *,
        poll_interval: float,
        lkg_path: Path,
    ) -> None:
        self.store = store
        self.pubsub_client = pubsub_client
        self.on_exposure = on_exposure
        self.poll_interval = poll_interval
        self.lkg_path = lkg_path
        self.snapshot = snap.EMPTY
        self.loaded = False
        self.from_lkg = False  # serving a file: degraded until Redis confirms it
        self.confirmed_at = 0.0
        self.reconnects = 0
        self.redis_errors = 0
        self.compile_errors = 0
        self.lkg_write_errors = 0
        self._failed: dict[str, int] = {}  # scope -> the version that failed to compile
        self.loaded_at: dict[str, float] = {}  # per project, monotonic
        self.subscribed = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lkg_dirty = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []  # called after every swap
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []  # caught_up's

    # Loading -----------------------------------------------------------------------------------

    def held_version(self, scope: str) -> int:
        if scope == keys.GLOBAL:
            return self.snapshot.global_version
        project = self.snapshot.projects.get(scope)
        return -1 if project is None else project.version

    async def refresh(self, scope: str, at_least: int | None = None) -> None:
        """Load `scope` from Redis unless the version held is already `at_least`; when it
        returns, every project the global scope names is compiled too (whoever loaded it)."""
        lock = self._locks.setdefault(scope, asyncio.Lock())
        unknown_project = False
        async with lock:
            if at_least is None or self.held_version(scope) < at_least:
                state = await self.store.load(scope)
                if self._failed.get(scope) == state.version:
                    return  # this version cannot be compiled; said so once already
                try:
                    unknown_project = not self._apply(scope, state.version, state.records)
                except Exception:
                    # Not Redis's fault, so not a reason to reconnect: a record this code
                    # cannot compile. Keep serving the version held, until a new one comes.
                    self.compile_errors += 1
                    self._failed[scope] = state.version
                    log.exception(
                        "could not compile scope %s at version %d; serving the version held",
                        scope,
                        state.version,
                    )
                    return
        if unknown_project:
            await self.refresh(keys.GLOBAL)
        elif scope == keys.GLOBAL:
            for project_id in self.snapshot.global_records["projects"]:
                if project_id not in self.snapshot.projects:
                    await self.refresh(project_id)

    async def resync(self) -> None:
        await self.refresh(keys.GLOBAL)
        for project_id in list(self.snapshot.global_records["projects"]):
            await self.refresh(project_id)
        self.loaded = True
        self.from_lkg = False
        self.confirmed_at = time.monotonic()

    def _apply(self, scope: str, version: int, records: snap.Records) -> bool:
        """Compile and swap in a scope; False when the project is not in the global scope held
        (it is newer than what we hold of the global scope)."""
        if scope == keys.GLOBAL:
            self.snapshot = snap.with_global(self.snapshot, version, records)
            # A project compiled with an older record of itself (its settings) is compiled
            # again with this one: its own scope may never change to bring it.
            for project_id, held in list(self.snapshot.projects.items()):
                project = records["projects"][project_id]
                if project != held.project:
                    compiled = snap.compile_project(
                        project, held.version, held.records, self.on_exposure
                    )
                    self.snapshot = snap.with_project(self.snapshot, compiled, project_id)
        else:
            project = self.snapshot.global_records.get("projects", {}).get(scope)
            if project is None:
                return False
            compiled = snap.compile_project(project, version, records, self.on_exposure)
            self.snapshot = snap.with_project(self.snapshot, compiled, scope)
            self.loaded_at[scope] = time.monotonic()
        self._failed.pop(scope, None)
        self._changed()
        return True

    def _changed(self) -> None:
        # Listeners and waiters first: pushing a change to clients (proxy/edge/streams.py)
        # must not wait behind the collection below. A listener's bug is logged, never taken
        # for a scope that failed to compile.
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                log.exception("a snapshot listener failed")
        if self._waiters:
            self._wake()
        # A snapshot lives until the next change: out of the cyclic collector's sight, its
        # objects stop costing every collection a pause (freed by refcount all the same, as a
        # snapshot holds no cycles). Collect first, so no cyclic garbage is frozen for good;
        # only what was allocated since the last change is left to traverse.
        gc.collect()
        gc.freeze()
        self._lkg_dirty.set()

    async def caught_up(self, scope: str, version: int, timeout: float) -> bool:
        """Whether `scope` is held at `version` or newer, waiting up to `timeout` seconds for
        the sync to get there (nothing is loaded on the caller's word: pub/sub or the poll
        brings it, so a client naming a far-off version costs no Redis call)."""
        if self.held_version(scope) >= version:
            return True
        waiter = (scope, version, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter[2], timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.remove(waiter)

    def _wake(self) -> None:
        for scope, version, future in self._waiters:
            if not future.done() and self.held_version(scope) >= version:
                future.set_result(None)

    # Running -----------------------------------------------------------------------------------

    async def start(self, wait: float) -> None:
        """Start syncing; return once loaded from Redis, or after `wait` seconds without it
        (then from the last-known-good file, if there is one)."""
        first_load = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._listen(first_load)),
            asyncio.create_task(self._poll()),
            asyncio.create_task(self._write_lkg()),
        ]
        try:
            await asyncio.wait_for(asyncio.shield(first_load), wait)
        except (TimeoutError, RedisError, OSError) as e:
            log.warning("snapshot not loaded from Redis at start (%s)", type(e).__name__)
            self.load_lkg()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub_client.aclose()

    async def _listen(self, first_load: asyncio.Future[None]) -> None:
        backoff = 0.05
        while True:
            pubsub = self.pubsub_client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CHANGES_CHANNEL)
                self.subscribed = True
                await self.resync()
                if not first_load.done():
                    first_load.set_result(None)
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        await self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # Redis gone: reconnect and resync. Anything else is a bug, logged as one; the
                # listener must not die of it, so it resyncs the same way.
                self.subscribed = False
                self.reconnects += 1
                if isinstance(e, RedisError | OSError | TimeoutError):
                    self.redis_errors += 1
                    log.warning(
                        "sync connection lost (%s); retrying in %.2fs", type(e).__name__, backoff
                    )
                else:
                    log.exception("sync listener failed; resyncing in %.2fs", backoff)
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            scope, version = str(message["scope"]), int(message["version"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        self.confirmed_at = time.monotonic()
        if version > self.held_version(scope):
            await self.refresh(scope, at_least=version)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if not self.loaded or self.from_lkg:
                continue  # the listener's resync will do the first load
            try:
                scopes = [keys.GLOBAL, *self.snapshot.projects]
                versions = await self.store.versions(scopes)
                for scope, version in versions.items():
                    if version != self.held_version(scope):
                        await self.refresh(scope)
                self.confirmed_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as e:
                self.redis_errors += 1
                log.warning("version poll failed (%s)", type(e).__name__)

    # Last-known-good file ----------------------------------------------------------------------

    def _lkg_document(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "format": LKG_FORMAT,
            "global": {"version": s.global_version, "records": s.global_records},
            "projects": {
                pid: {"version": p.version, "records": p.records} for pid, p in s.projects.items()
            },
        }

    async def _write_lkg(self) -> None:
        """Write the snapshot to the last-known-good file 0.5 s after a change. A failed write
        is logged, counted and tried again (backing off to 30 s) until one succeeds: a proxy
        that cold-starts from a stale file would accept keys revoked since."""
        retry = 0.5
        while True:
            await self._lkg_dirty.wait()
            await asyncio.sleep(0.5)  # coalesce bursts of changes into one write
            self._lkg_dirty.clear()
            if self.from_lkg or not self.loaded:
                continue
            try:
                data = orjson.dumps(self._lkg_document())
                await asyncio.to_thread(write_atomically, self.lkg_path, data)
                retry = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                self.lkg_write_errors += 1
                log.exception("could not write the last-known-good snapshot to %s", self.lkg_path)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 30.0)
                self._lkg_dirty.set()

    def load_lkg(self) -> bool:
        try:
            written_at = self.lkg_path.stat().st_mtime
            doc = orjson.loads(self.lkg_path.read_bytes())
            if doc.get("format") != LKG_FORMAT:
                return False
            g = doc["global"]
            s = snap.with_global(snap.EMPTY, g["version"], g["records"])
            for pid, p in doc["projects"].items():
                project = g["records"]["projects"][pid]
                compiled = snap.compile_project(
                    project, p["version"], p["records"], self.on_exposure
                )
                s = snap.with_project(s, compiled, pid)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("no usable last-known-good snapshot at %s (%s)", self.lkg_path, e)
            return False
        if not self.loaded:  # Redis may have answered meanwhile; it wins
            self.snapshot = s
            self.loaded = True
            self.from_lkg = True
            # The file was current when it was written: that is when it was last confirmed.
            self.confirmed_at = time.monotonic() - max(0.0, time.time() - written_at)
        return True

    # Metrics -----------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        yield CounterMetricFamily("edge_sync_reconnects", "Pub/sub reconnections", self.reconnects)
        yield CounterMetricFamily(
            "edge_snapshot_compile_errors", "Scope versions that failed to compile",
            self.compile_errors,
        )  # fmt: skip
        yield CounterMetricFamily(
            "edge_snapshot_write_errors", "Failed writes of the last-known-good file",
            self.lkg_write_errors,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "edge_snapshot_confirmed_age_seconds",
            "Seconds since the snapshot was last confirmed current against Redis (for a "
            "last-known-good file: since it was written); -1 before any snapshot",
            now - self.confirmed_at if self.loaded else -1,
        )
        projects = sorted(self.snapshot.projects.items())
        versions = GaugeMetricFamily(
            "edge_snapshot_version", "Configuration version held, per project", labels=["project"]
        )
        ages = GaugeMetricFamily(
            "edge_snapshot_age_seconds", "Seconds since the project was last reloaded",
            labels=["project"],
        )  # fmt: skip
        for pid, p in projects:
            versions.add_metric([pid], p.version)
            ages.add_metric([pid], now - self.loaded_at.get(pid, now))
        yield versions
        yield ages
