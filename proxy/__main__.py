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
from redis.exceptions import RedisError

from proxy.domain import access, audit, changes, model
from proxy.errors import from_domain
from proxy.logs import log_config
from proxy.settings import Settings, SettingsError
from proxy.store.config import ConfigStore
from proxy.store.connection import connect, resolve_url
from proxy.store.keys import GLOBAL

# The CLI's writes are audited as this actor: it acts with Redis's credentials, not a key's.
ACTOR = audit.local_actor("cli")


def _print(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


class CliError(Exception):
    """Something outside the command went wrong: one line on stderr, exit 1."""


def _with_store(settings: Settings, work: Callable[[ConfigStore], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        redis = connect(settings)
        try:
            return await work(ConfigStore(redis, settings.audit_max_entries))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except (RedisError, OSError, ValueError, RuntimeError) as e:
        # Redis down, a bad REDIS_URL (redis-py says so with a ValueError), no embedded Redis.
        where = settings.redis_url or "the embedded Redis"
        raise CliError(f"cannot reach Redis at {where}: {e}") from None


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
        http="proxy.protocol:EdgeProtocol",  # httptools, with deadlines and the fast path
        timeout_keep_alive=settings.keepalive_timeout,  # type: ignore[arg-type]
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
        if args.project_ids is not None:
            data["project_ids"] = args.project_ids.split(",")
        token = access.new_token()

        def create(state: Any) -> model.KeyRecord:
            return changes.add_key(state, data, token=token, id=model.new_id(), now=model.now())

        key, _ = _with_store(settings, lambda s: s.mutate(GLOBAL, create, actor=ACTOR))
        _print({**changes.key_view(key), "token": token})
        sys.stderr.write("The token is shown once: store it now.\n")
    elif args.action == "list":
        state = _with_store(settings, lambda s: s.load(GLOBAL))
        _print([changes.key_view(k) for k in changes.active_keys(state)])
    else:
        revoke = lambda st: changes.revoke_key(st, args.key_id, now=model.now())  # noqa: E731
        _with_store(settings, lambda s: s.mutate(GLOBAL, revoke, actor=ACTOR))
        _print({"revoked": args.key_id})
    return 0


def projects_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        data: dict[str, Any] = {"name": args.name}
        if args.slug is not None:
            data["slug"] = args.slug
        if args.environments is not None:  # "" is a list of one empty name: refused
            data["environments"] = args.environments.split(",")
        project = model.new_project(data, id=model.new_id(), now=model.now())
        result, _ = _with_store(
            settings,
            lambda s: s.mutate(GLOBAL, lambda st: changes.add_project(st, project), actor=ACTOR),
        )
        _print(result)
    else:
        state = _with_store(settings, lambda s: s.load(GLOBAL))
        _print(sorted(state.projects.values(), key=lambda p: (p["created_at"], p["id"])))
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
    except model.DomainError as e:
        sys.stderr.write(f"error: {from_domain(e).body().decode()}\n")
        return 1
    except CliError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
