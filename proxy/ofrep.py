"""OpenFeature Remote Evaluation Protocol (open-feature/protocol `service/openapi.yaml`).

`POST /ofrep/v1/evaluate/flags/{key}` and `POST /ofrep/v1/evaluate/flags`, answered from the
same compiled plans as evaluate: each flag's Outcome already carries value, variant and reason.
`context.targetingKey` is the user id; the project is the key's single restricted project or
`context.project_id`; the environment is `context.environment` or the project's default.
Bulk answers carry an ETag over the exact bytes returned, so a different context can never
match another's ETag and get a wrong 304.

Push (ADR-0008, proxy/edge/streams.py): a bulk answer carries `eventStreams`, the channel of
its key, project and environment. A re-fetch that an event triggered names the event's version
in `flagConfigEtag`; when this proxy does not hold that version yet (the event came through
another proxy), the answer waits for the sync to bring it, up to FLAG_CONFIG_WAIT seconds.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs

import orjson

from proxy import http
from proxy.domain import model
from proxy.domain.access import ApiKey
from proxy.edge import render
from proxy.edge.auth import Auth
from proxy.edge.snapshot import CompiledFlag, Plan
from proxy.edge.streams import Streams
from proxy.errors import ApiError, forbidden

PREFIX = "/ofrep/v1/evaluate/flags"
FLAG_CONFIG_WAIT = 1.0  # seconds a re-fetch may wait for the version its event named


class OfrepError(Exception):
    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status, self.code, self.details = status, code, details

    def body(self, key: str | None) -> bytes:
        out = {"errorCode": self.code, "errorDetails": self.details}
        return orjson.dumps(out if key is None else {"key": key, **out})


class Ofrep:
    def __init__(self, auth: Auth, max_body: int, streams: Streams | None = None) -> None:
        self.auth = auth
        self.sync = auth.sync
        self.max_body = max_body
        self.streams = streams

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> int:
        path: str = scope["path"]
        key = path[len(PREFIX) + 1 :] if path.startswith(PREFIX + "/") else None
        try:
            api_key = self.auth.reader(http.headers_of(scope))
            raw = await http.read_body(scope, receive, self.max_body)
            try:
                data = http.json_object(raw or b"{}")
            except ApiError:
                raise OfrepError(400, "PARSE_ERROR", "the body is not a JSON object") from None
            context = data.get("context", {})
            if not isinstance(context, dict):
                raise OfrepError(400, "INVALID_CONTEXT", "context must be an object")
            project_id = self.project_of(api_key, context)
            version = None if key is not None else _flag_config_version(scope)
            if version is not None and api_key.allows(project_id):
                await self.sync.caught_up(project_id, version, FLAG_CONFIG_WAIT)
            plan, env = self.plan(api_key, project_id, context)
            if key is not None:
                body = self.single(plan, env, key, context)
                await http.reply(send, 200, body, http.PRIVATE_HEADERS)
                return 200
            streams = (
                None if self.streams is None else self.streams.advertise(api_key, project_id, env)
            )
            body = self.bulk(plan, env, context, streams)
        except OfrepError as e:
            await http.reply(send, e.status, e.body(key))
            return e.status
        except ApiError as e:
            return await http.reply_error(send, e)
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        headers = [*http.PRIVATE_HEADERS, (b"etag", etag)]
        if etag in _if_none_match(scope):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return 304
        await http.reply(send, 200, body, headers)
        return 200

    def project_of(self, api_key: ApiKey, context: dict[str, Any]) -> str:
        project_id = context.get("project_id")
        if project_id is None and api_key.project_ids is not None and len(api_key.project_ids) == 1:
            (project_id,) = api_key.project_ids
        if not isinstance(project_id, str):
            raise OfrepError(400, "INVALID_CONTEXT", "context.project_id is required")
        return project_id

    def plan(self, api_key: ApiKey, project_id: str, context: dict[str, Any]) -> tuple[Plan, str]:
        project = self.sync.snapshot.projects.get(project_id)
        if project is None:
            raise OfrepError(400, "INVALID_CONTEXT", "unknown project")
        if not api_key.allows(project_id):
            raise forbidden()
        env = context.get("environment", project.project["settings"]["default_environment"])
        plan = project.plans.get(env) if isinstance(env, str) else None
        if plan is None:
            raise OfrepError(400, "INVALID_CONTEXT", "unknown environment for this project")
        return plan, env

    def single(self, plan: Plan, env: str, key: str, context: dict[str, Any]) -> bytes:
        flag = plan.flags.get(key)
        if flag is None:
            raise OfrepError(404, "FLAG_NOT_FOUND", f"no flag {key!r} in this project")
        user_id = _targeting_key(context)
        if user_id is None and flag.needs_user:
            raise OfrepError(400, "TARGETING_KEY_MISSING", "this flag's answer needs targetingKey")
        return orjson.dumps(_result(flag, env, _with_user(context, user_id), user_id))

    def bulk(
        self, plan: Plan, env: str, context: dict[str, Any], streams: list[Any] | None = None
    ) -> bytes:
        """Every flag, by the plan's generated OFREP render (made on the plan's first bulk),
        and the event streams to hear of changes on."""
        user_id = _targeting_key(context)
        if plan.ofrep_render is None:
            irs = [f.ir for f in plan.flags.values()]
            plan.ofrep_render = render.ofrep_render(irs, plan.sink, env)
        answer = plan.ofrep_render(_with_user(context, user_id), user_id)
        if not streams:
            return answer
        return answer[:-1] + b',"eventStreams":' + orjson.dumps(streams) + b"}"


def _targeting_key(context: dict[str, Any]) -> str | None:
    """The user id: the same rule as evaluate's and track's (proxy.domain.model.user_id)."""
    try:
        return model.user_id(context.get("targetingKey"))
    except model.UserIdError as e:
        raise OfrepError(400, "INVALID_CONTEXT", f"targetingKey {e}") from None


def _with_user(context: dict[str, Any], user_id: str | None) -> dict[str, Any]:
    """Rules name the user `user_id`, as in evaluate's context."""
    return context if user_id is None else {**context, "user_id": user_id}


def _result(flag: CompiledFlag, env: str, context: dict[str, Any], user_id: str | None) -> Any:
    outcome = flag.evaluate(context, user_id)
    return {
        "key": flag.key,
        "value": outcome.value,
        "reason": outcome.reason,
        "variant": outcome.variant,
        "metadata": {"environment": env},
    }


def _flag_config_version(scope: http.Scope) -> int | None:
    """The version a re-fetch names: `flagConfigEtag`, our events' etag (`"<version>"`)."""
    query: bytes = scope.get("query_string", b"")
    if b"flagConfigEtag=" not in query:
        return None
    try:
        values = parse_qs(query.decode("latin-1"), max_num_fields=8).get("flagConfigEtag", [""])
    except ValueError:  # more fields than a provider sends: not a re-fetch of ours
        return None
    text = values[0].strip().removeprefix("W/").strip('"')
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _if_none_match(scope: http.Scope) -> list[bytes]:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return [v.strip() for v in value.split(b",")]
    return []
