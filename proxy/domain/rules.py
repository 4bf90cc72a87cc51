"""Targeting conditions: validate them when written, compile them once into predicates that
evaluate an untrusted context on the hot path without ever raising.

Semantics (the contract is the "Targeting rules" section of API.md):

- An attribute names a top-level key of the context; there are no dotted paths.
- A missing attribute (key absent, or JSON null) fails every operator except `is_not_set`,
  including the negated ones: `not_equals`, `not_in` and `not_contains` are False on it.
- An attribute of the wrong type for its operator fails it too, negated operators included
  (a list is neither equal nor "not equal" to a string). Types are JSON's: str, int, float,
  bool, None, list, dict, checked exactly (`type(v) is str`), so a bool is never a number.
- "JSON spelling" is how `equals`, `not_equals`, `in`, `not_in` and `contains` compare: a str is
  itself, a bool is "true"/"false", an int its decimal digits, a float Python's shortest repr.
  So True equals "true" and 10 equals "10", but 10.0 spells "10.0" and so does not equal 10 or
  "10"; 1e+20 spells "1e+20". Lists, dicts and None have no spelling and equal nothing.
- `contains` and `not_contains` on a string attribute are substring tests; on a list attribute
  they ask whether some element's spelling equals the value's spelling (membership).
  `starts_with`, `ends_with` and `regex` need a string attribute.
- `gt`, `gte`, `lt`, `lte` need an int or float attribute; a numeric string such as "10" fails.
- `semver_*` need a valid SemVer 2.0.0 string attribute and use SemVer precedence.
- `before` and `after` need an RFC 3339 date-time string attribute (Z or a numeric offset,
  optional fractional seconds of any length) and compare instants exactly: no float rounding.

Regexes run on RE2, a linear-time automaton engine: no pattern can backtrack catastrophically
and stall a worker on a hostile input, which a backtracking engine (Python's `re`) cannot
promise. The price is no backreferences or lookarounds; such patterns are refused when written.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import re2

from proxy.domain import semver

Predicate = Callable[[Mapping[str, Any]], bool]

MAX_ATTRIBUTE_LENGTH = 128
MAX_LIST_ITEMS = 1000
MAX_REGEX_LENGTH = 256

_SCALAR_OPERATORS = frozenset(
    {"equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with"}
)
_LIST_OPERATORS = frozenset({"in", "not_in"})
_NUMBER_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
_SEMVER_OPERATORS = frozenset({"semver_eq", "semver_gt", "semver_lt"})
_TIME_OPERATORS = frozenset({"before", "after"})
_PRESENCE_OPERATORS = frozenset({"is_set", "is_not_set"})

OPERATORS: frozenset[str] = (
    _SCALAR_OPERATORS
    | _LIST_OPERATORS
    | _NUMBER_OPERATORS
    | _SEMVER_OPERATORS
    | _TIME_OPERATORS
    | _PRESENCE_OPERATORS
    | {"regex"}
)


class ConditionError(ValueError):
    """A condition that cannot be stored; str(err) says what is wrong in one short sentence."""


# --- JSON spelling -------------------------------------------------------------------------


def _spelling(value: object) -> str | None:
    """The JSON spelling of a scalar, or None for anything without one."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        try:
            return str(value)
        except ValueError:  # longer than sys.get_int_max_str_digits()
            return None
    if type(value) is float:
        return repr(value)
    return None


def _int_spelled(spelling: str) -> int | None:
    """The int whose JSON spelling is exactly `spelling`, if any: lets an int attribute be
    compared as an int, with no str() per evaluation."""
    try:
        number = int(spelling)
    except ValueError:
        return None
    # int() also accepts "+1", " 1", "1_0" and "01", none of which is how JSON spells 1 or 10.
    return number if str(number) == spelling else None


_BOOL_SPELLED = {"true": True, "false": False}


def _spelling_matcher(spellings: frozenset[str]) -> Callable[[object], bool]:
    """A test of whether a value's JSON spelling is one of `spellings`, without spelling it
    when it is a str, bool or int."""
    strs = spellings
    bools = frozenset(_BOOL_SPELLED[s] for s in spellings if s in _BOOL_SPELLED)
    ints = frozenset(n for n in map(_int_spelled, spellings) if n is not None)

    def matches(v: object) -> bool:
        # The exact type checks keep bools out of `ints` (True == 1 and hash(True) == hash(1)).
        if type(v) is str:
            return v in strs
        if type(v) is bool:
            return v in bools
        if type(v) is int:
            return v in ints
        if type(v) is float:
            return repr(v) in strs
        return False

    return matches


# --- RFC 3339 ------------------------------------------------------------------------------

# RFC 3339 section 5.6, with the ABNF's case-insensitive "T" and "Z".
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# An instant as (whole seconds since the epoch, fractional digits without trailing zeros):
# comparing the digit strings lexically orders the fractions exactly, at any precision.
Instant = tuple[int, str]


def parse_rfc3339(s: str) -> Instant | None:
    """The instant of an RFC 3339 date-time string, or None if `s` is not one."""
    m = _RFC3339.fullmatch(s)
    if m is None:
        return None
    # The regex settles the syntax; the C parser then does the calendar arithmetic in a third
    # of the time of doing it here. It refuses lowercase t/z, leap seconds and impossible
    # fields, which the slow path sorts into valid and invalid; but it takes an offset's
    # minutes up to 60.
    off_minute = m[10]
    if off_minute is not None and off_minute > "59":
        return None
    try:
        since_epoch = _fromisoformat(s) - _EPOCH
    except ValueError:
        return _parse_rfc3339_fields(m)
    fraction = m[7]
    return (
        since_epoch.days * 86400 + since_epoch.seconds,
        fraction.rstrip("0") if fraction else "",
    )


_fromisoformat = datetime.datetime.fromisoformat
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _parse_rfc3339_fields(m: re.Match[str]) -> Instant | None:
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = m.groups()
    h, mi, sec = int(hour), int(minute), int(second)
    # Second 60 is a leap second (RFC 3339 allows it); it counts as the next minute's first.
    if h > 23 or mi > 59 or sec > 60:
        return None
    try:
        days = datetime.date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:  # no such day (2023-02-29, month 13, year 0000)
        return None
    seconds = days * 86400 + h * 3600 + mi * 60 + sec
    if sign is not None:
        oh, om = int(off_hour), int(off_minute)
        if oh > 23 or om > 59:
            return None
        offset = oh * 3600 + om * 60
        seconds += -offset if sign == "+" else offset
    return seconds, fraction.rstrip("0") if fraction else ""


# --- Regex ---------------------------------------------------------------------------------


def _re2_options() -> Any:
    options = re2.Options()
    options.never_capture = True  # a yes/no answer needs no groups, and RE2 is faster without
    options.log_errors = False  # a refused pattern is the user's error, not the server's
    return options


_RE2_OPTIONS = _re2_options()


def _compile_regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0] if err.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ConditionError(f"invalid regex: {reason}"[:200]) from None
    except UnicodeError:
        raise ConditionError("invalid regex: not valid Unicode") from None


def _regex_searcher(pattern: str) -> Callable[[str], bool]:
    """A substring-search test for `pattern`. The public `search()` of the re2 package builds
    match objects and maps byte offsets back to characters in Python, about 6x the cost of
    the underlying RE2::Match call, which is used directly when this version exposes it."""
    compiled = _compile_regex(pattern)
    raw = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if raw is None or anchor is None or not hasattr(raw, "Match"):
        public_search = compiled.search

        def search_public(text: str) -> bool:
            return public_search(text) is not None

        return search_public

    match = raw.Match

    def search_raw(text: str) -> bool:
        data = text.encode()
        # Match returns the overall span, (-1, -1) when there is none.
        return bool(match(anchor, data, 0, len(data))[0][0] >= 0)

    return search_raw


# --- Validation ----------------------------------------------------------------------------


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_scalar(value: object) -> bool:
    if type(value) is float:
        return math.isfinite(value)
    return type(value) in (str, bool, int) and _spelling(value) is not None


def _is_number(value: object) -> bool:
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int


def check_condition(attribute: object, operator: object, value: object) -> None:
    """Raise ConditionError unless (attribute, operator, value) is a condition that can be
    stored. `value` is None for `is_set`/`is_not_set` (null or absent)."""
    if not isinstance(attribute, str) or not 0 < len(attribute) <= MAX_ATTRIBUTE_LENGTH:
        raise ConditionError(
            f"attribute must be a non-empty string of at most {MAX_ATTRIBUTE_LENGTH} characters"
        )
    if not isinstance(operator, str) or operator not in OPERATORS:
        raise ConditionError(f"unknown operator {_show(operator)}")
    if operator in _SCALAR_OPERATORS:
        if not _is_scalar(value):
            raise ConditionError(f"value for '{operator}' must be a string, number or boolean")
    elif operator in _LIST_OPERATORS:
        if (
            not isinstance(value, list | tuple)
            or not 0 < len(value) <= MAX_LIST_ITEMS
            or not all(map(_is_scalar, value))
        ):
            raise ConditionError(
                f"value for '{operator}' must be a list of 1 to {MAX_LIST_ITEMS} strings, "
                "numbers or booleans"
            )
    elif operator in _NUMBER_OPERATORS:
        if not _is_number(value):
            raise ConditionError(f"value for '{operator}' must be a number")
    elif operator in _SEMVER_OPERATORS:
        if not isinstance(value, str) or semver.parse(value) is None:
            raise ConditionError(
                f"value for '{operator}' must be a SemVer 2.0.0 version such as '1.2.3'"
            )
    elif operator in _TIME_OPERATORS:
        if not isinstance(value, str) or parse_rfc3339(value) is None:
            raise ConditionError(
                f"value for '{operator}' must be an RFC 3339 timestamp "
                "such as '2024-01-01T00:00:00Z'"
            )
    elif operator == "regex":
        if not isinstance(value, str):
            raise ConditionError("value for 'regex' must be a string")
        if len(value) > MAX_REGEX_LENGTH:
            raise ConditionError(f"regex must be at most {MAX_REGEX_LENGTH} characters")
        _compile_regex(value)
    elif value is not None:  # is_set, is_not_set
        raise ConditionError(f"'{operator}' takes no value")


# --- Compilation ---------------------------------------------------------------------------
# Each builder precomputes what it can and returns a test of the attribute's value doing the
# least per call; a condition's predicate is that test of `ctx.get(attribute)`. The tests read
# the value as `object` so that mypy makes every use prove its type. The same tests serve the
# generated render functions (proxy/edge/render.py), which inline the common cases of the
# common operators (`inline_source`) and call the test for the rest: one semantics, one place.

Test = Callable[[object], bool]


def _equals(value: Any) -> Test:
    target = _spelling(value)
    as_bool = _BOOL_SPELLED.get(target) if target is not None else None
    as_int = _int_spelled(target) if target is not None else None

    def equals(v: object) -> bool:
        if type(v) is str:
            return v == target
        if type(v) is bool:
            return v is as_bool
        if type(v) is int:
            return v == as_int
        if type(v) is float:
            return repr(v) == target
        return False

    return equals


def _not_equals(value: Any) -> Test:
    target = _spelling(value)
    as_bool = _BOOL_SPELLED.get(target) if target is not None else None
    as_int = _int_spelled(target) if target is not None else None

    def not_equals(v: object) -> bool:
        if type(v) is str:
            return v != target
        if type(v) is bool:
            return v is not as_bool
        if type(v) is int:
            return v != as_int
        if type(v) is float:
            return repr(v) != target
        return False  # missing, or a list/dict: not comparable, so not "not equal" either

    return not_equals


def _spellings_of(values: Sequence[object]) -> frozenset[str]:
    return frozenset(s for s in map(_spelling, values) if s is not None)


def _in(value: Any) -> Test:
    return _spelling_matcher(_spellings_of(value))


def _not_in(value: Any) -> Test:
    matches = _spelling_matcher(_spellings_of(value))

    def not_in(v: object) -> bool:
        # Only a value with a JSON spelling can be "not in" the list.
        return type(v) in _SPELLED_TYPES and not matches(v)

    return not_in


_SPELLED_TYPES = frozenset({str, bool, int, float})


def _contains(value: Any) -> Test:
    target = _spelling(value) or ""
    element_matches = _spelling_matcher(frozenset({target}))

    def contains(v: object) -> bool:
        if type(v) is str:
            return target in v
        if type(v) is list:
            return any(map(element_matches, v))
        return False

    return contains


def _not_contains(value: Any) -> Test:
    target = _spelling(value) or ""
    element_matches = _spelling_matcher(frozenset({target}))

    def not_contains(v: object) -> bool:
        if type(v) is str:
            return target not in v
        if type(v) is list:
            return not any(map(element_matches, v))
        return False

    return not_contains


def _starts_with(value: Any) -> Test:
    target = _spelling(value) or ""

    def starts_with(v: object) -> bool:
        return type(v) is str and v.startswith(target)

    return starts_with


def _ends_with(value: Any) -> Test:
    target = _spelling(value) or ""

    def ends_with(v: object) -> bool:
        return type(v) is str and v.endswith(target)

    return ends_with


def _regex(value: Any) -> Test:
    search = _regex_searcher(value)

    def regex(v: object) -> bool:
        if type(v) is not str:
            return False
        try:
            return search(v)
        except UnicodeError:  # a lone surrogate (JSON "\ud800") has no UTF-8 form for RE2
            return False

    return regex


def _gt(value: Any) -> Test:
    threshold: float = value

    def gt(v: object) -> bool:
        return (type(v) is int or type(v) is float) and v > threshold

    return gt


def _gte(value: Any) -> Test:
    threshold: float = value

    def gte(v: object) -> bool:
        return (type(v) is int or type(v) is float) and v >= threshold

    return gte


def _lt(value: Any) -> Test:
    threshold: float = value

    def lt(v: object) -> bool:
        return (type(v) is int or type(v) is float) and v < threshold

    return lt


def _lte(value: Any) -> Test:
    threshold: float = value

    def lte(v: object) -> bool:
        return (type(v) is int or type(v) is float) and v <= threshold

    return lte


# Few distinct app versions reach a proxy, so parsing each once pays. Only short strings are
# cached: a bounded count of unbounded strings would still be unbounded memory.
_parse_version_cached = functools.lru_cache(maxsize=1024)(semver.parse)
_CACHED_VERSION_LENGTH = 64


def version_of(v: object) -> semver.Version | None:
    """The SemVer version a value spells, or None."""
    if type(v) is not str:
        return None
    if len(v) <= _CACHED_VERSION_LENGTH:
        return _parse_version_cached(v)
    return semver.parse(v)


def instant_of(v: object) -> Instant | None:
    """The instant an RFC 3339 value spells, or None."""
    return parse_rfc3339(v) if type(v) is str else None


def _semver_target(value: Any) -> semver.Version:
    version = semver.parse(value)
    if version is None:
        raise ConditionError("value must be a SemVer 2.0.0 version such as '1.2.3'")
    return version


def _semver_eq(value: Any) -> Test:
    target = _semver_target(value)

    def semver_eq(v: object) -> bool:
        return version_of(v) == target

    return semver_eq


def _semver_gt(value: Any) -> Test:
    target = _semver_target(value)

    def semver_gt(v: object) -> bool:
        version = version_of(v)
        return version is not None and version > target

    return semver_gt


def _semver_lt(value: Any) -> Test:
    target = _semver_target(value)

    def semver_lt(v: object) -> bool:
        version = version_of(v)
        return version is not None and version < target

    return semver_lt


def _instant_target(value: Any) -> Instant:
    instant = parse_rfc3339(value)
    if instant is None:
        raise ConditionError("value must be an RFC 3339 timestamp such as '2024-01-01T00:00:00Z'")
    return instant


def _before(value: Any) -> Test:
    target = _instant_target(value)

    def before(v: object) -> bool:
        instant = instant_of(v)
        return instant is not None and instant < target

    return before


def _after(value: Any) -> Test:
    target = _instant_target(value)

    def after(v: object) -> bool:
        instant = instant_of(v)
        return instant is not None and instant > target

    return after


def _is_set(value: Any) -> Test:
    def is_set(v: object) -> bool:
        return v is not None

    return is_set


def _is_not_set(value: Any) -> Test:
    def is_not_set(v: object) -> bool:
        return v is None

    return is_not_set


_BUILDERS: dict[str, Callable[[Any], Test]] = {
    "equals": _equals,
    "not_equals": _not_equals,
    "in": _in,
    "not_in": _not_in,
    "contains": _contains,
    "not_contains": _not_contains,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "regex": _regex,
    "gt": _gt,
    "gte": _gte,
    "lt": _lt,
    "lte": _lte,
    "semver_eq": _semver_eq,
    "semver_gt": _semver_gt,
    "semver_lt": _semver_lt,
    "before": _before,
    "after": _after,
    "is_set": _is_set,
    "is_not_set": _is_not_set,
}
assert frozenset(_BUILDERS) == OPERATORS

# Relative cost of an operator per call; compile_match tries cheap conditions first.
_COST = {
    **dict.fromkeys(("contains", "not_contains", "starts_with", "ends_with"), 1),
    **dict.fromkeys(("semver_eq", "semver_gt", "semver_lt"), 2),
    **dict.fromkeys(("before", "after"), 3),
    "regex": 4,
}


def compile_test(operator: str, value: Any) -> Test:
    """The test of an attribute's value for one condition that passed check_condition."""
    builder = _BUILDERS.get(operator)
    if builder is None:
        raise ConditionError(f"unknown operator {_show(operator)}")
    return builder(value)


def compile_condition(attribute: str, operator: str, value: Any) -> Predicate:
    """The predicate of one condition that passed check_condition."""
    test = compile_test(operator, value)

    def condition(ctx: Mapping[str, Any]) -> bool:
        return test(ctx.get(attribute))

    return condition


def cheapest_first(conditions: Sequence[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """The order conditions are tried in: as predicates are pure and never raise, only the
    speed of the answer depends on it."""
    return sorted(conditions, key=lambda c: _COST.get(c[1], 0))


# What a generated render needs of a value beyond the value itself, computed once per request
# per attribute (SemVer and RFC 3339 parses are the costly part of their operators).
DERIVED: dict[str, Callable[[object], Any]] = {"semver": version_of, "instant": instant_of}
_DERIVED_OF = {
    **dict.fromkeys(("semver_eq", "semver_gt", "semver_lt"), "semver"),
    **dict.fromkeys(("before", "after"), "instant"),
}


def derived_of(operator: str) -> str | None:
    """Which derived form of the attribute's value `inline_source` needs for `operator`."""
    return _DERIVED_OF.get(operator)


def inline_source(operator: str, value: Any, v: str, d: str | None, const: Callable[[Any], str],
                  test: str) -> str:  # fmt: skip
    """A Python expression for one condition, for a generated render function: `v` names the
    attribute's value, `d` its derived form (see derived_of), `const(x)` names a constant
    holding x, and `test` names the condition's compiled test, called for whatever the inline
    form does not decide itself. The expression is exactly the test: the common case of the
    common operators inline (a string attribute, a number), everything else through `test`."""
    if operator in ("equals", "not_equals", "contains", "not_contains"):
        spelled = _spelling(value)
        # As the tests: contains looks for "" when the value has no spelling; equals for None.
        target = const((spelled or "") if operator.endswith("contains") else spelled)
        form = {
            "equals": f"{v} == {target}",
            "not_equals": f"{v} != {target}",
            "contains": f"{target} in {v}",
            "not_contains": f"{target} not in {v}",
        }[operator]
        return f"({form} if type({v}) is str else {test}({v}))"
    if operator in ("in", "not_in"):
        spellings = const(_spellings_of(value))
        form = f"{v} in {spellings}" if operator == "in" else f"{v} not in {spellings}"
        return f"({form} if type({v}) is str else {test}({v}))"
    if operator in ("starts_with", "ends_with"):
        method = "startswith" if operator == "starts_with" else "endswith"
        return f"(type({v}) is str and {v}.{method}({const(_spelling(value) or '')}))"
    if operator in _NUMBER_OPERATORS:
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
        return f"((type({v}) is int or type({v}) is float) and {v} {symbol} {const(value)})"
    if operator == "is_set":
        return f"({v} is not None)"
    if operator == "is_not_set":
        return f"({v} is None)"
    if operator in _SEMVER_OPERATORS and d is not None:
        target = const(_semver_target(value))
        if operator == "semver_eq":
            return f"({d} == {target})"
        symbol = ">" if operator == "semver_gt" else "<"
        return f"({d} is not None and {d} {symbol} {target})"
    if operator in _TIME_OPERATORS and d is not None:
        symbol = "<" if operator == "before" else ">"
        return f"({d} is not None and {d} {symbol} {const(_instant_target(value))})"
    return f"{test}({v})"


def _always_true(ctx: Mapping[str, Any]) -> bool:
    return True


def _always_false(ctx: Mapping[str, Any]) -> bool:
    return False


def compile_match(conditions: Sequence[tuple[str, str, Any]], match_any: bool = False) -> Predicate:
    """One predicate for all `conditions` (AND), or any of them (OR) when `match_any`.
    No conditions: AND matches everyone, OR no one.

    Conditions are evaluated cheapest first, not in the order given; as predicates are pure
    and never raise, only the speed of the answer depends on the order.
    """
    predicates = tuple(compile_condition(a, op, v) for a, op, v in cheapest_first(conditions))
    if not predicates:
        return _always_false if match_any else _always_true
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        if match_any:

            def either(ctx: Mapping[str, Any]) -> bool:
                return first(ctx) or second(ctx)

            return either

        def both(ctx: Mapping[str, Any]) -> bool:
            return first(ctx) and second(ctx)

        return both

    if match_any:

        def any_of(ctx: Mapping[str, Any]) -> bool:
            # A plain loop: any() over a generator costs a generator object per call.
            for predicate in predicates:  # noqa: SIM110
                if predicate(ctx):
                    return True
            return False

        return any_of

    def all_of(ctx: Mapping[str, Any]) -> bool:
        for predicate in predicates:  # noqa: SIM110
            if not predicate(ctx):
                return False
        return True

    return all_of
