"""The multi-learner algorithms, written once against :class:`ddl.comm.Collective` (docs/theory.md §7), with
the topologies they mix over and the learning-rate schedules.

A new algorithm is a subclass of :class:`Algorithm` registered in ``ALGORITHMS``; its name then becomes a value
of ``--algo``.  It declares what it communicates and when (:class:`Communication`) and how its runs are shown
(:class:`Identity`); everything outside this package asks those declarations (through the helpers below), never
the algorithm's name.
"""

from __future__ import annotations

from typing import Any

from ddl.algorithms.adpsgd import ADPSGD
from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.choco import Choco
from ddl.algorithms.communication import Communication, Identity
from ddl.algorithms.dpsgd import DPSGD
from ddl.algorithms.gossip_pga import GossipPGA
from ddl.algorithms.gradient_tracking import GradientTracking
from ddl.algorithms.local_sgd import LocalSGD
from ddl.algorithms.mixing import Mixer
from ddl.algorithms.ssgd import SSGD
from ddl.algorithms.topology import Topology
from ddl.comm import Collective
from ddl.compute.learners import LearnerGradients
from ddl.errors import ConfigError

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (SSGD, DPSGD, LocalSGD, GossipPGA, ADPSGD, GradientTracking, Choco)}

_baselines = [name for name, cls in ALGORITHMS.items() if cls.identity.baseline]
assert len(_baselines) == 1, f"exactly one registered algorithm must be the baseline, found {_baselines}"
#: The reference algorithm the others are compared with (and the default of ``--algo``).
BASELINE: str = _baselines[0]
#: Config fields that belong to some algorithm's experiments only (``Identity.experiment_fields``).
ALGORITHM_FIELDS: frozenset[str] = frozenset(f for cls in ALGORITHMS.values() for f in cls.identity.experiment_fields)


def algorithm_class(name: str) -> type[Algorithm]:
    """The registered algorithm called ``name``; a :class:`ConfigError` naming ``--algo`` for any other."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"--algo: {name!r} is not one of {', '.join(ALGORITHMS)}") from None


def communication_of(name: str, cfg: Any = None) -> Communication:
    """What algorithm ``name`` sends and when (in a run configured by ``cfg``, when its facts depend on it)."""
    return algorithm_class(name).communication_for(cfg)


def identity_of(name: str) -> Identity:
    """How runs of algorithm ``name`` are labelled, coloured and grouped."""
    return algorithm_class(name).identity


def label_of(name: str) -> str:
    """An algorithm's display name (``SSGD``)."""
    return identity_of(name).label


def is_baseline(name: str) -> bool:
    """Whether ``name`` is the reference algorithm the others are compared with."""
    return name == BASELINE


def build_algorithm(name: str, gradients: LearnerGradients, comm: Collective, momentum: float,
                    topology: Topology, weight_decay_kind: str = "l2sq", cfg: Any = None,
                    asynchronous: dict[str, Any] | None = None) -> Algorithm:
    """The algorithm called ``name``; the topology is passed to those that mix over it, the config fields
    it names in ``options`` (its period, compressor, …) from ``cfg`` (its defaults without one), and
    ``asynchronous`` (``events``: the :class:`~ddl.algorithms.asynchrony.EventSchedule`, ``minibatch(k, learner)``,
    ``seed``) to those that are not synchronous."""
    cls = algorithm_class(name)
    kw: dict[str, Any] = {} if cfg is None else {f: getattr(cfg, f) for f in cls.options}
    if cls.communication.uses_topology:
        kw["topology"] = topology
    if not cls.communication.synchronous:
        kw.update(asynchronous or {})
    return cls(gradients, comm, momentum, weight_decay_kind=weight_decay_kind, **kw)


__all__ = ["ADPSGD", "ALGORITHMS", "ALGORITHM_FIELDS", "Algorithm", "BASELINE", "Choco", "Communication", "DPSGD",
           "GossipPGA", "GradientTracking", "Identity", "LearnerState", "LocalSGD", "Mixer", "SSGD",
           "algorithm_class", "build_algorithm", "communication_of", "identity_of", "is_baseline", "label_of"]
