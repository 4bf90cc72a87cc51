"""Validation rules of the domain model: every constructor and patch, field by field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.domain import model
from proxy.domain.model import Record, ValidationError

NOW = "2024-01-01T00:00:00Z"
LATER = "2024-01-02T00:00:00Z"
PROJECT_ID = "00000000-0000-4000-8000-000000000001"
FLAG_ID = "00000000-0000-4000-8000-000000000002"
SEGMENT_ID = "00000000-0000-4000-8000-000000000003"
TOKEN = "kr_live_" + "A" * 43
UUID = "3f2b8c1e-9a4d-4e6f-b7a8-0c1d2e3f4a5b"


def details(build: Callable[[], Any]) -> dict[str, str]:
    """The `details` of the ValidationError that `build` must raise."""
    with pytest.raises(ValidationError) as info:
        build()
    return info.value.details


def project(**fields: Any) -> Record:
    return model.new_project({"name": "Shop", **fields}, id=PROJECT_ID, now=NOW)


def flag(flag_type: str = "boolean", default_value: Any = False, **fields: Any) -> Record:
    body = {
        "project_id": PROJECT_ID,
        "key": "checkout",
        "name": "Checkout",
        "flag_type": flag_type,
        "default_value": default_value,
        **fields,
    }
    return model.new_flag(body, id=FLAG_ID, now=NOW)


def segment() -> Record:
    body = {
        "project_id": PROJECT_ID,
        "name": "Beta",
        "rules": [{"key": "plan", "operator": "equals", "value": "pro"}],
    }
    return model.new_segment(body, id=SEGMENT_ID, now=NOW)


def rule(body: dict[str, Any], *, flag_record: Record | None = None) -> Record:
    return model.new_rule(
        {"environment": "production", "value": True, **body},
        flag=flag_record or flag(),
        project=project(),
        segments={SEGMENT_ID: segment()},
        next_position=7,
        id="rule-1",
        now=NOW,
    )


def variants(*percentages: Any, values: tuple[Any, ...] = (True, False)) -> list[dict[str, Any]]:
    return [
        {"key": f"v{i}", "value": values[i % len(values)], "percentage": pct}
        for i, pct in enumerate(percentages)
    ]


def experiment(body: dict[str, Any], *, flag_record: Record | None = None) -> Record:
    return model.new_experiment(
        {"name": "Test", "environment": "production", "variants": variants(50, 50), **body},
        flag=flag_record or flag(),
        project=project(),
        id="exp-1",
        now=NOW,
    )


# Projects -------------------------------------------------------------------------------------


def test_new_project_defaults_environments_and_the_default_environment() -> None:
    p = project()
    assert p == {
        "id": PROJECT_ID,
        "name": "Shop",
        "slug": None,
        "environments": ["production", "staging", "development"],
        "settings": {"default_environment": "production"},
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_new_project_keeps_given_environments_slug_and_settings() -> None:
    p = project(
        slug="my-shop",
        environments=["live", "qa"],
        settings={"default_environment": "qa", "color": "blue"},
    )
    assert p["slug"] == "my-shop"
    assert p["environments"] == ["live", "qa"]
    assert p["settings"] == {"default_environment": "qa", "color": "blue"}


def test_new_project_default_environment_is_the_first_given() -> None:
    assert project(environments=["live", "qa"])["settings"]["default_environment"] == "live"


def test_new_project_null_environments_means_the_defaults() -> None:
    assert project(environments=None)["environments"] == list(model.DEFAULT_ENVIRONMENTS)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"slug": "Shop"}, "slug"),
        ({"slug": "-shop"}, "slug"),
        ({"slug": ""}, "slug"),
        ({"slug": "a" * 65}, "slug"),
        ({"slug": 5}, "slug"),
        ({"environments": []}, "environments"),
        ({"environments": "production"}, "environments"),
        ({"environments": [f"e{i}" for i in range(21)]}, "environments"),
        ({"environments": ["live", "live"]}, "environments"),
        ({"environments": ["live", "has space"]}, "environments[1]"),
        ({"environments": ["live", 5]}, "environments[1]"),
        ({"environments": ["x" * 65]}, "environments[0]"),
        ({"settings": "dark"}, "settings"),
        ({"settings": {"default_environment": "qa"}}, "settings.default_environment"),
        (
            {"environments": ["live"], "settings": {"default_environment": "production"}},
            "settings.default_environment",
        ),
    ],
)
def test_new_project_rejects_a_bad_field_at_its_path(fields: dict[str, Any], path: str) -> None:
    assert path in details(lambda: project(**fields))


def test_new_project_reports_every_bad_field_at_once() -> None:
    errors = details(
        lambda: model.new_project({"slug": "BAD", "environments": []}, id=PROJECT_ID, now=NOW)
    )
    assert set(errors) == {"name", "slug", "environments"}


@pytest.mark.parametrize("fields", [{"slug": "shop\n"}, {"environments": ["production\n"]}])
def test_new_project_rejects_names_with_a_trailing_newline(fields: dict[str, Any]) -> None:
    details(lambda: project(**fields))


@pytest.mark.parametrize("settings", [[], 0, "", False])
def test_new_project_rejects_settings_that_are_not_an_object(settings: Any) -> None:
    assert "settings" in details(lambda: project(settings=settings))


def test_slugify_lowercases_and_joins_words_with_dashes() -> None:
    assert model.slugify("  My Shop! (EU) ", set()) == "my-shop-eu"


def test_slugify_numbers_a_slug_that_is_taken() -> None:
    assert model.slugify("Shop", {"shop"}) == "shop-2"
    assert model.slugify("Shop", {"shop", "shop-2", "shop-3"}) == "shop-4"


def test_slugify_of_a_name_without_letters_or_digits_is_project() -> None:
    assert model.slugify("!!!", set()) == "project"
    assert model.slugify("ÄÖÜ", {"project"}) == "project-2"


@given(
    name=st.text(max_size=100),
    taken=st.sets(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True), max_size=10),
)
def test_slugify_always_gives_a_valid_slug_nobody_has(name: str, taken: set[str]) -> None:
    base = model.slugify(name, set())
    taken = taken | {base, f"{base}-2"}
    slug = model.slugify(name, taken)
    assert slug not in taken
    assert model.SLUG_RE.match(slug)
    assert len(slug) <= 64


# API keys -------------------------------------------------------------------------------------


def key(body: dict[str, Any]) -> Record:
    return model.new_key(
        {"name": "ci", "scopes": ["flags:read"], **body},
        projects={PROJECT_ID: project()},
        id="key-1",
        now=NOW,
        token=TOKEN,
    )


def test_new_key_keeps_scopes_and_projects_deduplicated_and_the_token_prefix() -> None:
    k = key({"scopes": ["flags:read", "flags:evaluate", "flags:read"], "project_ids": [PROJECT_ID]})
    assert k == {
        "id": "key-1",
        "name": "ci",
        "scopes": ["flags:read", "flags:evaluate"],
        "project_ids": [PROJECT_ID],
        "prefix": TOKEN[:12],
        "created_at": NOW,
    }
    assert "token" not in k and TOKEN not in k.values()


def test_new_key_without_project_ids_is_unrestricted() -> None:
    assert key({"scopes": ["*"]})["project_ids"] is None
    assert key({"scopes": ["*"], "project_ids": None})["project_ids"] is None


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"name": None}, "name"),
        ({"scopes": None}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": "*"}, "scopes"),
        ({"scopes": ["flags:admin"]}, "scopes"),
        ({"scopes": ["*", 1]}, "scopes"),
        ({"project_ids": []}, "project_ids"),
        ({"project_ids": PROJECT_ID}, "project_ids"),
        ({"project_ids": [PROJECT_ID, "00000000-0000-4000-8000-00000000ffff"]}, "project_ids[1]"),
        ({"project_ids": [5]}, "project_ids[0]"),
    ],
)
def test_new_key_rejects_a_bad_field_at_its_path(fields: dict[str, Any], path: str) -> None:
    assert path in details(lambda: key(fields))


# Flags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag_type", "default_value"),
    [
        ("boolean", True),
        ("string", ""),
        ("string", "blue"),
        ("number", 0),
        ("number", -2.5),
        ("json", {"a": [1, 2]}),
        ("json", [1, "x"]),
        ("json", "text"),
        ("json", None),
    ],
)
def test_new_flag_accepts_a_default_value_of_its_type(flag_type: str, default_value: Any) -> None:
    f = flag(flag_type, default_value)
    assert f == {
        "id": FLAG_ID,
        "project_id": PROJECT_ID,
        "key": "checkout",
        "name": "Checkout",
        "flag_type": flag_type,
        "default_value": default_value,
        "enabled": False,
        "description": None,
        "tags": [],
        "created_at": NOW,
        "updated_at": NOW,
    }


@pytest.mark.parametrize(
    ("flag_type", "default_value"),
    [
        ("boolean", "true"),
        ("boolean", 0),
        ("boolean", None),
        ("string", 1),
        ("string", None),
        ("string", ["a"]),
        ("number", True),
        ("number", "1"),
        ("number", None),
        ("number", float("nan")),
        ("number", float("inf")),
    ],
)
def test_new_flag_rejects_a_default_value_of_another_type(
    flag_type: str, default_value: Any
) -> None:
    assert details(lambda: flag(flag_type, default_value)) == {
        "default_value": f"must be a {flag_type} value"
    }


def test_new_flag_requires_a_default_value() -> None:
    body = {"project_id": PROJECT_ID, "key": "k", "name": "K", "flag_type": "string"}
    errors = details(lambda: model.new_flag(body, id=FLAG_ID, now=NOW))
    assert errors == {"default_value": "is required"}


@pytest.mark.parametrize("good", ["a", "A-b_c.d", "0", "x" * 128])
def test_new_flag_accepts_keys_of_the_allowed_characters(good: str) -> None:
    assert flag(key=good)["key"] == good


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "é", "a/b", 5, None])
def test_new_flag_rejects_a_key_outside_the_pattern(bad: Any) -> None:
    assert set(details(lambda: flag(key=bad))) == {"key"}


def test_new_flag_rejects_a_key_with_a_trailing_newline() -> None:
    details(lambda: flag(key="checkout\n"))


@pytest.mark.parametrize("bad", ["bool", "JSON", None, 1, ["boolean"]])
def test_new_flag_rejects_an_unknown_flag_type(bad: Any) -> None:
    assert set(details(lambda: flag(bad, False))) == {"flag_type"}


def test_new_flag_keeps_tags_in_order_without_repeats_and_a_description() -> None:
    f = flag(tags=["b", "a", "b"], description="Shown at checkout")
    assert f["tags"] == ["b", "a"]
    assert f["description"] == "Shown at checkout"
    assert flag(tags=None)["tags"] == []
    assert flag(description="")["description"] == ""


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"tags": "a"}, "tags"),
        ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
        ({"tags": ["ok", ""]}, "tags[1]"),
        ({"tags": ["x" * 65]}, "tags[0]"),
        ({"tags": ["ok", 5]}, "tags[1]"),
        ({"description": "x" * 2001}, "description"),
        ({"description": 5}, "description"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
    ],
)
def test_new_flag_rejects_bad_tags_description_and_name(fields: dict[str, Any], path: str) -> None:
    assert path in details(lambda: flag(**fields))


@pytest.mark.parametrize("tag", [["a"], {"a": 1}])
def test_new_flag_rejects_an_unhashable_tag_with_a_validation_error(tag: Any) -> None:
    assert "tags[0]" in details(lambda: flag(tags=[tag]))


def test_patch_flag_changes_only_the_patchable_fields() -> None:
    f = flag("string", "red")
    patched = model.patch_flag(
        f,
        {
            "name": "New",
            "description": "d",
            "enabled": True,
            "tags": ["x"],
            "default_value": "blue",
            "key": f["key"],  # repeating an immutable field unchanged is fine
        },
        now=LATER,
    )
    assert patched == {
        **f,
        "name": "New",
        "description": "d",
        "enabled": True,
        "tags": ["x"],
        "default_value": "blue",
        "updated_at": LATER,
    }


def test_patch_flag_with_an_empty_body_changes_only_updated_at() -> None:
    f = flag(tags=["a"], description="d")
    assert model.patch_flag(f, {}, now=LATER) == {**f, "updated_at": LATER}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": None}, "enabled"),
        ({"default_value": "true"}, "default_value"),
        ({"default_value": None}, "default_value"),
        ({"name": ""}, "name"),
        ({"tags": [""]}, "tags[0]"),
        ({"description": 1}, "description"),
    ],
)
def test_patch_flag_rejects_a_bad_field_at_its_path(body: dict[str, Any], path: str) -> None:
    assert path in details(lambda: model.patch_flag(flag(), body, now=LATER))


# Targeting rules ------------------------------------------------------------------------------


def test_new_rule_defaults_position_percentage_segment_and_enabled() -> None:
    assert rule({}) == {
        "id": "rule-1",
        "flag_id": FLAG_ID,
        "environment": "production",
        "position": 7,
        "percentage": None,
        "segment_id": None,
        "conditions": [],
        "value": True,
        "enabled": True,
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_new_rule_keeps_conditions_percentage_segment_and_position() -> None:
    r = rule(
        {
            "environment": "staging",
            "position": 0,
            "conditions": [
                {"attribute": "country", "operator": "in", "value": ["US", "CA"]},
                {"attribute": "email", "operator": "is_set"},
            ],
            "value": False,
            "percentage": 12.34,
            "enabled": False,
            "segment_id": SEGMENT_ID,
        }
    )
    assert r["environment"] == "staging"
    assert r["position"] == 0
    assert r["conditions"] == [
        {"attribute": "country", "operator": "in", "value": ["US", "CA"]},
        {"attribute": "email", "operator": "is_set", "value": None},
    ]
    assert r["value"] is False
    assert r["percentage"] == 12.34
    assert r["enabled"] is False
    assert r["segment_id"] == SEGMENT_ID


@pytest.mark.parametrize("pct", [0, 0.01, 12.34, 50, 99.99, 100, None])
def test_new_rule_accepts_percentages_from_0_to_100_to_a_hundredth(pct: float | None) -> None:
    assert rule({"percentage": pct})["percentage"] == pct


@pytest.mark.parametrize("pct", [-0.01, 100.01, 12.345, 0.001, "50", True, float("nan")])
def test_new_rule_rejects_a_percentage_outside_0_to_100_or_finer_than_a_hundredth(
    pct: Any,
) -> None:
    assert set(details(lambda: rule({"percentage": pct}))) == {"percentage"}


@pytest.mark.parametrize(
    ("flag_type", "good", "bad"),
    [
        ("boolean", False, "false"),
        ("string", "x", 1),
        ("number", 1.5, "1.5"),
        ("number", 3, True),
    ],
)
def test_new_rule_value_must_be_of_the_flag_type(flag_type: str, good: Any, bad: Any) -> None:
    f = flag(flag_type, good)
    assert rule({"value": good}, flag_record=f)["value"] == good
    assert set(details(lambda: rule({"value": bad}, flag_record=f))) == {"value"}


def test_new_rule_json_flag_takes_any_value() -> None:
    f = flag("json", {})
    assert rule({"value": None}, flag_record=f)["value"] is None
    assert rule({"value": [1, {"a": 2}]}, flag_record=f)["value"] == [1, {"a": 2}]


def test_new_rule_requires_a_value() -> None:
    body = {"environment": "production"}
    errors = details(
        lambda: model.new_rule(
            body, flag=flag(), project=project(), segments={}, next_position=0, id="r", now=NOW
        )
    )
    assert errors == {"value": "is required"}


def test_new_rule_requires_an_environment_of_the_project() -> None:
    assert details(lambda: rule({"environment": None})) == {"environment": "is required"}
    assert set(details(lambda: rule({"environment": "qa"}))) == {"environment"}
    assert set(details(lambda: rule({"environment": ["production"]}))) == {"environment"}


@pytest.mark.parametrize(
    ("conditions", "path"),
    [
        ({"attribute": "a", "operator": "equals", "value": "x"}, "conditions"),
        ("country = US", "conditions"),
        (
            [{"attribute": "a", "operator": "equals", "value": "x"}] * 51,
            "conditions",
        ),
        (["not an object"], "conditions[0]"),
        (
            [
                {"attribute": "a", "operator": "equals", "value": "x"},
                {"attribute": "a", "operator": "like", "value": "x"},
            ],
            "conditions[1]",
        ),
        ([{"attribute": "a", "value": "x"}], "conditions[0]"),
        ([{"attribute": "", "operator": "equals", "value": "x"}], "conditions[0]"),
        ([{"attribute": "age", "operator": "gt", "value": "ten"}], "conditions[0]"),
        ([{"attribute": "v", "operator": "semver_gt", "value": "1.2"}], "conditions[0]"),
        ([{"attribute": "t", "operator": "before", "value": "yesterday"}], "conditions[0]"),
        ([{"attribute": "e", "operator": "regex", "value": "(a)\\1"}], "conditions[0]"),
        ([{"attribute": "e", "operator": "is_set", "value": True}], "conditions[0]"),
        ([{"attribute": "c", "operator": "in", "value": []}], "conditions[0]"),
    ],
)
def test_new_rule_rejects_a_bad_condition_at_its_index(conditions: Any, path: str) -> None:
    assert set(details(lambda: rule({"conditions": conditions}))) == {path}


def test_new_rule_names_an_unknown_operator() -> None:
    cond = {"attribute": "a", "operator": "like", "value": "x"}
    errors = details(lambda: rule({"conditions": [cond]}))
    assert "unknown operator" in errors["conditions[0]"]


def test_new_rule_reports_every_bad_condition() -> None:
    bad = {"attribute": "a", "operator": "like", "value": "x"}
    good = {"attribute": "a", "operator": "equals", "value": "x"}
    errors = details(lambda: rule({"conditions": [bad, good, bad]}))
    assert set(errors) == {"conditions[0]", "conditions[2]"}


def test_new_rule_rejects_an_unknown_segment() -> None:
    unknown = "00000000-0000-4000-8000-00000000ffff"
    assert details(lambda: rule({"segment_id": unknown})) == {
        "segment_id": "unknown segment in this project"
    }
    assert rule({"segment_id": None})["segment_id"] is None


@pytest.mark.parametrize("segment_id", [[SEGMENT_ID], {"id": SEGMENT_ID}])
def test_new_rule_rejects_an_unhashable_segment_id_with_a_validation_error(
    segment_id: Any,
) -> None:
    assert "segment_id" in details(lambda: rule({"segment_id": segment_id}))


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"position": -1}, "position"),
        ({"position": 1.5}, "position"),
        ({"position": True}, "position"),
        ({"position": "1"}, "position"),
        ({"position": 1_000_001}, "position"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_new_rule_rejects_a_bad_position_or_enabled(fields: dict[str, Any], path: str) -> None:
    assert set(details(lambda: rule(fields))) == {path}


def test_patch_rule_keeps_what_the_body_does_not_name() -> None:
    cond = {"attribute": "plan", "operator": "equals", "value": "pro"}
    r = rule({"conditions": [cond], "percentage": 10})
    patched = model.patch_rule(
        r, {"percentage": 20, "environment": "production"}, flag=flag(), segments={}, now=LATER
    )
    assert patched == {**r, "percentage": 20.0, "updated_at": LATER}


def test_patch_rule_can_clear_the_percentage_and_change_value_and_conditions() -> None:
    r = rule({"percentage": 10})
    patched = model.patch_rule(
        r, {"percentage": None, "value": False, "conditions": []}, flag=flag(), segments={}, now=NOW
    )
    assert patched["percentage"] is None
    assert patched["value"] is False
    assert patched["conditions"] == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"environment": "staging"}, "environment"),
        ({"value": "yes"}, "value"),
        ({"percentage": 101}, "percentage"),
        ({"conditions": None}, "conditions"),
        ({"conditions": [{"attribute": "a", "operator": "nope", "value": 1}]}, "conditions[0]"),
        ({"segment_id": "00000000-0000-4000-8000-00000000ffff"}, "segment_id"),
        ({"enabled": 1}, "enabled"),
    ],
)
def test_patch_rule_rejects_a_bad_field_at_its_path(body: dict[str, Any], path: str) -> None:
    r = rule({})
    errors = details(lambda: model.patch_rule(r, body, flag=flag(), segments={}, now=LATER))
    assert set(errors) == {path}


def test_rule_order_is_position_then_creation_then_id() -> None:
    rules = [
        {"id": "b", "position": 1, "created_at": "2024-01-01T00:00:00Z"},
        {"id": "a", "position": 1, "created_at": "2024-01-01T00:00:00Z"},
        {"id": "c", "position": 0, "created_at": "2024-01-03T00:00:00Z"},
        {"id": "d", "position": 1, "created_at": "2023-12-31T00:00:00Z"},
    ]
    assert [r["id"] for r in sorted(rules, key=model.rule_order)] == ["c", "d", "a", "b"]


# Segments -------------------------------------------------------------------------------------


def test_new_segment_keeps_rules_by_key_and_defaults_match_type_to_all() -> None:
    s = segment()
    assert s == {
        "id": SEGMENT_ID,
        "project_id": PROJECT_ID,
        "name": "Beta",
        "description": None,
        "rules": [{"key": "plan", "operator": "equals", "value": "pro"}],
        "match_type": "all",
        "created_at": NOW,
        "updated_at": NOW,
    }


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"name": None}, "name"),
        ({"match_type": "some"}, "match_type"),
        ({"match_type": None}, "match_type"),
        ({"rules": "plan=pro"}, "rules"),
        ({"rules": [{"key": "plan", "operator": "eq", "value": "pro"}]}, "rules[0]"),
        ({"rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}]}, "rules[0]"),
        ({"description": ["x"]}, "description"),
    ],
)
def test_new_segment_rejects_a_bad_field_at_its_path(fields: dict[str, Any], path: str) -> None:
    body = {"project_id": PROJECT_ID, "name": "Beta", "match_type": "any", "rules": [], **fields}
    assert set(details(lambda: model.new_segment(body, id=SEGMENT_ID, now=NOW))) == {path}


def test_patch_segment_keeps_rules_when_absent_and_changes_match_type() -> None:
    s = segment()
    patched = model.patch_segment(s, {"match_type": "any"}, now=LATER)
    assert patched == {**s, "match_type": "any", "updated_at": LATER}


def test_patch_segment_rejects_a_bad_match_type_and_rule() -> None:
    body = {"match_type": "none", "rules": [{"key": "a", "operator": "x", "value": 1}]}
    errors = details(lambda: model.patch_segment(segment(), body, now=LATER))
    assert set(errors) == {"match_type", "rules[0]"}


# Experiments ----------------------------------------------------------------------------------


def test_new_experiment_is_a_draft_with_full_traffic_by_default() -> None:
    assert experiment({}) == {
        "id": "exp-1",
        "flag_id": FLAG_ID,
        "project_id": PROJECT_ID,
        "name": "Test",
        "environment": "production",
        "status": "draft",
        "variants": [
            {"key": "v0", "value": True, "percentage": 50},
            {"key": "v1", "value": False, "percentage": 50},
        ],
        "traffic_percentage": 100.0,
        "analysis": {"alpha": 0.05, "sequential_tuning": 5000, "correction": None},
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": None,
        "stopped_at": None,
    }


@pytest.mark.parametrize(
    "percentages", [(50, 50), (0, 100), (33, 33, 34), (20, 30, 50), (5,) * 20, (50.0, 50)]
)
def test_new_experiment_accepts_integer_percentages_summing_to_100(
    percentages: tuple[Any, ...],
) -> None:
    e = experiment({"variants": variants(*percentages)})
    assert [v["percentage"] for v in e["variants"]] == [int(p) for p in percentages]
    assert all(type(v["percentage"]) is int for v in e["variants"])


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (None, "variants"),
        ("a/b", "variants"),
        (variants(100), "variants"),
        (variants(*([5] * 21)), "variants"),
        (variants(50, 40), "variants"),
        (variants(60, 50), "variants"),
        (variants(20, 30, 49), "variants"),
        ([{"key": "a", "value": True, "percentage": 50}, "b"], "variants[1]"),
    ],
)
def test_new_experiment_rejects_bad_variant_lists(raw: Any, path: str) -> None:
    assert path in details(lambda: experiment({"variants": raw}))


def test_new_experiment_names_the_sum_when_it_is_not_100() -> None:
    errors = details(lambda: experiment({"variants": variants(50, 40)}))
    assert errors == {"variants": "percentages must sum to 100, not 90"}


@pytest.mark.parametrize(
    ("variant", "path"),
    [
        ({"key": "", "value": True, "percentage": 50}, "variants[1].key"),
        ({"value": True, "percentage": 50}, "variants[1].key"),
        ({"key": "has space", "value": True, "percentage": 50}, "variants[1].key"),
        ({"key": 7, "value": True, "percentage": 50}, "variants[1].key"),
        ({"key": "v0", "value": True, "percentage": 50}, "variants[1].key"),
        ({"key": "b", "value": "true", "percentage": 50}, "variants[1].value"),
        ({"key": "b", "percentage": 50}, "variants[1].value"),
        ({"key": "b", "value": True, "percentage": 50.5}, "variants[1].percentage"),
        ({"key": "b", "value": True, "percentage": -50}, "variants[1].percentage"),
        ({"key": "b", "value": True, "percentage": 150}, "variants[1].percentage"),
        ({"key": "b", "value": True, "percentage": "50"}, "variants[1].percentage"),
        ({"key": "b", "value": True, "percentage": True}, "variants[1].percentage"),
        ({"key": "b", "value": True}, "variants[1].percentage"),
    ],
)
def test_new_experiment_rejects_a_bad_variant_field_at_its_path(
    variant: dict[str, Any], path: str
) -> None:
    first = {"key": "v0", "value": False, "percentage": 50}
    assert set(details(lambda: experiment({"variants": [first, variant]}))) == {path}


def test_new_experiment_duplicate_key_message() -> None:
    raw = [{"key": "a", "value": True, "percentage": 50}] * 2
    errors = details(lambda: experiment({"variants": raw}))
    assert errors == {"variants[1].key": "duplicate variant key"}


@pytest.mark.parametrize(
    ("flag_type", "good", "bad", "path"),
    [
        ("boolean", (True, False), ("true", False), "variants[0].value"),
        ("string", ("a", "b"), ("a", None), "variants[1].value"),
        ("number", (1, 2.5), (1, True), "variants[1].value"),
    ],
)
def test_new_experiment_variant_values_must_be_of_the_flag_type(
    flag_type: str, good: tuple[Any, Any], bad: tuple[Any, Any], path: str
) -> None:
    f = flag(flag_type, good[0])
    e = experiment({"variants": variants(50, 50, values=good)}, flag_record=f)
    assert [v["value"] for v in e["variants"]] == list(good)
    errors = details(lambda: experiment({"variants": variants(50, 50, values=bad)}, flag_record=f))
    assert set(errors) == {path}


def test_new_experiment_json_flag_variants_take_any_value() -> None:
    f = flag("json", None)
    e = experiment({"variants": variants(50, 50, values=({"a": 1}, None))}, flag_record=f)
    assert [v["value"] for v in e["variants"]] == [{"a": 1}, None]


@pytest.mark.parametrize("traffic", [0, 0.01, 12.34, 100])
def test_new_experiment_accepts_traffic_from_0_to_100(traffic: float) -> None:
    assert experiment({"traffic_percentage": traffic})["traffic_percentage"] == traffic


@pytest.mark.parametrize("traffic", [-1, 100.5, 12.345, "50", None, False])
def test_new_experiment_rejects_bad_traffic(traffic: Any) -> None:
    assert set(details(lambda: experiment({"traffic_percentage": traffic}))) == {
        "traffic_percentage"
    }


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"name": None}, "name"),
        ({"environment": None}, "environment"),
        ({"environment": "qa"}, "environment"),
    ],
)
def test_new_experiment_rejects_a_bad_name_or_environment(
    fields: dict[str, Any], path: str
) -> None:
    assert set(details(lambda: experiment(fields))) == {path}


@pytest.mark.parametrize("bad_key", [["a"], {"a": 1}])
def test_new_experiment_rejects_an_unhashable_variant_key_with_a_validation_error(
    bad_key: Any,
) -> None:
    raw = [{"key": bad_key, "value": True, "percentage": 50}, variants(50, 50)[1]]
    assert "variants[0].key" in details(lambda: experiment({"variants": raw}))


def test_new_experiment_rejects_a_variant_key_with_a_trailing_newline() -> None:
    raw = [{"key": "a\n", "value": True, "percentage": 50}, variants(50, 50)[1]]
    details(lambda: experiment({"variants": raw}))


def test_new_experiment_reports_a_bad_sum_alongside_other_errors() -> None:
    errors = details(lambda: experiment({"name": None, "variants": variants(50, 40)}))
    assert set(errors) == {"name", "variants"}


def test_patch_experiment_changes_name_and_traffic_of_a_draft_freely() -> None:
    e = experiment({"traffic_percentage": 50})
    patched = model.patch_experiment(e, {"name": "Renamed", "traffic_percentage": 10}, now=LATER)
    assert patched == {**e, "name": "Renamed", "traffic_percentage": 10.0, "updated_at": LATER}


def test_patch_flag_rejects_changing_key_or_type() -> None:
    f = flag("string", "red")
    assert details(lambda: model.patch_flag(f, {"key": "x", "flag_type": "number"}, now=LATER)) == {
        "key": "cannot be changed",
        "flag_type": "cannot be changed",
    }


def test_patch_experiment_rejects_changing_fields_that_cannot_change() -> None:
    e = experiment({})
    body = {"status": "running", "variants": variants(10, 90), "environment": "staging"}
    assert set(details(lambda: model.patch_experiment(e, body, now=LATER))) == {
        "status",
        "variants",
        "environment",
    }
    assert model.patch_experiment(e, {"status": e["status"]}, now=LATER) == {
        **e,
        "updated_at": LATER,
    }


@pytest.mark.parametrize("new", [50, 50.01, 100])
def test_patch_experiment_running_traffic_may_rise_or_stay(new: float) -> None:
    e = {**experiment({"traffic_percentage": 50}), "status": "running"}
    assert model.patch_experiment(e, {"traffic_percentage": new}, now=LATER)[
        "traffic_percentage"
    ] == float(new)


def test_patch_experiment_running_traffic_may_not_fall() -> None:
    e = {**experiment({"traffic_percentage": 50}), "status": "running"}
    assert details(lambda: model.patch_experiment(e, {"traffic_percentage": 49.99}, now=LATER)) == {
        "traffic_percentage": "may only rise while the experiment runs"
    }


@pytest.mark.parametrize("new", [0, 49, 51, 100])
def test_patch_experiment_stopped_traffic_cannot_change(new: float) -> None:
    e = {**experiment({"traffic_percentage": 50}), "status": "stopped"}
    errors = details(lambda: model.patch_experiment(e, {"traffic_percentage": new}, now=LATER))
    assert set(errors) == {"traffic_percentage"}


def test_patch_experiment_stopped_keeps_traffic_and_may_be_renamed() -> None:
    e = {**experiment({"traffic_percentage": 50}), "status": "stopped"}
    patched = model.patch_experiment(e, {"traffic_percentage": 50, "name": "Old"}, now=LATER)
    assert patched["traffic_percentage"] == 50
    assert patched["name"] == "Old"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"traffic_percentage": 101}, "traffic_percentage"),
        ({"traffic_percentage": "60"}, "traffic_percentage"),
        ({"name": ""}, "name"),
    ],
)
def test_patch_experiment_rejects_a_bad_field(body: dict[str, Any], path: str) -> None:
    e = {**experiment({}), "status": "running"}
    assert set(details(lambda: model.patch_experiment(e, body, now=LATER))) == {path}


# Ids ------------------------------------------------------------------------------------------


def test_require_ids_accepts_lowercase_uuids_and_names_the_bad_ones() -> None:
    model.require_ids({"project_id": UUID}, "project_id")
    errors = details(
        lambda: model.require_ids({"a": UUID.upper(), "b": 5, "c": UUID}, "a", "b", "c", "d")
    )
    assert errors == {"a": "must be a UUID", "b": "must be a UUID", "d": "must be a UUID"}
