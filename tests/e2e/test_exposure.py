"""Exposure at the right moment: only a flag that was answered exposes its user to its
experiment. Evaluate with `flags` and OFREP's single-flag call answer (and expose) only what
they name; a bulk evaluate exposes the user to every running experiment of the project."""

from __future__ import annotations

from typing import Any

from tests.e2e.helpers import make_flag, make_project
from tests.support import Client, eventually

VARIANTS = [
    {"key": "control", "value": "a", "percentage": 50},
    {"key": "treatment", "value": "b", "percentage": 50},
]


def two_experiments(c: Client) -> dict[str, Any]:
    """A project with two flags, each with a running experiment."""
    project_id = make_project(c)
    out: dict[str, Any] = {"project_id": project_id}
    for key in ("checkout_flow", "other"):
        flag = make_flag(c, project_id, key=key)
        path = f"/api/v1/flags/{flag['id']}/experiments"
        body = {"name": key, "environment": "production", "variants": VARIANTS}
        experiment = c.post(path, body).json["data"]
        assert c.post(f"{path}/{experiment['id']}/start").status == 200
        out[key] = f"{path}/{experiment['id']}"
    return out


def exposed(c: Client, path: str) -> int:
    return sum(v["exposures"] for v in c.get(path).json["data"]["results"]["variants"])


def users(prefix: str, n: int = 30) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def test_evaluate_with_flags_answers_and_exposes_only_those(a: Client) -> None:
    w = two_experiments(a)
    for user in users("named"):
        body = {
            "project_id": w["project_id"],
            "environment": "production",
            "context": {"user_id": user},
            "flags": ["other", "no_such_flag"],
        }
        r = a.post("/api/v1/flags/evaluate", body)
        assert r.status == 200, r.body
        assert set(r.json["flags"]) == {"other"}  # an unknown key is simply absent
    # Exposures of one process go out in the same batches: once `other`'s have arrived, any
    # of checkout_flow's would have too.
    eventually(lambda: exposed(a, w["other"]) == 30)
    assert exposed(a, w["checkout_flow"]) == 0

    for user in users("named"):  # the same users, every flag: now exposed to both
        body = {"project_id": w["project_id"], "context": {"user_id": user}}
        assert set(a.post("/api/v1/flags/evaluate", body).json["flags"]) == {
            "checkout_flow",
            "other",
        }
    eventually(lambda: exposed(a, w["checkout_flow"]) == 30)
    assert exposed(a, w["other"]) == 30


def test_ofrep_single_flag_exposes_only_that_flag_and_bulk_exposes_all(a: Client) -> None:
    w = two_experiments(a)
    for user in users("single"):
        context = {"targetingKey": user, "project_id": w["project_id"]}
        r = a.post("/ofrep/v1/evaluate/flags/checkout_flow", {"context": context})
        assert r.status == 200 and r.json["reason"] == "SPLIT", r.body
    eventually(lambda: exposed(a, w["checkout_flow"]) == 30)
    assert exposed(a, w["other"]) == 0

    for user in users("bulk"):
        context = {"targetingKey": user, "project_id": w["project_id"]}
        r = a.post("/ofrep/v1/evaluate/flags", {"context": context})
        assert r.status == 200, r.body
    eventually(lambda: exposed(a, w["checkout_flow"]) == 60)
    eventually(lambda: exposed(a, w["other"]) == 30)
