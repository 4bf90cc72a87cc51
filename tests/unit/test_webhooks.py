"""Webhooks without a network: the SSRF address rule, URL validation, signatures (checked with
the reference Standard Webhooks library), which entries a webhook gets, the retry schedule."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import time
from typing import Any

import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import strategies as st

from proxy.control import delivery
from proxy.domain import changes, model, webhooks
from proxy.domain.scope import PROJECT_KINDS, ScopeState
from proxy.settings import Settings, SettingsError

NOW = "2024-01-01T00:00:00Z"
PROJECT_ID = "00000000-0000-4000-8000-000000000001"
WEBHOOK_ID = "00000000-0000-4000-8000-000000000009"


def webhook(**fields: Any) -> model.Webhook:
    body = {"project_id": PROJECT_ID, "url": "https://hooks.example.com/x", "events": ["*"]}
    return {**model.new_webhook({**body, **fields}, id=WEBHOOK_ID, now=NOW), "since_version": 4}


# SSRF: which addresses a webhook may reach ------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", ""),  # reserved for future use
        ("255.255.255.255", ""),
        ("100.64.0.1", "not a public"),  # carrier-grade NAT, shared address space
        ("192.0.2.1", ""),  # documentation
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a00:1", ""),  # NAT64 of 10.0.0.1
        ("not an address", "not an IP address"),
    ],
)
def test_private_loopback_link_local_multicast_and_reserved_addresses_are_refused(
    address: str, reason: str
) -> None:
    refusal = model.address_refusal(address)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert model.address_refusal(address) is None


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/x", "http://localhost/x", "https://[::1]/x", "http://10.0.0.7/"],
)
def test_a_target_resolving_to_a_private_address_is_refused(url: str) -> None:
    with pytest.raises(delivery.Refused):
        run(delivery.resolve(url, allow_private=False))


def test_allow_private_lets_a_loopback_target_through() -> None:
    target = run(delivery.resolve("http://localhost:9000/hook?a=1", allow_private=True))
    assert target.url.host in ("127.0.0.1", "::1")
    assert (target.url.port, target.url.raw_path) == (9000, b"/hook?a=1")
    assert target.host == "localhost:9000"  # the Host header names what the URL names
    assert target.server_name is None


def test_the_request_goes_to_the_checked_address_keeping_host_and_tls_name() -> None:
    """The address is put in the URL, so that nothing resolves the name a second time (DNS
    rebinding); TLS still sends and verifies the name."""
    target = run(delivery.resolve("https://93.184.215.14:8443/h", allow_private=False))
    assert str(target.url) == "https://93.184.215.14:8443/h"
    assert (target.host, target.server_name) == ("93.184.215.14:8443", "93.184.215.14")
    six = run(delivery.resolve("https://[2606:4700:4700::1111]/h", allow_private=False))
    assert str(six.url) == "https://[2606:4700:4700::1111]/h"


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(delivery.Refused, match="does not resolve"):
        run(delivery.resolve("https://no-such-host.invalid/", allow_private=True))


# The webhook record ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "gopher://x/",
        "HTTP://hooks.example.com/",
        "hooks.example.com/x",
        "http://",
        "http:///path",
        "http://user:pass@hooks.example.com/",
        "http://@hooks.example.com/",
        "http://hooks.example.com/#frag",
        "http://hooks.example.com/#",
        "http://hooks.example.com:99999/",
        "http://hooks.example.com:0/",
        "http://hooks.example.com/a b",
        "http://hooks.exämple.com/",
        "http://hooks.example.com/\n",
        "https://" + "a" * model.MAX_URL,
        "",
        5,
        None,
    ],
)
def test_a_webhook_url_must_be_plain_http_or_https(url: Any) -> None:
    assert model.webhook_url(url) is not None
    with pytest.raises(model.ValidationError) as info:
        webhook(url=url)
    assert "url" in info.value.details


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com", "https://h.example.com:8443/a/b?c=d&e", "http://[::1]/"]
)
def test_a_webhook_url_may_have_a_port_path_and_query(url: str) -> None:
    assert model.webhook_url(url) is None


@pytest.mark.parametrize(
    ("events", "path"),
    [([], "events"), (None, "events"), ("*", "events"), (["flag.exploded"], "events[0]"),
     ([1], "events[0]")],
)  # fmt: skip
def test_webhook_events_are_audit_actions_or_the_wildcard(events: Any, path: str) -> None:
    with pytest.raises(model.ValidationError) as info:
        webhook(events=events)
    assert path in info.value.details


def test_a_new_webhook_is_enabled_and_repeats_no_event() -> None:
    w = model.new_webhook(
        {"project_id": PROJECT_ID, "url": "http://h.example.com/", "events": ["flag.toggled"] * 2},
        id=WEBHOOK_ID,
        now=NOW,
    )
    assert (w["enabled"], w["events"], w["disabled_reason"]) == (True, ["flag.toggled"], None)


def test_enabling_a_disabled_webhook_clears_the_reason() -> None:
    disabled = {**webhook(), "enabled": False, "disabled_reason": webhooks.DISABLED_REASON}
    patched = model.patch_webhook(disabled, {"enabled": True}, now=NOW)
    assert (patched["enabled"], patched["disabled_reason"]) == (True, None)
    renamed = model.patch_webhook(disabled, {"description": "x"}, now=NOW)
    assert renamed["disabled_reason"] == webhooks.DISABLED_REASON


def test_a_webhook_patch_cannot_move_it_to_another_project() -> None:
    with pytest.raises(model.ValidationError) as info:
        model.patch_webhook(webhook(), {"project_id": "other"}, now=NOW)
    assert info.value.details == {"project_id": "cannot be changed"}


def test_a_stored_webhook_receives_entries_from_the_next_version_on() -> None:
    state = ScopeState(PROJECT_ID, 6, {kind: {} for kind in PROJECT_KINDS})
    stored = changes.add_webhook(state, webhook())
    assert stored["since_version"] == 7  # the version this very write gives the project
    assert not webhooks.wants(stored, {"version": 7, "action": "webhook.created"})
    assert webhooks.wants(stored, {"version": 8, "action": "flag.toggled"})


def test_a_webhook_enabled_again_receives_entries_from_the_next_version_on() -> None:
    """Not what happened while it was disabled, even if that is still waiting in the stream."""
    state = ScopeState(PROJECT_ID, 9, {kind: {} for kind in PROJECT_KINDS})
    state.records["webhooks"][WEBHOOK_ID] = {**webhook(), "enabled": False}
    updated, enabled_again = changes.update_webhook(state, WEBHOOK_ID, {"enabled": True}, now=NOW)
    assert enabled_again and updated["since_version"] == 10
    assert not webhooks.wants(updated, {"version": 9, "action": "flag.toggled"})
    assert webhooks.wants(updated, {"version": 11, "action": "flag.toggled"})
    renamed, again = changes.update_webhook(state, WEBHOOK_ID, {"description": "x"}, now=NOW)
    assert not again and renamed["since_version"] == 10  # other changes leave it


def test_a_project_has_at_most_twenty_webhooks() -> None:
    state = ScopeState(PROJECT_ID, 0, {kind: {} for kind in PROJECT_KINDS})
    for i in range(model.MAX_WEBHOOKS):
        state.records["webhooks"][str(i)] = webhook()
    with pytest.raises(model.Conflict):
        changes.add_webhook(state, webhook())


def test_disabling_is_done_once() -> None:
    state = ScopeState(PROJECT_ID, 0, {kind: {} for kind in PROJECT_KINDS})
    state.records["webhooks"][WEBHOOK_ID] = webhook()
    assert changes.disable_webhook(state, WEBHOOK_ID, "why", now=NOW)
    assert state.webhooks[WEBHOOK_ID]["disabled_reason"] == "why"
    assert not changes.disable_webhook(state, WEBHOOK_ID, "why", now=NOW)  # another proxy's
    assert not changes.disable_webhook(state, "gone", "why", now=NOW)
    assert len(state.changes) == 1


@pytest.mark.parametrize(
    ("fields", "entry", "wanted"),
    [
        ({}, {"version": 5, "action": "flag.toggled"}, True),
        ({}, {"version": 4, "action": "flag.toggled"}, False),  # before it existed
        ({"events": ["flag.toggled"]}, {"version": 5, "action": "flag.toggled"}, True),
        ({"events": ["flag.toggled"]}, {"version": 5, "action": "flag.updated"}, False),
        ({"enabled": False}, {"version": 5, "action": "flag.toggled"}, False),
    ],
)
def test_a_webhook_wants_the_later_entries_of_its_events_while_enabled(
    fields: dict[str, Any], entry: dict[str, Any], wanted: bool
) -> None:
    assert webhooks.wants(webhook(**fields), entry) is wanted


# Signatures -----------------------------------------------------------------------------------


def test_a_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert webhooks.new_secret() != secret


def test_the_reference_library_verifies_our_signature() -> None:
    secret = webhooks.new_secret()
    entry = {"id": "1700000000000-0", "at": "2023-11-14T22:13:20.000Z", "action": "flag.toggled"}
    body = webhooks.payload(entry)
    message_id = webhooks.message_id(entry["id"], WEBHOOK_ID)
    timestamp = int(time.time())
    headers = webhooks.headers(secret, message_id, timestamp, body)
    verified = standardwebhooks.Webhook(secret).verify(body, headers)
    assert verified == {"type": "flag.toggled", "timestamp": entry["at"], "data": entry}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body.replace(b"toggled", b"deleted"), headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(webhooks.new_secret()).verify(body, headers)


def test_a_message_id_is_the_same_on_every_retry_and_differs_per_webhook() -> None:
    one = webhooks.message_id("1700000000000-0", WEBHOOK_ID)
    assert one == webhooks.message_id("1700000000000-0", WEBHOOK_ID)
    assert one != webhooks.message_id("1700000000000-0", PROJECT_ID)
    assert one != webhooks.message_id("1700000000000-1", WEBHOOK_ID)


# Retries ----------------------------------------------------------------------------------------


def test_the_first_retry_comes_within_ten_seconds_by_default() -> None:
    s = Settings()
    assert all(
        webhooks.retry_delay(1, s.webhook_retry_base, s.webhook_retry_max) <= 10 for _ in range(100)
    )


@pytest.mark.parametrize(
    "variable", ["EDGE_WEBHOOK_CLAIM_TIMEOUT", "EDGE_WEBHOOK_TIMEOUT", "EDGE_WEBHOOK_RETRY_BASE"]
)
@pytest.mark.parametrize("raw", ["0", "-1", "nan", "soon"])
def test_webhook_timings_must_be_positive_numbers(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({variable: raw})


@given(st.integers(0, 2**32), st.floats(0.01, 10), st.floats(1, 1000))
def test_retry_gaps_never_shrink_and_never_pass_the_cap(seed: int, base: float, cap: float) -> None:
    rand = random.Random(seed)
    delays = [webhooks.retry_delay(n, base, cap, rand) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert all(d <= cap for d in delays)
    for n, (earlier, later) in enumerate(itertools.pairwise(delays), start=1):
        if base * 2**n <= cap:  # below the cap, each gap is at least the one before
            assert later >= earlier
    for n, d in enumerate(delays, start=1):
        ceiling = min(cap, base * 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling  # "equal jitter": half fixed, half random
