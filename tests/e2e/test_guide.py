"""The guide's six steps, verbatim bodies, on two server processes sharing one Redis."""

from __future__ import annotations

from typing import Any

from tests.e2e.helpers import evaluate, make_experiment, make_flag, make_project
from tests.support import Client, eventually

VARIANTS = [
    {"key": "control", "value": "old_checkout", "percentage": 50},
    {"key": "treatment", "value": "new_checkout", "percentage": 50},
]


def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    for k, v in expected.items():
        assert actual[k] == v, (k, actual[k], v)


def track(client: Client, flag_id: str, experiment_id: str, user_id: str) -> Any:
    body = {"flag_id": flag_id, "experiment_id": experiment_id, "user_id": user_id}
    return client.post("/api/v1/flags/track", body)


def test_guide_walkthrough_on_two_processes(backend_clients: tuple[Client, Client]) -> None:
    a, b = backend_clients
    project_id = make_project(a)

    # Step 1: the string flag.
    r = a.post(
        "/api/v1/flags",
        {
            "project_id": project_id,
            "key": "checkout_flow",
            "name": "Checkout Flow",
            "flag_type": "string",
            "default_value": "control",
            "description": "Checkout flow A/B test",
        },
    )
    assert r.status == 201
    flag = r.json["data"]
    _subset(
        {
            "project_id": project_id,
            "key": "checkout_flow",
            "name": "Checkout Flow",
            "flag_type": "string",
            "default_value": "control",
            "enabled": False,
            "description": "Checkout flow A/B test",
        },
        flag,
    )
    assert flag["created_at"].endswith("Z")
    flag_id = flag["id"]

    # Step 2: the experiment, in draft.
    r = a.post(
        f"/api/v1/flags/{flag_id}/experiments",
        {"name": "Checkout Flow Test", "environment": "production", "variants": VARIANTS},
    )
    assert r.status == 201
    experiment = r.json["data"]
    _subset(
        {
            "flag_id": flag_id,
            "name": "Checkout Flow Test",
            "environment": "production",
            "status": "draft",
            "variants": VARIANTS,
            "conversions": 0,
        },
        experiment,
    )
    experiment_id = experiment["id"]
    base = f"/api/v1/flags/{flag_id}/experiments/{experiment_id}"

    # Draft: both processes answer the default; track is rejected (once B has the draft: the
    # other process follows within the propagation bound).
    for client in (a, b):
        r = eventually(
            lambda c=client: (r := track(c, flag_id, experiment_id, "usr_123")).status != 404 and r
        )
        assert (r.status, r.json) == (409, {"error": "Experiment is not running"})
        flags = evaluate(client, project_id, "usr_123")
        assert flags == {"checkout_flow": {"value": "control", "rule_id": None}}

    # Step 3: start; both processes give usr_123 the same variant.
    r = a.post(f"{base}/start")
    assert r.status == 200
    _subset({"id": experiment_id, "status": "running"}, r.json["data"])
    served_by_a = evaluate(a, project_id, "usr_123")["checkout_flow"]
    assert served_by_a["value"] in ("old_checkout", "new_checkout")
    assert served_by_a["rule_id"] is None
    eventually(lambda: evaluate(b, project_id, "usr_123")["checkout_flow"] == served_by_a)
    for user in ("u1", "u2", "u3", "u4", "u5"):
        assert evaluate(a, project_id, user) == evaluate(b, project_id, user)

    # Step 4: track; a duplicate through the other process is ignored, still 200.
    r = track(a, flag_id, experiment_id, "usr_123")
    assert (r.status, r.json) == (200, {"data": {"ok": True}})
    r = track(b, flag_id, experiment_id, "usr_123")
    assert (r.status, r.json) == (200, {"data": {"ok": True}})

    # Step 5: results.
    for client in (a, b):
        r = client.get(base)
        assert r.status == 200
        _subset(
            {
                "id": experiment_id,
                "name": "Checkout Flow Test",
                "environment": "production",
                "status": "running",
                "variants": VARIANTS,
                "conversions": 1,
            },
            r.json["data"],
        )

    # Step 6: stop; both processes revert to the default, track is rejected.
    r = a.post(f"{base}/stop")
    assert r.status == 200
    _subset({"id": experiment_id, "status": "stopped"}, r.json["data"])
    for client in (a, b):
        eventually(
            lambda c=client: (
                evaluate(c, project_id, "usr_123")["checkout_flow"]["value"] == "control"
            )
        )
        r = track(client, flag_id, experiment_id, "usr_123")
        assert (r.status, r.json) == (409, {"error": "Experiment is not running"})
    assert a.get(base).json["data"]["conversions"] == 1


def test_lifecycle_transitions_other_than_draft_running_stopped_conflict(
    backend_clients: tuple[Client, Client],
) -> None:
    a, _ = backend_clients
    flag_id = make_flag(a, make_project(a), key="f")["id"]
    experiment = make_experiment(a, flag_id, variants=VARIANTS)
    base = f"/api/v1/flags/{flag_id}/experiments/{experiment['id']}"
    assert a.post(f"{base}/stop").status == 409
    assert a.post(f"{base}/start").status == 200
    assert a.post(f"{base}/start").status == 409
    assert a.post(f"{base}/stop").status == 200
    assert a.post(f"{base}/stop").status == 409
    assert a.post(f"{base}/start").status == 409
    assert a.get(base).json["data"]["status"] == "stopped"


def test_only_one_running_experiment_per_flag_and_environment(
    backend_clients: tuple[Client, Client],
) -> None:
    a, _ = backend_clients
    flag_id = make_flag(a, make_project(a), key="f")["id"]
    environments = ("production", "production", "staging")
    ids = [
        make_experiment(a, flag_id, environment=e, variants=VARIANTS)["id"] for e in environments
    ]
    assert a.post(f"/api/v1/flags/{flag_id}/experiments/{ids[0]}/start").status == 200
    r = a.post(f"/api/v1/flags/{flag_id}/experiments/{ids[1]}/start")
    assert r.status == 409 and "error" in r.json
    assert a.post(f"/api/v1/flags/{flag_id}/experiments/{ids[2]}/start").status == 200
