"""Data for the console's tests, made through the HTTP API as a user would: a project, flags, a
targeting rule, a running experiment with a few hundred exposed users (served by evaluate) and
their conversions (track), and a draft experiment to start."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.support import Client, eventually

# The name a careless page would run as markup: it must show up as these characters.
MARKUP_NAME = "<img src=x onerror=alert(1)>"
USERS = 600
# Every n-th user of a variant converts: the treatments convert better whatever users the
# (random) experiment id assigns where, so the figures differ in a known direction.
EVERY = {"control": 10, "fast_pay": 6, "one_page": 8}


@dataclass
class Shop:
    project: dict[str, Any]
    flags: dict[str, dict[str, Any]]  # by key
    experiment: dict[str, Any]  # running, with exposures and conversions
    draft: dict[str, Any]  # on search_ranking, never started by the seed

    @property
    def project_id(self) -> str:
        project_id: str = self.project["id"]
        return project_id


def created(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, body)
    assert r.status == 201, (path, r.status, r.body)
    data: dict[str, Any] = r.json["data"]
    return data


def make_flag(client: Client, project_id: str, key: str, **fields: Any) -> dict[str, Any]:
    body = {
        "project_id": project_id,
        "key": key,
        "name": key.replace("_", " ").capitalize(),
        "flag_type": "string",
        "default_value": "off",
        **fields,
    }
    return created(client, "/api/v1/flags", body)


def unique_flag(client: Client, project_id: str, prefix: str, **fields: Any) -> dict[str, Any]:
    """A flag of one test's own, so tests that change state never meet."""
    return make_flag(client, project_id, f"{prefix}_{uuid.uuid4().hex[:8]}", **fields)


def make_experiment(
    client: Client, flag: dict[str, Any], name: str, variants: list[tuple[str, Any, int]]
) -> dict[str, Any]:
    body = {
        "name": name,
        "environment": "production",
        "variants": [{"key": k, "value": v, "percentage": p} for k, v, p in variants],
    }
    return created(client, f"/api/v1/flags/{flag['id']}/experiments", body)


def experiment_path(experiment: dict[str, Any]) -> str:
    return f"/api/v1/flags/{experiment['flag_id']}/experiments/{experiment['id']}"


def read_experiment(client: Client, experiment: dict[str, Any]) -> dict[str, Any]:
    r = client.get(experiment_path(experiment))
    assert r.status == 200, r.body
    data: dict[str, Any] = r.json["data"]
    return data


def expose_and_convert(
    client: Client, project_id: str, flag: dict[str, Any], experiment: dict[str, Any], users: int
) -> None:
    """Serve the experiment to `users` users through evaluate, track some conversions, and wait
    until every exposure reached Redis (within about a second of the evaluate that served it)."""
    by_value = {v["value"]: v["key"] for v in experiment["variants"]}
    seen: Counter[str] = Counter()
    for i in range(users):
        user = f"user-{i:04d}"
        r = client.post(
            "/api/v1/flags/evaluate",
            {"project_id": project_id, "environment": "production", "context": {"user_id": user}},
        )
        assert r.status == 200, r.body
        variant = by_value[r.json["flags"][flag["key"]]["value"]]
        seen[variant] += 1
        if seen[variant] % EVERY.get(variant, 10) == 0:
            body = {"flag_id": flag["id"], "experiment_id": experiment["id"], "user_id": user}
            assert client.post("/api/v1/flags/track", body).status == 200

    def all_exposed() -> bool:
        results = read_experiment(client, experiment)["results"]
        return sum(v["exposures"] for v in results["variants"]) == users

    eventually(all_exposed, timeout=10, interval=0.1)


def seed_shop(client: Client) -> Shop:
    project = created(client, "/api/v1/flags/projects", {"name": "Shop"})
    pid = project["id"]
    flags = {
        "checkout_flow": make_flag(
            client,
            pid,
            "checkout_flow",
            name="Checkout flow",
            default_value="classic",
            description="Which checkout the shop shows",
        ),
        "new_banner": make_flag(
            client, pid, "new_banner", name="New banner", flag_type="boolean", default_value=False
        ),
        "search_ranking": make_flag(
            client, pid, "search_ranking", name="Search ranking", default_value="bm25"
        ),
        "markup_name": make_flag(client, pid, "markup_name", name=MARKUP_NAME),
    }
    checkout = flags["checkout_flow"]
    for rule in (
        {
            "environment": "production",
            "conditions": [{"attribute": "country", "operator": "equals", "value": "DE"}],
            "value": "one_page",
            "percentage": 50,
        },
        {
            "environment": "production",
            "conditions": [{"attribute": "email", "operator": "ends_with", "value": "@shop.test"}],
            "value": "fast_pay",
        },
    ):
        created(client, f"/api/v1/flags/{checkout['id']}/rules", rule)
    experiment = make_experiment(
        client,
        checkout,
        "Checkout redesign",
        [("control", "classic", 34), ("fast_pay", "fast_pay", 33), ("one_page", "one_page", 33)],
    )
    r = client.post(experiment_path(experiment) + "/start")
    assert r.status == 200, r.body
    expose_and_convert(client, pid, checkout, experiment, USERS)
    draft = make_experiment(
        client,
        flags["search_ranking"],
        "Ranking v2",
        [("control", "bm25", 50), ("learned", "learned", 50)],
    )
    return Shop(project, flags, read_experiment(client, experiment), draft)
