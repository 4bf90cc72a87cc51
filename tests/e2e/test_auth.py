"""Keys: tokens hashed at rest, scopes, project restriction, revocation on every process."""

from __future__ import annotations

from tests.e2e.helpers import evaluate, make_flag, make_key, make_project
from tests.support import Client, RedisProcess, eventually

INVALID = {"error": "Invalid or missing API key"}
SCOPE = {"error": "Insufficient scope"}


def test_missing_malformed_and_unknown_keys_are_401(a: Client) -> None:
    project_id = make_project(a)
    body = {"project_id": project_id, "context": {}}
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer kr_live_no"}):
        c = a.with_token(None)
        for method, path in (("POST", "/api/v1/flags/evaluate"), ("GET", "/api/v1/keys")):
            r = c.request(method, path, body if method == "POST" else None, headers=headers)
            assert (r.status, r.json) == (401, INVALID)


def test_created_token_has_the_documented_form_and_is_stored_only_hashed(
    a: Client, redis_server: RedisProcess
) -> None:
    key_id, token = make_key(a, scopes=["flags:read"])
    assert token.startswith("kr_live_") and len(token) == len("kr_live_") + 43
    listed = {k["id"]: k for k in a.get("/api/v1/keys").json["data"]}
    assert listed[key_id]["prefix"] == token[:12]
    assert "token" not in listed[key_id]
    dump = b"".join(v for v in redis_server.client().hgetall("{g}:keys").values())
    assert token.encode() not in dump


def test_revoked_key_is_rejected_on_every_process(a: Client, b: Client) -> None:
    project_id = make_project(a)
    key_id, token = make_key(a)
    for c in (a, b):
        eventually(lambda c=c: c.with_token(token).get("/api/v1/flags/projects").status == 200)
    assert a.delete(f"/api/v1/keys/{key_id}").status == 204
    for c in (a, b):
        eventually(
            lambda c=c: (
                c.with_token(token).post("/api/v1/flags/evaluate", {"project_id": project_id}).json
                == INVALID
            )
        )
    assert a.delete(f"/api/v1/keys/{key_id}").status == 404


def test_scopes_limit_what_a_key_can_do(a: Client) -> None:
    project_id = make_project(a)
    flag = make_flag(a, project_id)
    _, read = make_key(a, scopes=["flags:read"])
    _, evaluate_only = make_key(a, scopes=["flags:evaluate"])
    _, write = make_key(a, scopes=["flags:write"])
    r, e, w = a.with_token(read), a.with_token(evaluate_only), a.with_token(write)

    assert r.get(f"/api/v1/flags/{flag['id']}").status == 200
    assert evaluate(r, project_id, "u")["checkout_flow"]["value"] == "control"
    assert r.patch(f"/api/v1/flags/{flag['id']}", {"name": "x"}).json == SCOPE

    assert evaluate(e, project_id, "u")["checkout_flow"]["value"] == "control"
    assert e.get(f"/api/v1/flags/{flag['id']}").json == SCOPE
    assert e.get(f"/api/v1/flags?project_id={project_id}").json == SCOPE

    assert w.patch(f"/api/v1/flags/{flag['id']}", {"name": "x"}).status == 200
    body = {"project_id": project_id}
    assert w.post("/api/v1/flags/evaluate", body).json == SCOPE
    for c in (r, e, w):
        assert c.get("/api/v1/keys").status == 403


def test_project_restriction_hides_other_projects(a: Client) -> None:
    mine, other = make_project(a), make_project(a)
    other_flag = make_flag(a, other)
    _, token = make_key(a, project_ids=[mine])
    c = a.with_token(token)
    eventually(lambda: c.get("/api/v1/flags/projects").status == 200)
    listed = [p["id"] for p in c.get("/api/v1/flags/projects").json["data"]]
    assert listed == [mine]
    assert c.get(f"/api/v1/flags/projects/{other}").json == SCOPE
    assert c.get(f"/api/v1/flags/{other_flag['id']}").json == SCOPE
    assert c.post("/api/v1/flags/evaluate", {"project_id": other}).json == SCOPE
    assert c.post("/api/v1/flags/projects", {"name": "new"}).json == SCOPE
    assert c.get("/api/v1/keys").json == SCOPE  # a restricted key cannot mint keys
    assert evaluate(c, mine, "u") == {}


def test_key_creation_rejects_unknown_projects(a: Client) -> None:
    r = a.post(
        "/api/v1/keys",
        {"name": "k", "scopes": ["*"], "project_ids": ["00000000-0000-4000-8000-000000000000"]},
    )
    assert r.status == 422 and "project_ids[0]" in r.json["details"]
