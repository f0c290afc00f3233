"""How the report writes numbers: percentages, intervals, differences, p-values."""

from __future__ import annotations

from evaluation.metrics import Interval

SMALLEST_P_SHOWN = 1e-4  # smaller p-values read "< 0.0001"


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def with_ci(ci: Interval, digits: int = 2) -> str:
    return f"{pct(ci.estimate, digits)} [{pct(ci.low, digits)}, {pct(ci.high, digits)}]"


def pp(x: float) -> str:
    """A difference of proportions, in percentage points with a sign."""
    return f"{x * 100:+.2f} pp"


def p_number(p: float) -> str:
    """``0.13`` or ``< 0.0001``, for a table cell."""
    return f"{p:.2g}" if p >= SMALLEST_P_SHOWN else f"< {SMALLEST_P_SHOWN:g}"


def p_value(p: float) -> str:
    """``p = 0.13`` or ``p < 0.0001``, ready to follow the test's name."""
    number = p_number(p)
    return f"p {number}" if number.startswith("<") else f"p = {number}"
