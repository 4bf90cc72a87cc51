"""Strict SemVer 2.0.0 parsing into an orderable key (https://semver.org/spec/v2.0.0.html).

Comparing two parsed `Version`s with ==, <, > follows SemVer precedence (clause 11).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# The official grammar, written with [0-9] because Python's \d also matches non-ASCII digits.
# Dots split identifiers and no class contains a dot, so matching is linear in the input length.
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

# A pre-release identifier as a sortable pair: (0, number) for numeric identifiers and
# (1, text) for alphanumeric ones, so numeric < alphanumeric and a number is never compared to
# a string. Python compares str by code point, which is ASCII order on [0-9A-Za-z-].
Identifier = tuple[int, int | str]


class Version(NamedTuple):
    """A parsed version; tuple ordering is SemVer precedence. Build metadata is dropped."""

    major: int
    minor: int
    patch: int
    # True for a release: False < True puts 1.0.0-rc.1 below 1.0.0, and only then do the
    # pre-release identifiers below come into play (both sides are pre-releases).
    is_release: bool
    # Tuple ordering gives clause 11.4.4: with equal leading identifiers, the longer set wins.
    prerelease: tuple[Identifier, ...]


def parse(s: str) -> Version | None:
    """The `Version` of a SemVer 2.0.0 string, or None if `s` is not one (e.g. "1.0", "v1.0.0",
    "01.0.0", "1.0.0-01"). Never raises for any str."""
    m = _SEMVER.fullmatch(s)
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    try:
        if pre is None:
            return Version(int(major), int(minor), int(patch), True, ())
        identifiers: list[Identifier] = []
        for ident in pre.split("."):
            if ident.isdigit():  # ASCII only: the regex admits nothing else
                if len(ident) > 1 and ident[0] == "0":
                    return None
                identifiers.append((0, int(ident)))
            else:
                identifiers.append((1, ident))
        return Version(int(major), int(minor), int(patch), False, tuple(identifiers))
    except ValueError:
        # int() refuses numbers longer than sys.get_int_max_str_digits() (4300 by default).
        return None
