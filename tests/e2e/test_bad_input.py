"""Bad input: the documented status and error shape, and nothing stored changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import VARIANTS, config_digest, make_experiment, make_flag, make_project
from tests.support import Client, RedisProcess

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def world(a: Client) -> Iterator[dict[str, Any]]:
    project_id = make_project(a)
    flag = make_flag(a, project_id)
    experiment = make_experiment(a, flag["id"])
    yield {"project_id": project_id, "flag_id": flag["id"], "experiment_id": experiment["id"]}


def flag_body(w: dict[str, Any], **change: Any) -> dict[str, Any]:
    body = {"project_id": w["project_id"], "key": "other", "name": "Other",
            "flag_type": "boolean", "default_value": False}  # fmt: skip
    body.update(change)
    return {k: v for k, v in body.items() if v is not ...}


def experiment_body(**change: Any) -> dict[str, Any]:
    return {"name": "E2", "environment": "production", "variants": VARIANTS, **change}


# (name, method, path template, body or raw bytes, status, error message, detail field)
CASES: list[tuple[str, str, str, Any, int, str, str | None]] = [
    ("malformed json", "POST", "/api/v1/flags", b"{not json", 400, "Malformed JSON body", None),
    ("json array", "POST", "/api/v1/flags", b"[1, 2]", 400, "Malformed JSON body", None),
    ("empty body", "POST", "/api/v1/flags", b"", 400, "Malformed JSON body", None),
    ("wrong flag type", "POST", "/api/v1/flags", lambda w: flag_body(w, flag_type="color"),
     422, "Validation failed", "flag_type"),
    ("default of wrong type", "POST", "/api/v1/flags",
     lambda w: flag_body(w, default_value="yes"), 422, "Validation failed", "default_value"),
    ("missing name", "POST", "/api/v1/flags", lambda w: flag_body(w, name=...),
     422, "Validation failed", "name"),
    ("bad flag key", "POST", "/api/v1/flags", lambda w: flag_body(w, key="has space"),
     422, "Validation failed", "key"),
    ("duplicate flag key", "POST", "/api/v1/flags", lambda w: flag_body(w, key="checkout_flow"),
     409, "A flag with this key already exists in this project", None),
    ("unknown project", "POST", "/api/v1/flags", lambda w: flag_body(w, project_id=MISSING),
     404, "Not found", None),
    ("name not a string", "PATCH", "/api/v1/flags/{flag_id}", {"name": 5},
     422, "Validation failed", "name"),
    ("enabled not a bool", "PATCH", "/api/v1/flags/{flag_id}", {"enabled": "yes"},
     422, "Validation failed", "enabled"),
    ("patch default of wrong type", "PATCH", "/api/v1/flags/{flag_id}", {"default_value": 1},
     422, "Validation failed", "default_value"),
    ("unknown flag", "PATCH", f"/api/v1/flags/{MISSING}", {"name": "x"}, 404, "Not found", None),
    ("not a uuid", "GET", "/api/v1/flags/nope", None, 404, "Not found", None),
    ("percentages not 100", "POST", "/api/v1/flags/{flag_id}/experiments",
     lambda w: experiment_body(variants=[{**VARIANTS[0], "percentage": 60}, VARIANTS[1]]),
     422, "Validation failed", "variants"),
    ("duplicate variant keys", "POST", "/api/v1/flags/{flag_id}/experiments",
     lambda w: experiment_body(variants=[VARIANTS[0], {**VARIANTS[1], "key": "control"}]),
     422, "Validation failed", "variants[1].key"),
    ("variant value of wrong type", "POST", "/api/v1/flags/{flag_id}/experiments",
     lambda w: experiment_body(variants=[VARIANTS[0], {**VARIANTS[1], "value": 3}]),
     422, "Validation failed", "variants[1].value"),
    ("fractional variant percentage", "POST", "/api/v1/flags/{flag_id}/experiments",
     lambda w: experiment_body(variants=[{**VARIANTS[0], "percentage": 49.5},
                                         {**VARIANTS[1], "percentage": 50.5}]),
     422, "Validation failed", "variants[0].percentage"),
    ("one variant", "POST", "/api/v1/flags/{flag_id}/experiments",
     lambda w: experiment_body(variants=[{**VARIANTS[0], "percentage": 100}]),
     422, "Validation failed", "variants"),
    ("unknown environment", "POST", "/api/v1/flags/{flag_id}/experiments",
     lambda w: experiment_body(environment="moon"), 422, "Validation failed", "environment"),
    ("unknown experiment", "POST", f"/api/v1/flags/{{flag_id}}/experiments/{MISSING}/start",
     None, 404, "Not found", None),
    ("evaluate unknown environment", "POST", "/api/v1/flags/evaluate",
     lambda w: {"project_id": w["project_id"], "environment": "moon", "context": {}},
     422, "Validation failed", "environment"),
    ("evaluate context not an object", "POST", "/api/v1/flags/evaluate",
     lambda w: {"project_id": w["project_id"], "context": [1]},
     422, "Validation failed", "context"),
    ("evaluate unknown project", "POST", "/api/v1/flags/evaluate",
     {"project_id": MISSING, "context": {}}, 404, "Not found", None),
    ("track draft experiment", "POST", "/api/v1/flags/track",
     lambda w: {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"], "user_id": "u"},
     409, "Experiment is not running", None),
    ("track other flag", "POST", "/api/v1/flags/track",
     lambda w: {"flag_id": MISSING, "experiment_id": w["experiment_id"], "user_id": "u"},
     404, "Not found", None),
    ("track without user", "POST", "/api/v1/flags/track",
     lambda w: {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"]},
     422, "Validation failed", "user_id"),
    ("track bad goal", "POST", "/api/v1/flags/track",
     lambda w: {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"], "user_id": "u",
                "goal": "a b"}, 422, "Validation failed", "goal"),
    ("project with unknown default environment", "POST", "/api/v1/flags/projects",
     {"name": "P", "environments": ["a"], "settings": {"default_environment": "b"}},
     422, "Validation failed", "settings.default_environment"),
    ("key with unknown scope", "POST", "/api/v1/keys", {"name": "k", "scopes": ["root"]},
     422, "Validation failed", "scopes"),
    ("unknown route", "GET", "/api/v1/nothing", None, 404, "Not found", None),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_and_changes_nothing(
    case: tuple[str, str, str, Any, int, str, str | None],
    a: Client,
    world: dict[str, Any],
    redis_server: RedisProcess,
) -> None:
    _, method, path, body, status, message, field = case
    before = config_digest(redis_server, world["project_id"])
    if callable(body):
        body = body(world)
    kwargs: dict[str, Any] = {"raw": body} if isinstance(body, bytes) else {"body": body}
    r = a.request(method, path.format(**world), **kwargs)
    assert r.status == status, r.body
    assert r.json["error"] == message
    if field is not None:
        assert field in r.json["details"], r.json
    assert config_digest(redis_server, world["project_id"]) == before


def test_oversized_body_is_413(a: Client, world: dict[str, Any]) -> None:
    big = {"project_id": world["project_id"], "context": {"x": "a" * 70_000}}
    for path in ("/api/v1/flags/evaluate", "/api/v1/flags"):
        r = a.post(path, big)
        assert (r.status, r.json) == (413, {"error": "Request body too large"})
