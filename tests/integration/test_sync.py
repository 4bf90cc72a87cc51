"""Sync on a real Redis: first load, pub/sub, stale messages, reconnects, poll, LKG file."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aredis

from proxy.domain import model
from proxy.domain.scope import ScopeState
from proxy.edge.sync import Sync
from proxy.store import keys
from proxy.store.config import ConfigStore
from proxy.store.embedded import free_port
from tests.support import RedisProcess

NOW = "2024-01-01T00:00:00Z"
TOKEN = "kr_live_" + "s" * 43
Factory = Callable[..., RedisProcess]
QUIET = 3600.0  # a poll interval that never fires: the change must come through pub/sub
FAST = 0.2


class CountingStore(ConfigStore):
    """A ConfigStore that remembers which scopes it loaded (Redis itself is real)."""

    def __init__(self, redis: Any) -> None:
        super().__init__(redis)
        self.loads: list[str] = []

    async def load(self, scope: str) -> ScopeState:
        self.loads.append(scope)
        return await super().load(scope)


class Harness:
    """One Sync under test and an independent writer, each with its own Redis clients."""

    def __init__(
        self, url: str, lkg_path: Path, poll_interval: float, pubsub_url: str = ""
    ) -> None:
        self.client = aredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.store = CountingStore(self.client)
        self.writer_client = aredis.Redis.from_url(url, socket_timeout=2)
        self.writer = ConfigStore(self.writer_client)
        self.sync = Sync(
            self.store,
            aredis.Redis.from_url(pubsub_url or url, socket_connect_timeout=2),
            self.exposure,
            poll_interval=poll_interval,
            lkg_path=lkg_path,
        )
        self.exposures: list[tuple[str, int, str]] = []

    def exposure(self, experiment_id: str, variant: int, user_id: str) -> None:
        self.exposures.append((experiment_id, variant, user_id))

    async def close(self) -> None:
        await self.sync.stop()
        await self.client.aclose()
        await self.writer_client.aclose()

    def flags(self, project_id: str, user_id: str = "u1", env: str = "production") -> Any:
        plan = self.sync.snapshot.projects[project_id].plans[env]
        return orjson.loads(plan.render({"user_id": user_id}, user_id))["flags"]

    def serves(self, project_id: str, key: str, value: Any) -> bool:
        if project_id not in self.sync.snapshot.projects:
            return False
        return bool(self.flags(project_id).get(key, {}).get("value") == value)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for convergence: poll `check` until true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not converged within {timeout} s"
        await asyncio.sleep(0.02)


def project_record(project_id: str) -> dict[str, Any]:
    return model.new_project({"name": "Shop", "slug": "shop"}, id=project_id, now=NOW)


def key_record(project_id: str) -> dict[str, Any]:
    body = {"name": "edge", "scopes": ["flags:evaluate"], "project_ids": [project_id]}
    record = model.new_key(
        body, projects={project_id: {}}, id=str(uuid.uuid4()), now=NOW, token=TOKEN
    )
    return {**record, "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}


def flag_record(project_id: str, key: str, default: Any, *, enabled: bool = False) -> Any:
    body = {
        "project_id": project_id,
        "key": key,
        "name": key,
        "flag_type": "string",
        "default_value": default,
    }
    return {**model.new_flag(body, id=str(uuid.uuid4()), now=NOW), "enabled": enabled}


async def add_project(store: ConfigStore) -> str:
    """A project (with an evaluate key) in the global scope; returns its id."""
    project_id = str(uuid.uuid4())
    state = await store.load(keys.GLOBAL)
    state.put("projects", project_record(project_id))
    state.put("keys", key_record(project_id))
    await store.commit(state)
    return project_id


async def put_flag(store: ConfigStore, project_id: str, key: str, default: Any) -> int:
    state = await store.load(project_id)
    existing = [f for f in state.flags.values() if f["key"] == key]
    record = flag_record(project_id, key, default)
    if existing:
        record = {**existing[0], "default_value": default}
    state.put("flags", record)
    return await store.commit(state)


# First load -----------------------------------------------------------------------------------


def test_start_loads_every_scope_that_exists(redis_factory: Factory, tmp_path: Path) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        try:
            project_id = await add_project(h.writer)
            await put_flag(h.writer, project_id, "color", "blue")
            enabled = flag_record(project_id, "banner", "off", enabled=True)
            state = await h.writer.load(project_id)
            state.put("flags", enabled)
            rule = model.new_rule(
                {"environment": "production", "value": "on"},
                flag=enabled,
                project=project_record(project_id),
                segments={},
                next_position=0,
                id=str(uuid.uuid4()),
                now=NOW,
            )
            state.put("rules", rule)
            await h.writer.commit(state)

            await h.sync.start(wait=5)
            assert h.sync.loaded and not h.sync.from_lkg and h.sync.subscribed
            snap = h.sync.snapshot
            assert snap.global_version == 1
            assert snap.projects[project_id].version == 2
            api_key = snap.keys[hashlib.sha256(TOKEN.encode()).hexdigest()]
            assert api_key.can_evaluate and api_key.allows(project_id)
            assert not api_key.allows(str(uuid.uuid4()))
            assert h.flags(project_id) == {
                "color": {"value": "blue", "rule_id": None},
                "banner": {"value": "on", "rule_id": rule["id"]},
            }
            assert h.sync.reconnects == 0
        finally:
            await h.close()

    asyncio.run(main())


def test_start_on_an_empty_redis_is_loaded_with_nothing(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        try:
            await h.sync.start(wait=5)
            assert h.sync.loaded and not h.sync.from_lkg
            assert h.sync.snapshot.global_version == 0
            assert h.sync.snapshot.projects == {}
            assert h.sync.snapshot.keys == {}
        finally:
            await h.close()

    asyncio.run(main())


# Pub/sub --------------------------------------------------------------------------------------


def test_a_commit_on_another_client_is_applied_through_pubsub(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        changed: list[int] = []
        h.sync.listeners.append(lambda: changed.append(1))
        try:
            await h.sync.start(wait=5)
            project_id = await add_project(h.writer)  # a project born after the start
            await put_flag(h.writer, project_id, "color", "blue")
            await until(lambda: h.serves(project_id, "color", "blue"))

            version = await put_flag(h.writer, project_id, "color", "green")
            await until(lambda: h.serves(project_id, "color", "green"))
            assert h.sync.held_version(project_id) == version
            assert h.sync.held_version(keys.GLOBAL) == 1
            assert changed
            assert h.sync.reconnects == 0
        finally:
            await h.close()

    asyncio.run(main())


def test_a_message_with_an_older_or_equal_version_is_ignored(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        try:
            project_id = await add_project(h.writer)
            for value in ("a", "b", "c"):
                held = await put_flag(h.writer, project_id, "color", value)
            await h.sync.start(wait=5)
            assert h.sync.held_version(project_id) == held == 3
            h.store.loads.clear()

            stale = [
                {"scope": project_id, "version": held - 1},
                {"scope": project_id, "version": held},
                {"scope": keys.GLOBAL, "version": 0},
                {"scope": keys.GLOBAL, "version": 1},
            ]
            for message in stale:
                await h.writer_client.publish(keys.CHANGES_CHANNEL, orjson.dumps(message))
            for junk in (b"not json", b"[]", b"{}", b'{"scope": "g"}', b'{"version": "x"}'):
                await h.writer_client.publish(keys.CHANGES_CHANNEL, junk)
            # A real change last: the listener handles messages in order, so once it is served
            # every message above has been handled.
            await put_flag(h.writer, project_id, "color", "d")
            await until(lambda: h.serves(project_id, "color", "d"))

            assert h.store.loads == [project_id]
            assert h.sync.reconnects == 0
        finally:
            await h.close()

    asyncio.run(main())


async def kill_pubsub_clients(admin: aredis.Redis) -> int:
    return int(await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))


async def subscribers(admin: aredis.Redis) -> int:
    reply = await admin.execute_command("PUBSUB", "NUMSUB", keys.CHANGES_CHANNEL)
    return int(reply[1])


def test_after_its_pubsub_connection_is_killed_the_sync_resubscribes(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        try:
            project_id = await add_project(h.writer)
            await h.sync.start(wait=5)
            assert await kill_pubsub_clients(h.writer_client) == 1
            await until(lambda: h.sync.reconnects >= 1 and h.sync.subscribed)
            await put_flag(h.writer, project_id, "color", "after-reconnect")
            await until(lambda: h.serves(project_id, "color", "after-reconnect"))
        finally:
            await h.close()

    asyncio.run(main())


def test_a_change_made_while_the_sync_was_cut_off_is_served_once_it_reconnects(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()
    # The sync subscribes as its own ACL user, so the test can keep it from reconnecting.
    admin = redis.client()
    admin.execute_command("ACL", "SETUSER", "edge", "on", ">secret", "~*", "&*", "+@all")
    pubsub_url = f"redis://edge:secret@127.0.0.1:{redis.port}/0"

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET, pubsub_url=pubsub_url)
        try:
            project_id = await add_project(h.writer)
            await put_flag(h.writer, project_id, "color", "before")
            await h.sync.start(wait=5)
            assert h.serves(project_id, "color", "before")

            await h.writer_client.execute_command("ACL", "SETUSER", "edge", "off")
            assert await kill_pubsub_clients(h.writer_client) == 1
            await until(lambda: h.sync.reconnects >= 2)  # a reconnection has already failed
            assert await subscribers(h.writer_client) == 0
            await put_flag(h.writer, project_id, "color", "while-cut-off")  # nobody hears it

            await h.writer_client.execute_command("ACL", "SETUSER", "edge", "on")
            await until(lambda: h.serves(project_id, "color", "while-cut-off"))
            assert h.sync.subscribed
            assert await subscribers(h.writer_client) == 1
        finally:
            await h.close()

    try:
        asyncio.run(main())
    finally:
        admin.close()


def test_a_change_whose_message_was_lost_is_found_by_the_version_poll(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", FAST)
        try:
            project_id = await add_project(h.writer)
            await h.sync.start(wait=5)
            # Write a flag as the commit script would, but publish nothing: a dropped message.
            record = flag_record(project_id, "silent", "polled")
            await h.writer_client.hset(
                keys.records(project_id, "flags"), record["id"], orjson.dumps(record)
            )
            await h.writer_client.incr(keys.version(project_id))
            await until(lambda: h.serves(project_id, "silent", "polled"))
            assert h.sync.reconnects == 0
        finally:
            await h.close()

    asyncio.run(main())


# Last-known-good file -------------------------------------------------------------------------


def lkg_flags(path: Path, project_id: str) -> dict[str, Any]:
    """Flag key -> default value in the LKG file; empty while it is missing or incomplete."""
    try:
        doc = orjson.loads(path.read_bytes())
        flags = doc["projects"][project_id]["records"]["flags"].values()
    except (OSError, ValueError, KeyError):
        return {}
    return {f["key"]: f["default_value"] for f in flags}


def test_the_lkg_file_serves_a_cold_start_while_redis_is_unreachable(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()
    lkg = tmp_path / "data" / "snapshot.json"
    project_id = ""

    async def warm() -> None:
        nonlocal project_id
        h = Harness(redis.url, lkg, QUIET)
        try:
            project_id = await add_project(h.writer)
            await put_flag(h.writer, project_id, "color", "blue")
            await h.sync.start(wait=5)
            await until(lambda: lkg_flags(lkg, project_id) == {"color": "blue"})
            await put_flag(h.writer, project_id, "color", "green")  # the file follows changes
            await until(lambda: lkg_flags(lkg, project_id) == {"color": "green"})
        finally:
            await h.close()

    asyncio.run(warm())
    redis.kill()

    async def cold() -> None:
        h = Harness(redis.url, lkg, FAST)
        try:
            await h.sync.start(wait=0.5)
            assert h.sync.loaded and h.sync.from_lkg
            assert h.serves(project_id, "color", "green")
            assert hashlib.sha256(TOKEN.encode()).hexdigest() in h.sync.snapshot.keys
            assert h.sync.snapshot.projects[project_id].version == 2
        finally:
            await h.close()

        direct = Harness(redis.url, lkg, FAST)
        try:
            assert direct.sync.load_lkg() is True
            assert direct.sync.loaded and direct.sync.from_lkg
            assert direct.serves(project_id, "color", "green")
        finally:
            await direct.close()

    asyncio.run(cold())


async def warm_lkg(url: str, lkg: Path, value: str) -> str:
    """Run a sync on `url` until its LKG file holds a project with flag color=`value`."""
    h = Harness(url, lkg, QUIET)
    try:
        project_id = await add_project(h.writer)
        await put_flag(h.writer, project_id, "color", value)
        await h.sync.start(wait=5)
        await until(lambda: lkg_flags(lkg, project_id) == {"color": value})
        return project_id
    finally:
        await h.close()


def test_redis_coming_back_replaces_the_lkg_snapshot(
    redis_factory: Factory, tmp_path: Path
) -> None:
    first = redis_factory(persist=True)
    lkg = tmp_path / "snapshot.json"
    project_id = asyncio.run(warm_lkg(first.url, lkg, "from-file"))
    first.kill()

    async def cold() -> None:
        h = Harness(first.url, lkg, FAST)
        again = RedisProcess(first.directory, port=first.port, persist=True)
        try:
            await h.sync.start(wait=0.5)
            assert h.sync.from_lkg and h.serves(project_id, "color", "from-file")
            again.start()  # the same data, from its append-only file
            await put_flag(h.writer, project_id, "color", "from-redis")
            await until(lambda: not h.sync.from_lkg)
            await until(lambda: h.serves(project_id, "color", "from-redis"))
        finally:
            await h.close()
            again.kill()

    asyncio.run(cold())


def test_a_project_redis_no_longer_has_is_dropped_after_an_lkg_start(
    redis_factory: Factory, tmp_path: Path
) -> None:
    first = redis_factory()
    lkg = tmp_path / "snapshot.json"
    project_id = asyncio.run(warm_lkg(first.url, lkg, "stale"))
    port = first.port
    first.kill()

    async def cold() -> None:
        h = Harness(first.url, lkg, FAST)
        try:
            await h.sync.start(wait=0.5)
            assert h.sync.from_lkg and h.serves(project_id, "color", "stale")
            redis_factory(port=port)  # an empty Redis at the same address: it is the truth now
            await until(lambda: not h.sync.from_lkg)
            assert h.sync.snapshot.global_records["projects"] == {}
            assert project_id not in h.sync.snapshot.projects
        finally:
            await h.close()

    asyncio.run(cold())


def test_load_lkg_without_a_usable_file_serves_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        missing = tmp_path / "missing.json"
        corrupt = tmp_path / "corrupt.json"
        corrupt.write_bytes(b'{"format": 1, "global": ')
        other_format = tmp_path / "v2.json"
        other_format.write_bytes(b'{"format": 2}')
        for path in (missing, corrupt, other_format):
            h = Harness(f"redis://127.0.0.1:{free_port()}/0", path, FAST)
            try:
                assert h.sync.load_lkg() is False
                assert not h.sync.loaded and not h.sync.from_lkg
            finally:
                await h.close()

    asyncio.run(main())


# Waiting for a version ------------------------------------------------------------------------


def test_caught_up_waits_for_a_version_until_the_sync_holds_it(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        try:
            await h.sync.start(wait=5)
            project_id = await add_project(h.writer)
            version = await put_flag(h.writer, project_id, "color", "blue")
            await until(lambda: h.serves(project_id, "color", "blue"))
            assert await h.sync.caught_up(project_id, version, 0.0)  # held: no wait at all

            waiting = asyncio.create_task(h.sync.caught_up(project_id, version + 1, 5.0))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await put_flag(h.writer, project_id, "color", "green")
            assert await waiting
            assert h.serves(project_id, "color", "green")  # what the waiter comes back to
            assert h.sync._waiters == []
        finally:
            await h.close()

    asyncio.run(main())


def test_caught_up_gives_up_after_its_timeout_without_asking_redis(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        try:
            await h.sync.start(wait=5)
            project_id = await add_project(h.writer)
            await until(lambda: project_id in h.sync.snapshot.projects)
            loads = len(h.store.loads)
            assert not await h.sync.caught_up(project_id, 10**9, 0.2)
            assert len(h.store.loads) == loads
            assert h.sync._waiters == []
        finally:
            await h.close()

    asyncio.run(main())


def test_a_failing_listener_is_logged_and_the_change_still_applies(
    redis_factory: Factory, tmp_path: Path
) -> None:
    redis = redis_factory()

    def broken() -> None:
        raise RuntimeError("a listener's bug")

    async def main() -> None:
        h = Harness(redis.url, tmp_path / "lkg.json", QUIET)
        h.sync.listeners.append(broken)
        try:
            await h.sync.start(wait=5)
            project_id = await add_project(h.writer)
            await put_flag(h.writer, project_id, "color", "blue")
            await until(lambda: h.serves(project_id, "color", "blue"))
            assert h.sync.compile_errors == 0
        finally:
            await h.close()

    asyncio.run(main())
