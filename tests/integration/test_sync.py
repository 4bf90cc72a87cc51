"""Sync on a real Redis: first load, pub/sub, stale messages, reconnects, poll, LKG file; and
the per-key rate limit over the keys it holds, on an injected clock."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis

from proxy import http
from proxy.domain import model
from proxy.domain.audit import local_actor
from proxy.domain.scope import ScopeState
from proxy.edge.auth import Auth
from proxy.edge.sync import Sync
from proxy.errors import ApiError
from proxy.store import keys
from proxy.store.config import ConfigStore
from proxy.store.embedded import free_port
from tests.support import RedisProcess, lkg_flags

ACTOR = local_actor("test")

NOW = "2024-01-01T00:00:00Z"
TOKEN = "kr_live_" + "s" * 43
Factory = Callable[..., RedisProcess]
QUIET = 3600.0  # a poll interval that never fires: the change must come through pub/sub
FAST = 0.2

pytestmark = pytest.mark.anyio


class CountingStore(ConfigStore):
    """A ConfigStore that remembers which scopes it loaded (Redis itself is real)."""

    def __init__(self, redis: Any) -> None:
        super().__init__(redis)
        self.loads: list[str] = []

    async def load(self, scope: str) -> ScopeState:
        self.loads.append(scope)
        return await super().load(scope)


@dataclass
class Harness:
    """One Sync under test and an independent writer, each with its own Redis clients."""

    sync: Sync
    store: CountingStore
    writer: ConfigStore
    writer_client: aredis.Redis
    exposures: list[tuple[str, int, str]]

    def flags(self, project_id: str, user_id: str = "u1", env: str = "production") -> Any:
        plan = self.sync.snapshot.projects[project_id].plans[env]
        return orjson.loads(plan.render({"user_id": user_id}, user_id))["flags"]

    def serves(self, project_id: str, key: str, value: Any) -> bool:
        if project_id not in self.sync.snapshot.projects:
            return False
        return bool(self.flags(project_id).get(key, {}).get("value") == value)


Harnesses = Callable[..., Harness]


@pytest.fixture
def harness(
    redis_client_factory: Callable[..., aredis.Redis],
    sync_factory: Callable[..., Sync],
    tmp_path: Path,
) -> Harnesses:
    """Harnesses on `url`, not started; the factories they come from stop their syncs and
    close their clients at teardown."""

    def make(
        url: str, poll_interval: float, *, lkg_path: Path | None = None, pubsub_url: str = ""
    ) -> Harness:
        store = CountingStore(redis_client_factory(url, socket_timeout=2, socket_connect_timeout=2))
        writer_client = redis_client_factory(url, socket_timeout=2)
        exposures: list[tuple[str, int, str]] = []
        sync = sync_factory(
            store,
            pubsub_url or url,
            poll_interval=poll_interval,
            lkg_path=lkg_path or tmp_path / "lkg.json",
            on_exposure=lambda *exposure: exposures.append(exposure),
        )
        return Harness(sync, store, ConfigStore(writer_client), writer_client, exposures)

    return make


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for convergence: poll `check` until true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not converged within {timeout} s"
        await asyncio.sleep(0.02)


def project_record(project_id: str) -> dict[str, Any]:
    return model.new_project({"name": "Shop", "slug": "shop"}, id=project_id, now=NOW)


def key_record(project_id: str, token: str = TOKEN) -> dict[str, Any]:
    body = {"name": "edge", "scopes": ["flags:evaluate"], "project_ids": [project_id]}
    record = model.new_key(
        body, projects={project_id: {}}, id=str(uuid.uuid4()), now=NOW, token=token
    )
    return {**record, "token_sha256": hashlib.sha256(token.encode()).hexdigest()}


def flag_record(project_id: str, key: str, default: Any, *, enabled: bool = False) -> Any:
    body = {
        "project_id": project_id,
        "key": key,
        "name": key,
        "flag_type": "string",
        "default_value": default,
    }
    return {**model.new_flag(body, id=str(uuid.uuid4()), now=NOW), "enabled": enabled}


async def add_project(store: ConfigStore, *tokens: str) -> str:
    """A project in the global scope, with an evaluate key per token (TOKEN's unless given);
    returns its id."""
    project_id = str(uuid.uuid4())
    state = await store.load(keys.GLOBAL)
    state.put("projects", project_record(project_id))
    for token in tokens or (TOKEN,):
        state.put("keys", key_record(project_id, token))
    await store.commit(state, actor=ACTOR)
    return project_id


async def put_flag(store: ConfigStore, project_id: str, key: str, default: Any) -> int:
    state = await store.load(project_id)
    existing = [f for f in state.flags.values() if f["key"] == key]
    record = flag_record(project_id, key, default)
    if existing:
        record = {**existing[0], "default_value": default}
    state.put("flags", record)
    return await store.commit(state, actor=ACTOR)


# First load -----------------------------------------------------------------------------------


async def test_start_loads_every_scope_that_exists(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    h = harness(redis.url, QUIET)
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
    await h.writer.commit(state, actor=ACTOR)

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


async def test_start_on_an_empty_redis_is_loaded_with_nothing(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    h = harness(redis.url, QUIET)
    await h.sync.start(wait=5)
    assert h.sync.loaded and not h.sync.from_lkg
    assert h.sync.snapshot.global_version == 0
    assert h.sync.snapshot.projects == {}
    assert h.sync.snapshot.keys == {}


# Pub/sub --------------------------------------------------------------------------------------


async def test_a_commit_on_another_client_is_applied_through_pubsub(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    h = harness(redis.url, QUIET)
    changed: list[int] = []
    h.sync.listeners.append(lambda: changed.append(1))
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


async def test_a_projects_own_record_changed_in_the_global_scope_is_compiled_again(
    redis_factory: Factory, harness: Harnesses
) -> None:
    # The project's compiled snapshot holds its record from the global scope: a change of
    # that record alone (no change of the project's scope) must reach it all the same.
    redis = redis_factory()
    h = harness(redis.url, QUIET)
    await h.sync.start(wait=5)
    project_id = await add_project(h.writer)
    await put_flag(h.writer, project_id, "color", "blue")
    await until(lambda: h.serves(project_id, "color", "blue"))
    state = await h.writer.load(keys.GLOBAL)
    record = project_record(project_id)
    record["settings"] = {**record["settings"], "default_environment": "staging"}
    state.put("projects", record)
    await h.writer.commit(state, actor=ACTOR)

    def default_environment() -> str:
        return str(h.sync.snapshot.projects[project_id].project["settings"]["default_environment"])

    await until(lambda: default_environment() == "staging")


async def test_a_message_with_an_older_or_equal_version_is_ignored(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    h = harness(redis.url, QUIET)
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


async def kill_pubsub_clients(admin: aredis.Redis) -> int:
    return int(await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))


async def subscribers(admin: aredis.Redis) -> int:
    reply = await admin.execute_command("PUBSUB", "NUMSUB", keys.CHANGES_CHANNEL)
    return int(reply[1])


async def test_after_its_pubsub_connection_is_killed_the_sync_resubscribes(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    h = harness(redis.url, QUIET)
    project_id = await add_project(h.writer)
    await h.sync.start(wait=5)
    assert await kill_pubsub_clients(h.writer_client) == 1
    await until(lambda: h.sync.reconnects >= 1 and h.sync.subscribed)
    await put_flag(h.writer, project_id, "color", "after-reconnect")
    await until(lambda: h.serves(project_id, "color", "after-reconnect"))


async def test_a_change_made_while_the_sync_was_cut_off_is_served_once_it_reconnects(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    # The sync subscribes as its own ACL user, so the test can keep it from reconnecting.
    pubsub_url = f"redis://edge:secret@127.0.0.1:{redis.port}/0"
    h = harness(redis.url, QUIET, pubsub_url=pubsub_url)
    await h.writer_client.execute_command(
        "ACL", "SETUSER", "edge", "on", ">secret", "~*", "&*", "+@all"
    )
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


async def test_a_change_whose_message_was_lost_is_found_by_the_version_poll(
    redis_factory: Factory, harness: Harnesses
) -> None:
    redis = redis_factory()
    h = harness(redis.url, FAST)
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


# Last-known-good file -------------------------------------------------------------------------


async def test_the_lkg_file_serves_a_cold_start_while_redis_is_unreachable(
    redis_factory: Factory, harness: Harnesses, tmp_path: Path
) -> None:
    redis = redis_factory()
    lkg = tmp_path / "data" / "snapshot.json"
    warm = harness(redis.url, QUIET, lkg_path=lkg)
    project_id = await add_project(warm.writer)
    await put_flag(warm.writer, project_id, "color", "blue")
    await warm.sync.start(wait=5)
    await until(lambda: lkg_flags(lkg, project_id) == {"color": "blue"})
    await put_flag(warm.writer, project_id, "color", "green")  # the file follows changes
    await until(lambda: lkg_flags(lkg, project_id) == {"color": "green"})
    await warm.sync.stop()
    redis.kill()

    cold = harness(redis.url, FAST, lkg_path=lkg)
    await cold.sync.start(wait=0.5)
    assert cold.sync.loaded and cold.sync.from_lkg
    assert cold.serves(project_id, "color", "green")
    assert hashlib.sha256(TOKEN.encode()).hexdigest() in cold.sync.snapshot.keys
    assert cold.sync.snapshot.projects[project_id].version == 2
    await cold.sync.stop()

    direct = harness(redis.url, FAST, lkg_path=lkg)
    assert direct.sync.load_lkg() is True
    assert direct.sync.loaded and direct.sync.from_lkg
    assert direct.serves(project_id, "color", "green")


async def warm_lkg(harness: Harnesses, url: str, lkg: Path, value: str) -> str:
    """Run a sync on `url` until its LKG file holds a project with flag color=`value`; it is
    stopped when this returns."""
    h = harness(url, QUIET, lkg_path=lkg)
    project_id = await add_project(h.writer)
    await put_flag(h.writer, project_id, "color", value)
    await h.sync.start(wait=5)
    await until(lambda: lkg_flags(lkg, project_id) == {"color": value})
    await h.sync.stop()
    return project_id


async def test_redis_coming_back_replaces_the_lkg_snapshot(
    redis_factory: Factory, harness: Harnesses, tmp_path: Path
) -> None:
    redis = redis_factory(persist=True)
    lkg = tmp_path / "snapshot.json"
    project_id = await warm_lkg(harness, redis.url, lkg, "from-file")
    redis.kill()

    h = harness(redis.url, FAST, lkg_path=lkg)
    await h.sync.start(wait=0.5)
    assert h.sync.from_lkg and h.serves(project_id, "color", "from-file")
    redis.start()  # the same port and data, from its append-only file
    await put_flag(h.writer, project_id, "color", "from-redis")
    await until(lambda: not h.sync.from_lkg)
    await until(lambda: h.serves(project_id, "color", "from-redis"))


async def test_a_project_redis_no_longer_has_is_dropped_after_an_lkg_start(
    redis_factory: Factory, harness: Harnesses, tmp_path: Path
) -> None:
    first = redis_factory()
    lkg = tmp_path / "snapshot.json"
    project_id = await warm_lkg(harness, first.url, lkg, "stale")
    port = first.port
    first.kill()

    h = harness(first.url, FAST, lkg_path=lkg)
    await h.sync.start(wait=0.5)
    assert h.sync.from_lkg and h.serves(project_id, "color", "stale")
    redis_factory(port=port)  # an empty Redis at the same address: it is the truth now
    await until(lambda: not h.sync.from_lkg)
    assert h.sync.snapshot.global_records["projects"] == {}
    assert project_id not in h.sync.snapshot.projects


async def test_load_lkg_without_a_usable_file_serves_nothing(
    harness: Harnesses, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_bytes(b'{"format": 1, "global": ')
    other_format = tmp_path / "v2.json"
    other_format.write_bytes(b'{"format": 2}')
    for path in (missing, corrupt, other_format):
        h = harness(f"redis://127.0.0.1:{free_port()}/0", FAST, lkg_path=path)
        assert h.sync.load_lkg() is False
        assert not h.sync.loaded and not h.sync.from_lkg


# Rate limit over the synced keys, on an injected clock ----------------------------------------

OTHER_TOKEN = "kr_live_" + "t" * 43


class Clock:
    """The token buckets' time, moved by the test (a double for time.monotonic, never for
    Redis): refills are exact, and no test waits for one."""

    def __init__(self) -> None:
        self.now = 1000.0  # binary fractions of a second added to it stay exact

    def __call__(self) -> float:
        return self.now


def request(token: str) -> http.Scope:
    """A request's ASGI scope, as far as Auth reads one: its Authorization header."""
    return {"type": "http", "headers": [(b"authorization", b"Bearer " + token.encode())]}


def refusal(auth: Auth, token: str) -> ApiError:
    with pytest.raises(ApiError) as refused:
        auth.key(request(token))
    return refused.value


@pytest.fixture
async def synced(redis_factory: Factory, harness: Harnesses) -> Sync:
    """A started sync holding one project with two evaluate keys: TOKEN's and OTHER_TOKEN's."""
    h = harness(redis_factory().url, QUIET)
    await add_project(h.writer, TOKEN, OTHER_TOKEN)
    await h.sync.start(wait=5)
    return h.sync


async def test_a_key_spends_a_burst_of_one_seconds_worth_then_gets_a_429_with_retry_after(
    synced: Sync,
) -> None:
    auth = Auth(synced, 4, clock=Clock())
    for _ in range(4):
        assert auth.key(request(TOKEN)).can_evaluate
    refused = refusal(auth, TOKEN)
    assert (refused.status, refused.message) == (429, "Rate limit exceeded")
    assert refused.extra == {"retry_after": 1}
    assert refused.headers == [(b"retry-after", b"1")]
    assert auth.limited == 1


async def test_a_bucket_refills_at_the_rate_and_never_beyond_one_burst(synced: Sync) -> None:
    clock = Clock()
    auth = Auth(synced, 4, clock=clock)
    for _ in range(4):
        auth.key(request(TOKEN))
    clock.now += 0.25  # one token's worth at 4 per second
    auth.key(request(TOKEN))
    assert refusal(auth, TOKEN).status == 429
    clock.now += 60  # a quiet minute refills the burst, and no more
    for _ in range(4):
        auth.key(request(TOKEN))
    assert refusal(auth, TOKEN).status == 429
    assert auth.limited == 2


async def test_a_refusal_spends_nothing_and_waiting_retry_after_is_enough(synced: Sync) -> None:
    clock = Clock()
    auth = Auth(synced, 4, clock=clock)
    for _ in range(4):
        auth.key(request(TOKEN))
    clock.now += 0.125  # half a token
    assert refusal(auth, TOKEN).extra["retry_after"] == 1  # (1 - 0.5) / 4 s, rounded up
    clock.now += 0.125  # the half kept through the refusal, and another half
    auth.key(request(TOKEN))
    wait = refusal(auth, TOKEN).extra["retry_after"]
    clock.now += wait
    auth.key(request(TOKEN))
    assert auth.limited == 2


async def test_each_key_has_a_bucket_of_its_own(synced: Sync) -> None:
    clock = Clock()
    auth = Auth(synced, 2, clock=clock)
    mine = auth.key(request(TOKEN))
    auth.key(request(TOKEN))
    assert refusal(auth, TOKEN).status == 429
    other = auth.key(request(OTHER_TOKEN))  # the first key's spending is not its own
    auth.key(request(OTHER_TOKEN))
    assert refusal(auth, OTHER_TOKEN).status == 429
    assert other.id != mine.id and set(auth.buckets) == {mine.id, other.id}
    assert refusal(auth, "kr_live_unknown").status == 401  # no key, no bucket
    assert set(auth.buckets) == {mine.id, other.id}
    clock.now += 0.5  # a token each
    assert auth.key(request(TOKEN)).id == mine.id
    assert auth.key(request(OTHER_TOKEN)).id == other.id
    assert auth.limited == 2


async def test_a_rate_of_zero_turns_the_limit_off(synced: Sync) -> None:
    auth = Auth(synced, 0, clock=Clock())
    for _ in range(1000):
        auth.key(request(TOKEN))
    assert auth.buckets == {} and auth.limited == 0


async def test_a_rate_below_one_per_second_still_admits_one_request_per_period(
    synced: Sync,
) -> None:
    clock = Clock()
    auth = Auth(synced, 0.5, clock=clock)  # one request every two seconds
    auth.key(request(TOKEN))
    refused = refusal(auth, TOKEN)
    assert refused.extra == {"retry_after": 2}
    clock.now += 2
    auth.key(request(TOKEN))
    assert auth.limited == 1


# Waiting for a version ------------------------------------------------------------------------


async def test_caught_up_waits_for_a_version_until_the_sync_holds_it(
    redis_factory: Factory, harness: Harnesses
) -> None:
    h = harness(redis_factory().url, QUIET)
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


async def test_caught_up_gives_up_after_its_timeout_without_asking_redis(
    redis_factory: Factory, harness: Harnesses
) -> None:
    h = harness(redis_factory().url, QUIET)
    await h.sync.start(wait=5)
    project_id = await add_project(h.writer)
    await until(lambda: project_id in h.sync.snapshot.projects)
    loads = len(h.store.loads)
    assert not await h.sync.caught_up(project_id, 10**9, 0.2)
    assert len(h.store.loads) == loads
    assert h.sync._waiters == []


async def test_a_failing_listener_is_logged_and_the_change_still_applies(
    redis_factory: Factory, harness: Harnesses
) -> None:
    def broken() -> None:
        raise RuntimeError("a listener's bug")

    h = harness(redis_factory().url, QUIET)
    h.sync.listeners.append(broken)
    await h.sync.start(wait=5)
    project_id = await add_project(h.writer)
    await put_flag(h.writer, project_id, "color", "blue")
    await until(lambda: h.serves(project_id, "color", "blue"))
    assert h.sync.compile_errors == 0
