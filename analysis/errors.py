"""The one exception the analysis raises for bad input."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Bad analysis request: one line that names the option (``--layer: …``) and what it accepts."""


def check_choice(option: str, value, choices) -> None:
    """Raise :class:`AnalysisError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise AnalysisError(f"--{option}: {value!r} is not one of {', '.join(map(str, choices))}")
