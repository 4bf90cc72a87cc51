"""ConfigStore on a real Redis: load/commit round trip, compare-and-swap, publish, owner index."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis
from redis.asyncio.client import PubSub

from proxy.domain.audit import local_actor
from proxy.domain.scope import ScopeState
from proxy.store import keys
from proxy.store.config import ConcurrentWrite, ConfigStore

ACTOR = local_actor("test")

pytestmark = pytest.mark.anyio


def new_scope() -> str:
    """A fresh project scope: tests share the suite's Redis, so each writes its own keys."""
    return str(uuid.uuid4())


async def changes_of(pubsub: PubSub, scope: str, count: int) -> list[dict[str, Any]]:
    """The next `count` change messages about `scope` (other tests' processes may publish on
    the channel too); fails after 5 s without them."""
    received: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(received) < count:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"only {received} arrived within 5 s"
        message = await pubsub.get_message(timeout=left)  # None: a subscribe confirmation
        if message is not None and message["type"] == "message":
            data = orjson.loads(message["data"])
            if data["scope"] == scope:
                received.append(data)
    return received


def flag(key: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "key": key, "enabled": False, **fields}


@pytest.fixture
async def changes(redis_client_factory: Callable[..., aredis.Redis]) -> AsyncIterator[PubSub]:
    """A listener of its own, subscribed to the changes channel before the test writes."""
    pubsub = redis_client_factory().pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.CHANGES_CHANNEL)
    yield pubsub
    await pubsub.aclose()


async def test_a_scope_never_written_loads_empty_at_version_zero(config_store: ConfigStore) -> None:
    state = await config_store.load(new_scope())
    assert state.version == 0
    assert state.records == {kind: {} for kind in keys.PROJECT_KINDS}
    assert state.changes == []


async def test_commit_then_load_gives_back_the_records(config_store: ConfigStore) -> None:
    scope = new_scope()
    state = await config_store.load(scope)
    a, b = flag("a", tags=["x"], default_value={"n": [1, 2]}), flag("b")
    state.put("flags", a)
    state.put("flags", b)
    state.put("rules", {"id": "r1", "flag_id": a["id"], "value": None})
    assert await config_store.commit(state, actor=ACTOR) == 1
    assert state.version == 1
    assert state.changes == []

    loaded = await config_store.load(scope)
    assert loaded.version == 1
    assert loaded.flags == {a["id"]: a, b["id"]: b}
    assert loaded.rules == {"r1": {"id": "r1", "flag_id": a["id"], "value": None}}
    assert loaded.segments == {} and loaded.experiments == {}

    loaded.delete("flags", b["id"])
    loaded.put("flags", {**a, "enabled": True})
    assert await config_store.commit(loaded, actor=ACTOR) == 2
    again = await config_store.load(scope)
    assert again.flags == {a["id"]: {**a, "enabled": True}}
    assert await config_store.get(scope, "flags", a["id"]) == {**a, "enabled": True}
    assert await config_store.get(scope, "flags", b["id"]) is None


async def test_the_global_scope_holds_projects_and_keys(config_store: ConfigStore) -> None:
    state = await config_store.load(keys.GLOBAL)
    assert set(state.records) == {"projects", "keys"}


async def test_commit_with_a_stale_version_raises_conflict_and_writes_nothing(
    config_store: ConfigStore,
) -> None:
    scope = new_scope()
    first, second = await config_store.load(scope), await config_store.load(scope)
    first.put("flags", flag("winner"))
    await config_store.commit(first, actor=ACTOR)

    loser = flag("loser")
    second.put("flags", loser)
    with pytest.raises(ConcurrentWrite):
        await config_store.commit(second, actor=ACTOR)
    assert second.version == 0
    assert second.changes  # still pending: the caller decides to reload and retry

    after = await config_store.load(scope)
    assert after.version == 1
    assert [f["key"] for f in after.flags.values()] == ["winner"]


async def test_every_commit_bumps_the_version_by_one(config_store: ConfigStore) -> None:
    scope = new_scope()
    state = await config_store.load(scope)
    versions = []
    for i in range(5):
        state.put("flags", flag(f"f{i}"))
        versions.append(await config_store.commit(state, actor=ACTOR))
    state.changes.clear()
    versions.append(await config_store.commit(state, actor=ACTOR))  # an empty commit still bumps
    assert versions == [1, 2, 3, 4, 5, 6]
    assert await config_store.versions([scope]) == {scope: 6}


async def test_versions_reads_many_scopes_and_unknown_ones_are_zero(
    config_store: ConfigStore,
) -> None:
    written, unknown = new_scope(), new_scope()
    state = await config_store.load(written)
    state.put("segments", {"id": "s1"})
    await config_store.commit(state, actor=ACTOR)
    assert await config_store.versions([written, unknown]) == {written: 1, unknown: 0}


async def test_every_commit_publishes_its_scope_and_new_version(
    config_store: ConfigStore, changes: PubSub
) -> None:
    scope = new_scope()
    state = await config_store.load(scope)
    for i in range(3):
        state.put("flags", flag(f"f{i}"))
        await config_store.commit(state, actor=ACTOR)
    received = await changes_of(changes, scope, 3)
    assert received == [{"scope": scope, "version": v} for v in (1, 2, 3)]


async def test_a_conflicting_commit_publishes_nothing(
    config_store: ConfigStore, changes: PubSub
) -> None:
    scope = new_scope()
    stale = await config_store.load(scope)
    fresh = await config_store.load(scope)
    fresh.put("flags", flag("a"))
    await config_store.commit(fresh, actor=ACTOR)
    stale.put("flags", flag("b"))
    with pytest.raises(ConcurrentWrite):
        await config_store.commit(stale, actor=ACTOR)
    fresh.put("flags", flag("c"))
    await config_store.commit(fresh, actor=ACTOR)  # a marker: every message before it has arrived
    received = await changes_of(changes, scope, 2)
    assert [m["version"] for m in received] == [1, 2]


class RacedStore(ConfigStore):
    """A store whose first `races` loads are each followed by a rival's commit: the
    concurrent writer that lands between mutate's read and its write."""

    def __init__(self, redis: Any, rival: ConfigStore, races: int) -> None:
        super().__init__(redis)
        self.rival = rival
        self.races = races
        self.rival_keys: list[str] = []

    async def load(self, scope: str) -> ScopeState:
        state = await super().load(scope)
        if self.races:
            self.races -= 1
            theirs = await self.rival.load(scope)
            key = f"rival-{len(self.rival_keys)}"
            theirs.put("flags", flag(key))
            await self.rival.commit(theirs, actor=ACTOR)
            self.rival_keys.append(key)
        return state


@pytest.fixture
def raced_store(redis_client_factory: Callable[..., aredis.Redis]) -> Callable[[int], RacedStore]:
    """Raced stores whose rival writes through a client of its own."""

    def make(races: int) -> RacedStore:
        rival = ConfigStore(redis_client_factory())
        return RacedStore(redis_client_factory(), rival, races)

    return make


async def test_mutate_retries_after_a_concurrent_writer(
    raced_store: Callable[[int], RacedStore],
) -> None:
    store = raced_store(2)
    scope = new_scope()
    seen_versions: list[int] = []

    def change(state: ScopeState) -> int:
        seen_versions.append(state.version)
        state.put("flags", flag("mine", saw=len(state.flags)))
        return len(seen_versions)

    attempts, version = await store.mutate(scope, change, actor=ACTOR)
    assert attempts == 3
    assert seen_versions == [0, 1, 2]  # each retry starts from what the rival wrote
    assert version == 3
    final = await store.load(scope)
    flags = {f["key"]: f for f in final.flags.values()}
    assert set(flags) == {"mine", "rival-0", "rival-1"}
    assert flags["mine"]["saw"] == 2  # validated against the state that holds both rivals


async def test_mutate_gives_up_with_conflict_when_it_always_loses(
    raced_store: Callable[[int], RacedStore],
) -> None:
    store = raced_store(20)
    scope = new_scope()
    with pytest.raises(ConcurrentWrite):
        await store.mutate(scope, lambda state: state.put("flags", flag("mine")), actor=ACTOR)
    final = await store.load(scope)
    assert {f["key"] for f in final.flags.values()} == set(store.rival_keys)
    assert "mine" not in {f["key"] for f in final.flags.values()}


async def test_mutate_without_changes_writes_nothing(config_store: ConfigStore) -> None:
    scope = new_scope()
    result, version = await config_store.mutate(scope, lambda state: "read only", actor=ACTOR)
    assert (result, version) == ("read only", 0)
    assert await config_store.versions([scope]) == {scope: 0}


async def test_mutate_lets_the_changes_exception_through_and_writes_nothing(
    config_store: ConfigStore,
) -> None:
    scope = new_scope()

    def change(state: ScopeState) -> None:
        state.put("flags", flag("half"))
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await config_store.mutate(scope, change, actor=ACTOR)
    assert (await config_store.load(scope)).flags == {}


async def test_owner_index_set_read_and_drop(config_store: ConfigStore) -> None:
    project_a, project_b = new_scope(), new_scope()
    f1, f2, s1 = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await config_store.set_owner("flags", f1, project_a)
    await config_store.set_owner("flags", f2, project_b)
    await config_store.set_owner("segments", s1, project_a)
    assert await config_store.owner("flags", f1) == project_a
    assert await config_store.owner("flags", f2) == project_b
    assert await config_store.owner("segments", s1) == project_a
    assert await config_store.owner("segments", f1) is None  # one index per kind
    assert await config_store.owner("flags", str(uuid.uuid4())) is None

    await config_store.drop_owner("flags", f1, f2)
    await config_store.drop_owner("flags")  # nothing to drop: no error
    assert await config_store.owner("flags", f1) is None
    assert await config_store.owner("flags", f2) is None
    assert await config_store.owner("segments", s1) == project_a
    await config_store.drop_owner("segments", s1)
