"""The command line: `serve`, `keys create|list|revoke`, `projects create|list`.

Every command reaches the same Redis as the server: REDIS_URL, or the embedded one under
EDGE_DATA_DIR (started here if it is not running yet). Writes go through the same domain and
store code as the HTTP routes, so they are validated and published the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from proxy.control.common import new_id, now, validated
from proxy.control.keys import create_key, revoke_key, view
from proxy.control.projects import add_project
from proxy.domain import model
from proxy.errors import ApiError
from proxy.logs import log_config
from proxy.settings import Settings, SettingsError
from proxy.store.config import ConfigStore
from proxy.store.connection import connect, resolve_url
from proxy.store.keys import GLOBAL


def _print(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _with_store(settings: Settings, work: Callable[[ConfigStore], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        redis = connect(settings)
        try:
            return await work(ConfigStore(redis))
        finally:
            await redis.aclose()

    return asyncio.run(run())


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    # Uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: make that
    # one a no-op, so a graceful stop exits 0 as orchestrators expect.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if settings.redis_mode != "sentinel":
        # Resolve once, before workers fork, so they all share the embedded Redis.
        os.environ["REDIS_URL"] = resolve_url(settings)
    uvicorn.run(
        "proxy.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
    )
    return 0


def keys_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        data: dict[str, Any] = {"name": args.name, "scopes": args.scopes.split(",")}
        if args.project_ids:
            data["project_ids"] = args.project_ids.split(",")

        async def create(store: ConfigStore) -> Any:
            key, token, _ = await create_key(store, data)
            return {**key, "token": token}

        key = _with_store(settings, create)
        _print(key)
        sys.stderr.write("The token is shown once: store it now.\n")
    elif args.action == "list":
        state = _with_store(settings, lambda s: s.load(GLOBAL))
        _print([view(k) for k in state.of("keys").values()])
    else:
        _with_store(settings, lambda s: s.mutate(GLOBAL, lambda st: revoke_key(st, args.key_id)))
        _print({"revoked": args.key_id})
    return 0


def projects_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        data: dict[str, Any] = {"name": args.name}
        if args.slug:
            data["slug"] = args.slug
        if args.environments:
            data["environments"] = args.environments.split(",")
        project = validated(lambda: model.new_project(data, id=new_id(), now=now()))
        result, _ = _with_store(
            settings, lambda s: s.mutate(GLOBAL, lambda st: add_project(st, project))
        )
        _print(result)
    else:
        state = _with_store(settings, lambda s: s.load(GLOBAL))
        _print(list(state.of("projects").values()))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m proxy", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the HTTP server (settings from the environment)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.set_defaults(run=serve)

    kp = sub.add_parser("keys", help="API keys")
    kp.set_defaults(run=keys_command)
    k = kp.add_subparsers(dest="action", required=True)
    kc = k.add_parser("create", help="create a key and print its token once")
    kc.add_argument("--name", required=True)
    kc.add_argument("--scopes", default="*", help="comma-separated: flags:read,flags:write,...")
    kc.add_argument("--project-ids", help="comma-separated project ids (default: all)")
    k.add_parser("list")
    kr = k.add_parser("revoke")
    kr.add_argument("key_id")

    pr = sub.add_parser("projects", help="projects")
    pa = pr.add_subparsers(dest="action", required=True)
    pc = pa.add_parser("create")
    pc.add_argument("--name", required=True)
    pc.add_argument("--slug")
    pc.add_argument("--environments", help="comma-separated (default production,staging,...)")
    pa.add_parser("list")
    pr.set_defaults(run=projects_command)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        code: int = args.run(settings, args)
        return code
    except SettingsError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except ApiError as e:
        sys.stderr.write(f"error: {e.body().decode()}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
