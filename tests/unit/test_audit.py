"""The audit log's pure parts: which action a change is, what an entry shows, the query rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.domain import audit, changes, model
from proxy.domain.access import ApiKey
from proxy.domain.scope import PROJECT_KINDS, Change, Kind, ScopeState

NOW = "2024-01-01T00:00:00Z"
LATER = "2024-01-02T00:00:00Z"
PROJECT_ID = "00000000-0000-4000-8000-000000000001"
ACTOR = audit.local_actor("test")
FLAG = {"id": "f", "key": "checkout", "name": "Checkout", "enabled": False, "updated_at": NOW}
KEY = {"id": "k", "name": "ci", "token_sha256": "ab" * 32, "created_at": NOW}
EXPERIMENT = {"id": "e", "name": "E", "status": "draft", "traffic_percentage": 100.0}


def entries_of(changes_: list[Change]) -> list[dict[str, Any]]:
    return [orjson.loads(e) for _, e in audit.entries(changes_, ACTOR, PROJECT_ID)]


@pytest.mark.parametrize(
    ("kind", "before", "after", "expected"),
    [
        ("flags", None, FLAG, "flag.created"),
        ("flags", FLAG, None, "flag.deleted"),
        ("flags", FLAG, {**FLAG, "enabled": True, "updated_at": LATER}, "flag.toggled"),
        ("flags", FLAG, {**FLAG, "enabled": True}, "flag.toggled"),
        ("flags", FLAG, {**FLAG, "name": "New", "updated_at": LATER}, "flag.updated"),
        ("flags", FLAG, {**FLAG, "enabled": True, "name": "New"}, "flag.updated"),
        ("flags", FLAG, {**FLAG, "updated_at": LATER}, "flag.updated"),  # a PATCH of nothing
        ("keys", None, KEY, "key.created"),
        ("keys", KEY, {**KEY, "revoked_at": NOW}, "key.revoked"),
        ("keys", {**KEY, "revoked_at": NOW}, {**KEY, "revoked_at": None}, "key.restored"),
        ("keys", KEY, {**KEY, "name": "other"}, "key.updated"),
        ("projects", None, {"id": "p"}, "project.created"),
        ("rules", None, {"id": "r"}, "rule.created"),
        ("rules", {"id": "r", "position": 0}, {"id": "r", "position": 1}, "rule.updated"),
        ("rules", {"id": "r"}, None, "rule.deleted"),
        ("segments", {"id": "s", "name": "a"}, {"id": "s", "name": "b"}, "segment.updated"),
        ("experiments", None, EXPERIMENT, "experiment.created"),
        ("experiments", EXPERIMENT, {**EXPERIMENT, "status": "running"}, "experiment.started"),
        (
            "experiments",
            {**EXPERIMENT, "status": "running"},
            {**EXPERIMENT, "status": "stopped"},
            "experiment.stopped",
        ),
        ("experiments", EXPERIMENT, {**EXPERIMENT, "name": "F"}, "experiment.updated"),
        ("experiments", EXPERIMENT, None, "experiment.deleted"),
        ("webhooks", None, {"id": "w"}, "webhook.created"),
        (
            "webhooks",
            {"id": "w", "enabled": True},
            {"id": "w", "enabled": False},
            "webhook.updated",
        ),
    ],
)
def test_the_action_of_a_change_is_derived_from_its_kind_before_and_after(
    kind: Kind, before: Any, after: Any, expected: str
) -> None:
    assert audit.action(kind, before, after) == expected
    assert expected in model.AUDIT_ACTIONS


def test_every_action_the_contract_names_can_be_derived() -> None:
    named = [
        *("flag.created", "flag.updated", "flag.toggled", "flag.deleted"),
        *("rule.created", "rule.updated", "rule.deleted"),
        *("segment.created", "segment.updated", "segment.deleted"),
        *("experiment.created", "experiment.updated", "experiment.started", "experiment.stopped"),
        *("key.created", "key.revoked", "project.created"),
    ]
    assert set(named) <= set(model.AUDIT_ACTIONS)


def test_an_entry_shows_the_records_without_the_key_token_hash() -> None:
    [entry] = entries_of([Change("keys", "k", KEY, {**KEY, "revoked_at": NOW})])
    assert entry == {
        "action": "key.revoked",
        "resource_type": "key",
        "resource_id": "k",
        "project_id": PROJECT_ID,
        "actor": ACTOR,
        "before": {k: v for k, v in KEY.items() if k != "token_sha256"},
        "after": {**{k: v for k, v in KEY.items() if k != "token_sha256"}, "revoked_at": NOW},
    }
    assert "token_sha256" not in orjson.dumps(entry).decode()


def test_each_changed_record_of_a_write_makes_one_entry_in_order() -> None:
    """Deleting a flag takes its rules and experiments with it: one entry each."""
    state = ScopeState(PROJECT_ID, 3, {kind: {} for kind in PROJECT_KINDS})
    state.records["flags"]["f"] = FLAG
    state.records["rules"]["r"] = {"id": "r", "flag_id": "f", "environment": "production"}
    state.records["experiments"]["e"] = {**EXPERIMENT, "flag_id": "f"}
    changes.remove_flag(state, "f")
    entries = entries_of(state.changes)
    assert [(e["action"], e["resource_id"]) for e in entries] == [
        ("flag.deleted", "f"),
        ("rule.deleted", "r"),
        ("experiment.deleted", "e"),
    ]
    assert all(e["after"] is None and e["before"] is not None for e in entries)


def test_several_changes_of_one_record_make_one_entry_from_first_before_to_last_after() -> None:
    renamed = {**FLAG, "name": "Renamed"}
    enabled = {**renamed, "enabled": True}
    [entry] = entries_of(
        [Change("flags", "f", FLAG, renamed), Change("flags", "f", renamed, enabled)]
    )
    assert (entry["before"], entry["after"], entry["action"]) == (FLAG, enabled, "flag.updated")


def test_a_record_that_ends_as_it_began_makes_no_entry() -> None:
    assert entries_of([Change("flags", "f", FLAG, FLAG)]) == []
    assert (
        entries_of(
            [Change("rules", "r", None, {"id": "r"}), Change("rules", "r", {"id": "r"}, None)]
        )
        == []
    )


def test_a_webhook_entry_hides_the_path_and_query_of_its_url() -> None:
    hook = {"id": "w", "url": "https://hooks.slack.com/services/T0/B0/token", "enabled": True}
    moved = {**hook, "url": "https://hooks.slack.com/services/T0/B0/other-token"}
    [entry] = entries_of([Change("webhooks", "w", hook, moved)])
    assert entry["before"]["url"] == entry["after"]["url"] == "https://hooks.slack.com/[redacted]"
    assert "token" not in orjson.dumps(entry).decode()  # and a change of token is still logged
    assert audit.redacted_url("https://h.example.com:8443/") == "https://h.example.com:8443/"
    assert audit.redacted_url("http://h.example.com?k=v") == "http://h.example.com/[redacted]"


def test_global_entries_have_no_project() -> None:
    [(resource_id, raw)] = audit.entries([Change("projects", "p", None, {"id": "p"})], ACTOR, None)
    assert resource_id == "p"
    assert orjson.loads(raw)["project_id"] is None


def test_a_key_actor_is_its_id_and_name_and_a_local_one_has_no_id() -> None:
    key = ApiKey("k1", "deploy bot", frozenset({"*"}), None)
    assert audit.key_actor(key) == {"key_id": "k1", "key_name": "deploy bot"}
    assert audit.local_actor("cli") == {"key_id": None, "key_name": "cli"}


def test_an_entry_time_is_its_stream_id_milliseconds_in_rfc3339() -> None:
    assert audit.entry_time("1700000000123-4") == "2023-11-14T22:13:20.123Z"
    assert audit.entry_time("0-0") == "1970-01-01T00:00:00.000Z"


def test_an_entry_as_shown_has_the_contract_fields_first() -> None:
    stored = entries_of([Change("flags", "f", None, FLAG)])[0]
    shown = audit.entry("1700000000000-0", 7, stored)
    assert list(shown)[:8] == [
        "id", "at", "action", "resource_type", "resource_id", "project_id", "version", "actor",
    ]  # fmt: skip
    assert (shown["id"], shown["version"], shown["after"]) == ("1700000000000-0", 7, FLAG)


# GET /audit's query ------------------------------------------------------------------------------


def test_the_audit_query_defaults_to_fifty_from_the_newest() -> None:
    assert model.audit_query({}) == {"limit": 50, "cursor": None, "resource_id": None}


def test_the_audit_query_keeps_a_valid_limit_cursor_and_resource() -> None:
    query = model.audit_query(
        {"limit": "200", "cursor": "1700000000000-3", "resource_id": PROJECT_ID}
    )
    assert query == {"limit": 200, "cursor": "1700000000000-3", "resource_id": PROJECT_ID}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "٣"}, "limit"),  # a digit, but not an ASCII one
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "1700000000000"}, "cursor"),
        ({"cursor": "18446744073709551616-0"}, "cursor"),  # past Redis's 64 bits
        ({"cursor": "1-2\n"}, "cursor"),
        ({"resource_id": "not-a-uuid"}, "resource_id"),
    ],
)
def test_a_bad_audit_query_is_refused_at_its_field(params: dict[str, str], path: str) -> None:
    with pytest.raises(model.ValidationError) as info:
        model.audit_query(params)
    assert list(info.value.details) == [path]


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_any_stream_id_is_a_valid_cursor(ms: int, seq: int) -> None:
    assert model.audit_query({"cursor": f"{ms}-{seq}"})["cursor"] == f"{ms}-{seq}"


def test_a_cursor_with_leading_zeros_is_read_as_its_number() -> None:
    assert model.audit_query({"cursor": "0012-01"})["cursor"] == "12-1"
