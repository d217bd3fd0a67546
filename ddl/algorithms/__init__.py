"""SSGD and DPSGD, written once against :class:`ddl.comm.Collective` (MATH.md §7)."""

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.dpsgd import DPSGD
from ddl.algorithms.mixing import Mixer
from ddl.algorithms.ssgd import SSGD

ALGORITHMS = {"ssgd": SSGD, "dpsgd": DPSGD}

__all__ = ["ALGORITHMS", "Algorithm", "DPSGD", "LearnerState", "Mixer", "SSGD"]
