"""The event order of an asynchronous algorithm: every learner computes on its own simulated clock.

Learner i's k-th gradient computation takes ``c[k, i]`` seconds (row k of the compute-time matrix the run's
clock model draws, :class:`ddl.measure.clock.ComputeSampler`: jitter and stragglers, seeded from the run seed,
never the training streams).  When it finishes, at time t, the learner averages its weights with one peer (one
model message, ``message_s``) and starts its next computation at ``t + message_s``.  Events are popped in
order of finish time; a tie goes to the lowest learner index.  The order is therefore a pure function of the
seed and the clock flags: the same seed gives the same asynchronous history.

Used by the algorithm (:mod:`ddl.algorithms.adpsgd`, which order to apply gradients in) and by the simulated
clock (:mod:`ddl.measure.clock`, the time of each step), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class EventSchedule:
    """Finish times of n learners' current computations, popped in time order.

    ``draw(k)`` returns the next ``k`` rows [k, n] of compute times (row r: every learner's r-th computation).
    """

    def __init__(self, n: int, draw: Callable[[int], np.ndarray], message_s: float):
        self.n, self._draw, self.message_s = n, draw, float(message_s)
        self._rows: list[np.ndarray] = []  # compute-time rows drawn so far (row r = computation r)
        self.started = np.zeros(n, dtype=np.int64)  # computations started per learner
        self.finish = np.array([self._time(0, i) for i in range(n)])
        self.started += 1
        self.now = 0.0  # time of the last event
        self.events = 0  # events popped so far

    def _time(self, k: int, i: int) -> float:
        while len(self._rows) <= k:
            self._rows.extend(np.asarray(self._draw(64), dtype=np.float64))
        return float(self._rows[k][i])

    def pop(self) -> int:
        """The learner whose computation finishes next; its next computation is scheduled (it starts after the
        pairwise average, ``message_s`` later)."""
        i = int(np.argmin(self.finish))  # argmin: the lowest index among equal times
        t = float(self.finish[i])
        self.now = t
        self.events += 1
        self.finish[i] = t + self.message_s + self._time(int(self.started[i]), i)
        self.started[i] += 1
        return i
