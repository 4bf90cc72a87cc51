"""Webhooks: `/api/v1/flags/webhooks[/{webhook_id}[/deliveries]]` (flags:write, all of them:
a webhook's URL and its deliveries say where a project's changes go).

A webhook is a record of its project (proxy.domain.scope), so its own changes are audited too
(`webhook.created|updated|deleted`). Its secret is made here, stored before the record (no
webhook is ever without one, see proxy.store.webhooks for where), returned once in the 201 and
never again. The target must pass the SSRF rule when it is set (422 otherwise), and passes it
again at every delivery (proxy.control.delivery).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control import delivery
from proxy.control.common import (
    authorize,
    body,
    commit,
    commit_owned,
    path_id,
    project_of,
    project_record,
    reply,
    required_project,
)
from proxy.domain import changes, model, webhooks
from proxy.domain.access import WRITE
from proxy.domain.changes import found
from proxy.domain.model import Webhook
from proxy.errors import invalid
from proxy.runtime import runtime_of


def view(webhook: Webhook, failure_count: int) -> dict[str, Any]:
    """A webhook as the API shows it: the record and its failed attempts in a row."""
    return {**webhook, "failure_count": failure_count}


async def check_target(request: Request, url: str) -> None:
    allow_private = runtime_of(request).settings.webhook_allow_private
    try:
        await delivery.resolve(url, allow_private=allow_private)
    except delivery.Refused as e:
        raise invalid({"url": str(e)}) from None


async def create(request: Request) -> Response:
    authorize(request, WRITE)  # who is asking comes before what they sent
    data = await body(request)
    project_id = required_project(request, data, WRITE)
    await project_record(request, project_id)
    webhook = model.new_webhook(data, id=model.new_id(), now=model.now())
    await check_target(request, webhook["url"])
    rt = runtime_of(request)
    secret = webhooks.new_secret()
    # Both before the record: a webhook never exists without its secret, and the consumer
    # group exists before any entry the webhook is to receive is written.
    await rt.webhooks.set_secret(project_id, webhook["id"], secret)
    await rt.audit.ensure_group(project_id)
    try:
        added = await commit_owned(
            request,
            "webhooks",
            webhook["id"],
            project_id,
            lambda s: changes.add_webhook(s, webhook),
        )
    except BaseException:
        await rt.webhooks.drop(project_id, webhook["id"])
        raise
    return reply({**view(added, 0), "secret": secret}, 201)


async def list_all(request: Request) -> Response:
    authorize(request, WRITE)
    project_id = request.query_params.get("project_id")
    if not project_id:
        raise invalid({"project_id": "is required (query parameter)"})
    authorize(request, WRITE, project_id)
    await project_record(request, project_id)
    rt = runtime_of(request)
    hooks = changes.webhooks_in_order(await rt.store.load(project_id))
    counts = await rt.webhooks.failure_counts(project_id, [w["id"] for w in hooks])
    return reply([view(w, counts[w["id"]]) for w in hooks])


async def read(request: Request) -> Response:
    webhook_id = path_id(request, "webhook_id")
    project_id = await project_of(request, "webhooks", webhook_id, WRITE)
    rt = runtime_of(request)
    webhook = found(await rt.store.get(project_id, "webhooks", webhook_id))
    counts = await rt.webhooks.failure_counts(project_id, [webhook_id])
    return reply(view(webhook, counts[webhook_id]))


async def update(request: Request) -> Response:
    webhook_id = path_id(request, "webhook_id")
    project_id = await project_of(request, "webhooks", webhook_id, WRITE)
    data = await body(request)
    url = data.get("url")
    if isinstance(url, str) and model.webhook_url(url) is None:  # else the 422 comes below
        await check_target(request, url)
    rt = runtime_of(request)
    updated, enabled_again = await commit(
        request, project_id, lambda s: changes.update_webhook(s, webhook_id, data, now=model.now())
    )
    if enabled_again:  # by hand: its failures are behind it
        await rt.webhooks.reset_failures(project_id, webhook_id)
    counts = await rt.webhooks.failure_counts(project_id, [webhook_id])
    return reply(view(updated, counts[webhook_id]))


async def delete(request: Request) -> Response:
    webhook_id = path_id(request, "webhook_id")
    project_id = await project_of(request, "webhooks", webhook_id, WRITE)
    rt = runtime_of(request)
    await commit(request, project_id, lambda s: changes.remove_webhook(s, webhook_id))
    await rt.store.drop_owner("webhooks", webhook_id)
    await rt.webhooks.drop(project_id, webhook_id)
    return reply(None, 204)


async def deliveries(request: Request) -> Response:
    """The webhook's latest attempts (at most proxy.store.webhooks.DELIVERIES_KEPT), newest
    first: entry, attempt number, status (null without an answer), duration, error."""
    webhook_id = path_id(request, "webhook_id")
    project_id = await project_of(request, "webhooks", webhook_id, WRITE)
    rt = runtime_of(request)
    found(await rt.store.get(project_id, "webhooks", webhook_id))
    return reply(await rt.webhooks.deliveries(project_id, webhook_id))


routes = [
    Route("/api/v1/flags/webhooks", create, methods=["POST"]),
    Route("/api/v1/flags/webhooks", list_all, methods=["GET"]),
    Route("/api/v1/flags/webhooks/{webhook_id}", read, methods=["GET"]),
    Route("/api/v1/flags/webhooks/{webhook_id}", update, methods=["PATCH"]),
    Route("/api/v1/flags/webhooks/{webhook_id}", delete, methods=["DELETE"]),
    Route("/api/v1/flags/webhooks/{webhook_id}/deliveries", deliveries, methods=["GET"]),
]
