"""What one worker process holds: Redis clients, the snapshot sync, the event writers and their
background tasks, started and stopped in order. Routes reach it through `runtime_of`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request

from proxy.domain import audit, changes, model
from proxy.edge.auth import Auth
from proxy.edge.streams import Streams, raise_open_files_limit
from proxy.edge.sync import Sync
from proxy.settings import Settings
from proxy.store import keys
from proxy.store.audit import AuditLog
from proxy.store.config import ConfigStore
from proxy.store.connection import connect, connect_pubsub, resolve_url
from proxy.store.conversions import ConversionWriter
from proxy.store.events import EventStore
from proxy.store.exposures import ExposureBuffer
from proxy.store.spool import Spool
from proxy.store.webhooks import WebhookStore

log = logging.getLogger("proxy")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = None if settings.redis_mode == "sentinel" else resolve_url(settings)
        self.redis = connect(settings, url)
        self.store = ConfigStore(self.redis, settings.audit_max_entries)
        self.audit = AuditLog(self.redis)
        self.webhooks = WebhookStore(self.redis)
        self.events = EventStore(
            self.redis, settings.redis_wait_replicas, int(settings.redis_timeout * 500)
        )
        self.spool = Spool(settings.data_dir / "spool", settings.spool_max_bytes)
        self.exposures = ExposureBuffer(
            self.events,
            self.spool,
            buffer_max=settings.exposure_buffer_max,
            seen_max=settings.exposure_seen_max,
        )
        self.sync = Sync(
            self.store,
            connect_pubsub(settings, url),
            self.exposures,
            poll_interval=settings.poll_interval,
            lkg_path=settings.data_dir / "snapshot.json",
        )
        self.conversions = ConversionWriter(self.events, self.spool)
        self.auth = Auth(self.sync, settings.rate_limit_per_second)
        self.streams = Streams(
            self.sync,
            self.redis,
            max_streams=settings.max_streams,
            heartbeat=settings.stream_heartbeat,
            buffer_bytes=settings.stream_buffer_bytes,
            cors_origins=settings.cors_origins,
        )
        self.sync.listeners.append(self.streams.on_change)
        self.redis_errors = 0  # of the control routes; the components count their own
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A background task of this worker, cancelled and awaited by `stop`."""
        self._tasks.append(asyncio.create_task(work))

    async def start(self) -> None:
        # Bounded waits: the port must answer within seconds even when Redis does not.
        if self.settings.bootstrap_key and not await self._bootstrap():
            self.spawn(self._bootstrap_until_done())
        await self.sync.start(wait=3.0)
        self.spawn(self.exposures.run(self.settings.exposure_flush_interval))
        self.spawn(self.spool.run(self.events, 1.0))
        raise_open_files_limit()  # before the first stream: each one is a socket
        await self.streams.start(wait=1.0 if self.sync.subscribed else 0.0)
        self.spawn(self.streams.keep_secret())

    async def _bootstrap(self) -> bool:
        token = self.settings.bootstrap_key
        assert token
        try:
            outcome, _ = await asyncio.wait_for(
                self.store.mutate(
                    keys.GLOBAL,
                    lambda s: changes.ensure_bootstrap_key(
                        s, token, id=model.new_id(), now=model.now()
                    ),
                    actor=audit.local_actor("bootstrap"),
                ),
                2.0,
            )
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("bootstrap key not written yet (%s)", type(e).__name__)
            return False
        if outcome == "restored":
            log.warning(
                "EDGE_BOOTSTRAP_KEY names a key that was revoked: it is active again, as it will "
                "be at every start while the variable is set; unset it once you have other keys"
            )
        return True

    async def _bootstrap_until_done(self) -> None:
        while not await self._bootstrap():
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Background work first (awaited, so a replay cannot race the spool's close), then
        what is still in memory to Redis or the spool, then the connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.streams.stop()  # none are left by now: the server closed every connection
        await self.conversions.close()
        await self.exposures.flush()  # to Redis, or to the spool
        self.spool.close()
        await self.sync.stop()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()


def runtime_of(request: Request) -> Runtime:
    """The worker's runtime, for a route."""
    runtime: Runtime = request.app.state.runtime
    return runtime
