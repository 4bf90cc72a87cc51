"""`POST /api/v1/flags/evaluate`: every flag of a project for one user, from memory.

No await but reading the body and writing the answer: auth is a dict lookup, the plan was
compiled with the snapshot, and the answer is the plan's bytes joined with the user's.
"""

from __future__ import annotations

from typing import Any

from proxy.edge import wire
from proxy.edge.auth import Auth
from proxy.edge.snapshot import ApiKey
from proxy.errors import ApiError, forbidden, invalid, not_found


def user_id_of(context: dict[str, Any]) -> str | None:
    uid = context.get("user_id")
    if uid is None or isinstance(uid, str):
        return uid
    if isinstance(uid, int) and not isinstance(uid, bool):
        return str(uid)  # numeric ids are common; they bucket as their decimal spelling
    raise invalid({"context.user_id": "must be a string"})


class Evaluate:
    def __init__(self, auth: Auth, max_body: int) -> None:
        self.auth = auth
        self.sync = auth.sync
        self.max_body = max_body

    async def __call__(self, scope: wire.Scope, receive: wire.Receive, send: wire.Send) -> int:
        try:
            key = self.auth.key(scope)
            if not key.can_evaluate:
                raise forbidden()
            data = wire.json_object(await wire.read_body(scope, receive, self.max_body))
            body = self.answer(key, data)
        except ApiError as e:
            return await wire.reply_error(send, e)
        await wire.reply(send, 200, body, wire.PRIVATE_HEADERS)
        return 200

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
        context = data.get("context")
        if context is None:
            context = {}
        elif not isinstance(context, dict):
            raise invalid({"context": "must be an object"})
        return plan.render(context, user_id_of(context))
