"""What an algorithm communicates and when: the one declaration the rest of ``ddl`` asks instead of its name.

Every :class:`~ddl.algorithms.base.Algorithm` subclass declares a :class:`Communication` (what crosses the
network per step) and an :class:`Identity` (how runs of it are shown and grouped).  The simulated clock's cost
model, the experiment key of a configuration, the noise figures and the reports' labels, colours and baseline
read these facts; no code outside ``ddl/algorithms`` tests an algorithm's name (``tests/test_architecture.py``
counts the literals).

How the algorithms declare themselves:

=================  ==================  ================  ====================  ===========  ================  =========
algorithm          gradient_allreduce  neighbour_mixing  global_average_every  synchronous  message_fraction  exchanges
=================  ==================  ================  ====================  ===========  ================  =========
SSGD               True                False             None                  True         1.0               1
DPSGD              False               True              None                  True         1.0               1
local SGD (H)      False               False             H                     True         1.0               1
Gossip-PGA (H)     False               True              H                     True         1.0               1
gradient tracking  False               True              None                  True         1.0               2
CHOCO-SGD          False               True              None                  True         < 1 (compressed)  1
AD-PSGD            False               True (1 peer)     None                  False        1.0               1
=================  ==================  ================  ====================  ===========  ================  =========

A fact that depends on the run's configuration (a period H, a compression ratio) is filled in by the
algorithm's :meth:`~ddl.algorithms.base.Algorithm.communication_for`, which receives the config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Communication:
    """What one step of an algorithm sends, between which learners, and whether it waits for it.

    ``gradient_allreduce``: every step all learners' gradients are summed over all learners (an all-reduce: a
    barrier; afterwards every learner holds the same weights).
    ``neighbour_mixing``: every step each learner averages its weights with its neighbours' over the run's
    topology (the topology then belongs to the experiment).
    ``neighbours_per_step``: how many of the topology's neighbours a learner hears from in one step (None: all
    of them; 1: one, e.g. a random peer).
    ``global_average_every``: every this many steps all learners' weights are averaged by an all-reduce, in
    place of that step's neighbour mixing (None: never).
    ``synchronous``: a step uses the messages of the previous step, so a learner waits for them (False: it
    proceeds with whatever has arrived).
    ``message_fraction``: bytes of one message relative to one full model in the run's dtype (1.0; a
    compressed message is smaller).
    ``exchanges_per_step``: how many rows a learner sends each neighbour per step, sent together (gradient
    tracking sends its weights and its gradient tracker: 2).
    """

    gradient_allreduce: bool = False
    neighbour_mixing: bool = False
    neighbours_per_step: int | None = None
    global_average_every: int | None = None
    synchronous: bool = True
    message_fraction: float = 1.0
    exchanges_per_step: int = 1

    def __post_init__(self) -> None:
        if self.global_average_every is not None and self.global_average_every < 1:
            raise ValueError(f"global_average_every must be ≥ 1 or None, got {self.global_average_every}")
        if self.neighbours_per_step is not None and not self.neighbour_mixing:
            raise ValueError("neighbours_per_step applies only to an algorithm that mixes neighbours")
        if not self.message_fraction > 0:
            raise ValueError(f"message_fraction must be > 0, got {self.message_fraction}")
        if self.exchanges_per_step < 1:
            raise ValueError(f"exchanges_per_step must be ≥ 1, got {self.exchanges_per_step}")

    @property
    def learners_agree(self) -> bool:
        """Every learner holds the same weights after every step (the run is one model, batch n·b)."""
        return self.gradient_allreduce

    @property
    def uses_topology(self) -> bool:
        """The run's topology shapes what is sent (and so belongs to the experiment)."""
        return self.neighbour_mixing


@dataclass(frozen=True)
class Identity:
    """How runs of an algorithm are shown and grouped.

    ``label``: its name in reports and figures (``SSGD``); ``color``: a matplotlib colour for figures that
    colour by algorithm; ``baseline``: the reference the others are compared with (exactly one registered
    algorithm is); ``experiment_fields``: config fields that belong to this algorithm's experiments only
    (e.g. ``topology``): for every other algorithm they are left out of the experiment key and labels.
    """

    label: str
    color: str
    baseline: bool = False
    experiment_fields: tuple[str, ...] = ()
