"""``ddl train --backend torchrun``: this process is one rank of a ``torchrun`` launch (RANK/WORLD_SIZE/LOCAL_RANK
from the environment, c10d rendezvous).  It joins the process group and runs its block of learners; rank 0
writes the run directory and gets the :class:`~ddl.loop.train.TrainResult`, the other ranks get ``None``.

Configuration errors that every rank detects alike (before or while building the trainer) are reported by
rank 0 only — one line, as for the simulator.  The other ranks wait a moment and exit with the same status
silently: torchrun stops all ranks when the first one fails, and rank 0 must be that one to get its line out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from ddl.config import TrainConfig
from ddl.errors import ConfigError, DDLError

_SAME_ON_EVERY_RANK = (DDLError,)
_QUIET_EXIT_DELAY_S = 5.0


def _quiet_exit() -> None:
    time.sleep(_QUIET_EXIT_DELAY_S)  # torchrun ends this rank once rank 0 has failed with its message
    raise SystemExit(2)


def _out_taken(trainer) -> bool:
    return trainer.files.holds_run() and not trainer.cfg.overwrite


def restart_config(cfg: TrainConfig) -> TrainConfig:
    """The configuration of a torchrun worker restarted by its agent (``--max-restarts``).

    torchrun restarts every worker with the same command when one fails.  A restarted worker
    (``TORCHELASTIC_RESTART_COUNT`` > 0) whose ``--out`` was written by this same launch (its ``config.json``
    records ``TORCHELASTIC_RUN_ID``) resumes it from the last checkpoint, or starts it again if none was written
    yet.  Any other directory is left to the usual checks.
    """
    if cfg.resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) == 0:
        return cfg
    from ddl.loop.train import default_out
    from ddl.rundir.checkpoint import list_checkpoints
    from ddl.rundir.directory import RunDirectory

    out = Path(cfg.out) if cfg.out else default_out(cfg)
    launch = os.environ.get("TORCHELASTIC_RUN_ID")
    if not launch or RunDirectory(out).launch_id() != launch:
        return cfg
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"ddl: torchrun restart {os.environ['TORCHELASTIC_RESTART_COUNT']}: continuing {out} from its last "
              "checkpoint", file=sys.stderr, flush=True)
    if list_checkpoints(out / "checkpoints"):
        return dataclasses.replace(cfg, resume=True)
    return dataclasses.replace(cfg, overwrite=True)


def train_torchrun(cfg: TrainConfig):
    """Train as one rank of a torchrun launch (see the module docstring)."""
    import torch

    from ddl.comm.torchdist import setup_torchrun
    from ddl.loop.train import Trainer

    rank = int(os.environ.get("RANK", 0))
    cfg = restart_config(cfg)
    try:
        comm, device = setup_torchrun(cfg.learners, cfg.dist_backend, cfg.device, cfg.workers)
    except _SAME_ON_EVERY_RANK:
        if rank != 0:
            _quiet_exit()
        raise
    try:
        try:
            trainer = Trainer(cfg, comm=comm, device=device)
            # only rank 0 sees (and writes) the run directory: it decides, every rank learns the verdict
            taken = torch.tensor([float(comm.is_main and not cfg.resume and _out_taken(trainer))])
            if comm.broadcast(taken, 0)[0] > 0:
                raise ConfigError(f"--out: {trainer.out} already holds a run (pass --overwrite to replace it)")
        except _SAME_ON_EVERY_RANK:
            if comm.rank != 0:
                _quiet_exit()
            raise
        # an error on one rank only ends that rank; torchrun then stops the others
        result = trainer.run()
    finally:
        comm.close()
    return result if comm.is_main else None
