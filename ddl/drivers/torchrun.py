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
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ddl.comm.torchdist import TorchDistCollective, check_divisible, choose_backend
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


def rank_device(backend: str, device: str, local_rank: int) -> torch.device:
    """The device of a rank: its own GPU with nccl; with gloo the host unless ``--device cuda`` is asked for."""
    if backend == "nccl" or device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {device} requested but no CUDA device is available")
        count = torch.cuda.device_count()
        if device.startswith("cuda:"):
            return torch.device(device)
        if local_rank >= count:
            raise ConfigError(f"--nproc-per-node: local rank {local_rank} has no GPU ({count} visible)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_torchrun(n: int, dist_backend: str = "auto", device: str = "auto",
                   workers: int | None = None) -> tuple[TorchDistCollective, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Every check that can fail does so *before* the process group is joined and identically on every rank, so
    a bad configuration ends all ranks at once instead of leaving some waiting in a collective.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "--backend: torchrun needs the torchrun launcher (RANK/WORLD_SIZE are not set); run "
            "`torchrun --nproc-per-node K -m ddl train --backend torchrun ...`"
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if workers is not None and workers != world:
        raise ConfigError(
            f"--workers: {workers} given but torchrun started {world} ranks (--nnodes × --nproc-per-node)"
        )
    check_divisible(n, world)
    backend = choose_backend(dist_backend, device)
    dev = rank_device(backend, device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kw = {"device_id": dev} if backend == "nccl" else {}
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        if attempt > 0:
            # workers restarted by torchrun meet in the agent's store, which still holds the previous attempt's
            # keys (the dead workers' addresses): a prefix per attempt keeps them from being read
            from torch.distributed.rendezvous import _create_c10d_store

            base = _create_c10d_store(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), rank, world,
                                      timedelta(minutes=10))
            kw["store"] = dist.PrefixStore(f"ddl/attempt_{attempt}", base)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kw)
    return TorchDistCollective(n), dev
