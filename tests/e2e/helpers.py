"""What e2e tests do over and over: through the API, make a project, a flag, a key, a running
experiment; evaluate and track; and read what the configuration in Redis holds."""

from __future__ import annotations

from typing import Any

from proxy.store import keys
from tests.support import Client, RedisProcess

VARIANTS = [
    {"key": "control", "value": "old", "percentage": 50},
    {"key": "treatment", "value": "new", "percentage": 50},
]


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


def make_experiment(client: Client, flag_id: str, **fields: Any) -> dict[str, Any]:
    """A draft experiment on the flag (production, 50/50 `VARIANTS` unless `fields` say)."""
    body = {"name": "E", "environment": "production", "variants": VARIANTS, **fields}
    r = client.post(f"/api/v1/flags/{flag_id}/experiments", body)
    assert r.status == 201, r.body
    experiment: dict[str, Any] = r.json["data"]
    return experiment


def start_experiment(client: Client, **fields: Any) -> dict[str, Any]:
    """A new project whose flag `checkout_flow` runs an experiment (`fields` as for
    make_experiment): its project_id, flag_id, experiment_id and path."""
    project_id = make_project(client)
    flag = make_flag(client, project_id)
    experiment_id = make_experiment(client, flag["id"], **fields)["id"]
    path = f"/api/v1/flags/{flag['id']}/experiments/{experiment_id}"
    r = client.post(f"{path}/start")
    assert r.status == 200, r.body
    return {
        "project_id": project_id,
        "flag_id": flag["id"],
        "experiment_id": experiment_id,
        "path": path,
    }


def track_all(
    client: Client, experiment: dict[str, Any], users: list[str], into: list[str] | None = None
) -> list[str]:
    """Track each user's conversion; return those that got a 200 (each must be counted, once),
    appended to `into` as they come when given (another thread may watch it grow). A request
    that fails on the connection, or a 503, is not acknowledged: the user is left out."""
    acknowledged = [] if into is None else into
    for user in users:
        body = {"flag_id": experiment["flag_id"], "experiment_id": experiment["experiment_id"],
                "user_id": user}  # fmt: skip
        try:
            r = client.post("/api/v1/flags/track", body)
        except OSError:
            continue
        if r.status == 200:
            acknowledged.append(user)
        else:
            assert r.status == 503, r.body
    return acknowledged


def conversions(client: Client, experiment: dict[str, Any]) -> int | None:
    """The experiment's conversion count; None while the server cannot answer."""
    r = client.get(experiment["path"])
    return r.json["data"]["conversions"] if r.status == 200 else None


def config_digest(redis_server: RedisProcess, *project_ids: str) -> dict[str, Any]:
    """What a write could change for these projects: the global scope and each project's scope
    (every record kind, the version), their audit logs (length and newest entry), the owner
    indexes and the projects' webhook secrets; hashes by content (not DUMP: a large hash's DUMP
    order changes with incremental rehashing on reads). Named key by key, so it costs the same
    however many other tests wrote to the suite's Redis. A webhook's failure count and attempts
    log are left out: deliveries running in the background change them."""
    r = redis_server.client()
    names = [keys.owner_index("flags"), keys.owner_index("segments")]
    for scope in (keys.GLOBAL, *project_ids):
        names += [keys.version(scope), *(keys.records(scope, k) for k in keys.kinds(scope))]
    names += [keys.webhook_secrets(p) for p in project_ids]
    out: dict[str, Any] = {name: r.hgetall(name) for name in names if not name.endswith("version")}
    out.update({name: r.get(name) for name in names if name.endswith("version")})
    for scope in (keys.GLOBAL, *project_ids):
        audit = keys.audit(scope)
        out[audit] = (r.xlen(audit), r.xrevrange(audit, count=1))
    return out
