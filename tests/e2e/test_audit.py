"""`GET /api/v1/flags/audit` on two real servers: every write route leaves its entry, by the key
that made it, with the records before and after (never a key's token or its hash); pages,
filters, and who may read which log."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson

from tests.e2e.helpers import make_flag, make_key, make_project
from tests.support import ROOT, Client, RedisProcess, ServerProcess

VARIANTS = [
    {"key": "control", "value": "a", "percentage": 50},
    {"key": "treatment", "value": "b", "percentage": 50},
]


def log(client: Client, **query: Any) -> list[dict[str, Any]]:
    """Every entry the query names, newest first, following the cursors."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        r = client.get(f"/api/v1/flags/audit?{qs}")
        assert r.status == 200, r.body
        entries += r.json["data"]
        cursor = r.json["meta"]["next_cursor"]
        if cursor is None:
            return entries


def newest(client: Client, count: int, **query: Any) -> list[dict[str, Any]]:
    """The `count` newest entries, oldest of them first (the order they were written in)."""
    qs = "&".join(f"{k}={v}" for k, v in {**query, "limit": count}.items())
    r = client.get(f"/api/v1/flags/audit?{qs}")
    assert r.status == 200, r.body
    return list(reversed(r.json["data"]))


def test_every_write_route_leaves_its_entry_by_its_key(a: Client, b: Client) -> None:
    key_id, token = make_key(a, name="release manager")
    me = a.with_token(token)
    actor = {"key_id": key_id, "key_name": "release manager"}

    project_id = make_project(me)
    [created] = newest(b, 1, resource_id=project_id)
    assert (created["action"], created["actor"], created["project_id"]) == (
        "project.created",
        actor,
        None,
    )

    flag = make_flag(me, project_id)
    flag_path = f"/api/v1/flags/{flag['id']}"
    renamed = me.patch(flag_path, {"name": "Checkout v2"}).json["data"]
    toggled = me.patch(flag_path, {"enabled": True}).json["data"]
    rules = f"{flag_path}/rules"
    rule = me.post(rules, {"environment": "production", "value": "x"}).json["data"]
    rule_patched = me.patch(f"{rules}/{rule['id']}", {"value": "y"}).json["data"]
    assert me.delete(f"{rules}/{rule['id']}").status == 204
    segment = me.post(
        "/api/v1/flags/segments", {"project_id": project_id, "name": "Beta", "rules": []}
    ).json["data"]
    segment_path = f"/api/v1/flags/segments/{segment['id']}"
    segment_patched = me.patch(segment_path, {"name": "Beta 2"}).json["data"]
    assert me.delete(segment_path).status == 204
    experiments = f"{flag_path}/experiments"
    experiment = me.post(
        experiments, {"name": "E", "environment": "production", "variants": VARIANTS}
    ).json["data"]
    experiment_path = f"{experiments}/{experiment['id']}"
    assert me.patch(experiment_path, {"name": "E2"}).status == 200
    assert me.post(experiment_path + "/start").status == 200
    assert me.post(experiment_path + "/stop").status == 200
    assert me.delete(flag_path).status == 204

    entries = list(reversed(log(b, project_id=project_id)))
    assert [(e["action"], e["resource_id"]) for e in entries] == [
        ("flag.created", flag["id"]),
        ("flag.updated", flag["id"]),
        ("flag.toggled", flag["id"]),
        ("rule.created", rule["id"]),
        ("rule.updated", rule["id"]),
        ("rule.deleted", rule["id"]),
        ("segment.created", segment["id"]),
        ("segment.updated", segment["id"]),
        ("segment.deleted", segment["id"]),
        ("experiment.created", experiment["id"]),
        ("experiment.updated", experiment["id"]),
        ("experiment.started", experiment["id"]),
        ("experiment.stopped", experiment["id"]),
        ("flag.deleted", flag["id"]),
        ("experiment.deleted", experiment["id"]),  # with its flag, in the same write
    ]
    assert all(e["actor"] == actor and e["project_id"] == project_id for e in entries)
    by_action = {e["action"]: e for e in entries}
    assert by_action["flag.created"]["before"] is None
    assert by_action["flag.created"]["after"] == flag
    assert by_action["flag.toggled"]["before"] == renamed
    assert by_action["flag.toggled"]["after"] == toggled
    assert by_action["rule.updated"]["after"] == rule_patched
    assert by_action["rule.deleted"]["before"] == rule_patched
    assert by_action["rule.deleted"]["after"] is None
    assert by_action["segment.updated"]["after"] == segment_patched
    assert by_action["flag.deleted"]["before"] == toggled
    versions = [e["version"] for e in entries]
    assert versions == sorted(versions)
    assert versions[-1] == versions[-2]  # one write, one version
    ids = [tuple(map(int, e["id"].split("-"))) for e in entries]
    assert ids == sorted(set(ids))  # stream ids: unique, in the order of the writes


def test_key_entries_never_show_the_token_or_its_hash(a: Client, b: Client) -> None:
    key_id, token = make_key(a, name="short-lived", scopes=["flags:read"])
    assert a.delete(f"/api/v1/keys/{key_id}").status == 204
    created, revoked = newest(b, 2, resource_id=key_id)
    assert (created["action"], revoked["action"]) == ("key.created", "key.revoked")
    assert created["after"]["name"] == "short-lived" and created["before"] is None
    assert revoked["after"]["revoked_at"] is not None
    assert revoked["before"].get("revoked_at") is None
    raw = orjson.dumps([created, revoked]).decode()
    assert "token_sha256" not in raw
    assert token not in raw and token[len("kr_live_") :] not in raw
    assert created["actor"]["key_name"] == "bootstrap"


def test_the_log_pages_newest_first_and_filters_by_resource(a: Client) -> None:
    project_id = make_project(a)
    flags = [make_flag(a, project_id, key=f"f{i}") for i in range(3)]
    for flag in flags:
        assert a.patch(f"/api/v1/flags/{flag['id']}", {"enabled": True}).status == 200

    first = a.get(f"/api/v1/flags/audit?project_id={project_id}&limit=4")
    assert first.status == 200
    assert first.headers["cache-control"] == "no-store"
    page = first.json["data"]
    assert [e["action"] for e in page] == ["flag.toggled"] * 3 + ["flag.created"]
    cursor = first.json["meta"]["next_cursor"]
    assert cursor == page[-1]["id"]
    rest = a.get(f"/api/v1/flags/audit?project_id={project_id}&limit=4&cursor={cursor}").json
    assert [e["action"] for e in rest["data"]] == ["flag.created"] * 2
    assert rest["meta"]["next_cursor"] is None
    assert [e["resource_id"] for e in page + rest["data"]] == [
        *(f["id"] for f in reversed(flags)),
        *(f["id"] for f in reversed(flags)),
    ]

    one = log(a, project_id=project_id, resource_id=flags[1]["id"])
    assert [e["action"] for e in one] == ["flag.toggled", "flag.created"]


def test_bad_queries_are_refused_with_the_field_named(a: Client) -> None:
    project_id = make_project(a)
    for query, field in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("cursor=yesterday", "cursor"),
        ("resource_id=42", "resource_id"),
    ]:
        r = a.get(f"/api/v1/flags/audit?project_id={project_id}&{query}")
        assert r.status == 422, (query, r.body)
        assert field in r.json["details"]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert a.get(f"/api/v1/flags/audit?project_id={unknown}").status == 404


def test_who_may_read_which_log(a: Client) -> None:
    project_id, other = make_project(a), make_project(a)
    _, restricted = make_key(a, scopes=["flags:read"], project_ids=[project_id])
    r = a.with_token(restricted)
    assert r.get(f"/api/v1/flags/audit?project_id={project_id}").status == 200
    assert r.get(f"/api/v1/flags/audit?project_id={other}").status == 403
    assert r.get("/api/v1/flags/audit").status == 403  # the global log names every project
    _, evaluator = make_key(a, scopes=["flags:evaluate"])
    assert a.with_token(evaluator).get(f"/api/v1/flags/audit?project_id={project_id}").status == 403
    assert a.with_token(None).get("/api/v1/flags/audit").status == 401
    _, reader = make_key(a, scopes=["flags:read"])
    assert a.with_token(reader).get("/api/v1/flags/audit").status == 200


def test_the_cli_and_the_bootstrap_write_as_named_local_actors(
    redis_server: RedisProcess, servers: tuple[ServerProcess, ServerProcess], a: Client
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "projects", "create", "--name", "From the CLI"],
        env={**os.environ, "REDIS_URL": redis_server.url},
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    )
    project_id = orjson.loads(out.stdout)["id"]
    [entry] = newest(a, 1, resource_id=project_id)
    assert (entry["action"], entry["actor"]) == (
        "project.created",
        {"key_id": None, "key_name": "cli"},
    )

    bootstrap = next(k for k in a.get("/api/v1/keys").json["data"] if k["name"] == "bootstrap")
    first = log(a, resource_id=bootstrap["id"])[-1]
    assert (first["action"], first["actor"]) == (
        "key.created",
        {"key_id": None, "key_name": "bootstrap"},
    )
