"""The console's number formats (proxy/console/js/format.js), written again in Python so a test
can say which text the page must show for the API's figure. JavaScript's toFixed rounds the
exact binary value half away from zero: so does Decimal with ROUND_HALF_UP."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

DASH = "—"
MINUS = "\u2212"


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fixed(x: float, digits: int) -> str:
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def signed(x: float, digits: int) -> str:
    magnitude = fixed(abs(x), digits)
    if Decimal(magnitude) == 0:
        return magnitude
    return (MINUS if x < 0 else "+") + magnitude


def interval(ci: Any, one: Any) -> str:
    if not (isinstance(ci, list) and len(ci) == 2 and all(is_number(x) for x in ci)):
        return DASH
    return f"[{one(ci[0])}, {one(ci[1])}]"


def count(n: Any) -> str:
    return f"{n:,}" if is_number(n) else DASH


def rate(x: Any) -> str:
    return f"{fixed(x * 100, 2)}%" if is_number(x) else DASH


def points(x: Any) -> str:
    return f"{signed(x * 100, 2)} pp" if is_number(x) else DASH


def points_interval(ci: Any) -> str:
    text = interval(ci, lambda x: signed(x * 100, 2))
    return text if text == DASH else f"{text} pp"


def relative(x: Any) -> str:
    return f"{signed(x * 100, 1)}%" if is_number(x) else DASH


def relative_interval(ci: Any) -> str:
    return interval(ci, lambda x: f"{signed(x * 100, 1)}%")


def p_value(p: Any) -> str:
    if not is_number(p):
        return DASH
    return "< 0.0001" if p < 0.0001 else fixed(p, 4)


def chance(x: Any) -> str:
    if not is_number(x):
        return DASH
    if x > 0.999:
        return "> 99.9%"
    if x < 0.001:
        return "< 0.1%"
    return f"{fixed(x * 100, 1)}%"
