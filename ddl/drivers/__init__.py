"""``ddl train --backend torchrun | ray``: run the training loop on real workers.

* ``torchrun`` (:mod:`ddl.drivers.torchrun`): this process is one rank of a ``torchrun`` launch; rank 0 writes
  the run directory and gets the :class:`~ddl.loop.train.TrainResult`, the other ranks get ``None``.
* ``ray`` (:mod:`ddl.drivers.ray_cluster`): this process is the driver; K actors train, rank 0's actor writes
  the run directory.
"""

from __future__ import annotations

from ddl.config import TrainConfig
from ddl.errors import ConfigError


def train_distributed(cfg: TrainConfig):
    """Train per ``cfg`` on ``cfg.backend``; the TrainResult on the main worker, None elsewhere."""
    if cfg.backend == "torchrun":
        from ddl.drivers.torchrun import train_torchrun

        return train_torchrun(cfg)
    if cfg.backend == "ray":
        from ddl.drivers.ray_cluster import train_ray

        return train_ray(cfg)
    raise ConfigError(f"--backend: {cfg.backend!r} is not a distributed backend (torchrun, ray)")
