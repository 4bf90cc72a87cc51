"""Targeting conditions: write-time validation, operator semantics and the never-raise promise."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.domain import semver
from proxy.domain.rules import (
    _RFC3339,
    OPERATORS,
    ConditionError,
    _parse_rfc3339_fields,
    check_condition,
    compile_condition,
    compile_match,
    parse_rfc3339,
)

# One valid value for every operator, for tests that sweep all of them.
VALID: dict[str, Any] = {
    "equals": "x",
    "not_equals": "x",
    "in": ["x", 1, True],
    "not_in": ["x", 1, True],
    "contains": "x",
    "not_contains": "x",
    "starts_with": "x",
    "ends_with": "x",
    "regex": "^x",
    "gt": 1,
    "gte": 1,
    "lt": 1,
    "lte": 1.5,
    "semver_eq": "1.0.0",
    "semver_gt": "1.0.0",
    "semver_lt": "1.0.0",
    "before": "2024-01-01T00:00:00Z",
    "after": "2024-01-01T00:00:00Z",
    "is_set": None,
    "is_not_set": None,
}


def matches(operator: str, value: Any, attribute_value: Any) -> bool:
    """Validate the condition as the control API would, then evaluate it on {"a": value}."""
    check_condition("a", operator, value)
    return compile_condition("a", operator, value)({"a": attribute_value})


def test_operators_are_the_twenty_of_the_contract() -> None:
    assert set(VALID) == OPERATORS
    assert len(OPERATORS) == 20


# --- missing attributes -----------------------------------------------------------------------


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_absent_attribute_fails_every_operator_but_is_not_set(operator: str) -> None:
    predicate = compile_condition("a", operator, VALID[operator])
    assert predicate({}) is (operator == "is_not_set")
    assert predicate({"b": "x"}) is (operator == "is_not_set")


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_null_attribute_counts_as_missing_for_every_operator(operator: str) -> None:
    predicate = compile_condition("a", operator, VALID[operator])
    assert predicate({"a": None}) is (operator == "is_not_set")


# --- equals / not_equals ----------------------------------------------------------------------


def test_equals_matches_identical_string() -> None:
    assert matches("equals", "US", "US")
    assert not matches("equals", "US", "us")
    assert not matches("equals", "US", "USA")


def test_equals_compares_booleans_in_json_spelling() -> None:
    assert matches("equals", True, "true")
    assert matches("equals", "true", True)
    assert matches("equals", False, "false")
    assert matches("equals", "false", False)
    assert not matches("equals", True, "True")
    assert not matches("equals", "true", False)
    assert not matches("equals", True, 1)
    assert not matches("equals", 1, True)


def test_equals_compares_integers_in_json_spelling() -> None:
    assert matches("equals", 10, "10")
    assert matches("equals", "10", 10)
    assert matches("equals", 10, 10)
    assert matches("equals", -3, "-3")
    assert not matches("equals", "010", 10)
    assert not matches("equals", "+10", 10)
    assert not matches("equals", "1_0", 10)
    assert not matches("equals", 10, "10 ")


def test_equals_spells_floats_with_their_fraction() -> None:
    assert matches("equals", 1.5, "1.5")
    assert matches("equals", "1.5", 1.5)
    assert matches("equals", 1.5, 1.5)
    # Documented: 10.0 spells "10.0", so it is not the integer 10.
    assert matches("equals", 10.0, "10.0")
    assert matches("equals", "10.0", 10.0)
    assert not matches("equals", 10.0, 10)
    assert not matches("equals", 10, 10.0)
    assert not matches("equals", "10", 10.0)


def test_equals_is_false_for_lists_and_dicts() -> None:
    assert not matches("equals", "x", ["x"])
    assert not matches("equals", "x", {"x": "x"})


def test_not_equals_matches_a_different_scalar() -> None:
    assert matches("not_equals", "US", "FR")
    assert matches("not_equals", 10, 11)
    assert matches("not_equals", True, "false")
    assert matches("not_equals", 10, 10.0)
    assert not matches("not_equals", "US", "US")
    assert not matches("not_equals", 10, "10")
    assert not matches("not_equals", True, "true")
    assert not matches("not_equals", 1.5, 1.5)


def test_not_equals_is_false_for_lists_and_dicts() -> None:
    assert not matches("not_equals", "x", ["y"])
    assert not matches("not_equals", "x", {"y": 1})


# --- in / not_in ------------------------------------------------------------------------------


def test_in_matches_a_member_of_the_list() -> None:
    assert matches("in", ["US", "FR"], "FR")
    assert not matches("in", ["US", "FR"], "DE")


def test_in_compares_json_spellings() -> None:
    assert matches("in", ["10", "20"], 10)
    assert matches("in", [10, 20], "20")
    assert matches("in", ["true"], True)
    assert matches("in", [False], "false")
    assert matches("in", [1.5], "1.5")
    assert matches("in", ["1.5"], 1.5)
    assert not matches("in", [1], True)
    assert not matches("in", [True], 1)
    assert not matches("in", ["true"], 1)
    assert not matches("in", [10], 10.0)
    assert not matches("in", ["010"], 10)


def test_in_is_false_for_lists_and_dicts() -> None:
    assert not matches("in", ["x"], ["x"])
    assert not matches("in", ["x"], {"x": 1})


def test_not_in_matches_a_scalar_outside_the_list() -> None:
    assert matches("not_in", ["US", "FR"], "DE")
    assert matches("not_in", [10], 11)
    assert not matches("not_in", ["US", "FR"], "US")
    assert not matches("not_in", ["10"], 10)
    assert not matches("not_in", [True], "true")


def test_not_in_is_false_for_lists_and_dicts() -> None:
    assert not matches("not_in", ["x"], ["y"])
    assert not matches("not_in", ["x"], {"y": 1})


# --- contains / not_contains / starts_with / ends_with ----------------------------------------


def test_contains_is_a_substring_test_on_strings() -> None:
    assert matches("contains", "example", "bob@example.com")
    assert matches("contains", 10, "a10b")
    assert not matches("contains", "example", "bob@test.com")


def test_contains_on_a_list_attribute_is_membership_by_json_spelling() -> None:
    assert matches("contains", "beta", ["alpha", "beta"])
    assert matches("contains", 10, ["10"])
    assert matches("contains", "10", [10])
    assert matches("contains", "true", [True])
    assert not matches("contains", "bet", ["alpha", "beta"])
    assert not matches("contains", "x", [])
    assert not matches("contains", "x", [["x"], {"x": 1}, None])


def test_contains_is_false_for_numbers_bools_and_dicts() -> None:
    assert not matches("contains", "1", 10)
    assert not matches("contains", "true", True)
    assert not matches("contains", "x", {"x": 1})


def test_not_contains_is_the_negation_on_strings_and_lists() -> None:
    assert matches("not_contains", "spam", "bob@example.com")
    assert not matches("not_contains", "example", "bob@example.com")
    assert matches("not_contains", "gamma", ["alpha", "beta"])
    assert matches("not_contains", "x", [])
    assert not matches("not_contains", "beta", ["alpha", "beta"])
    assert not matches("not_contains", 10, ["10"])


def test_not_contains_is_false_for_numbers_bools_and_dicts() -> None:
    assert not matches("not_contains", "x", 10)
    assert not matches("not_contains", "x", False)
    assert not matches("not_contains", "x", {"y": 1})


def test_starts_with_and_ends_with_test_string_ends() -> None:
    assert matches("starts_with", "bob", "bob@example.com")
    assert not matches("starts_with", "example", "bob@example.com")
    assert matches("ends_with", ".com", "bob@example.com")
    assert not matches("ends_with", "bob", "bob@example.com")
    assert matches("starts_with", 1, "123")
    assert matches("ends_with", True, "is true")


def test_starts_with_and_ends_with_are_false_for_non_strings() -> None:
    for operator in ("starts_with", "ends_with"):
        assert not matches(operator, "1", 1)
        assert not matches(operator, "t", True)
        assert not matches(operator, "x", ["x"])
        assert not matches(operator, "x", {"x": "x"})


# --- regex --------------------------------------------------------------------------------------


def test_regex_searches_anywhere_in_a_string() -> None:
    assert matches("regex", r"@example\.com$", "bob@example.com")
    assert matches("regex", "ex.mple", "bob@example.com")
    assert not matches("regex", r"^example", "bob@example.com")
    assert matches("regex", "(?i)BOB", "bob")
    assert matches("regex", "é+", "café")
    assert matches("regex", "", "")


def test_regex_is_false_for_non_strings() -> None:
    assert not matches("regex", "1", 1)
    assert not matches("regex", "true", True)
    assert not matches("regex", "x", ["x"])
    assert not matches("regex", "x", {"x": 1})


def test_regex_on_a_string_with_a_lone_surrogate_is_false() -> None:
    assert not matches("regex", ".*", "a\ud800b")


class _PublicOnlyRegexp:
    """A compiled re2 pattern with only the public API, as another re2 version might have."""

    def __init__(self, compiled: Any) -> None:
        self.search = compiled.search


def test_regex_falls_back_to_the_public_re2_api(monkeypatch: pytest.MonkeyPatch) -> None:
    real_compile = re2.compile
    monkeypatch.setattr(re2, "compile", lambda *args: _PublicOnlyRegexp(real_compile(*args)))
    assert matches("regex", r"@example\.com$", "bob@example.com")
    assert not matches("regex", r"^example", "bob@example.com")
    assert not matches("regex", ".*", "a\ud800b")


@pytest.mark.parametrize(
    "pattern",
    [
        "[",
        "(unclosed",
        "a{1001}",
        r"(a)\1",  # backreference
        r"(?=a)",  # lookahead
        r"(?<=a)b",  # lookbehind
        "\ud800",  # not valid Unicode
    ],
)
def test_regex_that_re2_cannot_compile_is_rejected_when_written(pattern: str) -> None:
    with pytest.raises(ConditionError, match="invalid regex"):
        check_condition("a", "regex", pattern)


def test_regex_longer_than_256_characters_is_rejected() -> None:
    check_condition("a", "regex", "a" * 256)
    with pytest.raises(ConditionError, match="at most 256"):
        check_condition("a", "regex", "a" * 257)


def test_regex_runs_in_linear_time_on_a_catastrophic_backtracking_pattern() -> None:
    # (a+)+$ on "aaaa…b" takes exponential time in a backtracking engine.
    assert not matches("regex", "(a+)+$", "a" * 50_000 + "b")


# --- gt / gte / lt / lte ------------------------------------------------------------------------


def test_numeric_comparisons_compare_ints_and_floats() -> None:
    assert matches("gt", 18, 19)
    assert not matches("gt", 18, 18)
    assert matches("gte", 18, 18)
    assert not matches("gte", 18, 17.99)
    assert matches("lt", 1.5, 1)
    assert not matches("lt", 1.5, 1.5)
    assert matches("lte", 1.5, 1.5)
    assert not matches("lte", 1.5, 2)
    assert matches("gt", -1, 0.0)
    assert matches("gt", 10**30, 10**30 + 1)


@pytest.mark.parametrize("operator", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("attribute_value", ["10", "1e3", "", True, False, [5], {"n": 5}])
def test_numeric_comparisons_are_false_for_non_numbers(
    operator: str, attribute_value: object
) -> None:
    # 5 sits on the right side of 0 (gt, gte) or 100 (lt, lte): only the type can fail it.
    threshold = 0 if operator in ("gt", "gte") else 100
    assert matches(operator, threshold, 5)
    assert not matches(operator, threshold, attribute_value)


def test_numeric_comparisons_are_false_for_nan() -> None:
    for operator in ("gt", "gte", "lt", "lte"):
        assert not matches(operator, 0, float("nan"))


# --- semver -------------------------------------------------------------------------------------

SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
    "10.0.0",
]


def test_semver_parse_orders_the_spec_precedence_examples() -> None:
    versions = [v for v in map(semver.parse, SPEC_ORDER) if v is not None]
    assert len(versions) == len(SPEC_ORDER)
    for lower, higher in itertools.pairwise(versions):
        assert lower < higher


@pytest.mark.parametrize("i", range(len(SPEC_ORDER)))
def test_semver_operators_follow_precedence_across_the_spec_examples(i: int) -> None:
    target = SPEC_ORDER[i]
    for j, version in enumerate(SPEC_ORDER):
        assert matches("semver_eq", target, version) is (j == i)
        assert matches("semver_gt", target, version) is (j > i)
        assert matches("semver_lt", target, version) is (j < i)


def test_semver_ignores_build_metadata() -> None:
    assert matches("semver_eq", "1.0.0+build.1", "1.0.0+build.2")
    assert matches("semver_eq", "1.0.0", "1.0.0+20130313144700")
    assert matches("semver_eq", "1.0.0-beta+exp.sha.5114f85", "1.0.0-beta")
    assert not matches("semver_gt", "1.0.0+1", "1.0.0+2")
    assert semver.parse("1.0.0-alpha+001") == semver.parse("1.0.0-alpha")


def test_semver_numeric_identifiers_compare_numerically_and_below_alphanumerics() -> None:
    assert matches("semver_gt", "1.0.0-2", "1.0.0-10")
    assert matches("semver_gt", "1.0.0-999", "1.0.0-a")
    assert matches("semver_lt", "1.0.0-a", "1.0.0-B")  # ASCII: "B" < "a"
    assert matches("semver_gt", "1.0.0-x.7.z", "1.0.0-x.7.z.92")


@pytest.mark.parametrize(
    "text",
    [
        "1.0",
        "1",
        "01.0.0",
        "1.01.0",
        "1.0.01",
        "1.0.0-01",
        "1.0.0-alpha.01",
        "v1.0.0",
        " 1.0.0",
        "1.0.0\n",
        "1.0.0-",
        "1.0.0+",
        "1.0.0-alpha..1",
        "1.0.0+build..1",
        "1.0.0-al_pha",
        "1.0.0-é",
        "\u0661.\u0660.\u0660",  # Arabic-Indic digits, which Python's \d would accept
        "1.0.0.0",
        "-1.0.0",
        "",
    ],
)
def test_invalid_semver_is_rejected_by_parse_and_check_and_never_matches(text: str) -> None:
    assert semver.parse(text) is None
    with pytest.raises(ConditionError, match="SemVer"):
        check_condition("a", "semver_eq", text)
    for operator in ("semver_eq", "semver_gt", "semver_lt"):
        assert not matches(operator, "1.0.0", text)


@pytest.mark.parametrize(
    "text", ["0.0.0", "1.0.0-0", "1.0.0-0a", "1.0.0-x-y-z.--", "1.0.0+01", "1.0.0-rc.1+b.02"]
)
def test_valid_semver_edge_cases_parse(text: str) -> None:
    assert semver.parse(text) is not None


def test_semver_with_too_many_digits_is_invalid_rather_than_an_error() -> None:
    assert semver.parse("9" * 5000 + ".0.0") is None
    assert semver.parse("1.0.0-" + "9" * 5000) is None
    assert not matches("semver_gt", "1.0.0", "9" * 5000 + ".0.0")


@pytest.mark.parametrize("attribute_value", [1, 1.0, True, ["1.0.0"], {"v": "1.0.0"}])
def test_semver_operators_are_false_for_non_strings(attribute_value: object) -> None:
    for operator in ("semver_eq", "semver_gt", "semver_lt"):
        assert not matches(operator, "0.0.1", attribute_value)


def test_semver_attributes_longer_than_the_cache_bound_still_compare() -> None:
    long_version = "1.0.0-" + "a" * 100
    assert matches("semver_eq", long_version, long_version)
    assert matches("semver_lt", "1.0.0", long_version)


# --- before / after -----------------------------------------------------------------------------


def test_before_and_after_compare_instants() -> None:
    assert matches("before", "2024-01-01T00:00:00Z", "2023-12-31T23:59:59Z")
    assert not matches("before", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z")
    assert matches("after", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z")
    assert not matches("after", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z")


def test_before_and_after_account_for_offsets() -> None:
    # 2024-01-01T01:30:00+02:00 is 2023-12-31T23:30:00Z.
    assert matches("before", "2024-01-01T00:00:00Z", "2024-01-01T01:30:00+02:00")
    assert matches("after", "2024-01-01T00:00:00Z", "2023-12-31T20:00:00-05:00")
    assert matches("after", "2024-01-01T00:00:00+05:30", "2023-12-31T19:00:00Z")
    assert not matches("after", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00-00:00")
    assert not matches("before", "2024-01-01T00:00:00Z", "2024-01-01T02:00:00+02:00")


def test_before_and_after_compare_fractional_seconds_exactly() -> None:
    assert matches("after", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000000001Z")
    assert matches("before", "2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.49999999999Z")
    assert not matches("after", "2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.500Z")
    assert matches("after", "2024-01-01T00:00:00.09Z", "2024-01-01T00:00:00.1Z")


def test_rfc3339_accepts_lowercase_separators_and_leap_seconds() -> None:
    assert parse_rfc3339("2024-01-01t00:00:00z") == parse_rfc3339("2024-01-01T00:00:00Z")
    assert parse_rfc3339("2016-12-31T23:59:60Z") == parse_rfc3339("2017-01-01T00:00:00Z")
    assert parse_rfc3339("2024-02-29T12:00:00+01:00") == (1709204400, "")


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01",
        "2024-01-01T00:00:00",  # no offset
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00Z",
        "2024-1-1T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:61Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+01:60",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00:00.Z",
        "0000-01-01T00:00:00Z",
        "20240101T000000Z",
        "1704067200",
        "",
    ],
)
def test_invalid_timestamps_are_rejected_and_never_match(text: str) -> None:
    assert parse_rfc3339(text) is None
    with pytest.raises(ConditionError, match="RFC 3339"):
        check_condition("a", "before", text)
    assert not matches("before", "2100-01-01T00:00:00Z", text)
    assert not matches("after", "1970-01-01T00:00:00Z", text)


@pytest.mark.parametrize("attribute_value", [1704067200, 1.5, True, ["2024-01-01T00:00:00Z"], {}])
def test_before_and_after_are_false_for_non_strings(attribute_value: object) -> None:
    assert not matches("before", "2100-01-01T00:00:00Z", attribute_value)
    assert not matches("after", "1970-01-01T00:00:00Z", attribute_value)


# --- is_set / is_not_set ------------------------------------------------------------------------


@pytest.mark.parametrize("attribute_value", ["", 0, False, [], {}, "x"])
def test_is_set_holds_for_any_present_non_null_value(attribute_value: object) -> None:
    assert matches("is_set", None, attribute_value)
    assert not matches("is_not_set", None, attribute_value)


# --- check_condition ------------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["", "a" * 129, None, 1, ["a"]])
def test_attribute_must_be_a_short_non_empty_string(attribute: object) -> None:
    with pytest.raises(ConditionError, match="attribute must be"):
        check_condition(attribute, "equals", "x")


def test_attribute_of_128_characters_is_accepted() -> None:
    check_condition("a" * 128, "equals", "x")


@pytest.mark.parametrize("operator", ["foo", "", "EQUALS", None, 1, ["equals"]])
def test_unknown_operator_is_rejected(operator: object) -> None:
    with pytest.raises(ConditionError, match="unknown operator"):
        check_condition("a", operator, "x")


def test_unknown_operator_message_names_it() -> None:
    with pytest.raises(ConditionError) as excinfo:
        check_condition("a", "foo", "x")
    assert str(excinfo.value) == "unknown operator 'foo'"


def test_unknown_operator_message_stays_short() -> None:
    with pytest.raises(ConditionError) as excinfo:
        check_condition("a", "x" * 10_000, "x")
    assert len(str(excinfo.value)) < 80


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_every_valid_value_passes_check_condition(operator: str) -> None:
    check_condition("a", operator, VALID[operator])


BAD_VALUE_GROUPS: list[tuple[tuple[str, ...], list[Any]]] = [
    (
        ("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with"),
        [None, ["x"], {"x": 1}, float("nan"), float("inf")],
    ),
    (
        ("in", "not_in"),
        [None, "x", [], [None], [["x"]], [{"x": 1}], ["x"] * 1001, {"x": 1}, [float("nan")]],
    ),
    (
        ("gt", "gte", "lt", "lte"),
        [None, "10", True, False, [1], {"n": 1}, float("nan"), float("inf")],
    ),
    (
        ("semver_eq", "semver_gt", "semver_lt"),
        [None, 1, "1.0", "01.0.0", "1.0.0-01", ["1.0.0"]],
    ),
    (
        ("before", "after"),
        [None, 1704067200, "2024-01-01", "yesterday", ["2024-01-01T00:00:00Z"]],
    ),
    (("regex",), [None, 1, ["x"], "[", r"(a)\1", "a" * 257]),
    (("is_set", "is_not_set"), ["x", "", 0, False, []]),
]
BAD_VALUES = {op: values for operators, values in BAD_VALUE_GROUPS for op in operators}

BAD_CASES = [(operator, value) for operator, values in BAD_VALUES.items() for value in values]


def test_bad_value_table_covers_every_operator() -> None:
    assert set(BAD_VALUES) == OPERATORS


@pytest.mark.parametrize(("operator", "value"), BAD_CASES)
def test_check_condition_rejects_bad_values_with_a_short_sentence(
    operator: str, value: object
) -> None:
    with pytest.raises(ConditionError) as excinfo:
        check_condition("a", operator, value)
    message = str(excinfo.value)
    assert 0 < len(message) <= 200
    assert "\n" not in message


def test_list_of_1000_items_is_accepted() -> None:
    check_condition("a", "in", [str(i) for i in range(1000)])


def test_scalar_operators_accept_every_json_scalar() -> None:
    for value in ("", "x", 0, -5, 1.5, True, False):
        check_condition("a", "equals", value)
    check_condition("a", "in", ["x", 0, 1.5, True])


def test_condition_error_is_a_value_error() -> None:
    assert issubclass(ConditionError, ValueError)


# --- compile_match ------------------------------------------------------------------------------

US = ("country", "equals", "US")
ADULT = ("age", "gte", 18)
BETA = ("email", "regex", r"@beta\.")


def test_compile_match_with_no_conditions_and_matches_everyone() -> None:
    assert compile_match([])({}) is True
    assert compile_match([], match_any=False)({"x": 1}) is True


def test_compile_match_with_no_conditions_or_matches_no_one() -> None:
    assert compile_match([], match_any=True)({}) is False
    assert compile_match([], match_any=True)({"x": 1}) is False


def test_compile_match_with_one_condition_is_that_condition() -> None:
    for match_any in (False, True):
        predicate = compile_match([US], match_any=match_any)
        assert predicate({"country": "US"}) is True
        assert predicate({"country": "FR"}) is False


@pytest.mark.parametrize("conditions", [[US, ADULT], [US, ADULT, BETA]])
def test_compile_match_requires_all_conditions(conditions: list[tuple[str, str, Any]]) -> None:
    predicate = compile_match(conditions)
    everyone = {"country": "US", "age": 30, "email": "a@beta.io"}
    assert predicate(everyone) is True
    for attribute, _, _ in conditions:
        assert predicate({**everyone, attribute: None}) is False


@pytest.mark.parametrize("conditions", [[US, ADULT], [US, ADULT, BETA]])
def test_compile_match_any_requires_one_condition(conditions: list[tuple[str, str, Any]]) -> None:
    predicate = compile_match(conditions, match_any=True)
    assert predicate({}) is False
    assert predicate({"country": "FR", "age": 3, "email": "a@b.c"}) is False
    assert predicate({"country": "US"}) is True
    assert predicate({"age": 18}) is True
    if BETA in conditions:
        assert predicate({"email": "a@beta.io"}) is True


def test_compile_match_results_do_not_depend_on_condition_order() -> None:
    conditions = [BETA, ("v", "semver_gt", "1.0.0"), ("t", "after", "2024-01-01T00:00:00Z"), US]
    contexts: list[dict[str, Any]] = [
        {},
        {"country": "US"},
        {"country": "US", "email": "x@beta.io", "v": "1.2.0", "t": "2024-06-01T00:00:00Z"},
        {"country": "US", "email": "x@beta.io", "v": "1.0.0", "t": "2024-06-01T00:00:00Z"},
    ]
    for match_any in (False, True):
        forward = compile_match(conditions, match_any)
        backward = compile_match(conditions[::-1], match_any)
        for ctx in contexts:
            assert forward(ctx) is backward(ctx)
    assert compile_match(conditions)(contexts[2]) is True
    assert compile_match(conditions)(contexts[3]) is False


def test_compile_condition_refuses_an_unknown_operator() -> None:
    with pytest.raises(ConditionError):
        compile_condition("a", "foo", "x")


# --- never raises -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**5000), max_value=10**5000)
    | st.floats()  # includes nan and inf, which a lenient JSON parser lets through
    | st.text()  # includes lone surrogates, which a lenient JSON parser lets through
    | st.sampled_from(
        [
            "1.0.0",
            "1.0.0-rc.1",
            "2024-01-01T00:00:00Z",
            "2024-01-01t00:00:00.5+01:00",
            "2016-12-31T23:59:60Z",
            "true",
            "10",
            "x",
        ]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=10,
)

# More valid values, to reach the JSON-spelling and parsing branches of the builders.
MORE_VALID: dict[str, list[Any]] = {
    "equals": [True, 10, 1.5, ""],
    "in": [["true", 10, 1.5, False]],
    "contains": [10, True],
    "regex": [r"\d+", ".*", "(?i)é"],
    "gt": [1.5, -(10**30)],
    "semver_gt": ["1.0.0-alpha.1+b"],
    "before": ["2024-01-01T00:00:00.123+05:30"],
}

conditions = st.sampled_from(sorted(OPERATORS)).flatmap(
    lambda operator: st.tuples(
        st.just(operator), st.sampled_from([VALID[operator], *MORE_VALID.get(operator, [])])
    )
)


@settings(max_examples=500, deadline=None)
@given(condition=conditions, attribute_value=json_values, extra=json_values)
def test_compiled_predicates_never_raise_and_return_a_bool(
    condition: tuple[str, Any], attribute_value: Any, extra: Any
) -> None:
    operator, value = condition
    check_condition("a", operator, value)
    predicate = compile_condition("a", operator, value)
    for ctx in ({"a": attribute_value, "b": extra}, {"b": extra}, {"a": None}):
        assert type(predicate(ctx)) is bool


@settings(max_examples=200, deadline=None)
@given(
    chosen=st.lists(conditions, max_size=4),
    match_any=st.booleans(),
    ctx=st.dictionaries(st.sampled_from(["a", "b"]), json_values),
)
def test_compiled_matches_never_raise_and_agree_with_their_conditions(
    chosen: list[tuple[str, Any]], match_any: bool, ctx: dict[str, Any]
) -> None:
    triples = [("a" if i % 2 else "b", op, v) for i, (op, v) in enumerate(chosen)]
    result = compile_match(triples, match_any)(ctx)
    singles = [compile_condition(*t)(ctx) for t in triples]
    assert result is (any(singles) if match_any else all(singles))


@settings(max_examples=1000, deadline=None)
@given(
    fields=st.tuples(
        st.sampled_from(["0000", "0001", "1969", "1970", "2000", "2023", "2024", "9999"]),
        *(st.integers(0, 99).map("{:02d}".format) for _ in range(5)),
        st.sampled_from(["", ".0", ".5", ".1230", ".123456789"]),
        st.sampled_from("Tt"),
        st.sampled_from(["Z", "z", "+", "-"]),
        st.integers(0, 99).map("{:02d}".format),
        st.integers(0, 99).map("{:02d}".format),
    )
)
def test_rfc3339_fast_path_agrees_with_field_arithmetic(fields: tuple[str, ...]) -> None:
    year, month, day, hour, minute, second, fraction, t, zone, off_hour, off_minute = fields
    offset = zone if zone in "Zz" else f"{zone}{off_hour}:{off_minute}"
    text = f"{year}-{month}-{day}{t}{hour}:{minute}:{second}{fraction}{offset}"
    m = _RFC3339.fullmatch(text)
    assert m is not None
    assert parse_rfc3339(text) == _parse_rfc3339_fields(m)
