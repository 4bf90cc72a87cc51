"""Who may do what, and what no input can do: an authorization matrix, a fuzz of every
route's body, header limits and key-name injection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.helpers import config_digest, start_experiment
from tests.support import Client, RedisProcess


@pytest.fixture(scope="module")
def world(servers: Any) -> Iterator[dict[str, Any]]:
    a = servers[0].client()
    ids: dict[str, Any] = {}
    for name in ("p1", "p2"):
        w = start_experiment(a)
        pid, flag_id = w["project_id"], w["flag_id"]
        rule = a.post(
            f"/api/v1/flags/{flag_id}/rules",
            {"environment": "production", "conditions": [], "value": "x"},
        ).json["data"]
        seg = a.post(
            "/api/v1/flags/segments",
            {"project_id": pid, "name": "s", "match_type": "all", "rules": []},
        ).json["data"]
        ids[name] = {"project": pid, "flag": flag_id, "experiment": w["experiment_id"],
                     "rule": rule["id"], "segment": seg["id"]}  # fmt: skip
    keys = {}
    for name, body in {
        "admin": {"scopes": ["*"]},
        "read": {"scopes": ["flags:read"]},
        "write": {"scopes": ["flags:write"]},
        "evaluate": {"scopes": ["flags:evaluate"]},
        "p1_all": {"scopes": ["*"], "project_ids": [ids["p1"]["project"]]},
        "p1_read": {"scopes": ["flags:read"], "project_ids": [ids["p1"]["project"]]},
    }.items():
        keys[name] = a.post("/api/v1/keys", {"name": name, **body}).json["data"]["token"]
    yield {"ids": ids, "keys": keys}


# (method, path, body, what it needs: read | write | evaluate | admin)
ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/v1/flags/projects/{project}", None, "read"),
    ("GET", "/api/v1/flags?project_id={project}", None, "read"),
    ("GET", "/api/v1/flags/{flag}", None, "read"),
    ("PATCH", "/api/v1/flags/{flag}", {"description": "d"}, "write"),
    ("GET", "/api/v1/flags/{flag}/rules", None, "read"),
    ("PATCH", "/api/v1/flags/{flag}/rules/{rule}", {"enabled": True}, "write"),
    ("GET", "/api/v1/flags/segments?project_id={project}", None, "read"),
    ("GET", "/api/v1/flags/segments/{segment}", None, "read"),
    ("PATCH", "/api/v1/flags/segments/{segment}", {"description": "d"}, "write"),
    ("GET", "/api/v1/flags/{flag}/experiments", None, "read"),
    ("GET", "/api/v1/flags/{flag}/experiments/{experiment}", None, "read"),
    ("PATCH", "/api/v1/flags/{flag}/experiments/{experiment}", {"name": "E"}, "write"),
    ("POST", "/api/v1/flags/evaluate", {"project_id": "{project}"}, "evaluate"),
    ("POST", "/api/v1/flags/track",
     {"flag_id": "{flag}", "experiment_id": "{experiment}", "user_id": "u"}, "evaluate"),
    ("POST", "/ofrep/v1/evaluate/flags",
     {"context": {"project_id": "{project}", "targetingKey": "u"}}, "evaluate"),
    ("GET", "/api/v1/keys", None, "admin"),
]  # fmt: skip

SCOPES = {
    "admin": {"read", "write", "evaluate", "admin"},
    "read": {"read", "evaluate"},
    "write": {"write"},
    "evaluate": {"evaluate"},
    "p1_all": {"read", "write", "evaluate"},
    "p1_read": {"read", "evaluate"},
}


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("key", list(SCOPES))
@pytest.mark.parametrize("project", ["p1", "p2"])
def test_authorization_matrix(a: Client, world: dict[str, Any], key: str, project: str) -> None:
    client = a.with_token(world["keys"][key])
    ids = world["ids"][project]
    for method, path, body, need in ROUTES:
        r = client.request(method, fill(path, ids), fill(body, ids))
        restricted_out = key.startswith("p1") and project == "p2" and need != "admin"
        allowed = need in SCOPES[key] and not restricted_out
        if allowed:
            assert r.status < 400, (key, project, method, path, r.status, r.body)
        else:
            assert (r.status, r.json) == (403, {"error": "Insufficient scope"}), (key, path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip

FIELDS = ["project_id", "key", "name", "flag_type", "default_value", "enabled", "environment",
          "conditions", "value", "percentage", "segment_id", "variants", "traffic_percentage",
          "context", "flag_id", "experiment_id", "user_id", "goal", "rules", "match_type",
          "position", "tags", "description", "scopes", "project_ids", "environments"]  # fmt: skip

FUZZED = [
    ("POST", "/api/v1/flags/projects"),
    ("POST", "/api/v1/keys"),
    ("POST", "/api/v1/flags"),
    ("PATCH", "/api/v1/flags/{flag}"),
    ("POST", "/api/v1/flags/{flag}/rules"),
    ("PATCH", "/api/v1/flags/{flag}/rules/{rule}"),
    ("POST", "/api/v1/flags/segments"),
    ("PATCH", "/api/v1/flags/segments/{segment}"),
    ("POST", "/api/v1/flags/{flag}/experiments"),
    ("PATCH", "/api/v1/flags/{flag}/experiments/{experiment}"),
    ("POST", "/api/v1/flags/evaluate"),
    ("POST", "/api/v1/flags/track"),
    ("POST", "/ofrep/v1/evaluate/flags/checkout_flow"),
]


@pytest.mark.parametrize(("method", "path"), FUZZED)
def test_fuzzed_bodies_never_cause_a_5xx_and_rejected_ones_change_nothing(
    a: Client, world: dict[str, Any], redis_server: RedisProcess, method: str, path: str
) -> None:
    ids = world["ids"]["p1"]
    projects = [world["ids"][name]["project"] for name in ("p1", "p2")]
    real = st.sampled_from([ids["project"], ids["flag"], ids["experiment"], ids["segment"]])
    field_value = st.one_of(json_values, real, st.sampled_from(["production", "boolean"]))
    bodies = st.one_of(
        json_values, st.dictionaries(st.sampled_from(FIELDS), field_value, max_size=6)
    )

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=bodies)
    def check(body: Any) -> None:
        before = config_digest(redis_server, *projects)
        r = a.request(method, fill(path, ids), body)
        assert r.status < 500, (body, r.status, r.body)
        assert "Traceback" not in r.body.decode(errors="replace")
        if (r.status >= 400 and r.status != 404) or r.status == 404:
            assert config_digest(redis_server, *projects) == before, body

    check()


def test_headers_over_the_limit_are_rejected(a: Client) -> None:
    r = a.get("/api/v1/flags/projects", headers={"X-Padding": "a" * 20_000})
    assert (r.status, r.json) == (431, {"error": "Request headers too large"})


def test_user_ids_and_goals_never_become_part_of_a_key_name(
    a: Client, world: dict[str, Any], redis_server: RedisProcess
) -> None:
    ids = world["ids"]["p1"]
    before = set(redis_server.client().keys("*"))
    body = {"flag_id": ids["flag"], "experiment_id": ids["experiment"],
            "user_id": "}{p:evil}:flags\r\n*1\r\n$8\r\nFLUSHALL"}  # fmt: skip
    assert a.post("/api/v1/flags/track", body).status == 200
    assert a.post("/api/v1/flags/track", {**body, "goal": "{p:x}"}).status == 422
    new_keys = set(redis_server.client().keys("*")) - before
    assert all(b"evil" not in k and b"FLUSHALL" not in k for k in new_keys)
    assert redis_server.client().dbsize() >= len(before)
