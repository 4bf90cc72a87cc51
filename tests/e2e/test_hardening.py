"""Defects found by testing the service as an attacker and a demanding new user would, each
proved fixed over HTTP against real server processes (issue 11)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson

from tests.e2e.helpers import evaluate, make_flag, make_key, make_project, start_experiment
from tests.support import ROOT, Client, RedisProcess, ServerProcess, eventually


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def with_nested(body: dict[str, Any], field: str, depth: int) -> bytes:
    """`body` as JSON with `field` nested `depth` levels: deeper than orjson itself writes."""
    return orjson.dumps({**body, field: "HOLE"}).replace(b'"HOLE"', b"[" * depth + b"]" * depth)


def queue_depth(c: Client) -> float:
    for line in c.get("/metrics").body.decode().splitlines():
        if line.startswith("edge_exposure_queue_depth "):
            return float(line.split()[1])
    raise AssertionError("no edge_exposure_queue_depth")


# 1. Deep JSON --------------------------------------------------------------------------------


def test_deeply_nested_values_are_refused_and_the_project_stays_whole(a: Client) -> None:
    project_id = make_project(a)
    flag = {"project_id": project_id, "name": "J", "flag_type": "json"}
    for depth in (33, 252, 253, 600):
        raw = with_nested({**flag, "key": f"deep{depth}"}, "default_value", depth)
        r = a.post("/api/v1/flags", raw=raw)
        assert r.status == 422, (depth, r.body)
        assert "default_value" in r.json["details"]
    ok = a.post("/api/v1/flags", {**flag, "key": "deep32", "default_value": nested(32)})
    assert ok.status == 201
    deep = a.post("/api/v1/flags/projects", {"name": "S", "settings": {"x": nested(40)}})
    assert deep.status == 422 and "settings" in deep.json["details"]
    rule = a.post(
        f"/api/v1/flags/{ok.json['data']['id']}/rules",
        {"environment": "production", "conditions": [], "value": nested(40)},
    )
    assert rule.status == 422 and "value" in rule.json["details"]
    patched = a.patch(
        f"/api/v1/flags/{ok.json['data']['id']}", raw=with_nested({}, "default_value", 300)
    )
    assert patched.status == 422 and "default_value" in patched.json["details"]
    assert a.get(f"/api/v1/flags?project_id={project_id}").status == 200
    bulk = a.post("/ofrep/v1/evaluate/flags", {"context": {"project_id": project_id}})
    assert bulk.status == 200


# 2. A deleted experiment's events ------------------------------------------------------------


def test_exposures_in_flight_do_not_bring_a_deleted_experiment_back(
    a: Client, b: Client, redis_server: RedisProcess
) -> None:
    world = start_experiment(a)
    project_id, flag_id, experiment_id = (
        world["project_id"],
        world["flag_id"],
        world["experiment_id"],
    )
    eventually(lambda: evaluate(b, project_id, "u0")["checkout_flow"]["value"] != "control")
    for c in (a, b):  # buffered, not yet written (they flush every 250 ms)
        for i in range(200):
            evaluate(c, project_id, f"u{i}")
    assert a.delete(f"/api/v1/flags/{flag_id}").status == 204
    for c in (a, b):
        eventually(lambda c=c: queue_depth(c) == 0)
    r = redis_server.client()
    assert r.keys("{x:" + experiment_id + "}:exp:*") == []
    assert r.keys("{x:" + experiment_id + "}:conv:*") == []


# 3. One rule for what a user id is -------------------------------------------------------------


def test_user_ids_that_track_refuses_are_never_exposed(
    a: Client, redis_server: RedisProcess
) -> None:
    world = start_experiment(a)
    project_id, flag_id, experiment_id = (
        world["project_id"],
        world["flag_id"],
        world["experiment_id"],
    )
    body = {"project_id": project_id, "environment": "production"}
    empty = a.post("/api/v1/flags/evaluate", {**body, "context": {"user_id": ""}})
    assert empty.status == 200
    assert empty.json["flags"]["checkout_flow"] == {"value": "control", "rule_id": None}
    long = a.post("/api/v1/flags/evaluate", {**body, "context": {"user_id": "x" * 257}})
    assert long.status == 422 and "context.user_id" in long.json["details"]
    assert "integer" in long.json["details"]["context.user_id"]  # not "must be a string"
    assert (
        a.post("/api/v1/flags/evaluate", {**body, "context": {"user_id": "x" * 256}}).status == 200
    )
    ofrep = a.post(
        "/ofrep/v1/evaluate/flags",
        {"context": {"project_id": project_id, "targetingKey": "x" * 257}},
    )
    assert ofrep.status == 400 and ofrep.json["errorCode"] == "INVALID_CONTEXT"
    track = {"flag_id": flag_id, "experiment_id": experiment_id}
    for user_id in ("", "x" * 257):
        r = a.post("/api/v1/flags/track", {**track, "user_id": user_id})
        assert r.status == 422 and "user_id" in r.json["details"]
    eventually(lambda: queue_depth(a) == 0)
    r = redis_server.client()
    exposed = set().union(*(r.smembers(k) for k in r.keys("{x:" + experiment_id + "}:exp:*")))
    assert exposed == {b"x" * 256}


# 5. OFREP routes are exact ---------------------------------------------------------------------


def test_ofrep_answers_only_its_own_paths(a: Client) -> None:
    project_id = make_project(a)
    body = {"context": {"project_id": project_id}}
    assert a.post("/ofrep/v1/evaluate/flags", body).status == 200
    for path in (
        "/ofrep/v1/evaluate/flagsXYZ",
        "/ofrep/v1/evaluate/flags/",
        "/ofrep/v1/evaluate",
        "/ofrep/v1/whatever",
    ):
        r = a.post(path, body)
        assert (r.status, r.json) == (404, {"error": "Not found"}), path


# 11. No redirect built from the Host header ----------------------------------------------------


def test_a_trailing_slash_is_not_found_and_never_redirected(a: Client) -> None:
    for method, path in (
        ("POST", "/api/v1/flags/evaluate/"),
        ("GET", "/api/v1/flags/projects/"),
        ("GET", "/healthz/"),
    ):
        r = a.request(method, path, {} if method == "POST" else None,
                      headers={"Host": "evil.example"})  # fmt: skip
        assert r.status == 404 and "location" not in r.headers, path


# 9. The bootstrap key's return is said out loud -------------------------------------------------


def test_a_revoked_bootstrap_key_comes_back_with_a_warning(
    redis_factory: Callable[..., RedisProcess], server_factory: Callable[..., ServerProcess]
) -> None:
    redis = redis_factory()
    server = server_factory(redis.url)
    c = server.client()
    admin_id, admin = make_key(c, name="admin")
    bootstrap = next(k for k in c.get("/api/v1/keys").json["data"] if k["name"] == "bootstrap")
    assert c.with_token(admin).delete(f"/api/v1/keys/{bootstrap['id']}").status == 204
    assert c.get("/api/v1/flags/projects").status == 401
    assert "was revoked" not in server.log.read_text()
    server.stop()
    server.start()
    assert "EDGE_BOOTSTRAP_KEY names a key that was revoked" in server.log.read_text()
    assert server.client().get("/api/v1/flags/projects").status == 200
    listed = [k["id"] for k in server.client(admin).get("/api/v1/keys").json["data"]]
    assert bootstrap["id"] in listed and admin_id in listed


# 10. Local files are private --------------------------------------------------------------------


def test_the_data_directory_and_snapshot_are_private(a: Client, servers: Any) -> None:
    make_project(a)  # a change: the snapshot file is (re)written 0.5 s later
    data_dir = servers[0].data_dir
    snapshot = data_dir / "snapshot.json"
    eventually(snapshot.exists)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600


# 12. Rough edges ----------------------------------------------------------------------------


def test_evaluate_lists_flags_in_creation_order(a: Client) -> None:
    project_id = make_project(a)
    # Past 128 fields Redis keeps a hash in a table, whose order is not the insertion order.
    created = [f"f{(i * 7919) % 1000:03d}" for i in range(150)]
    for key in created:
        make_flag(a, project_id, key=key)
    r = a.post("/api/v1/flags/evaluate", {"project_id": project_id, "context": {}})
    assert list(orjson.loads(r.body)["flags"]) == created


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )


def test_the_cli_says_in_one_line_when_redis_cannot_be_reached() -> None:
    for url in ("redis://127.0.0.1:1/0", "nonsense://"):
        out = cli("keys", "list", REDIS_URL=url)
        assert out.returncode == 1
        assert b"Traceback" not in out.stderr
        assert out.stderr.count(b"\n") == 1 and out.stderr.startswith(b"error: cannot reach")


def test_the_cli_lists_in_creation_order_and_refuses_empty_environments(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    env = {"REDIS_URL": redis_factory().url}
    for name in ("k3", "k1", "k2"):
        assert cli("keys", "create", "--name", name, **env).returncode == 0
    assert [k["name"] for k in orjson.loads(cli("keys", "list", **env).stdout)] == [
        "k3",
        "k1",
        "k2",
    ]
    for name in ("P3", "P1", "P2"):
        assert cli("projects", "create", "--name", name, **env).returncode == 0
    listed = orjson.loads(cli("projects", "list", **env).stdout)
    assert [p["name"] for p in listed] == ["P3", "P1", "P2"]
    empty = cli("projects", "create", "--name", "E", "--environments", "", **env)
    assert empty.returncode == 1 and b"environments[0]" in empty.stderr
