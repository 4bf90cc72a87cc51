"""The CLI reaches the server's Redis: REDIS_URL, or the embedded one under EDGE_DATA_DIR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import redis

from tests.support import ROOT, RedisProcess, ServerProcess, eventually


def cli(*args: str, **env: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return orjson.loads(out.stdout)


def test_cli_keys_and_projects_work_against_a_running_server(
    redis_server: RedisProcess, servers: tuple[ServerProcess, ServerProcess]
) -> None:
    env = {"REDIS_URL": redis_server.url}
    project = cli("projects", "create", "--name", "CLI project", **env)
    assert project["environments"] == ["production", "staging", "development"]
    assert project["id"] in [p["id"] for p in cli("projects", "list", **env)]

    key = cli("keys", "create", "--name", "ci", "--scopes", "flags:read", **env)
    assert key["token"].startswith("kr_live_")
    assert key["id"] in [k["id"] for k in cli("keys", "list", **env)]
    server = servers[0].client(key["token"])
    eventually(lambda: server.get(f"/api/v1/flags/projects/{project['id']}").status == 200)

    cli("keys", "revoke", key["id"], **env)
    eventually(lambda: server.get(f"/api/v1/flags/projects/{project['id']}").status == 401)


def test_cli_rejects_invalid_input_without_a_traceback(redis_server: RedisProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "keys", "create", "--name", "x", "--scopes", "root"],
        env={**os.environ, "REDIS_URL": redis_server.url},
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert b"Validation failed" in out.stderr and b"Traceback" not in out.stderr


def test_without_redis_url_serve_and_cli_share_an_embedded_persistent_redis(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    try:
        project = subprocess.run(
            [sys.executable, "-m", "proxy", "projects", "create", "--name", "Embedded"],
            env={**env, "EDGE_DATA_DIR": str(data)},
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        )
        project_id = orjson.loads(project.stdout)["id"]
        server = ServerProcess(None, data)
        server.env.pop("REDIS_URL", None)
        server.start()
        try:
            c = server.client()
            eventually(lambda: c.get(f"/api/v1/flags/projects/{project_id}").status == 200)
        finally:
            server.stop()
        assert (data / "redis" / "appendonly.aof").exists() or any((data / "redis").iterdir())
    finally:
        url_file = data / "redis" / "url"
        if url_file.exists():
            client = redis.Redis.from_url(url_file.read_text().strip())
            client.shutdown(nosave=True)
