"""`POST /api/v1/flags/track`: record a conversion for the user's variant, exactly once.

The variant comes from the snapshot's bucket table (the same function evaluate used), the
write is an SADD that says whether it was new. Concurrent tracks share one pipeline round trip:
while a batch is on the wire the next one gathers, so batches grow with the load.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from redis.exceptions import RedisError

from proxy.domain.model import NAME_RE
from proxy.edge import wire
from proxy.edge.auth import Auth
from proxy.edge.evaluate import user_id_of
from proxy.errors import ApiError, conflict, forbidden, invalid, not_found, unavailable
from proxy.store.events import Conversion, EventStore
from proxy.store.spool import Spool, SpoolFull

log = logging.getLogger("proxy.track")
OK = orjson.dumps({"data": {"ok": True}})
DEFAULT_GOAL = "conversion"
MAX_USER_ID = 256


class ConversionWriter:
    """Conversions to Redis in shared pipelines, or to the durable spool when Redis fails.

    After a failure, batches go straight to the spool for `bypass_for` seconds instead of each
    waiting out the Redis timeout; the spool replays into Redis when it answers again.
    """

    def __init__(self, events: EventStore, spool: Spool, bypass_for: float = 1.0) -> None:
        self.events = events
        self.spool = spool
        self.bypass_for = bypass_for
        self.bypass_until = 0.0
        self.queue: list[tuple[Conversion, asyncio.Future[bool]]] = []
        self.draining: asyncio.Task[None] | None = None
        self.accepted = 0
        self.duplicates = 0
        self.spooled = 0
        self.redis_errors = 0

    async def write(self, conversion: Conversion) -> bool:
        """True when new, False for a duplicate; raises when Redis did not take it."""
        future = asyncio.get_running_loop().create_future()
        self.queue.append((conversion, future))
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())
        new: bool = await future
        return new

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                conversions = [c for c, _ in batch]
                try:
                    added = await self._write(conversions)
                except Exception as e:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), new in zip(batch, added, strict=True):
                    self.accepted += new
                    self.duplicates += not new
                    if not future.done():
                        future.set_result(new)
        finally:
            self.draining = None

    async def _write(self, conversions: list[Conversion]) -> list[bool]:
        """True where new, as Redis says; spooled ones count as new (Redis will dedupe)."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self.bypass_until:
            try:
                return await self.events.add_conversions(conversions)
            except (RedisError, OSError, TimeoutError) as e:
                log.warning("conversions go to the spool: Redis failed (%s)", type(e).__name__)
                self.bypass_until = loop.time() + self.bypass_for
                self.redis_errors += 1
        await self.spool.append(conversions=conversions)  # raises SpoolFull past its bound
        self.spooled += len(conversions)
        return [True] * len(conversions)

    async def close(self) -> None:
        if self.draining is not None:
            await asyncio.wait([self.draining])


def parse(data: dict[str, Any]) -> tuple[str, str, str, str]:
    errors = {}
    for name in ("flag_id", "experiment_id"):
        if not isinstance(data.get(name), str):
            errors[name] = "is required"
    try:
        user_id = user_id_of(data)
    except ApiError:
        user_id = None
    if not user_id or len(user_id) > MAX_USER_ID:
        errors["user_id"] = f"must be a non-empty string of at most {MAX_USER_ID} characters"
    goal = data.get("goal", DEFAULT_GOAL)
    if not isinstance(goal, str) or not NAME_RE.fullmatch(goal):
        errors["goal"] = "must match ^[A-Za-z0-9_.-]{1,64}$"
    if errors:
        raise invalid(errors)
    assert user_id is not None
    return data["flag_id"], data["experiment_id"], user_id, goal


class Track:
    def __init__(self, auth: Auth, writer: ConversionWriter, max_body: int) -> None:
        self.auth = auth
        self.sync = auth.sync
        self.writer = writer
        self.max_body = max_body

    async def __call__(self, scope: wire.Scope, receive: wire.Receive, send: wire.Send) -> int:
        try:
            key = self.auth.key(scope)
            if not key.can_evaluate:
                raise forbidden()
            data = wire.json_object(await wire.read_body(scope, receive, self.max_body))
            flag_id, experiment_id, user_id, goal = parse(data)
            experiment = self.sync.snapshot.experiments.get(experiment_id)
            if experiment is None or experiment.flag_id != flag_id:
                raise not_found()
            if not key.allows(experiment.project_id):
                raise forbidden()
            if experiment.status != "running":
                raise conflict("Experiment is not running")
            variant = experiment.assign(user_id)
            if variant is None:
                raise conflict("User is not in the experiment's traffic")
            try:
                await self.writer.write((experiment_id, goal, variant, user_id))
            except SpoolFull:
                raise unavailable("Redis is unreachable and the conversion spool is full") from None
        except ApiError as e:
            return await wire.reply_error(send, e)
        await wire.reply(send, 200, OK)
        return 200
