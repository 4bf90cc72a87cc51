"""Webhooks end to end: real servers on a Redis of each test's own, a real receiver (an HTTP
server in this process), signatures checked with the reference `standardwebhooks` library.

The receiver listens on 127.0.0.1, which the SSRF rule refuses: these servers run with
EDGE_WEBHOOK_ALLOW_PRIVATE=1, and one test shows that the suite's servers, without it, refuse."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis
import standardwebhooks

from proxy.domain import model
from proxy.domain.audit import local_actor
from proxy.store.config import ConfigStore
from tests.e2e.helpers import make_flag, make_key, make_project
from tests.e2e.receiver import Receiver, receiving
from tests.support import Client, RedisCluster, RedisProcess, ServerProcess, eventually

PRIVATE_OK = {"EDGE_WEBHOOK_ALLOW_PRIVATE": "1"}
FAST_RETRIES = {"EDGE_WEBHOOK_RETRY_BASE": "0.05", "EDGE_WEBHOOK_RETRY_MAX": "0.4"}
FLAG_EVENTS = ["flag.created", "flag.updated", "flag.toggled"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def redis(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    """A Redis of the test's own: the suite's servers must not take part in its deliveries."""
    return redis_factory()


def make_webhook(client: Client, project_id: str, url: str, **fields: Any) -> dict[str, Any]:
    body = {"project_id": project_id, "url": url, "events": FLAG_EVENTS, **fields}
    r = client.post("/api/v1/flags/webhooks", body)
    assert r.status == 201, r.body
    webhook: dict[str, Any] = r.json["data"]
    return webhook


def toggle(client: Client, flag_id: str, enabled: bool) -> None:
    assert client.patch(f"/api/v1/flags/{flag_id}", {"enabled": enabled}).status == 200


def audit(client: Client, project_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/flags/audit?project_id={project_id}&limit=200")
    assert r.status == 200 and r.json["meta"]["next_cursor"] is None
    entries: list[dict[str, Any]] = r.json["data"]
    return entries


# Setting one up ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://no-such-host.invalid/",
        "ftp://hooks.example.com/",
    ],
)
def test_a_private_or_unreachable_target_is_refused_with_422(a: Client, url: str) -> None:
    """The suite's servers run without EDGE_WEBHOOK_ALLOW_PRIVATE."""
    project_id = make_project(a)
    r = a.post("/api/v1/flags/webhooks", {"project_id": project_id, "url": url, "events": ["*"]})
    assert r.status == 422, r.body
    assert "url" in r.json["details"]
    assert a.get(f"/api/v1/flags/webhooks?project_id={project_id}").json["data"] == []


def test_a_target_may_not_be_changed_to_a_private_one(a: Client) -> None:
    project_id = make_project(a)
    # A public address, given as such (nothing to resolve); nothing is ever sent to it: the
    # project has no change after it, and it is deleted at the end.
    webhook = make_webhook(a, project_id, "https://93.184.215.14/hook", events=["flag.deleted"])
    path = f"/api/v1/flags/webhooks/{webhook['id']}"
    r = a.patch(path, {"url": "http://127.0.0.1:8080/"})
    assert r.status == 422 and "url" in r.json["details"], r.body
    assert a.get(path).json["data"]["url"] == "https://93.184.215.14/hook"
    assert a.delete(path).status == 204


def test_the_secret_is_shown_once_and_never_again(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    c = server_factory(redis.url, **PRIVATE_OK).client()
    project_id = make_project(c)
    created = make_webhook(c, project_id, receiver.url(), description="deploys channel")
    assert created["secret"].startswith("whsec_")
    assert (created["enabled"], created["failure_count"], created["disabled_reason"]) == (
        True,
        0,
        None,
    )
    path = f"/api/v1/flags/webhooks/{created['id']}"
    listed = c.get(f"/api/v1/flags/webhooks?project_id={project_id}").json["data"]
    read = c.get(path).json["data"]
    assert listed == [read]
    assert read == {k: v for k, v in created.items() if k != "secret"}
    patched = c.patch(path, {"events": ["*"], "description": None}).json["data"]
    assert patched["events"] == ["*"] and "secret" not in patched
    assert c.get(path + "/deliveries").json["data"] == []
    entries = audit(c, project_id)
    assert [e["action"] for e in entries] == ["webhook.updated", "webhook.created"]
    # The log is readable with flags:read: it names the receiver's host, not its path.
    assert entries[1]["after"]["url"] == f"http://127.0.0.1:{receiver.port}/[redacted]"
    everything = str(entries) + str(c.get(f"/api/v1/flags/webhooks?project_id={project_id}").body)
    assert created["secret"] not in everything
    assert c.delete(path).status == 204
    assert c.get(path).status == 404
    assert c.get(path + "/deliveries").status == 404
    assert audit(c, project_id)[0]["action"] == "webhook.deleted"


def test_webhooks_need_flags_write_on_their_project(a: Client) -> None:
    project_id, elsewhere = make_project(a), make_project(a)
    _, reader = make_key(a, scopes=["flags:read"])
    listing = f"/api/v1/flags/webhooks?project_id={project_id}"
    assert a.with_token(reader).get(listing).status == 403  # URLs say where changes go
    _, writer = make_key(a, scopes=["flags:write"], project_ids=[project_id])
    assert a.with_token(writer).get(listing).status == 200
    body = {"project_id": elsewhere, "url": "https://93.184.215.14/", "events": ["*"]}
    assert a.with_token(writer).post("/api/v1/flags/webhooks", body).status == 403


# Delivering -----------------------------------------------------------------------------------


def test_deliveries_are_signed_and_carry_the_audit_entry(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    c = server_factory(redis.url, **PRIVATE_OK).client()
    project_id = make_project(c)
    flag = make_flag(c, project_id, key="before_the_webhook")
    webhook = make_webhook(c, project_id, receiver.url())
    toggle(c, flag["id"], True)
    renamed = c.patch(f"/api/v1/flags/{flag['id']}", {"name": "Renamed"})
    assert renamed.status == 200
    eventually(lambda: len(receiver.requests) == 2, timeout=10)

    verifier = standardwebhooks.Webhook(webhook["secret"])
    entries = {e["id"]: e for e in audit(c, project_id)}
    for got in receiver.requests:
        payload = verifier.verify(got.body, got.headers)  # raises unless the signature holds
        assert set(payload) == {"type", "timestamp", "data"}
        assert payload["data"] == entries[payload["data"]["id"]]
        assert payload["type"] == payload["data"]["action"]
        assert payload["timestamp"] == payload["data"]["at"]
        assert got.headers["content-type"] == "application/json"
        assert got.headers["webhook-id"].endswith(webhook["id"])
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
        assert got.headers["webhook-signature"].startswith("v1,")
    # What happened before the webhook existed is not its to receive.
    assert [r.json["type"] for r in receiver.requests] == ["flag.toggled", "flag.updated"]
    forged = dict(receiver.requests[0].headers, **{"webhook-id": "msg_other"})
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verifier.verify(receiver.requests[0].body, forged)

    log = eventually(
        lambda: (
            (d := c.get(f"/api/v1/flags/webhooks/{webhook['id']}/deliveries").json["data"])
            and len(d) == 2
            and d
        )
    )
    assert [(d["type"], d["attempt"], d["status"], d["ok"], d["error"]) for d in log] == [
        ("flag.updated", 1, 204, True, None),
        ("flag.toggled", 1, 204, True, None),
    ]
    assert all(d["duration_ms"] >= 0 for d in log)


def test_two_proxies_deliver_each_entry_to_each_webhook_exactly_once(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    a = server_factory(redis.url, **PRIVATE_OK)
    b = server_factory(redis.url, **PRIVATE_OK)
    ca, cb = a.client(), b.client()
    project_id = make_project(ca)
    first = make_webhook(ca, project_id, receiver.url("/first"))
    second = make_webhook(cb, project_id, receiver.url("/second"), events=["flag.toggled"])
    flag = make_flag(ca, project_id)
    changes = 30
    for i in range(changes):
        toggle(ca if i % 2 else cb, flag["id"], i % 2 == 0)

    toggles = {e["id"] for e in audit(ca, project_id) if e["action"] == "flag.toggled"}
    flag_entries = {e["id"] for e in audit(ca, project_id) if e["action"] in FLAG_EVENTS}
    assert len(toggles) == changes and len(flag_entries) == changes + 1
    eventually(lambda: len(receiver.at("/first")) >= len(flag_entries), timeout=20)
    eventually(lambda: len(receiver.at("/second")) >= len(toggles), timeout=20)
    time.sleep(1.5)  # anything sent twice would have arrived by now

    for path, webhook, wanted in (("/first", first, flag_entries), ("/second", second, toggles)):
        got = receiver.at(path)
        ids = Counter(r.headers["webhook-id"] for r in got)
        assert all(n == 1 for n in ids.values()), ids.most_common(3)
        assert {r.json["data"]["id"] for r in got} == wanted
        verifier = standardwebhooks.Webhook(webhook["secret"])
        for r in got:
            verifier.verify(r.body, r.headers)

    def delivered(server: ServerProcess) -> float:
        metrics = server.client(None).get("/metrics").body.decode()
        prefix = 'edge_webhook_deliveries_total{outcome="delivered"}'
        return float(next(m for m in metrics.splitlines() if m.startswith(prefix)).split()[-1])

    assert delivered(a) + delivered(b) == len(flag_entries) + len(toggles)


def test_a_delivery_pending_on_a_killed_proxy_is_delivered_by_another(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    doomed = server_factory(redis.url, **PRIVATE_OK)
    c = doomed.client()
    project_id = make_project(c)
    webhook = make_webhook(c, project_id, receiver.url(), events=["flag.toggled"])
    flag = make_flag(c, project_id)
    receiver.hold.clear()  # the receiver takes the request and keeps it waiting
    toggle(c, flag["id"], True)
    eventually(lambda: len(receiver.requests) == 1, timeout=10)
    held = receiver.requests[0]
    doomed.stop(signal.SIGKILL)  # mid-delivery: the entry stays pending for a dead consumer
    killed_at = time.monotonic()
    receiver.hold.set()

    survivor = server_factory(redis.url, **PRIVATE_OK, EDGE_WEBHOOK_CLAIM_TIMEOUT="1")
    eventually(lambda: len(receiver.requests) == 2, timeout=15)
    again = receiver.requests[1]
    assert again.at > killed_at
    assert again.headers["webhook-id"] == held.headers["webhook-id"]  # the same message
    assert again.json == held.json and again.json["type"] == "flag.toggled"
    standardwebhooks.Webhook(webhook["secret"]).verify(again.body, again.headers)

    s = survivor.client()
    log = eventually(
        lambda: (
            (d := s.get(f"/api/v1/flags/webhooks/{webhook['id']}/deliveries").json["data"])
            and d[0]["ok"]
            and d
        )
    )
    assert [(d["type"], d["status"]) for d in log] == [("flag.toggled", 204)]  # none by the dead

    def pending() -> bool:
        metrics = survivor.client(None).get("/metrics").body.decode()
        return f'edge_webhook_pending_entries{{project="{project_id}"}} 0.0' in metrics

    eventually(pending, timeout=10)  # acknowledged: nobody will deliver it again
    time.sleep(1.5)
    assert len(receiver.requests) == 2


def test_a_proxy_stopped_mid_delivery_hands_it_over_at_once(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    """A rolling restart: SIGTERM marks what the proxy was delivering as idle, so the next proxy
    delivers it without waiting out the 30 s claim timeout."""
    stopping = server_factory(redis.url, **PRIVATE_OK)
    c = stopping.client()
    project_id = make_project(c)
    make_webhook(c, project_id, receiver.url(), events=["flag.toggled"])
    flag = make_flag(c, project_id)
    receiver.hold.clear()
    toggle(c, flag["id"], True)
    eventually(lambda: len(receiver.requests) == 1, timeout=10)
    assert stopping.stop() == 0  # SIGTERM: graceful
    receiver.hold.set()
    stopped_at = time.monotonic()
    server_factory(redis.url, **PRIVATE_OK)  # the default claim timeout: 30 s
    eventually(lambda: len(receiver.requests) == 2, timeout=15)
    assert receiver.requests[1].at - stopped_at < 20
    assert receiver.requests[1].headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]


def test_a_new_webhook_does_not_wait_behind_entries_nobody_wanted(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    """The project's log grew while it had no webhook: those entries are acknowledged in bulk,
    not one by one before the first that matters."""
    c = server_factory(redis.url, **PRIVATE_OK).client()
    project_id = make_project(c)
    first = make_webhook(c, project_id, receiver.url("/first"))  # the consumer group is made
    assert c.delete(f"/api/v1/flags/webhooks/{first['id']}").status == 204

    async def backlog() -> None:  # 5000 entries in one write, straight through the store
        client = aredis.Redis.from_url(redis.url)
        try:
            segments = [
                model.new_segment({"project_id": project_id, "name": f"s{i}"}, id=model.new_id(),
                                  now=model.now())
                for i in range(5000)
            ]  # fmt: skip
            await ConfigStore(client).mutate(
                project_id,
                lambda s: [s.put("segments", g) for g in segments],
                actor=local_actor("t"),
            )
        finally:
            await client.aclose()

    asyncio.run(backlog())
    flag = make_flag(c, project_id)
    make_webhook(c, project_id, receiver.url(), events=["flag.toggled"])
    toggle(c, flag["id"], True)
    eventually(lambda: receiver.at("/hook"), timeout=10)
    assert receiver.at("/first") == []


def test_a_failing_receiver_is_retried_with_growing_gaps_then_disabled(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    c = server_factory(redis.url, **PRIVATE_OK, **FAST_RETRIES).client()
    receiver.status["/hook"] = 500
    project_id = make_project(c)
    webhook = make_webhook(c, project_id, receiver.url(), events=["flag.toggled"])
    path = f"/api/v1/flags/webhooks/{webhook['id']}"
    flag = make_flag(c, project_id)
    toggle(c, flag["id"], True)

    disabled = eventually(lambda: not (w := c.get(path).json["data"])["enabled"] and w, timeout=20)
    assert disabled["failure_count"] == 10
    assert disabled["disabled_reason"] == "disabled after 10 consecutive failed deliveries"
    got = receiver.at("/hook")
    assert len(got) == 10
    assert len({r.headers["webhook-id"] for r in got}) == 1  # ten attempts of one message
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(got)]
    for n, gap in enumerate(gaps, start=1):  # after attempt n: at least half of base * 2^(n-1)
        assert gap >= 0.9 * min(0.4, 0.05 * 2 ** (n - 1)) / 2, gaps
    assert gaps[3] > gaps[0] and gaps[-1] > gaps[1]

    log = c.get(path + "/deliveries").json["data"]
    assert [(d["attempt"], d["status"], d["ok"]) for d in log] == [
        (n, 500, False) for n in range(10, 0, -1)
    ]
    assert log[0]["error"] == "HTTP 500"
    [disabling] = [e for e in audit(c, project_id) if e["action"] == "webhook.updated"]
    assert disabling["actor"] == {"key_id": None, "key_name": "webhook-delivery"}
    assert (disabling["before"]["enabled"], disabling["after"]["enabled"]) == (True, False)

    toggle(c, flag["id"], False)  # disabled: nothing more is sent
    time.sleep(1)
    assert len(receiver.at("/hook")) == 10

    receiver.status["/hook"] = 204
    enabled = c.patch(path, {"enabled": True}).json["data"]
    assert (enabled["enabled"], enabled["failure_count"], enabled["disabled_reason"]) == (
        True,
        0,
        None,
    )
    toggle(c, flag["id"], True)
    eventually(lambda: len(receiver.at("/hook")) >= 11, timeout=10)
    time.sleep(0.5)
    # The change made while it was disabled is not delivered: only the one after it came back.
    [last] = receiver.at("/hook")[10:]
    assert (last.json["type"], last.json["data"]["after"]["enabled"]) == ("flag.toggled", True)


def test_a_redirect_is_not_followed(
    redis: RedisProcess, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    c = server_factory(redis.url, **PRIVATE_OK, **FAST_RETRIES).client()
    receiver.redirect_to["/hook"] = receiver.url("/elsewhere")
    project_id = make_project(c)
    webhook = make_webhook(c, project_id, receiver.url(), events=["flag.toggled"])
    flag = make_flag(c, project_id)
    toggle(c, flag["id"], True)
    path = f"/api/v1/flags/webhooks/{webhook['id']}"
    log = eventually(lambda: c.get(path + "/deliveries").json["data"], timeout=10)
    assert (log[-1]["status"], log[-1]["ok"]) == (302, False)
    assert "redirects are not followed" in log[-1]["error"]
    assert c.delete(path).status == 204  # no more retries of a deleted webhook
    time.sleep(0.5)
    assert receiver.at("/elsewhere") == []


def test_the_log_and_deliveries_work_on_a_redis_cluster(
    tmp_path: Path, server_factory: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    """A project's records, audit stream, consumer group and webhook keys share its hash tag:
    every script and command stays on one slot."""
    cluster = RedisCluster(tmp_path / "cluster").start()
    try:
        env = {**PRIVATE_OK, "REDIS_MODE": "cluster"}
        a, b = server_factory(cluster.url, **env), server_factory(cluster.url, **env)
        ca = a.client()
        project_id = make_project(ca)
        webhook = make_webhook(ca, project_id, receiver.url(), events=["flag.toggled"])
        flag = make_flag(ca, project_id)
        for i in range(6):
            toggle(ca if i % 2 else b.client(), flag["id"], i % 2 == 0)
        eventually(lambda: len(receiver.requests) == 6, timeout=15)
        time.sleep(1)
        assert (
            len({r.headers["webhook-id"] for r in receiver.requests}) == 6 == len(receiver.requests)
        )
        verifier = standardwebhooks.Webhook(webhook["secret"])
        for r in receiver.requests:
            verifier.verify(r.body, r.headers)
        assert [e["action"] for e in audit(ca, project_id)][:6] == ["flag.toggled"] * 6
        assert ca.delete(f"/api/v1/flags/webhooks/{webhook['id']}").status == 204
    finally:
        cluster.kill()
