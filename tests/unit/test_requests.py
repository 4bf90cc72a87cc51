"""The rules of the edge requests (evaluate, OFREP, track) and of stored values' depth."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.domain import model
from proxy.domain.model import MAX_DEPTH, MAX_USER_ID, UserIdError, ValidationError


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


def test_depth_counts_arrays_and_objects_alike() -> None:
    assert model.depth_ok(1) and model.depth_ok("x" * 10_000) and model.depth_ok([])
    assert model.depth_ok(nested(MAX_DEPTH))
    assert not model.depth_ok(nested(MAX_DEPTH + 1))
    assert not model.depth_ok(nested(MAX_DEPTH + 2))
    assert model.depth_ok([[1], {"a": [2]}], limit=3) and not model.depth_ok([[[1]]], limit=2)


def test_depth_of_a_hostile_value_is_checked_without_recursion() -> None:
    value: Any = []
    for _ in range(200_000):  # far past Python's recursion limit
        value = [value]
    assert not model.depth_ok(value)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (
            lambda v: model.new_flag(
                {
                    "project_id": "p",
                    "key": "k",
                    "name": "n",
                    "flag_type": "json",
                    "default_value": v,
                },
                id="f",
                now="t",
            ),
            "default_value",
        ),
        (
            lambda v: model.new_project({"name": "n", "settings": {"x": v}}, id="p", now="t"),
            "settings",
        ),
    ],
)
def test_values_nested_too_deep_are_refused_with_their_field(build: Any, field: str) -> None:
    build(nested(MAX_DEPTH - 2))
    with pytest.raises(ValidationError) as info:
        build(nested(MAX_DEPTH + 5))
    assert field in info.value.details


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),  # as OFREP's empty targetingKey: no user
        ("usr_123", "usr_123"),
        ("x" * MAX_USER_ID, "x" * MAX_USER_ID),
        (42, "42"),
        (-7, "-7"),
    ],
)
def test_a_user_id_is_a_short_string_or_an_integer(value: Any, expected: str | None) -> None:
    assert model.user_id(value) == expected


@pytest.mark.parametrize("value", ["x" * (MAX_USER_ID + 1), True, 1.5, [1], {"a": 1}])
def test_anything_else_is_not_a_user_id(value: Any) -> None:
    with pytest.raises(UserIdError):
        model.user_id(value)


@given(st.text(max_size=300) | st.integers(min_value=-(2**63), max_value=2**64))
def test_track_accepts_exactly_the_user_ids_evaluate_exposes(value: Any) -> None:
    try:
        exposed = model.user_id(value)
    except UserIdError:
        exposed = None
    body = {"flag_id": "f", "experiment_id": "e", "user_id": value}
    try:
        tracked: str | None = model.track_request(body)["user_id"]
    except ValidationError as e:
        assert set(e.details) == {"user_id"}
        tracked = None
    assert tracked == exposed


def test_track_names_every_bad_field_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        model.track_request({"user_id": "", "goal": "no spaces", "value": "12"})
    assert set(info.value.details) == {"flag_id", "experiment_id", "user_id", "goal", "value"}
    assert info.value.details["goal"] == "must match " + model.NAME_RE.pattern


@pytest.mark.parametrize("value", [0, -3, 1.25, 1e12, -1e12])
def test_a_conversion_value_is_a_finite_bounded_number(value: float) -> None:
    body = {"flag_id": "f", "experiment_id": "e", "user_id": "u", "value": value}
    assert model.track_request(body)["value"] == value


@pytest.mark.parametrize("value", [True, "3", 1e13, -1.5e12, [1]])
def test_anything_else_is_not_a_conversion_value(value: Any) -> None:
    body = {"flag_id": "f", "experiment_id": "e", "user_id": "u", "value": value}
    with pytest.raises(ValidationError) as info:
        model.track_request(body)
    assert set(info.value.details) == {"value"}


def test_evaluate_flags_is_a_list_of_keys_in_the_order_asked() -> None:
    assert model.flag_keys({}) is None
    assert model.flag_keys({"flags": ["b", "a", "b"]}) == ("b", "a")
    for bad in ("a", [1], ["a"] * (model.MAX_FLAG_KEYS + 1), {"a": 1}):
        with pytest.raises(ValidationError):
            model.flag_keys({"flags": bad})
