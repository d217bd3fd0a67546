"""Transports under the one algorithm code path: ``sim`` (all learners in one process), ``torchdist``
(torch.distributed ranks, each holding a block of learners) and ``ray`` (actors).  A backend only moves
tensors: a sum over all learners and point-to-point exchange of learner rows (see :class:`Collective`)."""

from ddl.comm.base import Collective, PendingExchange
from ddl.comm.sim import SimCollective

# where learners run: one process (sim), torch.distributed ranks started by torchrun, Ray actors
BACKENDS = ("sim", "torchrun", "ray")

__all__ = ["BACKENDS", "Collective", "PendingExchange", "SimCollective"]
