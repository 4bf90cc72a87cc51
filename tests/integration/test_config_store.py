"""ConfigStore on a real Redis: load/commit round trip, compare-and-swap, publish, owner index."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import pytest
import redis.asyncio as aredis

from proxy.domain.audit import local_actor
from proxy.domain.scope import ScopeState
from proxy.store import keys
from proxy.store.config import ConcurrentWrite, ConfigStore
from tests.support import RedisProcess

T = TypeVar("T")
ACTOR = local_actor("test")


def run(redis_server: RedisProcess, test: Callable[[ConfigStore], Awaitable[T]]) -> T:
    """Run `test` with a store on its own client, closed afterwards."""

    async def main() -> T:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            return await test(ConfigStore(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def new_scope() -> str:
    """A fresh project scope: tests share the suite's Redis, so each writes its own keys."""
    return str(uuid.uuid4())


async def changes_of(pubsub: Any, scope: str, count: int) -> list[dict[str, Any]]:
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


def test_a_scope_never_written_loads_empty_at_version_zero(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        state = await store.load(new_scope())
        assert state.version == 0
        assert state.records == {kind: {} for kind in keys.PROJECT_KINDS}
        assert state.changes == []

    run(redis_server, test)


def test_commit_then_load_gives_back_the_records(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()
        state = await store.load(scope)
        a, b = flag("a", tags=["x"], default_value={"n": [1, 2]}), flag("b")
        state.put("flags", a)
        state.put("flags", b)
        state.put("rules", {"id": "r1", "flag_id": a["id"], "value": None})
        assert await store.commit(state, actor=ACTOR) == 1
        assert state.version == 1
        assert state.changes == []

        loaded = await store.load(scope)
        assert loaded.version == 1
        assert loaded.flags == {a["id"]: a, b["id"]: b}
        assert loaded.rules == {"r1": {"id": "r1", "flag_id": a["id"], "value": None}}
        assert loaded.segments == {} and loaded.experiments == {}

        loaded.delete("flags", b["id"])
        loaded.put("flags", {**a, "enabled": True})
        assert await store.commit(loaded, actor=ACTOR) == 2
        again = await store.load(scope)
        assert again.flags == {a["id"]: {**a, "enabled": True}}
        assert await store.get(scope, "flags", a["id"]) == {**a, "enabled": True}
        assert await store.get(scope, "flags", b["id"]) is None

    run(redis_server, test)


def test_the_global_scope_holds_projects_and_keys(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        state = await store.load(keys.GLOBAL)
        assert set(state.records) == {"projects", "keys"}

    run(redis_server, test)


def test_commit_with_a_stale_version_raises_conflict_and_writes_nothing(
    redis_server: RedisProcess,
) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()
        first, second = await store.load(scope), await store.load(scope)
        first.put("flags", flag("winner"))
        await store.commit(first, actor=ACTOR)

        loser = flag("loser")
        second.put("flags", loser)
        with pytest.raises(ConcurrentWrite):
            await store.commit(second, actor=ACTOR)
        assert second.version == 0
        assert second.changes  # still pending: the caller decides to reload and retry

        after = await store.load(scope)
        assert after.version == 1
        assert [f["key"] for f in after.flags.values()] == ["winner"]

    run(redis_server, test)


def test_every_commit_bumps_the_version_by_one(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()
        state = await store.load(scope)
        versions = []
        for i in range(5):
            state.put("flags", flag(f"f{i}"))
            versions.append(await store.commit(state, actor=ACTOR))
        state.changes.clear()
        versions.append(await store.commit(state, actor=ACTOR))  # an empty commit still bumps
        assert versions == [1, 2, 3, 4, 5, 6]
        assert await store.versions([scope]) == {scope: 6}

    run(redis_server, test)


def test_versions_reads_many_scopes_and_unknown_ones_are_zero(
    redis_server: RedisProcess,
) -> None:
    async def test(store: ConfigStore) -> None:
        written, unknown = new_scope(), new_scope()
        state = await store.load(written)
        state.put("segments", {"id": "s1"})
        await store.commit(state, actor=ACTOR)
        assert await store.versions([written, unknown]) == {written: 1, unknown: 0}

    run(redis_server, test)


def test_every_commit_publishes_its_scope_and_new_version(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()
        listener = aredis.Redis.from_url(redis_server.url)
        pubsub = listener.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.CHANGES_CHANNEL)
            state = await store.load(scope)
            for i in range(3):
                state.put("flags", flag(f"f{i}"))
                await store.commit(state, actor=ACTOR)
            received = await changes_of(pubsub, scope, 3)
            assert received == [{"scope": scope, "version": v} for v in (1, 2, 3)]
        finally:
            await pubsub.aclose()
            await listener.aclose()

    run(redis_server, test)


def test_a_conflicting_commit_publishes_nothing(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()
        listener = aredis.Redis.from_url(redis_server.url)
        pubsub = listener.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.CHANGES_CHANNEL)
            stale = await store.load(scope)
            fresh = await store.load(scope)
            fresh.put("flags", flag("a"))
            await store.commit(fresh, actor=ACTOR)
            stale.put("flags", flag("b"))
            with pytest.raises(ConcurrentWrite):
                await store.commit(stale, actor=ACTOR)
            fresh.put("flags", flag("c"))
            await store.commit(fresh, actor=ACTOR)  # a marker: every message before it has arrived
            received = await changes_of(pubsub, scope, 2)
            assert [m["version"] for m in received] == [1, 2]
        finally:
            await pubsub.aclose()
            await listener.aclose()

    run(redis_server, test)


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


def run_raced(
    redis_server: RedisProcess, races: int, test: Callable[[RacedStore], Awaitable[T]]
) -> T:
    async def main() -> T:
        ours, theirs = (aredis.Redis.from_url(redis_server.url) for _ in range(2))
        try:
            return await test(RacedStore(ours, ConfigStore(theirs), races))
        finally:
            await ours.aclose()
            await theirs.aclose()

    return asyncio.run(main())


def test_mutate_retries_after_a_concurrent_writer(redis_server: RedisProcess) -> None:
    async def test(store: RacedStore) -> None:
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

    run_raced(redis_server, 2, test)


def test_mutate_gives_up_with_conflict_when_it_always_loses(redis_server: RedisProcess) -> None:
    async def test(store: RacedStore) -> None:
        scope = new_scope()
        with pytest.raises(ConcurrentWrite):
            await store.mutate(scope, lambda state: state.put("flags", flag("mine")), actor=ACTOR)
        final = await store.load(scope)
        assert {f["key"] for f in final.flags.values()} == set(store.rival_keys)
        assert "mine" not in {f["key"] for f in final.flags.values()}

    run_raced(redis_server, 20, test)


def test_mutate_without_changes_writes_nothing(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()
        result, version = await store.mutate(scope, lambda state: "read only", actor=ACTOR)
        assert (result, version) == ("read only", 0)
        assert await store.versions([scope]) == {scope: 0}

    run(redis_server, test)


def test_mutate_lets_the_changes_exception_through_and_writes_nothing(
    redis_server: RedisProcess,
) -> None:
    async def test(store: ConfigStore) -> None:
        scope = new_scope()

        def change(state: ScopeState) -> None:
            state.put("flags", flag("half"))
            raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            await store.mutate(scope, change, actor=ACTOR)
        assert (await store.load(scope)).flags == {}

    run(redis_server, test)


def test_owner_index_set_read_and_drop(redis_server: RedisProcess) -> None:
    async def test(store: ConfigStore) -> None:
        project_a, project_b = new_scope(), new_scope()
        f1, f2, s1 = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        await store.set_owner("flags", f1, project_a)
        await store.set_owner("flags", f2, project_b)
        await store.set_owner("segments", s1, project_a)
        assert await store.owner("flags", f1) == project_a
        assert await store.owner("flags", f2) == project_b
        assert await store.owner("segments", s1) == project_a
        assert await store.owner("segments", f1) is None  # one index per kind
        assert await store.owner("flags", str(uuid.uuid4())) is None

        await store.drop_owner("flags", f1, f2)
        await store.drop_owner("flags")  # nothing to drop: no error
        assert await store.owner("flags", f1) is None
        assert await store.owner("flags", f2) is None
        assert await store.owner("segments", s1) == project_a
        await store.drop_owner("segments", s1)

    run(redis_server, test)
