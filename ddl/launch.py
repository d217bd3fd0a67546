"""``ddl train --backend torchrun | ray``: run the training loop on real workers.

* ``torchrun``: this process is one rank of a ``torchrun`` launch (RANK/WORLD_SIZE/LOCAL_RANK from the
  environment, c10d rendezvous).  It joins the process group and runs its block of learners; rank 0 writes
  the run directory and gets the :class:`~ddl.train.TrainResult`, the other ranks get ``None``.
* ``ray``: this process is the driver; K actors train, rank 0's actor writes the run directory.

Configuration errors that every rank detects alike (before or while building the trainer) are reported by
rank 0 only — one line, as for the simulator — and the other ranks exit with the same status silently.
"""

from __future__ import annotations

import argparse

from ddl.config import ConfigError, TrainConfig

_SAME_ON_EVERY_RANK = (ConfigError, ValueError, FileNotFoundError)


def train_distributed(cfg: TrainConfig, args: argparse.Namespace | None = None):
    """Train per ``cfg`` on ``cfg.backend``; the TrainResult on the main worker, None elsewhere.

    ``args`` is the CLI's namespace, accepted for the CLI's call: every setting is read from ``cfg``.
    """
    if cfg.backend == "torchrun":
        return _train_torchrun(cfg)
    if cfg.backend == "ray":
        from ddl.backends.ray_backend import train_ray

        return train_ray(cfg)
    raise ConfigError(f"--backend: {cfg.backend!r} is not a distributed backend (torchrun, ray)")


def _train_torchrun(cfg: TrainConfig):
    import os

    from ddl.backends.torchdist import setup_torchrun
    from ddl.train import Trainer

    rank = int(os.environ.get("RANK", 0))
    try:
        comm, device = setup_torchrun(cfg.learners, cfg.dist_backend, cfg.device, cfg.workers)
    except _SAME_ON_EVERY_RANK:
        if rank != 0:
            raise SystemExit(2) from None
        raise
    try:
        try:
            trainer = Trainer(cfg, comm=comm, device=device)
        except _SAME_ON_EVERY_RANK:
            if comm.rank != 0:
                raise SystemExit(2) from None
            raise
        # an error on one rank only (e.g. rank 0 finds --out taken) ends that rank; torchrun then stops the others
        result = trainer.run()
    finally:
        comm.close()
    return result if comm.is_main else None
