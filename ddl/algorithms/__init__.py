"""SSGD and DPSGD, written once against :class:`ddl.comm.Collective` (docs/theory.md §7).

A new algorithm is a subclass of :class:`Algorithm` registered in ``ALGORITHMS``; its name then becomes a value
of ``--algo``.
"""

from __future__ import annotations

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.dpsgd import DPSGD
from ddl.algorithms.mixing import Mixer
from ddl.algorithms.ssgd import SSGD
from ddl.algorithms.topology import Topology
from ddl.comm import Collective
from ddl.compute.learners import LearnerGradients

ALGORITHMS: dict[str, type[Algorithm]] = {"ssgd": SSGD, "dpsgd": DPSGD}


def build_algorithm(name: str, gradients: LearnerGradients, comm: Collective, momentum: float,
                    topology: Topology, weight_decay_kind: str = "l2sq") -> Algorithm:
    """The algorithm called ``name``; the topology is used by those that mix neighbours' weights."""
    cls = ALGORITHMS[name]
    if cls.uses_topology:
        return cls(gradients, comm, momentum, topology=topology, weight_decay_kind=weight_decay_kind)
    return cls(gradients, comm, momentum, weight_decay_kind=weight_decay_kind)


__all__ = ["ALGORITHMS", "Algorithm", "DPSGD", "LearnerState", "Mixer", "SSGD", "build_algorithm"]
