"""`POST /api/v1/flags/track`: record a conversion for the user's variant, exactly once.

The variant comes from the snapshot's bucket table (the same function evaluate used), the
write is an SADD that says whether it was new; concurrent tracks share one round trip
(proxy.store.conversions). Everything up to the write is synchronous (`submit`), so the HTTP
protocol can take a request whose body is already in without an ASGI round
(proxy/protocol.py) and answer once the write's future is done (`answer`); `__call__` is the
ASGI route, the same two steps with an await between them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import orjson

from proxy import http
from proxy.domain import model
from proxy.domain.access import ApiKey
from proxy.edge.auth import Auth
from proxy.errors import ApiError, conflict, forbidden, from_domain, not_found, unavailable
from proxy.store.conversions import ConversionWriter
from proxy.store.events import Conversion
from proxy.store.spool import SpoolFull

OK: http.Answer = (200, orjson.dumps({"data": {"ok": True}}), http.JSON_HEADERS)
SPOOL_FULL = http.error_answer(unavailable("Redis is unreachable and the conversion spool is full"))

Written = asyncio.Future[bool]  # the conversion's write: new (or spooled), or a duplicate


class Track:
    def __init__(self, auth: Auth, writer: ConversionWriter, max_body: int) -> None:
        self.auth = auth
        self.sync = auth.sync
        self.writer = writer
        self.max_body = max_body

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> int:
        try:
            key, body = await self.auth.read(scope, receive, self.max_body)
        except ApiError as e:
            return await http.reply_error(send, e)
        submitted = self.submit_as(key, body)
        if isinstance(submitted, asyncio.Future):
            with contextlib.suppress(Exception):  # `answer` says what it was
                await submitted
            submitted = self.answer(submitted)
        status, out, headers = submitted
        await http.reply(send, status, out, headers)
        return status

    def submit(self, headers: Mapping[bytes, bytes], body: bytes) -> http.Answer | Written:
        """A request whose body is in, in the order of the ASGI route: the refusal, or the
        conversion's write under way."""
        try:
            key = self.auth.admit(headers, body, self.max_body)
        except ApiError as e:
            return http.error_answer(e)
        return self.submit_as(key, body)

    def submit_as(self, key: ApiKey, body: bytes) -> http.Answer | Written:
        try:
            conversion = self.conversion(key, http.json_object(body))
        except model.DomainError as e:
            return http.error_answer(from_domain(e))
        except ApiError as e:
            return http.error_answer(e)
        return self.writer.submit(conversion)

    @staticmethod
    def answer(written: Written) -> http.Answer:
        """The answer to a done write: 200 once Redis or the spool has it. Anything but a full
        spool is a bug, raised for the caller's 500."""
        error = written.exception()
        if error is None:
            return OK
        if isinstance(error, SpoolFull):
            return SPOOL_FULL
        raise error

    def conversion(self, key: ApiKey, data: dict[str, Any]) -> Conversion:
        request = model.track_request(data)
        experiment = self.sync.snapshot.experiments.get(request["experiment_id"])
        if experiment is None or experiment.flag_id != request["flag_id"]:
            raise not_found()
        if not key.allows(experiment.project_id):
            raise forbidden()
        if experiment.status != "running":
            raise conflict("Experiment is not running")
        variant = experiment.assign(request["user_id"])
        if variant is None:
            raise conflict("User is not in the experiment's traffic")
        conversion: Conversion = (experiment.id, request["goal"], variant, request["user_id"])
        if request["value"] is not None:
            conversion = (*conversion, request["value"])
        return conversion
