"""What e2e tests do over and over through the API: make a project, a flag, a key; evaluate."""

from __future__ import annotations

from typing import Any

from tests.support import Client


def make_project(client: Client, **fields: Any) -> str:
    r = client.post("/api/v1/flags/projects", {"name": "Shop", **fields})
    assert r.status == 201, r.body
    project_id: str = r.json["data"]["id"]
    return project_id


def make_flag(client: Client, project_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "project_id": project_id,
        "key": "checkout_flow",
        "name": "Checkout Flow",
        "flag_type": "string",
        "default_value": "control",
        **fields,
    }
    r = client.post("/api/v1/flags", body)
    assert r.status == 201, r.body
    flag: dict[str, Any] = r.json["data"]
    return flag


def evaluate(client: Client, project_id: str, user_id: str | None, **context: Any) -> Any:
    if user_id is not None:
        context["user_id"] = user_id
    body = {"project_id": project_id, "environment": "production", "context": context}
    r = client.post("/api/v1/flags/evaluate", body)
    assert r.status == 200, r.body
    return r.json["flags"]


def make_key(client: Client, **fields: Any) -> tuple[str, str]:
    r = client.post("/api/v1/keys", {"name": "k", "scopes": ["*"], **fields})
    assert r.status == 201, r.body
    return r.json["data"]["id"], r.json["data"]["token"]
