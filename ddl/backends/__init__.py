"""Transports under the one algorithm code path: ``sim`` (all learners in one process), ``torchdist``
(torch.distributed ranks, each holding a block of learners) and ``ray`` (actors).  A backend only moves
tensors: a sum over all learners and point-to-point exchange of learner rows (see :class:`Collective`)."""

from ddl.backends.base import Collective, PendingExchange
from ddl.backends.sim import SimCollective

__all__ = ["Collective", "PendingExchange", "SimCollective"]
