"""Number formatting shared by the report's sections."""

from __future__ import annotations

from evaluation.metrics import Interval

ALPHA = 0.05


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def with_ci(ci: Interval, digits: int = 2) -> str:
    return f"{pct(ci.estimate, digits)} [{pct(ci.low, digits)}, {pct(ci.high, digits)}]"


def pp(x: float) -> str:
    """A difference of proportions, in percentage points with a sign."""
    return f"{x * 100:+.2f} pp"


def p_value(p: float) -> str:
    """``p = 0.13`` or ``p < 0.0001``, ready to follow the test's name."""
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"
