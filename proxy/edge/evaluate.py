"""`POST /api/v1/flags/evaluate`: every flag of a project for one user, from memory.

No await but reading the body and writing the answer: auth is a dict lookup, the plan was
compiled with the snapshot, and the answer is the plan's bytes joined with the user's. The
answer itself is synchronous (`respond`), so the HTTP protocol can give it a request whose
body is already in without an ASGI round (proxy/protocol.py); `__call__` is the ASGI route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy import http
from proxy.domain import model
from proxy.domain.access import ApiKey
from proxy.edge.auth import Auth
from proxy.errors import ApiError, forbidden, from_domain, invalid, not_found


class Evaluate:
    def __init__(self, auth: Auth, max_body: int) -> None:
        self.auth = auth
        self.sync = auth.sync
        self.max_body = max_body

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> int:
        try:
            key, body = await self.auth.read(scope, receive, self.max_body)
        except ApiError as e:
            return await http.reply_error(send, e)
        status, out, headers = self.respond_as(key, body)
        await http.reply(send, status, out, headers)
        return status

    def respond(self, headers: Mapping[bytes, bytes], body: bytes) -> http.Answer:
        """The whole answer to a request whose body is in, in the order of the ASGI route."""
        try:
            key = self.auth.admit(headers, body, self.max_body)
        except ApiError as e:
            return http.error_answer(e)
        return self.respond_as(key, body)

    def respond_as(self, key: ApiKey, body: bytes) -> http.Answer:
        try:
            return 200, self.answer(key, http.json_object(body)), http.PRIVATE_HEADERS
        except model.DomainError as e:
            return http.error_answer(from_domain(e))
        except ApiError as e:
            return http.error_answer(e)

    def answer(self, key: ApiKey, data: dict[str, Any]) -> bytes:
        project_id = data.get("project_id")
        if not isinstance(project_id, str):
            raise invalid({"project_id": "is required"})
        project = self.sync.snapshot.projects.get(project_id)
        if project is None:
            raise not_found()
        if not key.allows(project_id):
            raise forbidden()
        env = data.get("environment")
        if env is None:
            env = project.project["settings"]["default_environment"]
        plan = project.plans.get(env) if isinstance(env, str) else None
        if plan is None:
            raise invalid({"environment": "unknown environment for this project"})
        context = model.context_of(data)
        try:
            user_id = model.user_id(context.get("user_id"))
        except model.UserIdError as e:
            raise invalid({"context.user_id": str(e)}) from None
        keys = model.flag_keys(data)
        if keys is not None:
            return plan.render_only(context, user_id, keys)
        return plan.render(context, user_id)
