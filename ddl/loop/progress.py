"""Progress display that suits where the output goes.

On a terminal: a tqdm bar redrawn in place.  Anywhere else (a log file, CI, SLURM): a plain line now and then —
at most one every ``interval`` seconds, plus the last one — instead of carriage-return redraws that fill a log.
Both are written to stderr, like tqdm, so stdout keeps only results.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["PlainProgress", "fmt_duration", "is_terminal", "progress_bar"]

# seconds between plain lines; DDL_PROGRESS_INTERVAL overrides (tests, very long or very short jobs)
DEFAULT_INTERVAL_S = 30.0


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def fmt_duration(s: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if not s == s or s == float("inf"):  # NaN or unknown
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class PlainProgress:
    """The subset of tqdm's interface the project uses, printing plain lines instead of a redrawn bar.

    A line: ``DESC: DONE/TOTAL UNIT (PCT%), RATE UNIT/s, elapsed T, ETA T, key=value …``.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "it", disable: bool = False,
                 interval: float | None = None, stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        if interval is None:
            interval = float(os.environ.get("DDL_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S))
        self.interval = interval
        self.stream = stream
        self.n = 0
        self.start = 0  # work done before this bar started (excluded from the rate)
        self.postfix = ""
        self.t0 = time.monotonic()
        self._last_print = self.t0
        self._closed = False

    def _out(self) -> TextIO:
        return sys.stderr if self.stream is None else self.stream

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = (self.n - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 and self.total else float("nan")
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        s = (f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total} {self.unit}{pct}, "
             f"{rate:.3g} {self.unit}/s, elapsed {fmt_duration(elapsed)}, ETA {fmt_duration(eta)}")
        return s + (f", {self.postfix}" if self.postfix else "")

    def _print(self) -> None:
        print(self.line(), file=self._out(), flush=True)
        self._last_print = time.monotonic()

    def update(self, k: int = 1) -> None:
        self.n += k
        if not self.disable and time.monotonic() - self._last_print >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kw) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def write(self, s: str) -> None:
        if not self.disable:
            print(s, file=self._out(), flush=True)

    def close(self) -> None:
        if not self._closed and not self.disable and self.n:
            self._print()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int, desc: str = "", unit: str = "it", disable: bool = False,
                 interval: float | None = None, initial: int = 0):
    """A tqdm bar on a terminal, else :class:`PlainProgress` (see the module docstring); ``initial``: work
    already done (a resumed run)."""
    if is_terminal():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, initial=initial)
    bar = PlainProgress(total, desc, unit, disable, interval)
    bar.n = bar.start = initial
    return bar
