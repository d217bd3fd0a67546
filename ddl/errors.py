"""The project's error type for bad input.

Anything raised as :class:`DDLError` (or the analysis library's :class:`analysis.AnalysisError`) is the user's to
fix: the CLI prints it as one line ``ddl: error: …`` and exits with status 2.  Every other exception is a bug and
keeps its traceback (exit status 1).
"""

from __future__ import annotations


class DDLError(Exception):
    """Bad input: one line naming the flag (or file) and what it accepts."""


class ConfigError(DDLError):
    """Bad configuration: one line naming the flag and the accepted values."""


class RunDirError(DDLError):
    """Not a usable run directory (one line saying what is missing or corrupt)."""
