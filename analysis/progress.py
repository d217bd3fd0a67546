"""Stage timing with an optional tqdm progress bar."""

from __future__ import annotations

import time
from contextlib import contextmanager

from tqdm.auto import tqdm


class Stages:
    """Times named stages; with ``enabled`` shows one progress-bar step per stage (on stderr)."""

    def __init__(self, total: int, enabled: bool = True, desc: str = "duality"):
        self.timings: dict[str, float] = {}
        self.bar = tqdm(total=total, desc=desc, unit="stage", disable=not enabled, dynamic_ncols=True)

    @contextmanager
    def stage(self, name: str):
        self.bar.set_postfix_str(name, refresh=True)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - t0
            self.bar.update(1)

    def close(self) -> None:
        self.bar.set_postfix_str("done", refresh=False)
        self.bar.close()
