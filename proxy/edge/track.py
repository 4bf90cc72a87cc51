"""`POST /api/v1/flags/track`: record a conversion for the user's variant, exactly once.

The variant comes from the snapshot's bucket table (the same function evaluate used), the
write is an SADD that says whether it was new; concurrent tracks share one round trip
(proxy.store.conversions).
"""

from __future__ import annotations

import orjson

from proxy import http
from proxy.domain import model
from proxy.edge.auth import Auth
from proxy.errors import ApiError, conflict, forbidden, from_domain, not_found, unavailable
from proxy.store.conversions import ConversionWriter
from proxy.store.events import Conversion
from proxy.store.spool import SpoolFull

OK = orjson.dumps({"data": {"ok": True}})


class Track:
    def __init__(self, auth: Auth, writer: ConversionWriter, max_body: int) -> None:
        self.auth = auth
        self.sync = auth.sync
        self.writer = writer
        self.max_body = max_body

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> int:
        try:
            key = self.auth.key(scope)
            if not key.can_evaluate:
                raise forbidden()
            data = http.json_object(await http.read_body(scope, receive, self.max_body))
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
            try:
                await self.writer.write(conversion)
            except SpoolFull:
                raise unavailable("Redis is unreachable and the conversion spool is full") from None
        except ApiError as e:
            return await http.reply_error(send, e)
        except model.DomainError as e:
            return await http.reply_error(send, from_domain(e))
        await http.reply(send, 200, OK)
        return 200
