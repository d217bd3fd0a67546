"""Numbers as report text: percentages, percentage points, table cells and ``mean ± std``."""

from __future__ import annotations

import math

NO_VALUE = "—"


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals (``n/a`` if not finite)."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} %"


def pp(x: float) -> str:
    """A difference of fractions in percentage points (``n/a`` if not finite)."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} pp"


def format_value(v: float | None, kind: str = "num") -> str:
    """A table cell: ``err`` as a percentage (2 decimals), ``int`` whole, ``num`` 4 significant digits
    (scientific notation outside [1e-3, 1e5))."""
    if v is None or not math.isfinite(v):
        return NO_VALUE
    if kind == "err":
        return pct(v)
    if kind == "int":
        return f"{int(round(v))}"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def format_stat(stat: dict, kind: str = "num") -> str:
    """A statistic over seeds (``{"mean", "std", "n"}``) as ``mean ± std`` (std only with two or more seeds)."""
    if stat["n"] == 0:
        return NO_VALUE
    m = format_value(stat["mean"], kind)
    if stat["n"] > 1 and math.isfinite(stat["std"]):
        sd = stat["std"]
        if kind == "err":
            s = pp(sd)
        elif sd != 0 and (abs(sd) >= 1e5 or abs(sd) < 1e-3):
            s = f"{sd:.1e}"
        else:
            s = f"{sd:.2g}"
        return f"{m} ± {s}"
    return m
